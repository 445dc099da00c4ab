#!/usr/bin/env bash
# Installs what tests/browser needs: Debian's Chromium (only when /usr/bin/chromium is missing)
# and playwright-core from tests/browser/package-lock.json. Needs root for apt-get.
# `npx playwright install` is not used: the browser comes from Debian, not from a CDN.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends chromium
fi
/usr/bin/chromium --version 2>/dev/null
cd tests/browser
if [ ! -d node_modules/playwright-core ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
fi
