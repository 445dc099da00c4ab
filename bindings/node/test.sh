#!/bin/sh
# Tests of the Node.js SDK: dev dependencies, debug addon, index.d.ts drift, typings, then the
# conformance suite against a real engine. Assumes target/debug/gloam and target/debug/hello-rust
# exist (the top-level test script builds them: `cargo build --workspace`).
set -eu
cd "$(dirname "$0")"
repo=$(cd ../.. && pwd)

echo "== npm ci (dev dependencies; the addon is built below)"
npm ci --ignore-scripts --no-audit --no-fund

echo "== napi build (debug)"
committed=$(mktemp)
trap 'rm -f "$committed"' EXIT
cp index.d.ts "$committed"
npx --no-install napi build --platform --js index.js --dts index.d.ts
node scripts/dts-header.js

echo "== index.d.ts drift check"
if ! diff -u "$committed" index.d.ts; then
    echo "index.d.ts is out of date: commit the regenerated file (it has been rewritten)" >&2
    exit 1
fi

echo "== tsc --noEmit (typed example)"
npx --no-install tsc -p types-test/tsconfig.json

for bin in "$repo/target/debug/gloam" "$repo/target/debug/hello-rust"; do
    if [ ! -x "$bin" ]; then
        echo "$bin is missing: run \`cargo build --workspace\` first" >&2
        exit 1
    fi
done

echo "== node --test"
cd "$repo"
node --test --test-timeout=60000 bindings/node/test/
