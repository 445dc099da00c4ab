#!/usr/bin/env bash
# The standard benchmark run (not part of the tests): builds release, starts a Gloam stack and
# the baselines on this machine, measures them with the same client, and writes
# bench/results/<date>.json and .md and the table in BENCHMARKS.md.
#
#   ci/bench.sh [--quick]      # --quick: 1 s points, for checking the script itself
#
# Other languages join the internal-call bench by adding their `<Lang>BenchInternal` function
# to bench/extra-functions.toml (a gloam.toml fragment; @ROOT@ is replaced by the repo path):
# a language whose function answers is measured, the others are listed as skipped.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
# shellcheck source=ci/stack.sh
source ci/stack.sh
DUR=5s; WARM=1s; ROUNDS=3; PAIR_DUR=3s; IDLE=10s; N_INTERNAL=20000; FIFO_N=100000
if [[ "${1:-}" == "--quick" ]]; then
  DUR=1s; WARM=0.3s; ROUNDS=2; PAIR_DUR=1s; IDLE=2s; N_INTERNAL=2000; FIFO_N=10000
fi

if ! command -v wrk > /dev/null; then
  echo "== installing wrk (Debian package)" >&2
  SUDO=""; [[ "$(id -u)" == 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends wrk >&2
fi

echo "== building release" >&2
cargo build --release -p gloam-engine -p hello-rust -p gloam-bench-baselines >&2
GLOAM="$ROOT/target/release/gloam"
HELLO="$ROOT/target/release/hello-rust"
BASE="$ROOT/target/release"

TMP="$(mktemp -d -t gloam-bench.XXXXXX)"
cleanup() {
  [[ -n "$ECHO_PID" ]] && kill "$ECHO_PID" 2>/dev/null || true
  stop_stack
  rm -rf "$TMP"
}
trap cleanup EXIT

# 12 workers in all, so the idle measurement has at least 10 idle workers.
cat > "$TMP/gloam.toml" <<TOML
[engine]
ipc_root = "$TMP/ipc"
listen = "127.0.0.1:0"
log_dir = "$TMP/logs"

[functions.Nop]
command = "$HELLO"
min_workers = 4

[functions.Echo]
command = "$HELLO"
min_workers = 2

[functions.Foo]
command = "$HELLO"
min_workers = 2

[functions.Bar]
command = "$HELLO"
min_workers = 2

[functions.BenchInternal]
command = "$HELLO"
min_workers = 2
TOML
if [[ -f bench/extra-functions.toml ]]; then
  sed "s|@ROOT@|$ROOT|g" bench/extra-functions.toml >> "$TMP/gloam.toml"
fi

echo "== starting gloam up" >&2
start_stack "$GLOAM" "$TMP/gloam.toml" "$TMP"

start_echo "$BASE" "$TMP"
echo "== gloam at $URL (pid $ENGINE_PID), echo baseline at $ECHO (pid $ECHO_PID)" >&2

OUT="$TMP/results.jsonl"
: > "$OUT"
# record NAME GROUP ROUND COMMAND...: runs a bench command printing one JSON object.
record() {
  local name="$1" group="$2" round="$3"; shift 3
  echo "-- $name (round $round)" >&2
  local json
  if json="$("$@")"; then
    printf '{"name":"%s","group":"%s","round":%s,"result":%s}\n' "$name" "$group" "$round" "$json" >> "$OUT"
  else
    printf '{"name":"%s","group":"%s","round":%s,"error":"failed"}\n' "$name" "$group" "$round" >> "$OUT"
  fi
}
gl() { "$GLOAM" bench http "$URL/function/$1" --engine-pid "$ENGINE_PID" --json "${@:2}"; }
eh() { "$GLOAM" bench http "$ECHO/" --engine-pid "$ECHO_PID" --json "$@"; }

# Pairs, alternating A B A B ... so a noisy machine hurts both sides alike.
for r in $(seq "$ROUNDS"); do
  record nop_seq seq "$r" gl Nop -c 1 -d "$PAIR_DUR" --warmup "$WARM"
  record echo_http_seq seq "$r" eh -c 1 -d "$PAIR_DUR" --warmup "$WARM"
done
for rate in 2000 5000 10000 20000; do
  record "nop_open_$rate" "open_$rate" 1 gl Nop --rate "$rate" -c 4 -d "$DUR" --warmup "$WARM"
  record "echo_http_open_$rate" "open_$rate" 1 eh --rate "$rate" -c 4 -d "$DUR" --warmup "$WARM"
done
# The same external load from wrk (Debian's), at several connection and thread counts.
WRK_SECS="${DUR%s}"
for t in 1 2; do
  for c in 8 32 128; do
    for r in $(seq "$ROUNDS"); do
      record "wrk_nop_t${t}_c${c}" "wrk_t${t}_c${c}" "$r" python3 ci/wrk_point.py "$URL/function/Nop" "$ENGINE_PID" "$t" "$c" "$WRK_SECS"
      record "wrk_echo_t${t}_c${c}" "wrk_t${t}_c${c}" "$r" python3 ci/wrk_point.py "$ECHO/" "$ECHO_PID" "$t" "$c" "$WRK_SECS"
    done
  done
done
# Open loop beyond one connection's worth: 20k/s over 32 connections.
record nop_open32_20000 open32_20000 1 gl Nop --rate 20000 -c 32 -d "$DUR" --warmup "$WARM"
record echo_http_open32_20000 open32_20000 1 eh --rate 20000 -c 32 -d "$DUR" --warmup "$WARM"
for r in $(seq "$ROUNDS"); do
  record internal_rust internal "$r" "$GLOAM" bench internal --lang rust --url "$URL" --n "$N_INTERNAL" --json
  record grpc_unix internal "$r" "$BASE/grpc-unary" --duration "$PAIR_DUR" --warmup "$WARM" --json
done
for lang in c go python node; do
  if "$GLOAM" bench internal --lang "$lang" --url "$URL" --n 10 --json > /dev/null 2>&1; then
    record "internal_$lang" "internal_$lang" 1 "$GLOAM" bench internal --lang "$lang" --url "$URL" --n "$N_INTERNAL" --json
  else
    printf '{"name":"internal_%s","group":"internal_%s","round":1,"skipped":"no %s BenchInternal function answers"}\n' "$lang" "$lang" "$lang" >> "$OUT"
  fi
done
record foo_bar_chain chain 1 gl Foo -c 1 -d "$DUR" --warmup "$WARM" --data World
for r in $(seq 2); do
  record echo_1mib mib "$r" gl Echo -c 1 -d "$PAIR_DUR" --warmup "$WARM" --size 1048576
  record echo_http_1mib mib "$r" eh -c 1 -d "$PAIR_DUR" --warmup "$WARM" --size 1048576
done
echo "-- fifo_roundtrip" >&2
if cargo bench -p gloam-core --bench fifo_roundtrip -- "$FIFO_N" 2> "$TMP/fifo.err" > "$TMP/fifo.out"; then
  printf '{"name":"fifo_roundtrip","group":"fifo","round":1,"result":%s}\n' \
    "$(grep '^{"bench":"fifo_roundtrip"' "$TMP/fifo.out" | tail -1)" >> "$OUT"
else
  printf '{"name":"fifo_roundtrip","group":"fifo","round":1,"error":"failed"}\n' >> "$OUT"
fi
sleep 1 # let the last calls settle before watching the idle engine
record idle idle 1 "$GLOAM" bench idle --engine-pid "$ENGINE_PID" --url "$URL" --duration "$IDLE" --json

DATE="$(date -u +%Y-%m-%dT%H%M%SZ)"
mkdir -p bench/results
python3 ci/bench_report.py "$OUT" "bench/results/$DATE.json" "bench/results/$DATE.md" BENCHMARKS.md
cat "bench/results/$DATE.md"
