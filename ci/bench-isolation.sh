#!/usr/bin/env bash
# What isolation costs, `isolation = "process"` against `isolation = "sandbox"` (issue 19), in
# one run: a benchmark, not a test. The issue's goals: a cold start adds at most 30 ms, the warm
# path is unchanged (same rings: at most 5 % apart at p50 and p99), idle CPU is unchanged.
#
# - Cold start: the engine's own measure from the launcher's spawn to the worker's READY
#   (`cold_start_us` in its log), over RUNS fresh `gloam up`s of each mode, alternating.
# - Warm calls: `gloam bench http -c 1` (closed loop, one keep-alive connection) to the Rust
#   `Nop`, on one engine serving both modes (NopProcess, NopSandbox: one worker each), ROUNDS
#   rounds of WARM_SECS per mode, alternating (process first in odd rounds, sandbox first in
#   even ones). p50/p99/p99.9, calls/s and server CPU per call of each round; the difference
#   between the modes, in %, of the medians of the rounds and, for the verdict, within each
#   round (the two modes ran back to back): the median of those paired differences against
#   5 %, "inconclusive" when it misses but the middle half of the rounds reaches the goal.
# - Idle CPU: IDLE_WORKERS idle workers of one function on a fresh engine per mode,
#   IDLE_ROUNDS rounds of IDLE_SECS per mode, alternating: `gloam bench idle`, the CPU time
#   (`/proc/<pid>/stat`) of the engine, every process under it and the workers its status
#   lists, in % of one core.
#
# Run as root, the engines run as `nobody` (a sandbox needs an unprivileged engine); the
# client runs as the caller. Installs bubblewrap and prlimit when missing
# (ci/install-sandbox.sh). Writes bench/results/<date>-isolation/results.json and results.md
# and prints the table.
#
#   ci/bench-isolation.sh [--quick]    # --quick: few, short rounds, to check the script itself
#
# RUNS, ROUNDS, WARM_SECS, IDLE_WORKERS, IDLE_SECS and IDLE_ROUNDS override the defaults.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

if [[ "${1:-}" == "--quick" ]]; then
    RUNS=${RUNS:-2}; ROUNDS=${ROUNDS:-3}; WARM_SECS=${WARM_SECS:-1}
    IDLE_WORKERS=${IDLE_WORKERS:-4}; IDLE_SECS=${IDLE_SECS:-2}; IDLE_ROUNDS=${IDLE_ROUNDS:-1}
else
    RUNS=${RUNS:-10}; ROUNDS=${ROUNDS:-16}; WARM_SECS=${WARM_SECS:-2}
    IDLE_WORKERS=${IDLE_WORKERS:-8}; IDLE_SECS=${IDLE_SECS:-10}; IDLE_ROUNDS=${IDLE_ROUNDS:-3}
fi
MODES=(process sandbox)

step() { echo "== $*" >&2; }
note() { echo "-- $*" >&2; }

step "installing what the sandbox needs (bubblewrap, prlimit) when missing"
ci/install-sandbox.sh >&2
for tool in python3 setpriv; do
    command -v "$tool" > /dev/null || { echo "$tool is missing" >&2; exit 1; }
done

step "building release (gloam, hello-rust)"
cargo build --release --quiet -p gloam-engine -p hello-rust
G="$ROOT/target/release/gloam"
HELLO="$ROOT/target/release/hello-rust"
AS=()
[[ "$(id -u)" == 0 ]] && AS=(setpriv --reuid=65534 --regid=65534 --clear-groups --)

TMP="$(mktemp -d -t gloam-bench-isolation.XXXXXX)"
chmod 755 "$TMP" # the engines' user reaches its directories through it
pid=""
cleanup() {
    if [[ -n "$pid" ]]; then kill -TERM "$pid" 2> /dev/null || true; wait "$pid" 2> /dev/null || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"

# config DIR WORKERS NAME ISOLATION [NAME ISOLATION ...]: DIR/g.toml, each function running the
# Rust `Nop` handler with exactly WORKERS workers.
config() {
    local dir=$1 workers=$2; shift 2
    printf '[engine]\nipc_root = "%s/ipc"\nlisten = "127.0.0.1:0"\nlog_dir = "%s/logs"\n' \
        "$dir" "$dir" > "$dir/g.toml"
    while [[ $# -gt 0 ]]; do
        printf '[functions.%s]\ncommand = "%s"\nenv = { GLOAM_HANDLER = "Nop" }\nmin_workers = %s\nmax_workers = %s\nisolation = "%s"\n' \
            "$1" "$HELLO" "$workers" "$workers" "$2" >> "$dir/g.toml"
        shift 2
    done
    if [[ ${#AS[@]} -gt 0 ]]; then chown -R 65534:65534 "$dir"; fi
}

# up DIR: starts the engine of DIR/g.toml (pid in $pid, gateway in $url), waits for its ready
# line (at most 60 s).
up() {
    "${AS[@]}" "$G" up "$1/g.toml" > "$1/out" 2> "$1/err" &
    pid=$!
    url=""
    for _ in $(seq 600); do
        url="$(sed -n 's/^gloam: ready \(http:[^ ]*\).*/\1/p' "$1/out")"
        [[ -n "$url" ]] && return 0
        kill -0 "$pid" 2> /dev/null || break
        sleep 0.1
    done
    cat "$1/err" >&2
    echo "gloam up ($1/g.toml) did not become ready" >&2
    exit 1
}

down() {
    kill -TERM "$pid" 2> /dev/null || true
    wait "$pid" 2> /dev/null || true
    pid=""
}

# workers_up URL N: waits (at most 60 s) until the engine's status lists N workers.
workers_up() {
    python3 - "$1" "$2" <<'PY'
import json, sys, time, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
for _ in range(600):
    try:
        with urllib.request.urlopen(f"{url}/_/status", timeout=2) as r:
            if len(json.load(r)["workers"]) >= n:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit(f"{url}: fewer than {n} workers after 60 s")
PY
}

RAW="$TMP/raw.jsonl"
: > "$RAW"

step "cold start: $RUNS fresh engines per mode, alternating"
for run in $(seq "$RUNS"); do
    for mode in "${MODES[@]}"; do
        dir="$TMP/cold-$run-$mode"; mkdir "$dir"
        config "$dir" 1 Nop "$mode"
        up "$dir"
        us="$(sed -n 's/.*worker ready.*cold_start_us=\([0-9]*\).*/\1/p' "$dir/err" | head -n 1)"
        down
        [[ -n "$us" ]] || { cat "$dir/err" >&2; echo "no cold_start_us in the log" >&2; exit 1; }
        note "cold start $run/$RUNS $mode: $us µs"
        printf '{"kind":"cold","mode":"%s","run":%s,"cold_start_us":%s}\n' "$mode" "$run" "$us" >> "$RAW"
    done
done

step "warm calls: $ROUNDS rounds of ${WARM_SECS} s per mode on one engine, alternating"
dir="$TMP/warm"; mkdir "$dir"
config "$dir" 1 NopProcess process NopSandbox sandbox
up "$dir"
workers_up "$url" 2
for round in $(seq "$ROUNDS"); do
    order=("${MODES[@]}")
    (( round % 2 == 0 )) && order=(sandbox process)
    for mode in "${order[@]}"; do
        fn=NopProcess; [[ "$mode" == sandbox ]] && fn=NopSandbox
        json="$("$G" bench http "$url/function/$fn" -c 1 -d "${WARM_SECS}s" --warmup 0.5s \
            --engine-pid "$pid" --json)"
        note "warm round $round/$ROUNDS $mode: $(python3 ci/bench_isolation_report.py --line "$json")"
        printf '{"kind":"warm","mode":"%s","round":%s,"result":%s}\n' "$mode" "$round" "$json" >> "$RAW"
    done
done
down

step "idle CPU: $IDLE_WORKERS idle workers, $IDLE_ROUNDS rounds of ${IDLE_SECS} s per mode, alternating"
for round in $(seq "$IDLE_ROUNDS"); do
    for mode in "${MODES[@]}"; do
        dir="$TMP/idle-$round-$mode"; mkdir "$dir"
        config "$dir" "$IDLE_WORKERS" Idle "$mode"
        up "$dir"
        workers_up "$url" "$IDLE_WORKERS"
        sleep 1 # the last worker's start-up is not idleness
        json="$("$G" bench idle --engine-pid "$pid" --url "$url" --duration "${IDLE_SECS}s" --json)"
        down
        note "idle round $round/$IDLE_ROUNDS $mode: $(python3 ci/bench_isolation_report.py --line "$json")"
        printf '{"kind":"idle","mode":"%s","round":%s,"result":%s}\n' "$mode" "$round" "$json" >> "$RAW"
    done
done

step "report"
DATE="$(date -u +%Y-%m-%dT%H%M%SZ)"
OUT="bench/results/$DATE-isolation"
mkdir -p "$OUT"
python3 ci/bench_isolation_report.py "$RAW" "$OUT" \
    --date "$DATE" --load-before "$LOAD_BEFORE" --load-after "$(cut -d' ' -f1-3 /proc/loadavg)" \
    --cpus "$(nproc)" --kernel "$(uname -r)" --bwrap "$(bwrap --version)" \
    --commit "$(git rev-parse --short HEAD 2> /dev/null || echo unknown)" \
    --settings "runs=$RUNS rounds=$ROUNDS warm_secs=$WARM_SECS idle_workers=$IDLE_WORKERS idle_secs=$IDLE_SECS idle_rounds=$IDLE_ROUNDS"
cat "$OUT/results.md"
step "wrote $OUT/results.json and $OUT/results.md"
