#!/usr/bin/env bash
# Large payloads, side by side (a benchmark, not a test): the external `Echo` of 4 KiB, 100 KiB
# and 1 MiB bodies, closed loop on one connection, against this build and a baseline, in
# alternating rounds so a noisy machine hurts both alike.
#
#   ci/bench-payloads.sh [BASELINE_RELEASE_DIR]
#
# BASELINE_RELEASE_DIR: another build's target/release (with `gloam` and `hello-rust`), e.g. of
# an older commit built in a worktree; without it the baseline is the bare hyper echo server
# (bench/baselines). Each stack's IPC root is under /dev/shm, the default's filesystem.
# Results: bench/results/<date>-payloads/results.{jsonl,md}. Environment: ROUNDS (4), DUR (3s).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
# shellcheck source=ci/stack.sh
source ci/stack.sh
ROUNDS="${ROUNDS:-4}"; DUR="${DUR:-3s}"
BASE="${1:-}"

echo "== building release" >&2
cargo build --release -p gloam-engine -p hello-rust -p gloam-bench-baselines >&2
NEW="$ROOT/target/release"
CLIENT="$NEW/gloam"
if [[ -n "$BASE" && ! -x "$BASE/gloam" ]]; then
  echo "$BASE/gloam: not a release build directory" >&2
  exit 2
fi

STAMP="$(date -u +%Y-%m-%dT%H%M%SZ)"
RES="bench/results/$STAMP-payloads"
mkdir -p "$RES"
OUT="$RES/results.jsonl"
: > "$OUT"
TMP="$(mktemp -d -p /dev/shm gloam-bench.XXXXXX)"
cleanup() {
  if [[ -n "$ECHO_PID" ]]; then kill "$ECHO_PID" 2>/dev/null || true; fi
  stop_stack
  rm -rf "$TMP"
}
trap cleanup EXIT
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# measure SIDE ROUND URL PID: one closed-loop point per size.
measure() {
  local side="$1" round="$2" url="$3" pid="$4"
  for size in 4096 102400 1048576; do
    local json
    json="$("$CLIENT" bench http "$url" -c 1 -d "$DUR" --warmup 1s --size "$size" \
      --engine-pid "$pid" --json)"
    printf '{"side":"%s","round":%s,"size":%s,"result":%s}\n' "$side" "$round" "$size" "$json" >> "$OUT"
    echo "-- $side round $round, $size B" >&2
  done
}

# gloam_side NAME RELEASE_DIR ROUND: a fresh stack of that build, measured, stopped.
gloam_side() {
  local name="$1" dir="$2" round="$3" d="$TMP/$1-$3"
  mkdir -p "$d"
  cat > "$d/gloam.toml" <<TOML
[engine]
ipc_root = "$d/ipc"
listen = "127.0.0.1:0"
log_dir = "$d/logs"
max_payload = 16777216

[functions.Echo]
command = "$dir/hello-rust"
min_workers = 2
TOML
  start_stack "$dir/gloam" "$d/gloam.toml" "$d"
  measure "$name" "$round" "$URL/function/Echo" "$ENGINE_PID"
  stop_stack
}

for r in $(seq "$ROUNDS"); do
  if [[ -n "$BASE" ]]; then
    gloam_side baseline "$BASE" "$r"
  else
    start_echo "$NEW" "$TMP"
    measure baseline "$r" "$ECHO/" "$ECHO_PID"
    kill "$ECHO_PID"; wait "$ECHO_PID" 2>/dev/null || true; ECHO_PID=""
  fi
  gloam_side gloam "$NEW" "$r"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

python3 - "$OUT" "${BASE:-bare hyper echo}" > "$RES/results.md" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"Baseline: {sys.argv[2]}. Medians of the rounds (min–max).\n")
print("| size | side | p50 µs | p99 µs | p99.9 µs | calls/s | CPU µs/call |")
print("|---:|---|---:|---:|---:|---:|---:|")
def cell(xs):
    return f"{statistics.median(xs):,.0f} ({min(xs):,.0f}–{max(xs):,.0f})"
for size in sorted({r["size"] for r in rows}):
    for side in ("baseline", "gloam"):
        rs = [r["result"] for r in rows if r["size"] == size and r["side"] == side]
        if not rs:
            continue
        lat = [r["latency"] for r in rs]
        print(f"| {size:,} | {side} | {cell([l['p50_us'] for l in lat])} | "
              f"{cell([l['p99_us'] for l in lat])} | {cell([l['p999_us'] for l in lat])} | "
              f"{cell([r['achieved_per_s'] for r in rs])} | "
              f"{cell([r['cpu']['us_per_call'] for r in rs])} |")
PY
cat "$RES/results.md"
echo "results in $RES" >&2
