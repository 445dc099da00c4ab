#!/usr/bin/env bash
# The main job: builds every part of the polyglot stack (Rust, C, Go, Python, Node.js), starts
# it with `gloam up examples/polyglot/gloam.toml`, sends real HTTP requests through the chain
# Frontend (Python) -> Auth (Go) -> Render (Node.js, fans out to Digest in C) -> Checksum (C)
# -> Store (Rust), prints the answers and each language's round trip (p50/p99 over 1000
# calls), then stops the stack cleanly.
#
# Usage: ci/main.sh [--keep] [--sandbox]
#   --keep     leaves the stack running and prints how to stop it
#   --sandbox  runs every function sandboxed (`gloam up --isolation sandbox`: bubblewrap, see
#              README "Isolation"); needs an ordinary user (as root, use ci/polyglot-sandbox.sh)
# Environment: GLOAM_LISTEN (default 127.0.0.1:8080). Build logs: target/main-job/build.log.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
KEEP=""
UP_ARGS=()
for arg in "$@"; do
    case "$arg" in
        --keep) KEEP=--keep ;;
        --sandbox) UP_ARGS+=(--isolation sandbox) ;;
        *) echo "usage: ci/main.sh [--keep] [--sandbox]" >&2; exit 2 ;;
    esac
done
CONFIG=examples/polyglot/gloam.toml
LISTEN=${GLOAM_LISTEN:-127.0.0.1:8080}
RUN="$ROOT/target/main-job"
LOG="$RUN/build.log"
mkdir -p "$RUN"
: > "$LOG"
T0=$SECONDS

step() { printf '==> %s\n' "$*"; }

ci/build-polyglot.sh "$LOG"

step "starting: gloam up $CONFIG --listen $LISTEN ${UP_ARGS[*]} (engine log: target/main-job/engine.log)"
rm -rf "$RUN/ipc"
"$ROOT/target/debug/gloam" up "$CONFIG" --listen "$LISTEN" --ipc-root "$RUN/ipc" "${UP_ARGS[@]}" \
    > "$RUN/stdout.log" 2> "$RUN/engine.log" &
PID=$!
stop() {
    kill -TERM "$PID" 2>/dev/null || return 0
    local rc=0
    wait "$PID" || rc=$?
    return "$rc"
}
trap 'stop || true' EXIT
for _ in $(seq 1 1200); do
    grep -q '^gloam: ready' "$RUN/stdout.log" 2>/dev/null && break
    kill -0 "$PID" 2>/dev/null || { tail -n 40 "$RUN/engine.log"; echo "the engine exited"; exit 1; }
    sleep 0.1
done
grep '^gloam: ready' "$RUN/stdout.log" || { tail -n 40 "$RUN/engine.log"; echo "not ready in 120 s"; exit 1; }
URL=$(sed -n 's/^gloam: ready //p' "$RUN/stdout.log")
ADDR=${URL#http://}

invoke() { "$ROOT/target/debug/gloam" invoke "$@" --addr "$ADDR"; }
call() {
    local name=$1 data=$2 t0 t1 out rc=0
    t0=$(date +%s%N)
    out=$(invoke "$name" --data "$data" 2>&1) || rc=$?
    t1=$(date +%s%N)
    printf '  POST /function/%s  %s\n' "$name" "$data"
    printf '  -> %s\n     (%d us end to end, including the CLI process start)\n' \
        "$out" $(( (t1 - t0) / 1000 ))
    return "$rc"
}

step "calling the chain over HTTP: Frontend (Python) -> Auth (Go) -> Render (Node.js, fan-out to C's Digest) -> Checksum (C) -> Store (Rust)"
call Frontend '{"user":"ada","token":"demo-ada","items":[{"sku":"A1","qty":2,"price_cents":350},{"sku":"B7","qty":1,"price_cents":1299}]}'
call Frontend '{"user":"vip-grace","token":"demo-vip-grace","items":[{"sku":"C3","qty":3,"price_cents":1000},{"sku":"D4","qty":1,"price_cents":250},{"sku":"E5","qty":4,"price_cents":99}]}'
step "errors travel back up the chain (expected to fail)"
call Frontend '{"user":"mallory","token":"guess","items":[{"sku":"A1","qty":1,"price_cents":350}]}' || true
call Frontend '{"user":"ada","token":"demo-ada","items":[]}' || true

step "round trip per language over HTTP (<Lang>Echo, 1000 calls over one keep-alive connection)"
for lang in Python Go Node C Rust; do
    line=$(invoke "${lang}Echo" --data ping --repeat 1000 2>&1 >/dev/null | tail -n 1)
    printf '  %-7s %s\n' "$lang" "$line"
done
line=$(invoke Frontend --repeat 200 --data \
    '{"user":"ada","token":"demo-ada","items":[{"sku":"A1","qty":2,"price_cents":350}]}' 2>&1 >/dev/null | tail -n 1)
printf '  %-7s %s\n' "chain" "$line  (all five languages, 5 internal calls per order)"

if [ "$KEEP" = "--keep" ]; then
    trap - EXIT
    step "the stack keeps running at $URL (pid $PID); stop it with: kill $PID"
    echo "    e.g. curl -d '{\"user\":\"ada\",\"token\":\"demo-ada\",\"items\":[{\"sku\":\"A1\",\"qty\":1,\"price_cents\":350}]}' $URL/function/Frontend"
else
    step "stopping the stack (SIGTERM: drain, stop workers, clean the IPC root)"
    trap - EXIT
    rc=0
    stop || rc=$?
    left=$(find "$RUN/ipc" -mindepth 1 2>/dev/null | wc -l)
    echo "    stopped: engine exit $rc, $left files left in the IPC root; total $((SECONDS - T0)) s"
    [ "$rc" -eq 0 ] && [ "$left" -eq 0 ]
fi
