#!/usr/bin/env bash
# Builds (and optionally runs) the fuzz targets of everything decoded from a peer, with
# cargo-fuzz (nightly). The worker protocol's, in core/fuzz: `decode` (messages, HELLO), `tally`
# (lane tallies), `table` (the WELCOME function table), `ring_words` (ring, lease and doorbell
# words a peer wrote, under every party's operations), `handshake` (the WELCOME / LEASE
# reading path with descriptors). The cluster protocol's, in engine/fuzz: `cluster_frame`.
# Usage: ci/fuzz.sh [seconds [target ...]]
#   no argument: build every target only;
#   seconds: also run each target (or the ones named) for that long, one after the other,
#   printing its executions and coverage; exits non-zero on the first crash (the input is in
#   <crate>/fuzz/artifacts/<target>/).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
ALL=(core:decode core:tally core:table core:ring_words core:handshake engine:cluster_frame)
(cd "$ROOT/core" && cargo +nightly fuzz build)
(cd "$ROOT/engine" && cargo +nightly fuzz build)
[ -z "${1:-}" ] && exit 0
seconds="$1"; shift
targets=()
for t in "$@"; do
    for known in "${ALL[@]}"; do
        [ "${known#*:}" = "$t" ] && targets+=("$known")
    done
done
[ $# -eq 0 ] && targets=("${ALL[@]}")
for target in "${targets[@]}"; do
    dir=${target%%:*}; t=${target#*:}
    log="$ROOT/$dir/fuzz/target/$t.log"
    mkdir -p "$(dirname "$log")"
    echo "==> $t for $seconds s"
    if ! (cd "$ROOT/$dir" && cargo +nightly fuzz run "$t" -- -max_total_time="$seconds" -print_final_stats=1) > "$log" 2>&1; then
        tail -n 40 "$log"
        echo "$t: CRASH (log: $log)"
        exit 1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
    echo "$t: $runs runs, $cov, no crash"
done
