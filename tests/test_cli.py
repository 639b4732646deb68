"""The command line (``python -m ferroloop`` and the ``ferroloop`` console script): ``run``
behaves as ``python SCRIPT`` / ``python -m MODULE`` with ferroloop as the loop, ``--version``,
``info``, and ``bench`` end to end (a scheduling and a network workload, a loop that is not
installed, ``--json`` and ``--plot``); the benchmarks' Rust echo client and floor server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import sysconfig
import textwrap
import threading
import time

import pytest

import ferroloop
from ferroloop._ferroloop import _echo_client

PY = sys.executable

SCRIPT = """\
import asyncio, json, os, sys

async def main():
    return type(asyncio.get_running_loop()).__module__ + "." + type(asyncio.get_running_loop()).__qualname__

print(json.dumps({"argv": sys.argv, "loop": asyncio.run(main()), "name": __name__,
                  "path0": os.path.realpath(sys.path[0])}))
"""


def run(args, cwd=None, timeout=60, python=True):
    cmd = [PY, "-m", "ferroloop", *args] if python else args
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)


def test_version():
    p = run(["--version"])
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"ferroloop {ferroloop.__version__}"


def test_console_script():
    exe = os.path.join(sysconfig.get_path("scripts"), "ferroloop")
    assert os.path.exists(exe), "pip install . makes the `ferroloop` console script"
    p = run([exe, "--version"], python=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"ferroloop {ferroloop.__version__}"
    p = run([exe, "--help"], python=False)
    assert p.returncode == 0 and "usage: ferroloop" in p.stdout
    for cmd in ("run", "bench", "info"):
        assert cmd in p.stdout


def test_info():
    p = run(["info"])
    assert p.returncode == 0, p.stderr
    assert f"ferroloop {ferroloop.__version__}" in p.stdout
    assert "loop ferroloop.Loop; asyncio.AbstractEventLoop: True" in p.stdout


def test_run_script_with_args(tmp_path):
    (tmp_path / "prog.py").write_text(SCRIPT)
    p = run(["run", str(tmp_path / "prog.py"), "a", "--flag", "-m", "x"], cwd="/")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out == {"argv": [str(tmp_path / "prog.py"), "a", "--flag", "-m", "x"],
                   "loop": "ferroloop.Loop", "name": "__main__",
                   "path0": os.path.realpath(tmp_path)}


@pytest.mark.parametrize("via", ["python -m", "script"])
def test_run_module(tmp_path, via):
    # As `python -m mod`: found from the working directory, argv[0] is the module's file.
    (tmp_path / "benchmod.py").write_text(SCRIPT)
    args = ["run", "-m", "benchmod", "x", "--y"]
    if via == "script":
        p = run([os.path.join(sysconfig.get_path("scripts"), "ferroloop"), *args],
                cwd=tmp_path, python=False)
    else:
        p = run(args, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["argv"] == [str(tmp_path / "benchmod.py"), "x", "--y"]
    assert out["loop"] == "ferroloop.Loop"
    assert out["name"] == "__main__"
    assert out["path0"] == os.path.realpath(tmp_path)


@pytest.mark.parametrize("body, code, last", [
    ("import sys; sys.exit(3)", 3, None),
    ("raise SystemExit('bye')", 1, "bye"),
    ("raise ValueError('boom')", 1, "ValueError: boom"),
    ("import sys; print('ok'); sys.exit(0)", 0, None),
])
def test_run_exit_status_and_exceptions_as_python(tmp_path, body, code, last):
    script = tmp_path / "fail.py"
    script.write_text(body + "\n")
    ref = subprocess.run([PY, str(script)], capture_output=True, text=True, timeout=60)
    p = run(["run", str(script)])
    assert ref.returncode == code
    assert p.returncode == code, p.stderr
    assert p.stdout == ref.stdout
    if last is not None:
        assert p.stderr.strip().splitlines()[-1] == last == ref.stderr.strip().splitlines()[-1]


def test_run_module_missing():
    p = run(["run", "-m", "no_such_module_here"])
    assert p.returncode == 1
    assert "No module named no_such_module_here" in p.stderr


# ---------------------------------------------------------------------------
# bench
# ---------------------------------------------------------------------------


def test_bench_quick_end_to_end(tmp_path):
    """One scheduling and one network workload on ferroloop, asyncio, the Rust floor and a
    loop that is not installed: a table, JSON, a PNG chart (or matplotlib's install hint)."""
    try:
        import matplotlib  # noqa: F401
        have_mpl = True
    except ImportError:
        have_mpl = False
    j, png = tmp_path / "j.json", tmp_path / "p.png"
    args = ["bench", "--quick", "--runs", "1", "--no-bar", "--loops",
            "ferroloop,asyncio,mio,nosuchloop", "--workloads", "call_soon,tcp_1k",
            "--json", str(j), "--plot", str(png)]
    t0 = time.monotonic()
    p = run(args, timeout=120)
    elapsed = time.monotonic() - t0
    if not have_mpl:
        assert p.returncode == 2
        assert "pip install 'ferroloop[bench]'" in p.stderr
        args.remove("--plot")
        args.remove(str(png))
        p = run(args, timeout=120)
    assert p.returncode == 0, p.stderr
    assert elapsed < 60, elapsed  # about 10 s; the bound is for a loaded CI machine
    assert "nosuchloop" in p.stderr and "not available" in p.stderr
    assert "Skipped loops: nosuchloop (ModuleNotFoundError" in p.stdout
    lines = p.stdout.splitlines()
    header = next(ln for ln in lines if ln.startswith("| workload"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "workload", "unit", "ferroloop", "asyncio", "mio", "ferroloop/asyncio", "ferroloop/mio"]
    assert any(ln.startswith("| call_soon ") for ln in lines)
    assert any(ln.startswith("| tcp_1k ") for ln in lines)

    doc = json.loads(j.read_text())
    assert doc["ferroloop"] == ferroloop.__version__
    assert doc["python"] == ".".join(map(str, sys.version_info[:3]))
    assert doc["machine"]["cores"] >= 1 and doc["machine"]["cpu"]
    assert set(doc["loops"]) == {"ferroloop", "asyncio"}
    assert "nosuchloop" in doc["unavailable_loops"]
    assert set(doc["stats"]) == {"call_soon", "tcp_1k"}
    assert set(doc["stats"]["call_soon"]) == {"ferroloop", "asyncio"}
    assert set(doc["stats"]["tcp_1k"]) == {"ferroloop", "asyncio", "mio"}
    for wl, per in doc["stats"].items():
        for lp, st in per.items():
            assert st["ops_per_s"] and st["ops_per_s"] > 100, (wl, lp, st)
            assert st["errors"] == []
    run0 = doc["results"]["tcp_1k"]["ferroloop"][0]
    assert run0["msgs"] > 0 and 0 < run0["server_cpu"] < 2.5 and run0["client_cpu"] > 0
    if have_mpl:
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(data) > 20_000


def test_bench_unknown_workload():
    p = run(["bench", "--workloads", "nosuchworkload"])
    assert p.returncode != 0
    assert "unknown workload 'nosuchworkload'" in p.stderr


def test_bench_list():
    p = run(["bench", "--list"])
    assert p.returncode == 0
    for wl in ("call_soon", "gather", "tcp_1k", "udp_1k", "http_uvicorn"):
        assert wl in p.stdout


def test_bench_loop_without_an_api_is_na_not_a_crash(tmp_path, capsys, monkeypatch):
    """A loop that lacks an API a network workload needs (here create_unix_server, as
    rloop 0.5 lacks it) gets its server's one-line ``NA <reason>`` (naming the API), and
    the reports show that cell as n/a with the reason while the other loops' figures
    stand."""
    import asyncio
    import types

    from ferroloop._bench import cli, net, servers

    class NoUnixLoop(asyncio.SelectorEventLoop):
        async def create_unix_server(self, *args, **kwargs):
            raise NotImplementedError

    made = []
    mod = types.ModuleType("nounixloop")
    mod.new_event_loop = lambda: made.append(NoUnixLoop()) or made[-1]
    monkeypatch.setitem(sys.modules, "nounixloop", mod)
    try:
        rc = servers.main(["nounixloop", "unix_proto", "--unix", str(tmp_path / "s.sock")])
    finally:
        asyncio.set_event_loop(None)
        for lp in made:
            lp.close()
    out = capsys.readouterr().out
    assert rc == 3
    assert out == "NA NotImplementedError (in create_unix_server)\n"

    na = out[3:].strip()
    # ferroloop bench copies msgs_per_s to ops_per_s for the network workloads
    results = {"unix_1k": {"ferroloop": [{"msgs_per_s": 50_000.0, "ops_per_s": 50_000.0,
                                          "rep": 0}],
                           "nounixloop": [{"na": na, "rep": 0}]}}
    text, stats = net.summarize(results, ["ferroloop", "nounixloop"], ["unix_1k"])
    assert stats["unix_1k"]["nounixloop"] == {"median": None, "errors": [], "na": [na]}
    assert stats["unix_1k"]["ferroloop"]["median"] == 50_000.0
    assert f"| nounixloop | n/a: {na}" in text

    st = {wl: {lp: cli.stats_of(runs) for lp, runs in per.items()}
          for wl, per in results.items()}
    table = cli.report(st, ["ferroloop", "nounixloop"], ["unix_1k"])
    row = next(ln for ln in table.splitlines() if ln.startswith("| unix_1k "))
    assert [c.strip() for c in row.strip("|").split("|")] == [
        "unix_1k", "round trips/s", "50k", "n/a", ""]
    assert f"unix_1k on nounixloop: n/a: {na}" in table


# ---------------------------------------------------------------------------
# the Rust echo client and floor server (ferroloop._ferroloop._echo_client/_echo_server)
# ---------------------------------------------------------------------------


def _thread_server(handler):
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(10)

    def serve():
        conns = []
        try:
            while True:
                c, _ = srv.accept()
                conns.append(c)
                threading.Thread(target=handler, args=(c,), daemon=True).start()
        except OSError:
            pass

    threading.Thread(target=serve, daemon=True).start()
    return srv


def _echo(conn, mangle=lambda b: b):
    try:
        while data := conn.recv(65536):
            conn.sendall(mangle(data))
    except OSError:
        pass
    finally:
        conn.close()


def test_echo_client_counts_round_trips():
    srv = _thread_server(_echo)
    windows = []
    try:
        host, port = srv.getsockname()
        res = _echo_client("tcp", f"{host}:{port}", 2, 300, 0.05, 0.3, lambda: windows.append(1))
    finally:
        srv.close()
    assert windows == [1]
    assert res["msgs"] > 10 and res["conns"] == 2 and res["size"] == 300
    assert res["msgs_per_s"] == pytest.approx(res["msgs"] / res["secs"])
    assert 0.25 < res["secs"] < 5 and res["client_cpu"] >= 0


def test_echo_client_rejects_a_wrong_echo():
    srv = _thread_server(lambda c: _echo(c, lambda b: bytes(reversed(b))))
    try:
        host, port = srv.getsockname()
        with pytest.raises(OSError, match="differ"):
            _echo_client("tcp", f"{host}:{port}", 1, 64, 0.0, 2.0)
    finally:
        srv.close()


def test_echo_client_bad_arguments():
    with pytest.raises(ValueError):
        _echo_client("sctp", "127.0.0.1:1")
    with pytest.raises(ValueError):
        _echo_client("tcp", "not an address")
    with pytest.raises(ValueError):
        _echo_client("tcp", "127.0.0.1:1", conns=0)


def test_echo_floor_server_udp_and_ctrl_c():
    """The floor server answers UDP datagrams and stops on SIGINT (a signal handler raising
    while the GIL is released)."""
    # Python leaves SIGINT ignored when it starts with it ignored, as every command of a
    # background job of a non-interactive shell does (`bash tests/run_all.sh &`): the
    # child sets Python's own Ctrl-C handler itself.
    code = textwrap.dedent("""
        import signal
        from ferroloop._ferroloop import _echo_server
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            _echo_server("udp", "127.0.0.1:0", lambda k, a: print("READY", k, a, flush=True))
        except KeyboardInterrupt:
            print("interrupted", flush=True)
    """)
    p = subprocess.Popen([PY, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        kind_addr = p.stdout.readline().split()
        assert kind_addr[:2] == ["READY", "udp"]
        host, port = kind_addr[2].rsplit(":", 1)
        res = _echo_client("udp", f"{host}:{port}", 3, 512, 0.05, 0.3)
        assert res["msgs"] > 10 and res["stale"] >= 0
        p.send_signal(2)
        out, _ = p.communicate(timeout=10)
        assert out.strip() == "interrupted"
        assert p.returncode == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_echo_floor_with_a_python_protocol():
    """``echo server --protocol``: the floor's loop calls the Python protocol per read; every
    echo comes back intact (the client checks each byte), the protocol sees each connection
    made and lost, and SIGINT stops the server."""
    code = textwrap.dedent("""
        import signal
        from ferroloop._ferroloop import _echo_server_protocol
        from ferroloop._bench.servers import EchoProtocol
        signal.signal(signal.SIGINT, signal.default_int_handler)
        class Told(EchoProtocol):
            __slots__ = ()
            def connection_made(self, transport):
                print("made", flush=True)
                super().connection_made(transport)
            def connection_lost(self, exc):
                print("lost", exc, flush=True)
                super().connection_lost(exc)
        try:
            _echo_server_protocol("127.0.0.1:0", Told,
                                  lambda k, a: print("READY", k, a, flush=True))
        except KeyboardInterrupt:
            print("interrupted", flush=True)
    """)
    p = subprocess.Popen([PY, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        kind_addr = p.stdout.readline().split()
        assert kind_addr[:2] == ["READY", "tcp"]
        res = _echo_client("tcp", kind_addr[2], 3, 10_000, 0.05, 0.3)
        assert res["msgs"] > 3
        # The client has closed its connections: the protocol hears each go.
        lines = [p.stdout.readline().strip() for _ in range(6)]
        assert sorted(lines) == ["lost None"] * 3 + ["made"] * 3
        p.send_signal(2)
        out, _ = p.communicate(timeout=10)
        assert out.strip() == "interrupted"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_progress_plain_lines_and_bar(capsys):
    from ferroloop._bench.common import Progress

    with Progress(2, bar=False) as prog:
        prog.running("a on b")
        prog.step("first")
        prog.step("second")
    assert capsys.readouterr().err.splitlines() == ["[   1/2] first", "[   2/2] second"]
    with Progress(2, quiet=True) as prog:
        prog.step("x")
    assert capsys.readouterr().err == ""
    try:
        import rich  # noqa: F401
    except ImportError:
        rich = None
    with Progress(1, bar=True) as prog:  # rich when installed, else plain lines
        assert (prog._rich is not None) == (rich is not None)
        prog.running("w on l")
        prog.step("done")
    assert prog._rich is None
