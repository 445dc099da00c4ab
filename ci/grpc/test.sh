#!/usr/bin/env bash
# The gRPC example (examples/grpc) against real gRPC clients we did not write: grpcurl, the Go
# grpc package (examples/grpc/goclient) and Python's grpcio. Builds what it needs when missing:
# the engine and hello-rust, the Go greeter and client, the Python package in target/venv-python
# (plus protobuf and grpcio from PyPI), grpcurl (ci/install-grpcurl.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
d=target/debug
echo "grpc: cargo build (gloam, hello-rust, libgloam.a)"
cargo build --quiet -p gloam-engine -p hello-rust -p gloam-c
# As bindings/go/test.sh: key cgo builds on the library's hash so a rebuilt libgloam.a is used.
export CGO_CFLAGS="${CGO_CFLAGS:-} -DGLOAM_LIB_HASH=$(sha256sum $d/libgloam.a | cut -c1-16)"
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
echo "grpc: Go greeter and client"
(cd examples/grpc/go && go vet ./... && go build -o "$root/$d/grpc-greeter-go" .)
(cd examples/grpc/goclient && go vet ./... && go build -o "$root/$d/grpc-client-go" .)
unformatted="$(gofmt -l examples/grpc)"
[ -z "$unformatted" ] || { echo "gofmt: $unformatted" >&2; exit 1; }
venv=target/venv-python
echo "grpc: Python package, protobuf and grpcio into $venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "maturin>=1.5,<2" "protobuf>=7.35.1" "grpcio>=1.60"
VIRTUAL_ENV="$root/$venv" PATH="$root/$venv/bin:$PATH" "$venv/bin/maturin" develop --quiet \
    -m bindings/python/Cargo.toml
GRPCURL=$(ci/install-grpcurl.sh)
export GRPCURL
exec "$venv/bin/python" ci/grpc/grpc_example.py
