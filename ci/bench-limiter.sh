#!/usr/bin/env bash
# Shows the effect of managed concurrency (issue 10): a bursty open-loop load (alternating
# high and low rates) on a CPU-bound function (Spin, ~200 µs per call), limiter on and off,
# in alternating runs. Prints p50/p99, achieved rate, CPU per call and the pool size seen.
# Usage: ci/bench-limiter.sh [high_rate] [low_rate] [bursts]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
HIGH=${1:-6000}; LOW=${2:-1000}; BURSTS=${3:-3}
cargo build --release --quiet -p gloam-engine -p hello-rust
G="$ROOT/target/release/gloam"
run() {  # $1 = on|off
    local dir; dir=$(mktemp -d)
    local limiter=true; [ "$1" = off ] && limiter=false
    cat > "$dir/g.toml" <<TOML
[engine]
ipc_root = "$dir/ipc"
listen = "127.0.0.1:0"
log_dir = "$dir/logs"
[functions.Spin]
command = "$ROOT/target/release/hello-rust"
min_workers = 1
max_workers = 8
limiter = $limiter
growth_interval_ms = 50
rate_window_ms = ${RATE_WINDOW_MS:-50}
shrink_grace_ms = 2000
TOML
    "$G" up "$dir/g.toml" > "$dir/out" 2> "$dir/err" &
    local pid=$!
    for _ in $(seq 300); do grep -q '^gloam: ready' "$dir/out" && break; sleep 0.05; done
    local url; url=$(sed -n 's/^gloam: ready //p' "$dir/out")
    local pools=""
    for b in $(seq "$BURSTS"); do
        for rate in "$HIGH" "$LOW"; do
            "$G" bench http "$url/function/Spin" --data 200 --rate "$rate" -c 8 -d 1s --warmup 0s \
                --engine-pid "$pid" --json > "$dir/r-$b-$rate.json"
            pools="$pools $(curl -s "$url/_/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["functions"][0]["workers"])')"
        done
    done
    python3 - "$1" "$dir" "$pools" "$HIGH" <<'PY'
import json, sys, glob
mode, d, pools, high = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
rs = [json.load(open(f)) for f in sorted(glob.glob(f"{d}/r-*.json"))]
for phase in ("high", "low"):
    sel = [r for r in rs if ((r.get("target_per_s") or 0) == high) == (phase == "high")]
    def med(get):
        v = sorted(get(x) for x in sel)
        return v[len(v) // 2] if v else 0
    p50 = med(lambda r: r["latency"]["p50_us"])
    p99 = med(lambda r: r["latency"]["p99_us"])
    ach = med(lambda r: r["achieved_per_s"])
    cpu = med(lambda r: (r.get("cpu") or {}).get("us_per_call", 0.0))
    print(f"| limiter {mode} | {phase} | {p50:.0f} | {p99:.0f} | {ach:.0f} | {cpu:.1f} | {pools.strip()} |")
PY
    kill -TERM "$pid"; wait "$pid" || true
    rm -rf "$dir"
}
echo "| run | phase | p50 µs | p99 µs | achieved/s | CPU µs/call | pool after each phase |"
echo "|---|---|---|---|---|---|---|"
for round in 1 2; do run on; run off; done
