#!/usr/bin/env bash
# Builds every part of the polyglot stack (examples/polyglot): the Rust workspace (gloam,
# libgloam.a, polyglot-rust), the C and Go programs in target/debug, the `gloam` Python package
# in target/venv-python (maturin develop) and the Node.js addon in bindings/node. Used by
# ci/main.sh and ci/polyglot-sandbox.sh.
#
# Usage: ci/build-polyglot.sh LOG   (every step's output is appended to LOG; a failing step
#                                    shows its tail and ends the script with status 1)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
LOG=${1:?usage: ci/build-polyglot.sh LOG}
T0=$SECONDS

# Runs a build step with its output in the build log; shows the log's tail when it fails.
build() {
    local what=$1; shift
    local t0=$SECONDS
    printf '==> build: %-52s' "$what"
    if ! ( "$@" ) >> "$LOG" 2>&1; then
        echo "FAILED"; tail -n 40 "$LOG"; echo "(full log: $LOG)"; exit 1
    fi
    echo "ok ($((SECONDS - t0)) s)"
}

VENV="$ROOT/target/venv-python"
python_pkg() {
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    [ -x "$VENV/bin/maturin" ] ||
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "maturin>=1.5,<2"
    VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH" "$VENV/bin/maturin" develop --quiet \
        -m bindings/python/Cargo.toml
    "$VENV/bin/python" -c 'import gloam'
}
node_addon() {
    cd bindings/node
    [ -d node_modules/@napi-rs/cli ] || npm ci --ignore-scripts --no-audit --no-fund
    npx --no-install napi build --platform --js index.js --dts index.d.ts
    node scripts/dts-header.js   # as bindings/node/test.sh: the committed typings stay as they are
}
go_binary() {
    # Go's build cache does not see a static library named in #cgo LDFLAGS: key the cgo builds
    # on the library's hash (as bindings/go/test.sh does) so a rebuilt one is never linked stale.
    CGO_CFLAGS="${CGO_CFLAGS:-} -DGLOAM_LIB_HASH=$(sha256sum target/debug/libgloam.a | cut -c1-16)"
    export CGO_CFLAGS
    cd examples/polyglot/go
    go build -o "$ROOT/target/debug/polyglot-go" .
}

build "Rust workspace (gloam, libgloam.a, polyglot-rust)" \
    cargo build --workspace --exclude gloam-python --exclude gloam-node
build "C program (target/debug/polyglot-c)" make -s -C examples/polyglot/c
build "Go program (target/debug/polyglot-go)" go_binary
build "Python package (target/venv-python, maturin)" python_pkg
build "Node.js addon (bindings/node, napi build)" node_addon
echo "    built in $((SECONDS - T0)) s (log: ${LOG#"$ROOT/"})"
