#!/usr/bin/env bash
# Runs the loom models of the core's lock-free protocols: the doorbell handshake
# (core/tests/loom_bell.rs) and the direct-lane state machine (core/tests/loom_lane.rs),
# on the real code over a model of shared memory (core/src/model.rs).
# Usage: ci/loom.sh [preemptions]   (default: each model's own bound — 4 for the bell, 2 for
# the lanes: about 3 minutes of models on 2 busy CPUs after a 1-2 minute build, 4 minutes in
# all; 3 for the lanes takes hours). Too long for `ci/test.sh rust`, hence this script. The
# fence-less mutant's expected deadlock panic shows in the output: it is a should_panic test.
# The loom build has its own target directory: RUSTFLAGS would otherwise rebuild the
# workspace's.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${1:-}" ]; then
    export LOOM_MAX_PREEMPTIONS="$1"
fi
export RUSTFLAGS="--cfg loom"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/loom"
cargo test -p gloam-core --release --test loom_bell --test loom_lane -- --test-threads=2 --nocapture
