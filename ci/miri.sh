#!/usr/bin/env bash
# Runs the ring, doorbell and lane test over heap regions (core/tests/ring_heap.rs) under
# Miri: the unsafe edges of shared_map.rs and every shared access, with Miri's data-race
# detector and weak-memory emulation. Needs nightly with the miri and rust-src components
# (installed here when missing). About 2 minutes, most of it building.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^miri'; then
    rustup toolchain install nightly --profile minimal --component miri,rust-src
fi
cargo +nightly miri test -p gloam-core --test ring_heap
