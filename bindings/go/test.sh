#!/usr/bin/env bash
# Tests of the Go SDK: builds libgloam.a, the engine and the example binaries, then gofmt (fails
# on any unformatted file), go vet and go test against a real engine.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
start=$SECONDS
cd "$root"
cargo build -p gloam-c -p gloam-engine -p hello-rust
# Go's build cache does not see a static library named in #cgo LDFLAGS: key the cgo builds on
# the library's hash so a rebuilt libgloam.a is never linked stale.
export CGO_CFLAGS="${CGO_CFLAGS:-} -DGLOAM_LIB_HASH=$(sha256sum target/debug/libgloam.a | cut -c1-16)"
(cd examples/hello-go && go build -o "$root/target/debug/hello-go" .)
unformatted="$(gofmt -l "$here" examples/hello-go)"
if [ -n "$unformatted" ]; then
    echo "FAIL gofmt: these files need formatting:" >&2
    echo "$unformatted" >&2
    exit 1
fi
(cd "$here" && go vet ./...)
(cd examples/hello-go && go vet ./...)
(cd "$here" && go test -count=1 -timeout 300s -v ./...)
echo "bindings/go/test.sh: all passed in $((SECONDS - start)) s"
