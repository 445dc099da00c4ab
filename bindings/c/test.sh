#!/usr/bin/env bash
# Tests of the C binding: Rust tests of the C ABI, header drift, the examples and C tests
# built with -Wall -Wextra -Werror (C tests and C examples under ASan + UBSan), then the
# end-to-end cases against a real engine. Exits non-zero on any failure.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
build="${GLOAM_C_BUILD:-$root/target/debug/c-tests}"
san="-fsanitize=address,undefined -fno-omit-frame-pointer"
start=$SECONDS

# 1. The library, the v1 host, the engine and the Rust example, keeping the committed header
#    aside to detect drift (build.rs regenerates include/gloam.h).
header="$here/include/gloam.h"
committed="$(mktemp)"
trap 'rm -f "$committed"' EXIT
cp "$header" "$committed"
cargo build -p gloam-c -p gloam-engine -p hello-rust
if ! cmp -s "$committed" "$header"; then
    echo "FAIL header drift: bindings/c/include/gloam.h differs from a fresh cbindgen run:" >&2
    diff -u "$committed" "$header" >&2 || true
    echo "(the fresh header is now in place: review and commit it)" >&2
    exit 1
fi
echo "ok   header matches a fresh generation"

# 2. Rust tests of the extern "C" functions.
cargo test -p gloam-c

# 3. Examples (C, C++, v1 libraries) and C tests.
make -s -C examples/hello-c BUILD="$build" SANITIZE="$san"
mkdir -p "$build"
for t in test_api test_worker; do
    cc -std=c11 -Wall -Wextra -Werror -g $san -I"$here/include" "$here/tests/$t.c" \
        -o "$build/$t" target/debug/libgloam.a -lpthread -ldl -lm
done

# 4. invalid_arguments: the C ABI from C, no engine (leak checking on).
ASAN_OPTIONS=detect_leaks=1 "$build/test_api"

# 5. End-to-end cases against a real engine.
timeout 300 python3 "$here/tests/run_tests.py" "$build"
echo "bindings/c/test.sh: all passed in $((SECONDS - start)) s"
