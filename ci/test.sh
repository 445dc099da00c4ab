#!/usr/bin/env bash
# Builds everything and runs every test suite of every language.
# Usage: ci/test.sh [suite ...]   (default: all suites; see SUITES below)
# Prints one summary line per suite and a final "N passed, N failed" line; exits non-zero on
# any failure. Each suite's own output goes to target/test-logs/<suite>.log (and is shown
# when the suite fails).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export CARGO_TERM_COLOR=never
LOGS="$ROOT/target/test-logs"
mkdir -p "$LOGS"

SUITES=(lint rust deploy c go python node matrix sandbox grpc newcomer browser)
[ $# -gt 0 ] && SUITES=("$@")

step() { printf '==> %s\n' "$*"; }

suite_lint() {
    cargo fmt --all -- --check || return 1
    cargo clippy --workspace --all-targets -- -D warnings
}

suite_rust() {
    # The gRPC tests call the engine with grpcurl (built from the Go module proxy, once).
    ci/install-grpcurl.sh || return 1
    # engine/tests/isolation*.rs run real sandboxes and cgroups: bubblewrap from Debian, and a failure
    # (not a skip) when it is missing.
    ci/install-sandbox.sh || return 1
    export GLOAM_TEST_SANDBOX=1
    cargo test --workspace --exclude gloam-python --exclude gloam-node --exclude gloam-bench-baselines -- --test-threads=2 || return 1
    # The default transport is the shared-memory ring; run the engine's suites over FIFOs too.
    GLOAM_TEST_TRANSPORT=fifo cargo test -p gloam-engine --test e2e --test robustness --test faults --test faults_rogue --test isolation -- --test-threads=2 || return 1
    # Engine and workers allowed one CPU: the poller and the workers yield at every poll.
    taskset -c 0 cargo test -p gloam-engine --test e2e --test lanes -- --test-threads=2 || return 1
    # 20 s of load while workers are killed at random: no hung call, no wrong answer, no leak.
    ci/soak.sh --quick
}

# deploy/: Kubernetes manifests against the schemas (strict), Dockerfiles through hadolint.
suite_deploy() { ci/validate-deploy.sh; }
suite_c() { bindings/c/test.sh; }
suite_go() { bindings/go/test.sh; }
suite_python() { bindings/python/test.sh; }
suite_node() { bindings/node/test.sh; }
# Every language calls every language's Echo internally (25 pairs, small and 2 MiB payloads).
suite_matrix() { ci/matrix/test.sh; }
# The main job's polyglot stack with every function sandboxed (`gloam up --isolation sandbox`)
# as an unprivileged user (`nobody` under root), every function called over HTTP.
suite_sandbox() { ci/polyglot-sandbox.sh; }
# The gRPC example (Go, Python, Rust services) against grpcurl, Go's grpc package and grpcio.
suite_grpc() { ci/grpc/test.sh; }
# A newcomer outside the clone: installed SDKs, `gloam new` + build + up in every language,
# broken on purpose (the console and the HTTP error name the cause within seconds), --watch,
# Nightcore's C examples, and every examples/hello-<lang>/gloam.toml as is.
suite_newcomer() { ci/newcomer.sh; }
# The status page at / in headless Chromium against a real stack (installs Debian's chromium
# and playwright-core first when missing). Its screenshot goes to target/test-logs/ here;
# `cd tests/browser && npm test` refreshes docs/status-page.png.
suite_browser() {
    ci/install-browser.sh || return 1
    (cd tests/browser && SCREENSHOT="$LOGS/status-page.png" node --test --test-timeout=120000 status-page.test.mjs)
}

step "building the Rust workspace (engine, core, examples)"
start_all=$(date +%s)
if ! cargo build --workspace --exclude gloam-python --exclude gloam-node --exclude gloam-bench-baselines > "$LOGS/build.log" 2>&1; then
    tail -n 60 "$LOGS/build.log"
    echo "build: FAILED"
    echo "0 passed, 1 failed"
    exit 1
fi

passed=0; failed=0; summary=()
for s in "${SUITES[@]}"; do
    step "suite $s"
    t0=$(date +%s)
    if "suite_$s" > "$LOGS/$s.log" 2>&1; then
        passed=$((passed + 1)); result=passed
    else
        failed=$((failed + 1)); result=FAILED
        tail -n 80 "$LOGS/$s.log"
    fi
    line="$s: $result in $(( $(date +%s) - t0 )) s (log: target/test-logs/$s.log)"
    summary+=("$line"); echo "$line"
done

echo
echo "Summary ($(( $(date +%s) - start_all )) s):"
for l in "${summary[@]}"; do echo "  $l"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
