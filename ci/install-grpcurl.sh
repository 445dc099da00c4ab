#!/usr/bin/env bash
# Installs grpcurl (a gRPC client we did not write, used by the gRPC tests) from the Go module
# proxy into target/tools/bin/grpcurl, once. Prints its path.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=v1.9.3
BIN="$(pwd)/target/tools/bin"
# `go install` builds say "dev build": the version installed is kept beside the binary.
if [ ! -x "$BIN/grpcurl" ] || [ "$(cat "$BIN/.grpcurl-version" 2>/dev/null)" != "$VERSION" ]; then
    mkdir -p "$BIN"
    GOBIN="$BIN" GOFLAGS=-buildvcs=false go install "github.com/fullstorydev/grpcurl/cmd/grpcurl@$VERSION" >&2
    echo "$VERSION" > "$BIN/.grpcurl-version"
fi
echo "$BIN/grpcurl"
