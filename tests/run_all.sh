#!/usr/bin/env bash
# Installs what the tests need and runs every test of ferroloop:
#   1. cargo test (pure-Rust parts: timer heap, reactor, clock)
#   2. for each CPython (3.11 and 3.13 by default; FERROLOOP_PYTHONS overrides):
#        pip install . (release build of the extension) plus pytest
#        pytest tests/                         ferroloop's own tests (tests/test_typing.py:
#                                              mypy --strict and mypy.stubtest on the stubs)
#        mypy --strict examples/               the examples and the stubs they use (first
#                                              interpreter; mypy from tests/requirements-typing.txt)
#        tests/cpython/run.py --core           the CPython gate: CPython's asyncio suite on
#                                              ferroloop (CORE_MODULES in run.py), failing on any
#                                              test that passes on stock asyncio and not here
#                                              (known differences aside, each with its reason in
#                                              tests/cpython/skips.py) and on any module or
#                                              mirror class it could not measure
#        pytest tests/integration              real frameworks on ferroloop over loopback
#                                              (uvicorn+httpx, aiohttp, websockets, tornado,
#                                              anyio, pytest-asyncio, asyncpg against a
#                                              PostgreSQL server the tests start), after
#                                              pip install -r tests/integration/requirements.txt;
#                                              any skipped integration test fails the run
# PostgreSQL's server (Debian's postgresql package) is installed with apt-get when initdb is
# missing and the script runs as root or has passwordless sudo; otherwise the asyncpg tests
# skip and, the integration run being strict, fail with the reason.
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

have_postgres() {
    command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

ensure_postgres() {  # best effort; the asyncpg tests report a missing server themselves
    have_postgres && return 0
    local sudo=()
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            echo "warning: PostgreSQL (initdb) is missing and this is neither root nor passwordless" \
                 "sudo: install Debian's postgresql package; the asyncpg integration tests will fail" >&2
            return 0
        fi
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "warning: PostgreSQL (initdb) is missing and there is no apt-get;" \
             "the asyncpg integration tests will fail" >&2
        return 0
    fi
    echo "== installing PostgreSQL (apt-get install postgresql) for the asyncpg integration tests"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
        && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
               --no-install-recommends postgresql >/dev/null \
        || echo "warning: apt-get install postgresql failed; the asyncpg integration tests will fail" >&2
    have_postgres || echo "warning: still no initdb after installing postgresql" >&2
}

mkdir -p results
ensure_postgres
echo "== cargo test"
# The test binary links the first interpreter's libpython: find it in that interpreter's
# LIBDIR (pyenv's), not only where the system loader looks (Debian's own libpython3.11
# happened to stand in for 3.11; none stands in for 3.12 or 3.13).
libdir=$("${pythons[0]}" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")')
LD_LIBRARY_PATH="${libdir}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" PYO3_PYTHON="${pythons[0]}" \
    cargo test --quiet

for py in "${pythons[@]}"; do
    ver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    echo "== Python $ver ($py)"
    # matplotlib and rich: tests/test_cli.py runs `ferroloop bench --plot` (and must not skip)
    "$py" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore pytest matplotlib rich \
        -r tests/requirements-typing.txt
    "$py" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --force-reinstall --no-deps .
    echo "-- pytest (Python $ver)"
    "$py" -m pytest -q -p no:cacheprovider tests
    if [ "$py" = "${pythons[0]}" ]; then
        echo "-- mypy --strict examples/ (Python $ver)"
        "$py" -m mypy --strict --cache-dir "results/mypy-cache-$ver" examples/
    fi
    echo "-- CPython asyncio suite on ferroloop (Python $ver)"
    "$py" tests/cpython/run.py --core --json "results/cpython-$ver.json"
    echo "-- integration tests: real frameworks on ferroloop (Python $ver)"
    "$py" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        -r tests/integration/requirements.txt
    FERROLOOP_INTEGRATION_STRICT=1 "$py" -m pytest -q -p no:cacheprovider -rs tests/integration
done
echo "== all tests passed"
