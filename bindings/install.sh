#!/usr/bin/env bash
# Builds Gloam's SDKs and installs them in one directory, for projects anywhere on the machine
# (what `gloam new` uses):
#
#   PREFIX/bin/gloam, gloam-cworker            the CLI and the host of Nightcore v1 libraries
#   PREFIX/include/gloam.h, faas/...           C headers (Nightcore's <faas/worker_v1_interface.h>)
#   PREFIX/lib/libgloam.a, libgloam.so         the C library
#   PREFIX/lib/pkgconfig/gloam.pc              pkg-config --cflags --libs gloam
#   PREFIX/lib/cmake/gloam/                    find_package(gloam CONFIG) -> gloam::gloam
#   PREFIX/rust/gloam-core/                    the Rust crate (as `cargo package` makes it)
#   PREFIX/python/gloam-*.whl                  the Python wheel (pip install --find-links)
#   PREFIX/node/gloam-0.1.0.tgz                the npm package, with the addon built here
#   PREFIX/go/                                 the Go module gloam.dev/gloam, linked to
#                                              PREFIX/lib/libgloam.a (keyed by its hash, so a
#                                              reinstalled library is never linked stale)
#
# Usage: bindings/install.sh [--release] [--prefix DIR] [PART ...]
#   --release     build everything with the release profile (optimised; the default is debug)
#   --prefix DIR  where to install (default: target/sdk in this clone)
#   PART          some of: c rust python node go (default: all; go needs c)
# Environment: GLOAM_PY (a Python with maturin; default: target/venv-python's, else python3).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

profile=debug
cargo_profile=()
prefix="$root/target/sdk"
parts=()
while [ $# -gt 0 ]; do
    case "$1" in
        --release) profile=release; cargo_profile=(--release) ;;
        --prefix) prefix="$2"; shift ;;
        --prefix=*) prefix="${1#--prefix=}" ;;
        c|rust|python|node|go) parts+=("$1") ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[ ${#parts[@]} -eq 0 ] && parts=(c rust python node go)
mkdir -p "$prefix"
prefix="$(cd "$prefix" && pwd)"
has() { local p; for p in "${parts[@]}"; do [ "$p" = "$1" ] && return 0; done; return 1; }
say() { echo "install.sh: $*"; }
lib="$root/target/$profile"

if has c || has go; then
    say "C library and tools ($profile)"
    cargo build "${cargo_profile[@]}" -p gloam-c -p gloam-engine
    mkdir -p "$prefix/bin" "$prefix/lib/pkgconfig" "$prefix/lib/cmake/gloam" "$prefix/include"
    install -m 0755 "$lib/gloam" "$lib/gloam-cworker" "$prefix/bin/"
    install -m 0644 "$lib/libgloam.a" "$lib/libgloam.so" "$prefix/lib/"
    cp -R bindings/c/include/. "$prefix/include/"
    cat > "$prefix/lib/pkgconfig/gloam.pc" <<EOF
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: gloam
Description: Gloam's C SDK: serve functions, make internal calls ($profile build)
Version: 0.1.0
Cflags: -I\${includedir}
Libs: \${libdir}/libgloam.a -lpthread -ldl -lm
EOF
    cat > "$prefix/lib/cmake/gloam/gloamConfig.cmake" <<'EOF'
# Gloam's C SDK: find_package(gloam CONFIG REQUIRED), then
# target_link_libraries(app PRIVATE gloam::gloam). Relocatable: paths from this file's place.
get_filename_component(_gloam_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
if(NOT TARGET gloam::gloam)
  add_library(gloam::gloam STATIC IMPORTED)
  set_target_properties(gloam::gloam PROPERTIES
    IMPORTED_LOCATION "${_gloam_prefix}/lib/libgloam.a"
    INTERFACE_INCLUDE_DIRECTORIES "${_gloam_prefix}/include"
    INTERFACE_LINK_LIBRARIES "pthread;dl;m")
endif()
set(gloam_VERSION 0.1.0)
unset(_gloam_prefix)
EOF
    cat > "$prefix/lib/cmake/gloam/gloamConfigVersion.cmake" <<'EOF'
set(PACKAGE_VERSION 0.1.0)
if(PACKAGE_FIND_VERSION VERSION_GREATER PACKAGE_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
else()
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
  if(PACKAGE_FIND_VERSION STREQUAL PACKAGE_VERSION)
    set(PACKAGE_VERSION_EXACT TRUE)
  endif()
endif()
EOF
fi

if has rust; then
    say "Rust crate gloam-core"
    cargo package -p gloam-core --no-verify --allow-dirty --quiet
    rm -rf "$prefix/rust/gloam-core"
    mkdir -p "$prefix/rust/gloam-core"
    tar -xzf target/package/gloam-core-0.1.0.crate -C "$prefix/rust/gloam-core" --strip-components=1
fi

if has python; then
    say "Python wheel ($profile)"
    py="${GLOAM_PY:-}"
    if [ -z "$py" ]; then
        if [ -x target/venv-python/bin/maturin ]; then py=target/venv-python/bin/python; else py=python3; fi
    fi
    mkdir -p "$prefix/python"
    rm -f "$prefix/python"/gloam-*.whl
    if "$py" -m maturin --version > /dev/null 2>&1; then
        maturin_profile=dev; [ "$profile" = release ] && maturin_profile=release
        "$py" -m maturin build --quiet --profile "$maturin_profile" \
            -m bindings/python/Cargo.toml -o "$prefix/python"
    else
        # The standard way (pip fetches maturin into an isolated build, and builds in release).
        "$py" -m pip wheel --quiet --no-deps ./bindings/python -w "$prefix/python"
    fi
fi

if has node; then
    say "npm package ($profile addon)"
    (
        cd bindings/node
        [ -d node_modules/@napi-rs/cli ] || npm ci --ignore-scripts --no-audit --no-fund
        if [ "$profile" = release ]; then npm run --silent build; else npm run --silent build:debug; fi
        mkdir -p "$prefix/node"
        npm pack --silent --pack-destination "$prefix/node" > /dev/null
    )
fi

if has go; then
    say "Go module gloam.dev/gloam"
    rm -rf "$prefix/go"
    mkdir -p "$prefix/go"
    for f in bindings/go/*.go; do
        case "$f" in *_test.go|*/link_debug.go|*/link_release.go) continue ;; esac
        # Headers are in PREFIX/include beside the module.
        sed 's|-I${SRCDIR}/../c/include|-I${SRCDIR}/../include|' "$f" > "$prefix/go/$(basename "$f")"
    done
    cp bindings/go/go.mod bindings/go/README.md "$prefix/go/"
    hash="$(sha256sum "$prefix/lib/libgloam.a" | cut -c1-16)"
    cat > "$prefix/go/link.go" <<EOF
package gloam

// The C library installed beside this module by bindings/install.sh ($profile build). Its hash
// is part of the flags, so Go's build cache relinks programs when it is reinstalled.

// #cgo CFLAGS: -DGLOAM_LIB_HASH=$hash
// #cgo LDFLAGS: \${SRCDIR}/../lib/libgloam.a -ldl -lpthread -lm
import "C"
EOF
fi

cat > "$prefix/README" <<EOF
Gloam SDK ($profile build), installed by bindings/install.sh from $root.
gloam new LANG NAME --sdk $prefix   (or GLOAM_SDK=$prefix) creates projects that use it.
EOF
say "installed (${parts[*]}) in $prefix"
