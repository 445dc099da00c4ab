#!/usr/bin/env bash
# Internal-call latency from every language's SDK, release builds (not part of the tests).
#
#   ci/bench-languages.sh [N]        # N internal calls per run (default 100000; 20000 for Python)
#
# Builds release variants of the engine, the Rust example, libgloam (C, and Go through
# `-tags gloam_release`), the Python extension (its own venv: target/venv-bench) and the Node
# addon (in place: `ci/test.sh` rebuilds the debug one), starts one stack with a `<L>Nop` and a
# `<L>BenchInternal` function per language, and runs `gloam bench internal` for each language
# calling its own Nop and the Rust Nop, twice, languages alternating. Prints one table row per
# run and writes the JSON lines to target/bench-languages/results.jsonl.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
# shellcheck source=ci/stack.sh
source ci/stack.sh
N="${1:-100000}"
OUT="$ROOT/target/bench-languages"
mkdir -p "$OUT"

step() { echo "== $*" >&2; }

step "release build: engine, hello-rust, libgloam"
cargo build --release -p gloam-engine -p hello-rust -p gloam-c >&2
GLOAM="$ROOT/target/release/gloam"

step "C example against target/release/libgloam.a (-O2)"
make -s -C examples/hello-c PROFILE=release BUILD="$OUT/c" CFLAGS="-O2" "$OUT/c/hello_c" >&2

step "Go example with -tags gloam_release"
export CGO_CFLAGS="${CGO_CFLAGS:-} -DGLOAM_LIB_HASH=$(sha256sum target/release/libgloam.a | cut -c1-16)"
(cd examples/hello-go && go build -tags gloam_release -o "$OUT/hello-go" .) >&2

step "Python extension (maturin --release) in target/venv-bench"
VENV="$ROOT/target/venv-bench"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
[ -x "$VENV/bin/maturin" ] ||
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "maturin>=1.5,<2" >&2
(cd bindings/python && VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH" \
  "$VENV/bin/maturin" develop --quiet --release >&2)

step "Node addon (napi build --release, in place)"
(cd bindings/node &&
  { [ -d node_modules/@napi-rs/cli ] || npm ci --ignore-scripts --no-audit --no-fund >&2; } &&
  npx --no-install napi build --platform --release --js index.js --dts index.d.ts >&2)

TMP="$(mktemp -d -t gloam-bench-lang.XXXXXX)"
cleanup() {
  stop_stack
  rm -rf "$TMP"
}
trap cleanup EXIT

fn() { # name handler command [args...]
  local name="$1" handler="$2" cmd="$3"
  shift 3
  local args=""
  for a in "$@"; do args+="\"$a\", "; done
  printf '[functions.%s]\ncommand = "%s"\nargs = [%s]\nenv = { GLOAM_HANDLER = "%s" }\nmin_workers = 1\nmax_workers = 1\n\n' \
    "$name" "$cmd" "${args%, }" "$handler"
}
{
  printf '[engine]\nipc_root = "%s/ipc"\nlisten = "127.0.0.1:0"\nlog_dir = "%s/logs"\n\n' "$TMP" "$TMP"
  fn Nop Nop "$ROOT/target/release/hello-rust"
  fn BenchInternal BenchInternal "$ROOT/target/release/hello-rust"
  fn CNop Nop "$OUT/c/hello_c"
  fn CBenchInternal BenchInternal "$OUT/c/hello_c"
  fn GoNop Nop "$OUT/hello-go"
  fn GoBenchInternal BenchInternal "$OUT/hello-go"
  fn PyNop Nop "$VENV/bin/python" "$ROOT/examples/hello-python/main.py"
  fn PyBenchInternal BenchInternalSync "$VENV/bin/python" "$ROOT/examples/hello-python/main.py"
  fn NodeNop Nop node "$ROOT/examples/hello-node/main.js"
  fn NodeBenchInternal BenchInternalSync node "$ROOT/examples/hello-node/main.js"
} > "$TMP/gloam.toml"

step "starting the stack"
start_stack "$GLOAM" "$TMP/gloam.toml" "$TMP"

: > "$OUT/results.jsonl"
printf '%-8s %-8s %8s %8s %8s %10s\n' lang target "p50 us" "p99 us" "p99.9 us" "calls/s"
declare -A OWN=([rust]=Nop [c]=CNop [go]=GoNop [python]=PyNop [node]=NodeNop)
for round in 1 2; do
  for lang in rust c go python node; do
    n="$N"
    [[ "$lang" == python ]] && n=$((N / 5))
    for target in "${OWN[$lang]}" Nop; do
      [[ "$lang" == rust && "$target" == Nop && "$round" == 2 ]] && continue
      json="$("$GLOAM" bench internal --lang "$lang" --url "$URL" --n "$n" --target "$target" --json)"
      echo "{\"round\":$round,\"lang\":\"$lang\",\"result\":$json}" >> "$OUT/results.jsonl"
      python3 - "$lang" "$target" "$json" <<'PY'
import json, sys
lang, target, r = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
print(f"{lang:<8} {target:<8} {r['p50_us']:8.1f} {r['p99_us']:8.1f} {r['p999_us']:8.1f} {r['per_s']:10.0f}")
PY
    done
  done
done
step "direct lanes in use: $(curl -s "$URL/metrics" | grep -c '^gloam_direct_calls_total{[^}]*} [1-9]') functions served direct calls"
