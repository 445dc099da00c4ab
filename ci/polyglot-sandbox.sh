#!/usr/bin/env bash
# The main job with every function sandboxed (issue 19): builds the polyglot stack as
# ci/main.sh does, starts it with `gloam up --isolation sandbox` as an unprivileged user, calls
# every function over HTTP (the chain's internal calls across all five languages, payloads
# larger than 1 KiB, errors travelling back), checks that `gloam status` shows every function
# sandboxed and that every worker runs in a user namespace of its own, and stops it cleanly.
# The checks are in ci/polyglot_sandbox.py.
#
# A sandbox's user maps to the engine's, so `gloam up` refuses sandboxes as root. Run as root
# (CI), the engine runs as `nobody`, which can read neither a clone under /root nor pyenv's
# interpreters there; so, as any user, the script copies what the stack runs to a staging
# directory that user can read (mktemp under /tmp, removed at the end): the binaries, the
# functions' directory, the Node.js addon, and a fresh virtualenv of an interpreter that user
# can run (PYTHON, else python3 from PATH, /usr/bin/python3, /usr/local/bin/python3) with the
# `gloam` package copied in. The stack itself is the repository's: same gloam.toml, same
# programs.
#
# Usage: ci/polyglot-sandbox.sh [--no-build]   (--no-build: use what ci/build-polyglot.sh built)
# Logs: target/polyglot-sandbox/ (build.log, the engine's stdout and stderr, worker logs).
set -euo pipefail
umask 022
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT="$ROOT/target/polyglot-sandbox"
mkdir -p "$OUT"
T0=$SECONDS
step() { printf '==> %s\n' "$*"; }
fail() { echo "polyglot-sandbox: $*" >&2; exit 1; }

case "${1:-}" in
    "") ci/install-sandbox.sh > "$OUT/install-sandbox.log" 2>&1 ||
            { cat "$OUT/install-sandbox.log"; fail "bubblewrap is not usable here"; }
        : > "$OUT/build.log"
        ci/build-polyglot.sh "$OUT/build.log" ;;
    --no-build) ;;
    *) echo "usage: ci/polyglot-sandbox.sh [--no-build]" >&2; exit 2 ;;
esac

# The engine's user: `nobody` when run as root (as engine/tests/isolation.rs does).
AS=()
RUN_UID=$(id -u)
if [ "$RUN_UID" -eq 0 ]; then
    RUN_UID=65534
    AS=(setpriv --reuid=65534 --regid=65534 --clear-groups --)
fi
as_user() { "${AS[@]}" "$@"; }

step "staging the stack where uid $RUN_UID can read it"
STAGE=$(mktemp -d /tmp/gloam-polyglot-sandbox.XXXXXX)
chmod 755 "$STAGE"
PID=""
cleanup() {
    if [ -n "$PID" ]; then kill -KILL "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    # Keep the worker logs for CI's artifacts, then remove everything staged.
    rm -rf "$OUT/logs"
    [ -d "$STAGE/target/main-job/logs" ] && cp -r "$STAGE/target/main-job/logs" "$OUT/logs"
    rm -rf "$STAGE"
}
trap cleanup EXIT

mkdir -p "$STAGE/target/debug" "$STAGE/examples" "$STAGE/bindings/node"
for p in gloam polyglot-c polyglot-go polyglot-rust; do
    [ -x "target/debug/$p" ] || fail "target/debug/$p is missing (run ci/build-polyglot.sh)"
    cp "target/debug/$p" "$STAGE/target/debug/"
done
cp -r examples/polyglot "$STAGE/examples/"
rm -f "$STAGE"/examples/polyglot/*.redb   # a store left by ci/main.sh is not ours
cp bindings/node/package.json bindings/node/index.js bindings/node/*.node "$STAGE/bindings/node/"

# Python: a virtualenv of an interpreter the engine's user can run, with the `gloam` package
# installed as `maturin develop` does (a .pth file naming bindings/python/python, where the
# native module lies; it is abi3: any Python >= 3.9 loads it). The sandbox shows the
# virtualenv and that directory because the launcher finds them, not because of the file.
pick_python() {
    local c
    for c in "${PYTHON:-}" "$(command -v python3 || true)" /usr/bin/python3 /usr/local/bin/python3; do
        [ -n "$c" ] && [ -x "$c" ] || continue
        c=$(readlink -f "$c")
        if as_user "$c" -c 'import sys, venv; assert sys.version_info >= (3, 9)' 2> /dev/null; then
            echo "$c"; return 0
        fi
    done
    return 1
}
PY=$(pick_python) || true
if [ -z "$PY" ] && [ "$(id -u)" -eq 0 ] && command -v apt-get > /dev/null; then
    # Only an interpreter under /root (pyenv): Debian's, which `nobody` can run.
    echo "    no Python that uid $RUN_UID can run: installing Debian's python3"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends python3; } \
        > "$OUT/install-python.log" 2>&1 || { cat "$OUT/install-python.log"; fail "apt-get install python3"; }
    PY=$(pick_python) || true
fi
[ -n "$PY" ] || fail "no Python >= 3.9 that uid $RUN_UID can run (set PYTHON)"
VENV="$STAGE/target/venv-python"
"$PY" -m venv --without-pip "$VENV"
PKG=$(target/venv-python/bin/python -c 'import gloam, os; print(os.path.dirname(gloam.__file__))')
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p "$STAGE/bindings/python/python"
cp -r "$PKG" "$STAGE/bindings/python/python/"
find "$STAGE/bindings/python/python" -name __pycache__ -prune -exec rm -rf {} +
echo "$STAGE/bindings/python/python" > "$SITE/gloam.pth"
echo "    $STAGE: gloam, polyglot-{c,go,rust}, examples/polyglot, bindings/node," \
    "bindings/python/python, a virtualenv of $PY with gloam.pth"

# What the engine's user writes: the IPC root, the log directory of gloam.toml, the store of
# asynchronous calls (beside gloam.toml; its sandboxes do not see it), its console.
RUN="$STAGE/run"
mkdir -p "$RUN" "$STAGE/target/main-job/logs"
chown "$RUN_UID" "$RUN" "$STAGE/target/main-job/logs" "$STAGE/examples/polyglot"
chmod 700 "$RUN"

step "starting: gloam up examples/polyglot/gloam.toml --isolation sandbox as uid $RUN_UID"
CONFIG="$STAGE/examples/polyglot/gloam.toml"
GLOAM="$STAGE/target/debug/gloam"
(cd "$RUN" && exec env HOME="$RUN" "${AS[@]}" "$GLOAM" up "$CONFIG" --isolation sandbox \
    --listen 127.0.0.1:0 --ipc-root "$RUN/ipc" --quiet > "$OUT/up.out" 2> "$OUT/up.err") &
PID=$!
URL=""
for _ in $(seq 1 600); do
    URL=$(sed -n 's/^gloam: ready \(http:[^ ]*\).*/\1/p' "$OUT/up.out" 2> /dev/null)
    [ -n "$URL" ] && break
    kill -0 "$PID" 2> /dev/null || { cat "$OUT/up.err"; fail "gloam up exited before it was ready"; }
    sleep 0.1
done
[ -n "$URL" ] || { tail -n 40 "$OUT/up.err"; fail "gloam up: not ready in 60 s"; }
echo "    ready at $URL in $((SECONDS - T0)) s (since the start of this script)"
grep -q -- '--isolation sandbox: every function' "$OUT/up.err" ||
    fail "gloam up did not say that --isolation sandbox applies to every function"
if grep -q 'cannot start' "$OUT/up.err"; then
    cat "$OUT/up.err"; fail "a function cannot start in its sandbox"
fi

step "calling every function over HTTP, checking the status and the workers' namespaces"
python3 ci/polyglot_sandbox.py --url "$URL" --gloam "$GLOAM" --engine-pid "$PID" \
    --config "$CONFIG" || { tail -n 40 "$OUT/up.err"; fail "the sandboxed stack answered wrong"; }

step "stopping the stack (SIGTERM: drain, stop workers, clean the IPC root)"
kill -TERM "$PID"
rc=0
wait "$PID" || rc=$?
PID=""
left=$(find "$RUN/ipc" -type f 2> /dev/null | wc -l)
survivors=$(ps -u "$RUN_UID" -o pid=,args= | grep -F "$STAGE" || true)
echo "    engine exit $rc, $left files left in the IPC root, total $((SECONDS - T0)) s"
[ "$rc" -eq 0 ] || { tail -n 40 "$OUT/up.err"; fail "the engine exited with $rc"; }
[ "$left" -eq 0 ] || fail "files left in the IPC root: $(find "$RUN/ipc" -type f)"
[ -z "$survivors" ] || fail "worker processes outlived the engine: $survivors"
echo "polyglot-sandbox: passed"
