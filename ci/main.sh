#!/usr/bin/env bash
# The main job: builds Gloam, starts the hello-world stack with `gloam up`, calls it over HTTP,
# prints the answers and the round-trip times, then stops the stack cleanly.
# Usage: ci/main.sh [--keep]    (--keep leaves the stack running; stop it with Ctrl-C / kill)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
KEEP=${1:-}
CONFIG=${GLOAM_CONFIG:-examples/hello-rust/gloam.toml}
LISTEN=${GLOAM_LISTEN:-127.0.0.1:8080}
RUN="$ROOT/target/main-job"
mkdir -p "$RUN"

step() { printf '==> %s\n' "$*"; }

step "building the Rust workspace (gloam, core, examples)"
cargo build --workspace --quiet --exclude gloam-python --exclude gloam-node 2>&1 | tail -n 30

step "starting: gloam up $CONFIG (listen $LISTEN, logs in target/main-job/)"
"$ROOT/target/debug/gloam" up "$CONFIG" --listen "$LISTEN" --ipc-root "$RUN/ipc" \
    > "$RUN/stdout.log" 2> "$RUN/engine.log" &
PID=$!
stop() { kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; }
trap stop EXIT
for _ in $(seq 1 600); do
    grep -q '^gloam: ready' "$RUN/stdout.log" 2>/dev/null && break
    kill -0 "$PID" 2>/dev/null || { cat "$RUN/engine.log"; echo "the engine exited"; exit 1; }
    sleep 0.1
done
grep '^gloam: ready' "$RUN/stdout.log" || { cat "$RUN/engine.log"; exit 1; }
URL=$(sed -n 's/^gloam: ready //p' "$RUN/stdout.log")

call() {
    local name=$1 data=$2 t0 t1 out
    t0=$(date +%s%N)
    out=$("$ROOT/target/debug/gloam" invoke "$name" --data "$data" --addr "${URL#http://}")
    t1=$(date +%s%N)
    printf '  POST %s/function/%-6s %-8q -> %s   (%d us round trip incl. the CLI start)\n' \
        "$URL" "$name" "$data" "$out" $(( (t1 - t0) / 1000 ))
}

step "calling the stack over HTTP"
call Foo World
call Foo Gloam
call Bar ""
call Nop ""

if [ "$KEEP" = "--keep" ]; then
    trap - EXIT
    step "the stack keeps running at $URL (pid $PID); stop it with: kill $PID"
else
    step "stopping the stack cleanly (SIGTERM: drain, stop workers, clean the IPC root)"
fi
