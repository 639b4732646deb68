"""The type stubs (python/ferroloop/*.pyi): ``mypy --strict`` passes on examples/ and on a
program using the public API, catches misuse of it, and ``mypy.stubtest`` finds the stubs
consistent with the built module (tests/stubtest_allowlist.txt lists what they leave out on
purpose). mypy reads its settings from pyproject.toml ([tool.mypy]: the checkout's stubs).

tests/run_all.sh installs mypy (tests/requirements-typing.txt); without it these skip.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("mypy")

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> pathlib.Path:
    """One mypy cache for the module's runs (typeshed is then analysed once)."""
    return tmp_path_factory.mktemp("mypy-cache")


def _mypy(cache_dir: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache_dir),
         "--no-error-summary", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_examples_pass_mypy_strict(cache_dir):
    proc = _mypy(cache_dir, "examples/")
    assert proc.returncode == 0, proc.stdout + proc.stderr


GOOD = '''
import asyncio
import contextvars
import socket
from concurrent.futures import ThreadPoolExecutor

import ferroloop


async def answer() -> int:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[int] = loop.create_future()
    loop.call_soon(fut.set_result, 42)
    return await fut


async def main() -> str:
    loop = ferroloop.new_event_loop()
    assert isinstance(loop, asyncio.AbstractEventLoop)
    loop.close()
    running = asyncio.get_running_loop()
    h: asyncio.Handle = running.call_soon(print, "x", context=contextvars.copy_context())
    t: asyncio.TimerHandle = running.call_later(0.5, print, "y")
    when: float = t.when()
    h.cancel()
    t.cancel()
    task: asyncio.Task[int] = running.create_task(answer(), name="answer")
    n: int = await task
    with ThreadPoolExecutor() as pool:
        s: str = await running.run_in_executor(pool, str, n + int(when > 0))
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        b.setblocking(False)
        await running.sock_sendall(a, b"hi")
        data: bytes = await running.sock_recv(b, 2)
    return s + data.decode()


def direct() -> None:
    loop: ferroloop.Loop = ferroloop.new_event_loop()
    try:
        r: int = loop.run_until_complete(answer())
        print(r)
    finally:
        loop.close()


result: str = ferroloop.run(main(), debug=False)
ferroloop.install()
policy: asyncio.AbstractEventLoopPolicy = ferroloop.EventLoopPolicy()
with asyncio.Runner(loop_factory=ferroloop.new_event_loop) as runner:
    runner.run(main())
fut: ferroloop.Future[int] = ferroloop.Future()
version: str = ferroloop.__version__
handle_types: tuple[type, ...] = (ferroloop.Handle, ferroloop.TimerHandle, ferroloop.Task)
'''

# Each line must be an error: the stubs type these, where a lost or Any-typed stub would not.
BAD = {
    "ferroloop.run(1)": "arg-type",
    "x: str = ferroloop.run(main())": "assignment",
    "loop.call_soon(takes_int, 'one')": "arg-type",
    "loop.call_later('soon', takes_int, 1)": "arg-type",
    "loop.create_task(takes_int(1))": "arg-type",
    "y: str = loop.run_until_complete(main())": "assignment",
    "ferroloop.new_event_loop(1)": "call-arg",
    "ferroloop.install(True)": "call-arg",
    "loop.set_debug()": "call-arg",
    "z: int = loop.time().hex()": "assignment",
}


def test_public_api_snippet_passes_mypy_strict(cache_dir, tmp_path):
    path = tmp_path / "good.py"
    path.write_text(textwrap.dedent(GOOD))
    proc = _mypy(cache_dir, str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_misuse_of_the_public_api_is_reported(cache_dir, tmp_path):
    header = textwrap.dedent('''
        import ferroloop

        def takes_int(x: int) -> None: ...

        async def main() -> int:
            return 1

        loop = ferroloop.new_event_loop()
    ''')
    first = header.count("\n") + 1
    path = tmp_path / "bad.py"
    path.write_text(header + "\n".join(BAD) + "\n")
    proc = _mypy(cache_dir, "--show-error-codes", str(path))
    errors = {}
    for line in proc.stdout.splitlines():
        if ": error: " in line:
            lineno = int(line.split(":")[1])
            errors.setdefault(lineno, []).append(line)
    for i, (code, kind) in enumerate(BAD.items()):
        found = errors.get(first + i, [])
        assert any(f"[{kind}]" in e for e in found), (code, found, proc.stdout)


# stubtest on the two modules that have stubs. By default it also walks every submodule of
# the package (ferroloop.__main__, the benchmark package) and compares its .py source with
# itself, importing whatever it imports.
STUBTEST = """
import sys
from mypy import stubtest
build = stubtest.build_stubs
stubtest.build_stubs = lambda modules, options, find_submodules=False: build(modules, options)
sys.exit(stubtest.main())
"""


def test_stubtest():
    allowlists = ["--allowlist", "tests/stubtest_allowlist.txt"]
    if sys.version_info >= (3, 13):
        allowlists += ["--allowlist", "tests/stubtest_allowlist_313.txt"]
    proc = subprocess.run(
        [sys.executable, "-c", STUBTEST, "ferroloop", "ferroloop._ferroloop",
         "--mypy-config-file", "pyproject.toml", *allowlists],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success: no issues found in 2 modules" in proc.stdout, proc.stdout
