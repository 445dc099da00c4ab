#!/usr/bin/env bash
# A newcomer's first hour, scripted, in a temporary directory outside the clone:
#
#  1. install the SDKs (bindings/install.sh --prefix $TMP/sdk) and use that gloam;
#  2. for every language: `gloam new`, `gloam build`, its own test (for C also a CMake build
#     with find_package(gloam)), `gloam up --watch` with two
#     functions broken on purpose (a command that does not exist, a handler the program lacks):
#     the console and the HTTP error (503 FUNCTION_UNAVAILABLE) must name each cause within
#     seconds, not after the 30 s deadline; the function answers; `gloam status` counts the
#     restarts; then its handler is made to raise: the watcher rebuilds and replaces the
#     workers, the call fails with 500 HANDLER_FAILED, the language's stack trace is on the
#     console and in `gloam logs` (and, with `debug = true`, in the message);
#  3. Nightcore's C examples, written from its documented v1 interface with its include path
#     (`-I../../include`), build unchanged and answer under `gloam up --nightcore`;
#  4. every examples/hello-<lang>/gloam.toml runs as is and answers.
#
# Prints what it measured (seconds from `gloam up` to the console naming the causes, ...).
# Every wait is bounded. KEEP=1 keeps the directory. Usage: ci/newcomer.sh [LANG ...]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
LANGS=("$@")
[ ${#LANGS[@]} -eq 0 ] && LANGS=(c go python node rust)
TMP="$(mktemp -d /tmp/gloam-newcomer.XXXXXX)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    if [ "${KEEP:-}" = 1 ] || [ "${FAILED:-0}" = 1 ]; then
        echo "newcomer: files kept in $TMP"
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
FAILED=1

say() { echo "newcomer: $*"; }
fail() { echo "newcomer: FAIL: $*" >&2; exit 1; }
now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
# wait_for SECONDS WHAT COMMAND...: polls COMMAND every 0.1 s.
wait_for() {
    local limit=$1 what=$2 start
    shift 2
    start=$(now)
    until "$@" > /dev/null 2>&1; do
        if awk -v s="$(since "$start")" -v l="$limit" 'BEGIN { exit !(s > l) }'; then
            [ -n "${CONSOLE:-}" ] && tail -n 40 "$CONSOLE" >&2
            fail "no $what within $limit s"
        fi
        sleep 0.1
    done
}
contains() { grep -qF -- "$2" "$1"; }
expect() { contains "$1" "$2" || { tail -n 60 "$1" >&2; fail "$3: '$2' not in $1"; }; }
# call NAME INPUT: POSTs to the running stack; sets STATUS and BODY (bounded: 40 s).
call() {
    local out="$TMP/body.$$"
    STATUS=$(curl -s --max-time 40 -o "$out" -w '%{http_code}' -d "$2" "http://$ADDR/function/$1" || true)
    BODY="$(cat "$out" 2>/dev/null || true)"
}

# start DIR ARGS...: `gloam up ARGS` in DIR on a free port and its own IPC root; sets PID,
# ADDR, CONSOLE (its stderr) and T0 (when it was started).
start() {
    local dir=$1
    shift
    CONSOLE="$dir/console.log"
    : > "$dir/stdout.log"
    T0=$(now)
    (cd "$dir" && exec "$G" up "$@" --listen 127.0.0.1:0 --ipc-root "$dir/ipc") \
        > "$dir/stdout.log" 2> "$CONSOLE" &
    PID=$!
    PIDS+=("$PID")
    wait_for 120 "'gloam: ready' from gloam up in $dir" grep -q '^gloam: ready http://' "$dir/stdout.log"
    ADDR=$(sed -n 's|^gloam: ready http://||p' "$dir/stdout.log" | head -n 1)
    export GLOAM_ADDR="$ADDR"
}

stop() {
    kill -INT "$PID"
    local i
    for i in $(seq 1 300); do
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$PID" 2>/dev/null && fail "gloam up did not stop within 30 s"
    wait "$PID" || fail "gloam up exited with status $?"
}

# ---- 1. the SDKs ------------------------------------------------------------------------
say "installing the SDKs in $TMP/sdk"
t=$(now)
"$ROOT/bindings/install.sh" --prefix "$TMP/sdk" > "$TMP/install.log" 2>&1 ||
    { tail -n 40 "$TMP/install.log"; fail "bindings/install.sh"; }
say "SDKs installed in $(since "$t") s"
export GLOAM_SDK="$TMP/sdk"
export PATH="$TMP/sdk/bin:$PATH"
G="$TMP/sdk/bin/gloam"
unset GLOAM_ADDR

# ---- 2. every language --------------------------------------------------------------------
# Per language: the function, how NoHandler runs the same program, the edit that makes the
# handler raise, what its stack trace looks like on the console and (debug) in the message.
setup() {
    case "$1" in
        rust)
            NAME=GreetRust CMD='command = "target/debug/greetrust"'
            FILE=src/main.rs
            FROM='    Ok([b"Hello, ".as_slice(), name, b"!"].concat())'
            TO='    Err(HandlerError::new(format!("greeting {} failed on purpose", String::from_utf8_lossy(name))))'
            TRACE='gloam: handler of GreetRust failed call' DEBUG_TRACE='' TEST='cargo test --quiet' ;;
        python)
            NAME=GreetPython CMD=$'command = ".venv/bin/python"\nargs = ["main.py"]'
            FILE=main.py
            FROM='    return b"Hello, " + (data or b"World") + b"!"'
            TO='    raise ValueError("greeting failed on purpose")'
            TRACE='Traceback (most recent call last)' DEBUG_TRACE='in greet' TEST='.venv/bin/python -m unittest -q' ;;
        node)
            NAME=GreetNode CMD=$'command = "node"\nargs = ["main.js"]'
            FILE=main.js
            FROM="  return \`Hello, \${input.length > 0 ? input.toString() : 'World'}!\`"
            TO="  throw new Error('greeting failed on purpose')"
            TRACE='    at greet (' DEBUG_TRACE='at greet' TEST='npm test --silent' ;;
        go)
            NAME=GreetGo CMD='command = "./greetgo"'
            FILE=main.go
            FROM=$'\treturn append(append([]byte("Hello, "), input...), \'!\'), nil'
            TO=$'\tpanic("greeting failed on purpose")'
            TRACE='main.greet(' DEBUG_TRACE='main.greet' TEST='go test ./...' ;;
        c)
            NAME=GreetC CMD='command = "./greetc"'
            FILE=main.c
            FROM='    size_t n = greet(in, len, out, cap);'
            TO=$'    size_t n = greet(in, len, out, cap);\n    if (n > 0) {\n        free(out);\n        gloam_ctx_fail(ctx, "greeting failed on purpose", 26);\n        return 1;\n    }'
            TRACE='stack (innermost first)' DEBUG_TRACE='handle' TEST='make -s test' ;;
        *) fail "unknown language $1" ;;
    esac
}

replace() { # FILE FROM TO: replaces one exact line (or block start), checking it was there
    python3 - "$1" "$2" "$3" <<'PY' || fail "cannot edit $1"
import sys
path, old, new = sys.argv[1:]
text = open(path).read()
if old not in text:
    sys.exit(f"{old!r} not in {path}")
open(path, "w").write(text.replace(old, new, 1))
PY
}

SUMMARY=()
for lang in "${LANGS[@]}"; do
    setup "$lang"
    say "== $lang: gloam new $lang $NAME"
    cd "$TMP"
    "$G" new "$lang" "$NAME" > "$TMP/new-$lang.log" 2>&1 || { cat "$TMP/new-$lang.log"; fail "gloam new $lang"; }
    dir="$TMP/$NAME"
    cd "$dir"
    if [ "$lang" = rust ]; then
        # The versions the SDK was tested with (offline-safe); compiled artifacts are kept
        # between runs in the clone's target/ (a newcomer's own target/ would start empty).
        cp "$ROOT/Cargo.lock" .
        mkdir -p "$ROOT/target/newcomer-rust"
        ln -s "$ROOT/target/newcomer-rust" target
    fi
    t=$(now)
    "$G" build > "$dir/build.log" 2>&1 || { tail -n 40 "$dir/build.log"; fail "$lang: gloam build"; }
    t_build=$(since "$t")
    sh -c "$TEST" > "$dir/test.log" 2>&1 || { tail -n 40 "$dir/test.log"; fail "$lang: $TEST"; }
    say "$lang: built in $t_build s; \`$TEST\` passed"
    if [ "$lang" = c ] && command -v cmake > /dev/null; then
        # The same program through the SDK's CMake package.
        mkdir -p cmake
        printf '%s\n' 'cmake_minimum_required(VERSION 3.16)' 'project(greet_cmake C)' \
            'find_package(gloam 0.1 CONFIG REQUIRED)' \
            'add_executable(greet_cmake ../main.c ../greet.c)' \
            'target_link_libraries(greet_cmake PRIVATE gloam::gloam)' > cmake/CMakeLists.txt
        { cmake -S cmake -B cmake/build -DCMAKE_PREFIX_PATH="$TMP/sdk" && cmake --build cmake/build; } \
            > cmake.log 2>&1 || { tail -n 30 cmake.log; fail "c: CMake with find_package(gloam)"; }
        SUMMARY+=("c: find_package(gloam CONFIG) built the function with CMake")
    fi

    # Broken on purpose: a command that does not exist, a handler the program lacks. The
    # function itself gets debug = true (stack traces in error messages).
    sed -i "/^\[functions\.$NAME\]/a debug = true" gloam.toml
    printf '\n[functions.BadCommand]\ncommand = "./no-such-program"\n\n[functions.NoHandler]\n%s\nhandler = "NoSuchHandler"\n' "$CMD" >> gloam.toml
    "$G" validate > "$dir/validate.log" 2>&1 && fail "$lang: gloam validate accepted a missing command"
    expect "$dir/validate.log" "BadCommand: command $dir/no-such-program does not exist" "$lang: gloam validate"

    start "$dir" --watch
    t_ready=$(since "$T0")
    wait_for 20 "console naming both broken functions" sh -c \
        "grep -q 'gloam: BadCommand cannot start' '$CONSOLE' && grep -q 'gloam: NoHandler cannot start' '$CONSOLE'"
    t_told=$(since "$T0")
    expect "$CONSOLE" "no-such-program" "$lang console"
    expect "$CONSOLE" "NoSuchHandler" "$lang console"

    call "$NAME" Ada
    [ "$STATUS" = 200 ] && [ "$BODY" = "Hello, Ada!" ] || fail "$lang: $NAME answered $STATUS $BODY"
    t=$(now)
    call BadCommand x
    t_call=$(since "$t")
    [ "$STATUS" = 503 ] || fail "$lang: BadCommand answered $STATUS $BODY"
    case "$BODY" in *'"FUNCTION_UNAVAILABLE"'*no-such-program*) ;; *) fail "$lang: BadCommand: $BODY" ;; esac
    awk -v t="$t_call" 'BEGIN { exit !(t < 10) }' || fail "$lang: BadCommand took $t_call s to fail"
    call NoHandler x
    [ "$STATUS" = 503 ] || fail "$lang: NoHandler answered $STATUS $BODY"
    case "$BODY" in *'"FUNCTION_UNAVAILABLE"'*NoSuchHandler*) ;; *) fail "$lang: NoHandler: $BODY" ;; esac
    "$G" status > "$dir/status.txt" || fail "$lang: gloam status"
    expect "$dir/status.txt" "RESTARTS" "$lang: gloam status"
    expect "$dir/status.txt" "BadCommand cannot start" "$lang: gloam status"

    # The handler raises: the watcher rebuilds and replaces the workers.
    t=$(now)
    replace "$FILE" "$FROM" "$TO"
    wait_for 90 "500 HANDLER_FAILED from the rebuilt $NAME" sh -c \
        "curl -s --max-time 10 -d Ada 'http://$ADDR/function/$NAME' | grep -q 'failed on purpose'"
    t_roll=$(since "$t")
    call "$NAME" Ada
    [ "$STATUS" = 500 ] || fail "$lang: the raising handler answered $STATUS $BODY"
    case "$BODY" in *'"HANDLER_FAILED"'*) ;; *) fail "$lang: $BODY" ;; esac
    if [ -n "$DEBUG_TRACE" ]; then
        case "$BODY" in *"$DEBUG_TRACE"*) ;; *) fail "$lang: debug = true but no stack in: $BODY" ;; esac
    fi
    expect "$CONSOLE" "sources of $NAME" "$lang: the watcher"
    wait_for 10 "the stack trace on the console" grep -qF -- "$TRACE" "$CONSOLE"
    "$G" logs "$NAME" -n 200 > "$dir/logs.txt" || fail "$lang: gloam logs"
    expect "$dir/logs.txt" "$TRACE" "$lang: gloam logs"
    stop
    SUMMARY+=("$lang: build $t_build s; up -> ready $t_ready s; up -> console names both causes $t_told s; 503 in $t_call s; edit -> raising handler served $t_roll s")
done

# ---- 3. Nightcore's C examples --------------------------------------------------------------
say "== Nightcore: examples/c from the v1 interface, built with its include path"
nc="$TMP/nightcore"
mkdir -p "$nc/examples/c"
ln -s "$TMP/sdk/include" "$nc/include"
cd "$nc/examples/c"
cat > foo.c <<'EOF'
#include <stdlib.h>
#include <string.h>

#include <faas/worker_v1_interface.h>

struct worker_context {
    void* caller_context;
    faas_invoke_func_fn_t invoke_func_fn;
    faas_append_output_fn_t append_output_fn;
};

int faas_init() { return 0; }

int faas_create_func_worker(void* caller_context, faas_invoke_func_fn_t invoke_func_fn,
                            faas_append_output_fn_t append_output_fn, void** worker_handle) {
    struct worker_context* context = (struct worker_context*)malloc(sizeof(struct worker_context));
    context->caller_context = caller_context;
    context->invoke_func_fn = invoke_func_fn;
    context->append_output_fn = append_output_fn;
    *worker_handle = context;
    return 0;
}

int faas_destroy_func_worker(void* worker_handle) {
    free(worker_handle);
    return 0;
}

static const char kPrefix[] = "From function Bar: ";

int faas_func_call(void* worker_handle, const char* input, size_t input_length) {
    struct worker_context* context = (struct worker_context*)worker_handle;
    const char* bar_output;
    size_t bar_output_length;
    if (context->invoke_func_fn(context->caller_context, "Bar", input, input_length,
                                &bar_output, &bar_output_length) != 0)
        return -1;
    context->append_output_fn(context->caller_context, kPrefix, strlen(kPrefix));
    context->append_output_fn(context->caller_context, bar_output, bar_output_length);
    return 0;
}
EOF
cat > bar.c <<'EOF'
#include <stdlib.h>
#include <string.h>

#include <faas/worker_v1_interface.h>

struct worker_context {
    void* caller_context;
    faas_append_output_fn_t append_output_fn;
};

int faas_init() { return 0; }

int faas_create_func_worker(void* caller_context, faas_invoke_func_fn_t invoke_func_fn,
                            faas_append_output_fn_t append_output_fn, void** worker_handle) {
    (void)invoke_func_fn;
    struct worker_context* context = (struct worker_context*)malloc(sizeof(struct worker_context));
    context->caller_context = caller_context;
    context->append_output_fn = append_output_fn;
    *worker_handle = context;
    return 0;
}

int faas_destroy_func_worker(void* worker_handle) {
    free(worker_handle);
    return 0;
}

static const char kSuffix[] = ", World\n";

int faas_func_call(void* worker_handle, const char* input, size_t input_length) {
    struct worker_context* context = (struct worker_context*)worker_handle;
    context->append_output_fn(context->caller_context, input, input_length);
    context->append_output_fn(context->caller_context, kSuffix, strlen(kSuffix));
    return 0;
}
EOF
cat > func_config.json <<'EOF'
[
    { "funcName": "Foo", "funcId": 1, "minWorkers": 1, "maxWorkers": 4 },
    { "funcName": "Bar", "funcId": 2, "minWorkers": 1, "maxWorkers": 4 }
]
EOF
cat > compile.sh <<'EOF'
#!/bin/bash
CC=gcc
$CC -shared -fPIC -O2 -I../../include -o libfoo.so foo.c
$CC -shared -fPIC -O2 -I../../include -o libbar.so bar.c
EOF
chmod +x compile.sh
./compile.sh > compile.log 2>&1 || { cat compile.log; fail "Nightcore's compile.sh"; }
start "$nc/examples/c" --nightcore func_config.json
expect "$CONSOLE" "Foo is served by $TMP/sdk/bin/gloam-cworker" "nightcore"
call Foo Hello
[ "$STATUS" = 200 ] && [ "$BODY" = "From function Bar: Hello, World" ] ||
    fail "nightcore: Foo answered $STATUS '$BODY'"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$ADDR/readyz")" = 200 ] || fail "nightcore: not ready"
stop
SUMMARY+=("nightcore: compile.sh built libfoo.so and libbar.so unchanged; Foo answered 'From function Bar: Hello, World'")

# ---- 4. the examples, as is ---------------------------------------------------------------
unset GLOAM_SDK
G="$ROOT/target/debug/gloam"
for lang in "${LANGS[@]}"; do
    ex="$ROOT/examples/hello-$lang"
    say "== examples/hello-$lang/gloam.toml as is"
    work="$TMP/example-$lang"
    mkdir -p "$work"
    CONSOLE="$work/console.log"
    T0=$(now)
    "$G" up "$ex/gloam.toml" --quiet --listen 127.0.0.1:0 --ipc-root "$work/ipc" \
        > "$work/stdout.log" 2> "$CONSOLE" &
    PID=$!
    PIDS+=("$PID")
    wait_for 600 "'gloam: ready' for examples/hello-$lang" grep -q '^gloam: ready http://' "$work/stdout.log"
    ADDR=$(sed -n 's|^gloam: ready http://||p' "$work/stdout.log" | head -n 1)
    call Foo World
    [ "$STATUS" = 200 ] && [ "$BODY" = "From function Bar: Hello, World" ] ||
        fail "examples/hello-$lang: Foo answered $STATUS '$BODY'"
    stop
    SUMMARY+=("examples/hello-$lang: up (with its build) and Foo answered in $(since "$T0") s")
done

echo
say "summary:"
for s in "${SUMMARY[@]}"; do echo "  $s"; done
FAILED=0
say "all passed"
