#!/usr/bin/env bash
# Installs what `isolation = "sandbox"` needs (issue 19): Debian's bubblewrap (`bwrap`) and
# util-linux's `prlimit` (for pids_limit without cgroups), only when missing. Needs root (or
# sudo) for apt-get. Then checks that this machine can make a sandbox (unprivileged user
# namespaces), as the engine's user: run as root, that is `nobody`, as the isolation tests do.
#
# Then delegates a cgroup to that user, as an admin would (the tests set
# `[engine] cgroup_parent = "gloam"`, GLOAM_TEST_CGROUP_PARENT overrides): `gloam` in each cgroup
# v1 hierarchy of memory, pids and cpu, and in a cgroup v2 hierarchy that offers those
# controllers (enabled for its children), owned by the user. With cgroup v2 the engine must
# also run inside the delegated group (e.g. in gloam/engine) to move its workers; see the
# README, "Isolation". Safe to run again.
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

if [ "$(id -u)" = 0 ]; then
    OWNER=65534
    PARENT=${GLOAM_TEST_CGROUP_PARENT:-gloam}
    delegated=()
    while read -r _ point fstype options _; do
        dir="$point/$PARENT"
        case "$fstype" in
        cgroup)
            case ",$options," in
            *,memory,* | *,pids,* | *,cpu,*) ;;
            *) continue ;;
            esac
            mkdir -p "$dir"
            chown "$OWNER:$OWNER" "$dir" "$dir/cgroup.procs" "$dir/tasks"
            ;;
        cgroup2)
            offered=$(cat "$point/cgroup.controllers")
            wanted=()
            for c in memory pids cpu; do
                case " $offered " in *" $c "*) wanted+=("+$c") ;; esac
            done
            [ ${#wanted[@]} -eq 0 ] && continue
            echo "${wanted[*]}" > "$point/cgroup.subtree_control"
            mkdir -p "$dir"
            echo "${wanted[*]}" > "$dir/cgroup.subtree_control"
            chown "$OWNER:$OWNER" "$dir" "$dir/cgroup.procs" "$dir/cgroup.subtree_control" \
                "$dir/cgroup.threads"
            ;;
        *) continue ;;
        esac
        delegated+=("$dir")
    done < /proc/self/mounts
    if [ ${#delegated[@]} -eq 0 ]; then
        echo "no cgroup hierarchy with memory, pids or cpu: the limits will be rlimits" >&2
    else
        echo "cgroup delegated to uid $OWNER: ${delegated[*]}"
    fi
fi
