#!/usr/bin/env bash
# Cold start and warm latency of `isolation = "process"` against `isolation = "sandbox"`
# (issue 19), in one run. Cold start: the engine's own measure from the launcher's spawn to
# the worker's READY (`cold_start_us` in its log), over RUNS fresh `gloam up`s of each mode,
# alternating. Warm: closed-loop HTTP calls to Nop on one connection, on one engine serving
# both modes, alternating. Run as root, the engine runs as `nobody` (a sandbox needs an
# unprivileged engine). Needs bwrap (ci/install-sandbox.sh).
# Usage: ci/bench-isolation.sh [runs] [warm_seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RUNS=${1:-10}; WARM=${2:-3}
cargo build --release --quiet -p gloam-engine -p hello-rust
G="$ROOT/target/release/gloam"
AS=()
[ "$(id -u)" = 0 ] && AS=(setpriv --reuid=65534 --regid=65534 --clear-groups --)

up() {  # $1 = directory with g.toml; starts the engine (pid in $pid), waits until ready
    "${AS[@]}" "$G" up "$1/g.toml" > "$1/out" 2> "$1/err" &
    pid=$!
    for _ in $(seq 600); do grep -qs '^gloam: ready' "$1/out" && break; sleep 0.01; done
    grep -q '^gloam: ready' "$1/out" || { cat "$1/err"; exit 1; }
}

config() {  # $1 = directory, then "Name isolation" pairs
    local dir=$1; shift
    printf '[engine]\nipc_root = "%s/ipc"\nlisten = "127.0.0.1:0"\nlog_dir = "%s/logs"\n' "$dir" "$dir" > "$dir/g.toml"
    while [ $# -gt 0 ]; do
        printf '[functions.%s]\ncommand = "%s"\nenv = { GLOAM_HANDLER = "Nop" }\nmin_workers = 1\nmax_workers = 1\nisolation = "%s"\n' \
            "$1" "$ROOT/target/release/hello-rust" "$2" >> "$dir/g.toml"
        shift 2
    done
}

cold=$(mktemp); trap 'rm -f "$cold"' EXIT
for _ in $(seq "$RUNS"); do
    for mode in process sandbox; do
        dir=$(mktemp -d); config "$dir" Nop "$mode"
        [ ${#AS[@]} -gt 0 ] && chown -R 65534:65534 "$dir"
        up "$dir"
        us=$(sed -n 's/.*worker ready.*cold_start_us=\([0-9]*\).*/\1/p' "$dir/err" | head -n 1)
        echo "$mode $us" >> "$cold"
        kill -TERM "$pid"; wait "$pid" || true
        rm -rf "$dir"
    done
done

dir=$(mktemp -d); config "$dir" NopProcess process NopSandbox sandbox
[ ${#AS[@]} -gt 0 ] && chown -R 65534:65534 "$dir"
up "$dir"
url=$(sed -n 's/^gloam: ready //p' "$dir/out")
for round in 1 2 3; do
    for f in NopProcess NopSandbox; do
        "$G" bench http "$url/function/$f" -c 1 -d "${WARM}s" --warmup 1s --json > "$dir/warm-$f-$round.json"
    done
done
kill -TERM "$pid"; wait "$pid" || true

python3 - "$cold" "$dir" <<'PY'
import glob, json, sys
cold = {}
for line in open(sys.argv[1]):
    mode, us = line.split()
    cold.setdefault(mode, []).append(int(us) / 1000)
def q(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p * len(v)))]
print("| isolation | cold start p50 ms | cold start max ms | warm p50 µs | warm p99 µs | calls/s |")
print("|---|---|---|---|---|---|")
for mode, fn in (("process", "NopProcess"), ("sandbox", "NopSandbox")):
    rs = [json.load(open(f)) for f in sorted(glob.glob(f"{sys.argv[2]}/warm-{fn}-*.json"))]
    p50 = sorted(r["latency"]["p50_us"] for r in rs)[0]
    p99 = sorted(r["latency"]["p99_us"] for r in rs)[0]
    rate = max(r["achieved_per_s"] for r in rs)
    c = cold.get(mode, [0])
    print(f"| {mode} | {q(c, 0.5):.1f} | {max(c):.1f} | {p50:.1f} | {p99:.1f} | {rate:.0f} |")
PY
rm -rf "$dir"
