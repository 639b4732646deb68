#!/usr/bin/env bash
# Installs what the tests need and runs every test of ferroloop:
#   1. cargo test (pure-Rust parts: timer heap, reactor, clock)
#   2. for each CPython (3.11 and 3.13 by default; FERROLOOP_PYTHONS overrides):
#        pip install . (release build of the extension) plus pytest
#        pytest tests/                         ferroloop's own tests
#        tests/cpython/run.py --core           the CPython gate: CPython's asyncio suite on
#                                              ferroloop (CORE_MODULES in run.py), failing on any
#                                              test that passes on stock asyncio and not here
#                                              (known differences aside, each with its reason in
#                                              tests/cpython/skips.py) and on any module or
#                                              mirror class it could not measure
# Exits non-zero as soon as any step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

pyenv_python() {  # pyenv_python 3.13 -> path of the newest installed 3.13.x interpreter
    local root
    root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
    ls -d "$root"/versions/"$1".*/bin/python3 2>/dev/null | sort -V | tail -n 1
}

if [ -n "${FERROLOOP_PYTHONS:-}" ]; then
    read -r -a pythons <<<"$FERROLOOP_PYTHONS"
else
    pythons=()
    for v in 3.11 3.13; do
        p=$(pyenv_python "$v")
        if [ -z "$p" ]; then
            echo "error: no CPython $v found under pyenv (set FERROLOOP_PYTHONS)" >&2
            exit 1
        fi
        pythons+=("$p")
    done
fi

mkdir -p results
echo "== cargo test"
PYO3_PYTHON="${pythons[0]}" cargo test --quiet

for py in "${pythons[@]}"; do
    ver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    echo "== Python $ver ($py)"
    "$py" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore pytest
    "$py" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --force-reinstall --no-deps .
    echo "-- pytest (Python $ver)"
    "$py" -m pytest -q -p no:cacheprovider tests
    echo "-- CPython asyncio suite on ferroloop (Python $ver)"
    "$py" tests/cpython/run.py --core --json "results/cpython-$ver.json"
done
echo "== all tests passed"
