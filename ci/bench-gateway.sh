#!/usr/bin/env bash
# The cost of the gateway hop (issue 20): external `Nop` calls through `gloam gateway` + one
# engine against the same engine's embedded gateway, in one run, alternating rounds. Prints one
# JSON object (stdout) and a table (stderr): p50/p99 at one connection, CPU per call (engine
# and workers, plus the gateway process on the hop), and the throughput each path sustains
# with several connections (closed loop). A benchmark, not a test: nothing is asserted.
#
#   ci/bench-gateway.sh [--quick]      # --quick: short points, for checking the script
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
DUR=5s; WARM=1s; ROUNDS=3; CONNS=8
GW_THREADS=${GW_THREADS:-2}   # the gateway's --io-threads
# PIN=1: the gateway alone on CPU 1; the engine, its workers and the load generator on CPU 0
# (as if the gateway had its own machine). Default: no pinning (all share every CPU).
PIN=${PIN:-0}
ON_NODE=(); ON_GW=()
if [[ "$PIN" == 1 ]]; then ON_NODE=(taskset -c 0); ON_GW=(taskset -c 1); fi
if [[ "${1:-}" == "--quick" ]]; then DUR=1s; WARM=0.3s; ROUNDS=1; fi

echo "== building release" >&2
cargo build --release -p gloam-engine -p hello-rust >&2
G="$ROOT/target/release/gloam"
TMP="$(mktemp -d -t gloam-gwbench.XXXXXX)"
ENGINE_PID=""; GW_PID=""
cleanup() {
  for p in $ENGINE_PID $GW_PID; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
export GLOAM_JOIN_TOKEN="bench-$$"

wait_line() {  # file pattern -> the first matching line's rest
  for _ in $(seq 600); do
    if v=$(sed -n "s/^$2//p" "$1" | head -n1) && [[ -n "$v" ]]; then echo "$v"; return 0; fi
    sleep 0.1
  done
  echo "no '$2' in $1" >&2; cat "${1%.out}.err" >&2 || true; exit 1
}

GLOAM_LOG=warn "${ON_GW[@]}" "$G" gateway --listen 127.0.0.1:0 --engines 127.0.0.1:0 --io-threads "$GW_THREADS" > "$TMP/gw.out" 2> "$TMP/gw.err" &
GW_PID=$!
ENGINES=$(wait_line "$TMP/gw.out" "gloam: engines ")
GW_URL=$(wait_line "$TMP/gw.out" "gloam: ready ")

cat > "$TMP/gloam.toml" <<TOML
[engine]
ipc_root = "$TMP/ipc"
listen = "127.0.0.1:0"
log_dir = "$TMP/logs"
join = "$ENGINES"

[functions.Nop]
command = "$ROOT/target/release/hello-rust"
min_workers = 4
max_workers = 8
TOML
GLOAM_LOG=warn "${ON_NODE[@]}" "$G" up "$TMP/gloam.toml" > "$TMP/up.out" 2> "$TMP/up.err" &
ENGINE_PID=$!
ENGINE_URL=$(wait_line "$TMP/up.out" "gloam: ready ")
for _ in $(seq 300); do
  curl -sf "$GW_URL/readyz" >/dev/null && break
  sleep 0.1
done
echo "== engine $ENGINE_URL (pid $ENGINE_PID), gateway $GW_URL (pid $GW_PID)" >&2

ticks() {  # CPU ticks (user + system) of one process so far
  awk '{print $14 + $15}' "/proc/$1/stat"
}
run() {  # name url connections pids...
  local name=$1 url=$2 c=$3; shift 3
  local pids=(); for p in "$@"; do pids+=(--engine-pid "$p"); done
  local gw0; gw0=$(ticks "$GW_PID")
  "${ON_NODE[@]}" "$G" bench http "$url/function/Nop" -c "$c" -d "$DUR" --warmup "$WARM" "${pids[@]}" --json \
    > "$TMP/$name.json"
  # The gateway process's own CPU over the run (warm-up included), for the breakdown.
  echo $(( $(ticks "$GW_PID") - gw0 )) > "$TMP/$name.gwticks"
}
for r in $(seq "$ROUNDS"); do
  echo "== round $r/$ROUNDS" >&2
  run "embedded-lat-$r" "$ENGINE_URL" 1 "$ENGINE_PID"
  run "gateway-lat-$r" "$GW_URL" 1 "$ENGINE_PID" "$GW_PID"
  run "embedded-tput-$r" "$ENGINE_URL" "$CONNS" "$ENGINE_PID"
  run "gateway-tput-$r" "$GW_URL" "$CONNS" "$ENGINE_PID" "$GW_PID"
done

python3 - "$TMP" "$ROUNDS" "$CONNS" "$(getconf CLK_TCK)" "$GW_THREADS" "$(nproc)" "$(cut -d' ' -f1 /proc/loadavg)" "$WARM" "$DUR" "$PIN" <<'PY'
import json, sys, statistics as st
d, rounds, conns, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
gw_threads, cpus, loadavg = int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7])
warm_s, dur_s = float(sys.argv[8].rstrip("s")), float(sys.argv[9].rstrip("s"))
pinned = sys.argv[10] == "1"
def load(kind):
    return [json.load(open(f"{d}/{kind}-{r}.json")) for r in range(1, rounds + 1)]
def med(xs):
    return round(st.median(xs), 2)
out = {"rounds": rounds, "connections_throughput": conns, "gateway_io_threads": gw_threads,
       "cpus": cpus, "load_average_1m_at_end": loadavg, "pinned": pinned}
def gw_us_per_call(kind):
    # Gateway CPU over the whole run (warm-up too) / calls of the measured period, scaled by
    # the measured share of the run: an estimate of the gateway process's own CPU per call.
    vals = []
    for r in range(1, rounds + 1):
        x = json.load(open(f"{d}/{kind}-{r}.json"))
        t = int(open(f"{d}/{kind}-{r}.gwticks").read())
        calls = x["completed"] * (warm_s + dur_s) / dur_s
        vals.append(t / hz * 1e6 / calls if calls else 0)
    return med(vals)
for path in ("embedded", "gateway"):
    lat, tp = load(f"{path}-lat"), load(f"{path}-tput")
    out[path] = {
        "p50_us": med([x["latency"]["p50_us"] for x in lat]),
        "p99_us": med([x["latency"]["p99_us"] for x in lat]),
        "cpu_us_per_call": med([x["cpu"]["us_per_call"] for x in lat]),
        "calls_per_s_1conn": med([x["achieved_per_s"] for x in lat]),
        "calls_per_s": med([x["achieved_per_s"] for x in tp]),
        "cpu_us_per_call_loaded": med([x["cpu"]["us_per_call"] for x in tp]),
        "errors": sum(x["errors"] for x in lat + tp),
    }
e, g = out["embedded"], out["gateway"]
g["gateway_process_cpu_us_per_call"] = gw_us_per_call("gateway-lat")
g["gateway_process_cpu_us_per_call_loaded"] = gw_us_per_call("gateway-tput")
# Capacity per CPU second, derived from CPU per call under load: what one core of the gateway
# process forwards, against what one core of an engine (with its workers) serves.
g["gateway_calls_per_cpu_s"] = round(1e6 / g["gateway_process_cpu_us_per_call_loaded"]) if g["gateway_process_cpu_us_per_call_loaded"] else None
e["engine_calls_per_cpu_s"] = round(1e6 / e["cpu_us_per_call_loaded"]) if e["cpu_us_per_call_loaded"] else None
out["hop"] = {
    "extra_p50_us": round(g["p50_us"] - e["p50_us"], 2),
    "extra_p99_us": round(g["p99_us"] - e["p99_us"], 2),
    "extra_cpu_us_per_call": round(g["cpu_us_per_call"] - e["cpu_us_per_call"], 2),
    "throughput_ratio": round(g["calls_per_s"] / e["calls_per_s"], 3) if e["calls_per_s"] else None,
    "goal_extra_p50_us": 15,
}
print(json.dumps(out, indent=2))
rows = [("p50 µs (1 conn)", "p50_us"), ("p99 µs (1 conn)", "p99_us"),
        ("CPU µs/call (1 conn)", "cpu_us_per_call"), ("calls/s (1 conn)", "calls_per_s_1conn"),
        (f"calls/s ({conns} conns)", "calls_per_s"), (f"CPU µs/call ({conns} conns)", "cpu_us_per_call_loaded"),
        ("errors", "errors")]
w = sys.stderr.write
w(f"\n{'':28} {'embedded':>12} {'via gateway':>12} {'difference':>12}\n")
for label, k in rows:
    w(f"{label:28} {e[k]:>12} {g[k]:>12} {round(g[k] - e[k], 2):>12}\n")
w(f"{'gateway process CPU µs/call':28} {'':>12} {g['gateway_process_cpu_us_per_call']:>12} (1 conn), "
  f"{g['gateway_process_cpu_us_per_call_loaded']} ({conns} conns)\n")
w(f"{'calls per CPU second':28} {e['engine_calls_per_cpu_s']:>12} {g['gateway_calls_per_cpu_s']:>12} (engine+workers vs the gateway process alone)\n")
w(f"(gateway --io-threads {gw_threads}, {cpus} CPUs, pinned: {pinned}, load average {loadavg} at the end)\n")
w(f"\nextra p50 of the hop: {out['hop']['extra_p50_us']} µs (goal ≤ 15 µs); "
  f"gateway throughput / embedded: {out['hop']['throughput_ratio']}\n")
PY
