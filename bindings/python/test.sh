#!/usr/bin/env bash
# Builds the Python SDK into a venv and runs its checks: mypy (strict) and the pytest suite
# against a real engine.
#
# Assumes target/debug/gloam and target/debug/hello-rust exist (the top-level test script builds
# them with `cargo build --workspace`). Needs only PyPI and crates.io.
#
# Environment:
#   GLOAM_PY_VENV     the venv to create or reuse (default: target/venv-python)
#   GLOAM_PY_PROFILE  the cargo profile of the native module (default: dev; e.g. ci, release)
#   PYTHON            the interpreter that creates the venv (default: python3)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
venv="${GLOAM_PY_VENV:-$root/target/venv-python}"
profile="${GLOAM_PY_PROFILE:-dev}"
python="${PYTHON:-python3}"

start=$SECONDS
if [ ! -x "$venv/bin/python" ]; then
    echo "test.sh: creating $venv"
    "$python" -m venv "$venv"
fi
py="$venv/bin/python"
"$py" -m pip install --quiet --disable-pip-version-check \
    "maturin>=1.5,<2" "pytest>=7" "pytest-timeout>=2" "mypy>=1.5" "ruff>=0.5"

# `maturin develop` builds with the chosen profile (fast on small machines) and installs the
# package into the venv; `pip install ./bindings/python` is the user's path (release build).
echo "test.sh: building gloam (profile $profile)"
VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" "$venv/bin/maturin" develop --quiet \
    --profile "$profile" -m bindings/python/Cargo.toml

echo "test.sh: ruff"
"$venv/bin/ruff" check --config bindings/python/pyproject.toml bindings/python examples/hello-python

echo "test.sh: mypy --strict"
"$py" -m mypy --strict --cache-dir "$root/target/mypy-cache-python" \
    bindings/python/python/gloam examples/hello-python/main.py

echo "test.sh: pytest"
status=0
"$py" -m pytest -q bindings/python/tests || status=$?
echo "test.sh: done in $((SECONDS - start)) s (exit $status)"
exit "$status"
