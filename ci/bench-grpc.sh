#!/usr/bin/env bash
# gRPC and asynchronous calls, measured (not a test): builds release, starts a stack, and runs
# bench/baselines' grpc-compare against it, which in one run compares gRPC unary Nop through
# the gateway with a plain tonic server and with the gateway's HTTP path (p50/p99, calls/s,
# server CPU per call), then measures asynchronous calls (accepted/s) and the p99 of
# interactive calls during a background burst. Prints the JSON, then a table; writes
# bench/results/grpc-<date>.json.
#
#   ci/bench-grpc.sh [--quick]      # --quick: 1 s points, for checking the script itself
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
# shellcheck source=ci/stack.sh
source ci/stack.sh
DUR=5s; WARM=1s; ROUNDS=3
if [[ "${1:-}" == "--quick" ]]; then DUR=1s; WARM=0.3s; ROUNDS=1; fi

echo "== building release" >&2
cargo build --release -p gloam-engine -p hello-rust -p gloam-bench-baselines >&2
GLOAM="$ROOT/target/release/gloam"
HELLO="$ROOT/target/release/hello-rust"

TMP="$(mktemp -d -t gloam-bench-grpc.XXXXXX)"
cleanup() { stop_stack; rm -rf "$TMP"; }
trap cleanup EXIT

cat > "$TMP/gloam.toml" <<TOML
[engine]
ipc_root = "$TMP/ipc"
listen = "127.0.0.1:0"
log_dir = "$TMP/logs"

[async]
store = "$TMP/async.redb"
queue_bound = 1000000

[functions.Nop]
command = "$HELLO"
min_workers = 2

[functions."grpc:bench.Echo"]
command = "$HELLO"
env = { GLOAM_HANDLER = "Nop" }
grpc_methods = ["Call"]
min_workers = 2

[functions.Work]
command = "$HELLO"
env = { GLOAM_HANDLER = "Spin200" }
min_workers = 2
max_workers = 4
TOML

start_stack "$GLOAM" "$TMP/gloam.toml" "$TMP"
ADDR="${URL#http://}"
echo "== measuring (stack at $URL, engine pid $ENGINE_PID)" >&2
JSON="$("$ROOT/target/release/grpc-compare" --gateway "$ADDR" --engine-pid "$ENGINE_PID" \
    --duration "$DUR" --warmup "$WARM" --rounds "$ROUNDS" --json)"
echo "$JSON"
mkdir -p bench/results
echo "$JSON" > "bench/results/grpc-$(date -u +%Y-%m-%dT%H%M%SZ).json"
python3 - "$JSON" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
u, a = r["unary_nop"], r["async"]
print()
print("| unary Nop (1 connection, closed loop) | p50 µs | p99 µs | calls/s | server CPU µs/call |")
print("|---|---:|---:|---:|---:|")
for name, key in (("plain tonic server", "plain_tonic"), ("Gloam gateway, gRPC", "gateway_grpc"), ("Gloam gateway, HTTP/1.1", "gateway_http")):
    x = u[key]
    cpu = x["cpu_us_per_call"]
    print(f"| {name} | {x['p50_us']:.1f} | {x['p99_us']:.1f} | {x['calls_per_s']:.0f} | {cpu:.1f} |")
print(f"\ngateway gRPC / plain tonic: p50 {u['grpc_vs_tonic_p50']:.2f}x, p99 {u['grpc_vs_tonic_p99']:.2f}x, calls/s {u['grpc_vs_tonic_rate']:.2f}x (goal: within 1.2x)")
print(f"\nasync: {a['accepted_per_s']:.0f} calls accepted/s (16 connections; p99 of the 202: {a['accept_p99_us']:.0f} µs)")
print(f"\n| interactive Work (200 µs) at {a['interactive_rate_per_s']}/s | p50 µs | p99 µs |")
print("|---|---:|---:|")
for name, key in (("alone", "interactive_alone"), (f"during {a['burst_rate_per_s']}/s async burst", "interactive_during_async_burst"), (f"during {a['burst_rate_per_s']}/s sync burst", "interactive_during_sync_burst")):
    x = a[key]
    print(f"| {name} | {x['p50_us']:.0f} | {x['p99_us']:.0f} |")
PY
