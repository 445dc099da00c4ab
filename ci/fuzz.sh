#!/usr/bin/env bash
# Builds (and optionally runs) the fuzz targets of everything the core decodes from a peer,
# with cargo-fuzz (nightly): `decode` (messages, HELLO), `tally` (lane tallies), `table`
# (the WELCOME function table), `ring_words` (ring and lane words a peer wrote, under every
# party's operations) and `handshake` (the WELCOME / PEER reading path with descriptors).
# Usage: ci/fuzz.sh [seconds [target ...]]
#   no argument: build every target only;
#   seconds: also run each target (or the ones named) for that long, one after the other,
#   printing its executions and coverage; exits non-zero on the first crash (the input is in
#   core/fuzz/artifacts/<target>/).
set -euo pipefail
cd "$(dirname "$0")/../core"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
ALL=(decode tally table ring_words handshake)
cargo +nightly fuzz build
[ -z "${1:-}" ] && exit 0
seconds="$1"; shift
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${ALL[@]}")
for t in "${targets[@]}"; do
    log="fuzz/target/$t.log"
    echo "==> $t for $seconds s"
    if ! cargo +nightly fuzz run "$t" -- -max_total_time="$seconds" -print_final_stats=1 > "$log" 2>&1; then
        tail -n 40 "$log"
        echo "$t: CRASH (log: core/$log)"
        exit 1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
    echo "$t: $runs runs, $cov, no crash"
done
