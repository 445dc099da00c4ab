#!/usr/bin/env bash
# Builds (and optionally runs) the protocol decoder fuzz target with cargo-fuzz (nightly).
# Usage: ci/fuzz.sh [seconds]   (no argument: build only; with N: also fuzz for N seconds)
set -euo pipefail
cd "$(dirname "$0")/../core"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
cargo +nightly fuzz build decode
if [ -n "${1:-}" ]; then
    cargo +nightly fuzz run decode -- -max_total_time="$1"
fi
