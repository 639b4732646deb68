"""examples/demo.py runs, on ferroloop both directly and through the CLI, with the
same deterministic results as on stock asyncio."""

import pathlib
import subprocess
import sys

import pytest

DEMO = pathlib.Path(__file__).resolve().parent.parent / "examples" / "demo.py"

INVOCATIONS = {
    "plain": ([str(DEMO)], "loop: ferroloop.Loop"),
    "cli": (["-m", "ferroloop", "run", str(DEMO)], "loop: ferroloop.Loop"),
    "stock": ([str(DEMO), "--stock-asyncio"], "loop: asyncio."),
}


def _deterministic(stdout):
    return [line for line in stdout.splitlines() if not line.startswith(("loop:", "[timing]"))]


@pytest.fixture(scope="module")
def stock_output():
    proc = subprocess.run([sys.executable, *INVOCATIONS["stock"][0]], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("how", ["plain", "cli", "stock"])
def test_demo(how, stock_output):
    args, loop_line = INVOCATIONS[how]
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60, cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(loop_line), lines[0]
    assert "jobs produced:          240" in lines
    assert lines[-1].startswith("[timing] elapsed ")
    assert _deterministic(proc.stdout) == _deterministic(stock_output)
