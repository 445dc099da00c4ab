#!/usr/bin/env bash
# The soak test (not part of the default test run): a stack whose functions make internal
# calls and get direct lanes (Repeat -> Echo, Fanout -> Echo), under sustained load from several
# client threads (ci/soak.py), while worker processes — callers and callees — are SIGKILLed at
# random. At the end it prints the calls sent, the answers by status, the hung calls (no answer
# within the deadline plus a margin), the wrong answers (a 200 whose body is not what that
# call's unique input gives), the files left in the IPC root (payload files with no call in
# flight, then anything after a clean stop), and the engine's RSS at the start and the end.
# Exits non-zero if any call hung or got a wrong answer, if files leaked, or if the engine did
# not stop cleanly.
#
#   ci/soak.sh [--minutes M] [--kill-every-ms N] [--clients C] [--transport ring|fifo]
#   ci/soak.sh --quick     # 20 s against the debug build ci/test.sh made (no release build)
#
# Defaults: 10 minutes, a kill every 1000 ms, 6 clients, the ring transport, release build.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
# shellcheck source=ci/stack.sh
source ci/stack.sh

MINUTES=10; KILL_MS=1000; CLIENTS=6; TRANSPORT=ring; QUICK=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --minutes) MINUTES="$2"; shift 2 ;;
    --kill-every-ms) KILL_MS="$2"; shift 2 ;;
    --clients) CLIENTS="$2"; shift 2 ;;
    --transport) TRANSPORT="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    *) echo "usage: ci/soak.sh [--minutes M] [--kill-every-ms N] [--clients C] [--transport ring|fifo] [--quick]" >&2; exit 2 ;;
  esac
done
if [[ "$QUICK" == 1 ]]; then
  SECONDS_TOTAL=20; PROFILE=debug
  cargo build -p gloam-engine -p hello-rust >&2
else
  SECONDS_TOTAL="$(awk -v m="$MINUTES" 'BEGIN { printf "%d", m * 60 }')"; PROFILE=release
  echo "== building release" >&2
  cargo build --release -p gloam-engine -p hello-rust >&2
fi
GLOAM="$ROOT/target/$PROFILE/gloam"
HELLO="$ROOT/target/$PROFILE/hello-rust"

TMP="$(mktemp -d -t gloam-soak.XXXXXX)"
cleanup() {
  stop_stack
  rm -rf "$TMP"
}
trap cleanup EXIT

# Echo has room to grow (callers of killed callees wait in its queue meanwhile); every call
# of the load sets its own deadline, shorter than these timeouts.
cat > "$TMP/gloam.toml" <<TOML
[engine]
ipc_root = "$TMP/ipc"
listen = "127.0.0.1:0"
log_dir = "$TMP/logs"
transport = "$TRANSPORT"
max_payload = 1048576

[functions.Echo]
command = "$HELLO"
min_workers = 4
max_workers = 8

[functions.Repeat]
command = "$HELLO"
min_workers = 2
max_workers = 4

[functions.Fanout]
command = "$HELLO"
min_workers = 2
max_workers = 4
TOML

echo "== starting gloam up ($PROFILE, transport $TRANSPORT)" >&2
start_stack "$GLOAM" "$TMP/gloam.toml" "$TMP"
for _ in $(seq 300); do
  curl -sf "$URL/readyz" > /dev/null && break
  sleep 0.1
done
echo "== soaking for $SECONDS_TOTAL s: $CLIENTS clients, a kill every $KILL_MS ms (engine pid $ENGINE_PID)" >&2
python3 ci/soak.py --url "$URL" --engine-pid "$ENGINE_PID" --seconds "$SECONDS_TOTAL" \
  --clients "$CLIENTS" --kill-every-ms "$KILL_MS" --out "$TMP/report.json"

# The load is over: once no call is in flight, the engine may hold no payload.
in_flight=-1
for _ in $(seq 300); do
  in_flight="$(curl -sf "$URL/_/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["calls_in_flight"])' || echo -1)"
  [[ "$in_flight" == 0 ]] && break
  sleep 0.1
done
idle_shm="$(curl -sf "$URL/metrics" | awk '/^gloam_payloads_held/ {print $2}')"
idle_shm="${idle_shm:-unknown}"
healthz="$(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz" || true)"

# A clean stop: SIGTERM, a bounded wait, exit status 0, then nothing left in the IPC root but
# its (empty) directories.
kill -TERM "$ENGINE_PID"
stopped=""
for _ in $(seq 600); do
  if ! kill -0 "$ENGINE_PID" 2>/dev/null; then stopped=1; break; fi
  sleep 0.1
done
engine_exit="did not stop within 60 s"
if [[ -n "$stopped" ]]; then
  set +e; wait "$ENGINE_PID"; engine_exit=$?; set -e
else
  kill -KILL "$ENGINE_PID" 2>/dev/null || true
fi
ENGINE_PID=""
leaked="$(find "$TMP/ipc" -mindepth 1 -not -type d | wc -l)"

python3 - "$TMP/report.json" "$in_flight" "$idle_shm" "$healthz" "$engine_exit" "$leaked" "$TMP/ipc" <<'PY'
import json, os, sys
r = json.load(open(sys.argv[1]))
in_flight, idle_shm, healthz, engine_exit, leaked, root = sys.argv[2:]
print(f"soak: {r['seconds']} s, {r['clients']} clients, a kill every {r['kill_every_ms']} ms, "
      f"deadline {r['deadline_ms']} ms per call")
print(f"  calls sent:        {r['sent']}")
print("  answered:")
for k, v in r["by_status"].items():
    print(f"    {k:<24} {v}")
print(f"  hung:              {r['hung']}  (no answer within the deadline + margin)")
print(f"  connection lost:   {r['broken']}  (closed without an answer)")
print(f"  wrong answers:     {r['wrong']}")
print(f"  workers killed:    {sum(r['kills'].values())} {r['kills']}"
      + (f", {r['kill_failures']} attempts skipped" if r["kill_failures"] else ""))
for name, c in r["engine_counts"].items():
    print(f"  engine counted {name}: {c}")
print(f"  calls in flight after the load: {in_flight}; /healthz: {healthz}")
print(f"  payloads the engine holds with no call in flight: {idle_shm}")
print(f"  files left in the IPC root after a clean stop: {leaked}; engine exit status: {engine_exit}")
rs, re_ = r["rss_kib_start"], r["rss_kib_end"]
print(f"  engine RSS: {rs} KiB at the start, {re_} KiB at the end")
for what, examples in r["examples"].items():
    for e in examples:
        print(f"  e.g. {what}: {e}")
bad = (r["hung"] or r["broken"] or r["wrong"] or idle_shm != "0" or leaked != "0"
       or engine_exit != "0" or in_flight != "0" or healthz != "200")
if bad:
    for dirpath, _, files in os.walk(root):
        for f in files:
            print(f"  left: {os.path.join(dirpath, f)}")
print("soak: FAILED" if bad else "soak: passed")
sys.exit(1 if bad else 0)
PY
