#!/usr/bin/env bash
# Builds (and optionally runs) the decoder fuzz targets with cargo-fuzz (nightly): the worker
# protocol's (core/fuzz, `decode`) and the cluster protocol's (engine/fuzz, `cluster_frame`).
# Usage: ci/fuzz.sh [seconds]   (no argument: build only; with N: also fuzz each for N seconds)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
for target in core:decode engine:cluster_frame; do
    dir=${target%%:*}; name=${target#*:}
    (cd "$ROOT/$dir" && cargo +nightly fuzz build "$name")
    if [ -n "${1:-}" ]; then
        (cd "$ROOT/$dir" && cargo +nightly fuzz run "$name" -- -max_total_time="$1")
    fi
done
