#!/usr/bin/env bash
# Installs what `isolation = "sandbox"` needs (issue 19): Debian's bubblewrap (`bwrap`) and
# util-linux's `prlimit` (for pids_limit), only when missing. Needs root (or sudo) for apt-get.
# Then checks that this machine can make a sandbox (unprivileged user namespaces), as the
# engine's user: run as root, that is `nobody`, as the isolation tests do.
set -euo pipefail
if ! command -v bwrap > /dev/null || ! command -v prlimit > /dev/null; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends bubblewrap util-linux
fi
bwrap --version
AS=()
[ "$(id -u)" = 0 ] && AS=(setpriv --reuid=65534 --regid=65534 --clear-groups --)
if ! "${AS[@]}" bwrap --unshare-all --unshare-user --disable-userns --die-with-parent \
        --cap-drop ALL --ro-bind / / --proc /proc --dev /dev -- prlimit --nproc=64:64 -- true; then
    echo "this machine cannot make an unprivileged sandbox (user namespaces disabled?)" >&2
    exit 1
fi
