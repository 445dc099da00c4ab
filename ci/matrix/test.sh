#!/usr/bin/env bash
# The cross-language matrix (ci/matrix/matrix.py): builds what it needs when missing (the
# engine and hello-rust, the C library and hello_c, hello-go, the Python package in
# target/venv-python, the Node addon), then runs the 25 pairs.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
d=target/debug
# Every step is incremental (cheap when up to date) and always runs: a worker built against an
# older core than the engine fails its handshake.
echo "matrix: cargo build (gloam, hello-rust, libgloam.a)"
cargo build --quiet -p gloam-engine -p hello-rust -p gloam-c
echo "matrix: hello_c (target/debug/hello-c/hello_c)"
make -s -C examples/hello-c BUILD="$root/$d/hello-c" "$root/$d/hello-c/hello_c"
echo "matrix: hello-go (target/debug/hello-go)"
# Go's build cache does not see a static library named in #cgo LDFLAGS: key the cgo builds on
# the library's hash (as bindings/go/test.sh does) so a rebuilt libgloam.a is never linked stale.
export CGO_CFLAGS="${CGO_CFLAGS:-} -DGLOAM_LIB_HASH=$(sha256sum $d/libgloam.a | cut -c1-16)"
(cd examples/hello-go && go build -o "$root/$d/hello-go" .)
venv=target/venv-python
echo "matrix: Python package into $venv (maturin develop)"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
[ -x "$venv/bin/maturin" ] ||
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "maturin>=1.5,<2"
VIRTUAL_ENV="$root/$venv" PATH="$root/$venv/bin:$PATH" "$venv/bin/maturin" develop --quiet \
    -m bindings/python/Cargo.toml
echo "matrix: Node addon (napi build)"
(cd bindings/node &&
    { [ -d node_modules/@napi-rs ] || npm ci --ignore-scripts --no-audit --no-fund; } &&
    npx --no-install napi build --platform --js index.js --dts index.d.ts > /dev/null)
exec python3 ci/matrix/matrix.py
