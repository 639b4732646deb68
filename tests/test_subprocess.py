"""Subprocesses: subprocess_exec/_shell, asyncio.create_subprocess_*, pipes, communicate,
wait, signals, the Popen arguments asyncio passes through, and the child watching behind
them (ferroloop: a pidfd in the reactor, no thread per child, no zombie and no leaked fd
when the loop goes away first). Every test runs on stock asyncio too (the reference),
except the few that check a guarantee asyncio does not give (marked where they skip)."""

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
import warnings

import pytest

from conftest import run_with_timeout

PIPE = asyncio.subprocess.PIPE
DEVNULL = asyncio.subprocess.DEVNULL
PY = sys.executable


def fd_count():
    return len(os.listdir("/proc/self/fd"))


def child_state(pid):
    """'running', 'zombie' (exited, not reaped) or 'reaped' (no longer our child)."""
    try:
        res = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return "reaped"
    return "running" if res is None else "zombie"


def wait_reaped(pid, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = child_state(pid)
        if state == "reaped":
            return state
        time.sleep(0.02)
    return child_state(pid)


def test_exec_returncode(loop):
    async def main():
        p = await asyncio.create_subprocess_exec(PY, "-c", "import sys; sys.exit(3)")
        return await p.wait()

    assert run_with_timeout(loop, main()) == 3


def test_shell_stdout(loop):
    async def main():
        p = await asyncio.create_subprocess_shell("echo $((6*7)); exit 5", stdout=PIPE)
        out, err = await p.communicate()
        return out, err, p.returncode

    assert run_with_timeout(loop, main()) == (b"42\n", None, 5)


def test_loop_subprocess_exec_protocol(loop):
    """The transport/protocol API: pipe_data_received, process_exited, connection_lost."""
    events = []

    class Proto(asyncio.SubprocessProtocol):
        def __init__(self):
            self.done = loop.create_future()

        def pipe_data_received(self, fd, data):
            events.append(("data", fd, data))

        def process_exited(self):
            events.append(("exited",))

        def connection_lost(self, exc):
            events.append(("lost", exc))
            self.done.set_result(None)

    async def main():
        transp, proto = await loop.subprocess_exec(
            Proto, PY, "-c", "import sys; sys.stdout.write('out'); sys.stderr.write('err')",
            stdin=None)
        await proto.done
        rc = transp.get_returncode()
        transp.close()
        return rc

    assert run_with_timeout(loop, main()) == 0
    assert ("data", 1, b"out") in events and ("data", 2, b"err") in events
    assert events[-1] == ("lost", None)
    assert ("exited",) in events


def test_communicate_large_both_ways(loop):
    """8 MiB in, the same 8 MiB out and 1 MiB on stderr, all through back-pressure."""
    data = os.urandom(8 * 1024 * 1024)
    code = ("import sys\n"
            "d = sys.stdin.buffer.read()\n"
            "sys.stderr.buffer.write(d[:1 << 20])\n"
            "sys.stdout.buffer.write(d)\n")

    async def main():
        p = await asyncio.create_subprocess_exec(PY, "-c", code, stdin=PIPE, stdout=PIPE,
                                                 stderr=PIPE)
        out, err = await p.communicate(data)
        return out, err, p.returncode

    out, err, rc = run_with_timeout(loop, main(), timeout=30)
    assert rc == 0
    assert hashlib.sha256(out).digest() == hashlib.sha256(data).digest()
    assert err == data[:1 << 20]


def test_stdin_stdout_streams_interactive(loop):
    async def main():
        p = await asyncio.create_subprocess_exec(
            PY, "-u", "-c",
            "import sys\nfor line in sys.stdin: print(line.strip().upper(), flush=True)",
            stdin=PIPE, stdout=PIPE)
        got = []
        for word in (b"a", b"bc", b"def"):
            p.stdin.write(word + b"\n")
            await p.stdin.drain()
            got.append(await p.stdout.readline())
        p.stdin.close()
        await p.stdin.wait_closed()
        return got, await p.wait()

    assert run_with_timeout(loop, main()) == ([b"A\n", b"BC\n", b"DEF\n"], 0)


def test_wait_while_running(loop):
    async def main():
        p = await asyncio.create_subprocess_exec(PY, "-c", "import time; time.sleep(0.2)")
        assert p.returncode is None
        t0 = time.monotonic()
        rc = await p.wait()
        return rc, time.monotonic() - t0, await p.wait()

    rc, waited, again = run_with_timeout(loop, main())
    assert rc == 0 and again == 0
    assert waited > 0.05


@pytest.mark.parametrize("how,expected", [
    ("kill", -signal.SIGKILL),
    ("terminate", -signal.SIGTERM),
    ("send_signal", -signal.SIGUSR1),
    ("self", -signal.SIGABRT),
])
def test_returncode_of_signals(loop, how, expected):
    async def main():
        code = ("import os, signal, sys, time\n"
                "if sys.argv[1] == 'self': os.kill(os.getpid(), signal.SIGABRT)\n"
                "print('ready', flush=True)\n"
                "time.sleep(30)\n")
        p = await asyncio.create_subprocess_exec(PY, "-c", code, how, stdout=PIPE)
        if how != "self":
            assert await p.stdout.readline() == b"ready\n"
            if how == "send_signal":
                p.send_signal(signal.SIGUSR1)
            else:
                getattr(p, how)()
        return await p.wait()

    assert run_with_timeout(loop, main()) == expected


def test_cwd_env_pass_fds(loop, tmp_path):
    r, w = os.pipe()
    code = ("import os, sys\n"
            "os.write(int(sys.argv[1]), b'via-fd')\n"
            "print(os.getcwd()); print(os.environ.get('FERRO_X')); print('PATH' in os.environ)")

    async def main():
        p = await asyncio.create_subprocess_exec(
            PY, "-c", code, str(w), stdout=PIPE, cwd=str(tmp_path),
            env={"FERRO_X": "y"}, pass_fds=(w,))
        out, _ = await p.communicate()
        return out, p.returncode

    try:
        out, rc = run_with_timeout(loop, main())
        assert rc == 0
        assert out.decode().split() == [str(tmp_path), "y", "False"]
        assert os.read(r, 100) == b"via-fd"
    finally:
        os.close(r)
        os.close(w)


def test_start_new_session_and_umask(loop):
    code = "import os; print(os.getsid(0) == os.getpid(), oct(os.umask(0)))"

    async def main():
        p = await asyncio.create_subprocess_exec(PY, "-c", code, stdout=PIPE,
                                                 start_new_session=True, umask=0o027)
        out, _ = await p.communicate()
        return out

    assert run_with_timeout(loop, main()) == b"True 0o27\n"


def test_child_killed_while_writing_to_a_full_pipe(loop):
    """A child blocked writing into a pipe nobody reads is killed: the pipe reports EOF
    after what was buffered, wait() returns -9, and nothing hangs."""
    async def main():
        p = await asyncio.create_subprocess_exec(
            PY, "-c",
            "import sys\nprint('ready', flush=True)\n"
            "while True: sys.stdout.buffer.write(b'x' * 65536)",
            stdout=PIPE, limit=1024)
        assert await p.stdout.readline() == b"ready\n"
        # Let the pipe (and the stream reader, which pauses at its limit) fill up.
        await asyncio.sleep(0.3)
        p.kill()
        # wait() also waits for the pipes to close (asyncio's _try_finish): drain stdout.
        data = await p.stdout.read()
        rc = await p.wait()
        return rc, set(data)

    rc, chars = run_with_timeout(loop, main())
    assert rc == -signal.SIGKILL
    assert chars <= {ord("x")}


def test_exec_errors(loop):
    async def main():
        with pytest.raises(FileNotFoundError):
            await asyncio.create_subprocess_exec("/nonexistent/ferroloop-test-binary")
        with pytest.raises(ValueError):
            await loop.subprocess_shell(asyncio.SubprocessProtocol, ["not", "a", "string"])
        with pytest.raises(ValueError):
            await asyncio.create_subprocess_exec(PY, text=True)
        # The loop still works afterwards.
        p = await asyncio.create_subprocess_exec(PY, "-c", "pass")
        return await p.wait()

    assert run_with_timeout(loop, main()) == 0


def test_no_fd_leak_over_many_children(loop):
    async def once():
        p = await asyncio.create_subprocess_exec("/bin/true", stdout=PIPE)
        await p.communicate()
        return p.returncode

    async def main():
        for _ in range(5):
            await once()
        before = fd_count()
        rcs = [await once() for _ in range(40)]
        # asyncio's pipe transports close their fds one iteration after connection_lost.
        await asyncio.sleep(0.05)
        return rcs, before, fd_count()

    rcs, before, after = run_with_timeout(loop, main(), timeout=30)
    assert rcs == [0] * 40
    assert after == before


def test_many_children_at_once(loop):
    async def one(i):
        p = await asyncio.create_subprocess_exec(PY, "-c", f"import sys; sys.exit({i})",
                                                 stdout=DEVNULL)
        return await p.wait()

    async def main():
        return await asyncio.gather(*(one(i) for i in range(20)))

    assert run_with_timeout(loop, main(), timeout=30) == list(range(20))


def test_user_sigchld_handler_still_called(loop):
    got = []

    async def main():
        loop.add_signal_handler(signal.SIGCHLD, got.append, "chld")
        try:
            p = await asyncio.create_subprocess_exec(PY, "-c", "import sys; sys.exit(7)")
            rc = await p.wait()
            # The handler runs from the signal socket: give it an iteration or two.
            for _ in range(50):
                if got:
                    break
                await asyncio.sleep(0.01)
            return rc
        finally:
            loop.remove_signal_handler(signal.SIGCHLD)

    assert run_with_timeout(loop, main()) == 7
    assert got and set(got) == {"chld"}


def test_loop_closed_with_live_children_leaves_no_zombie_and_no_fd(loop_name, loop_factory):
    """The loop is closed while its children still run: they are reaped once they exit
    (no zombie) and the loop's pidfds are closed (no fd left)."""
    if loop_name == "asyncio" and sys.version_info >= (3, 12):
        pytest.skip("asyncio's PidfdChildWatcher leaves the child to Popen.__del__")
    before = fd_count()
    loop = loop_factory()

    async def spawn():
        return [await asyncio.create_subprocess_exec(
            PY, "-c", "import time; time.sleep(0.3)", stdin=DEVNULL, stdout=DEVNULL,
            stderr=DEVNULL) for _ in range(3)]

    procs = run_with_timeout(loop, spawn())
    pids = [p.pid for p in procs]
    assert [child_state(pid) for pid in pids] == ["running"] * 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        loop.close()
        assert [wait_reaped(pid) for pid in pids] == ["reaped"] * 3
        # ferroloop's reaper closes a pidfd right after reaping its child.
        deadline = time.monotonic() + 2
        while fd_count() > before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert fd_count() == before
        del procs


def test_loop_collected_unclosed_with_live_child_leaves_no_zombie(loop_name, loop_factory):
    if loop_name == "asyncio":
        pytest.skip("asyncio reaps with its child watcher, not through the loop")
    loop = loop_factory()

    async def spawn():
        p = await asyncio.create_subprocess_exec(PY, "-c", "import time; time.sleep(0.2)")
        return p.pid

    pid = run_with_timeout(loop, spawn())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        del loop
        import gc
        gc.collect()
        assert wait_reaped(pid) == "reaped"


def test_no_thread_per_child(loop_name, loop):
    """ferroloop watches children through pidfds in its reactor: no thread is started
    (asyncio's default watcher on 3.11, ThreadedChildWatcher, starts one per child)."""
    if loop_name == "asyncio":
        pytest.skip("asyncio's default watcher may use a thread per child")
    started = []

    async def main():
        p = await asyncio.create_subprocess_exec(PY, "-c", "import time; time.sleep(0.2)")
        # Threads that exist now and did not before (a thread left by an earlier test may
        # end meanwhile: only new ones count).
        started.extend(t for t in threading.enumerate() if t.ident not in before)
        return await p.wait()

    before = {t.ident for t in threading.enumerate()}
    assert run_with_timeout(loop, main()) == 0
    assert started == []



@pytest.mark.skipif(not hasattr(asyncio, "AbstractChildWatcher"),
                    reason="child watchers were removed in 3.14")
def test_user_child_watcher_is_honoured(loop):
    """A watcher of the user's own (here a subclass) is used as asyncio uses it: entered,
    asked is_active(), handed the pid; it reports the exit."""
    from asyncio import unix_events

    calls = []

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)

        class Recording(unix_events.ThreadedChildWatcher):
            def __enter__(self):
                calls.append("enter")
                return super().__enter__()

            def add_child_handler(self, pid, callback, *args):
                calls.append(("add", pid))
                return super().add_child_handler(pid, callback, *args)

        policy = asyncio.get_event_loop_policy()
        saved = policy._watcher
        watcher = Recording()
        policy._watcher = watcher       # set_child_watcher() would close the old one

    async def main():
        p = await asyncio.create_subprocess_exec(PY, "-c", "import sys; sys.exit(4)")
        return p.pid, await p.wait()

    try:
        pid, rc = run_with_timeout(loop, main())
    finally:
        policy._watcher = saved
    assert rc == 4
    assert calls == ["enter", ("add", pid)]


def test_user_pidfd_watcher_subclass(loop):
    """A subclass of asyncio's PidfdChildWatcher is the user's own watcher, used as asyncio
    uses it; it calls the loop's private _add_reader/_remove_reader (asyncio's selector
    loop has them), which ferroloop provides too."""
    from asyncio import unix_events

    calls = []

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)

        class Recording(unix_events.PidfdChildWatcher):
            def add_child_handler(self, pid, callback, *args):
                calls.append(("add", pid))
                return super().add_child_handler(pid, callback, *args)

        policy = asyncio.get_event_loop_policy()
        saved = policy._watcher
        watcher = Recording()
        watcher.attach_loop(loop)       # 3.11's is_active() asks for a running loop
        policy._watcher = watcher

    async def main():
        p = await asyncio.create_subprocess_exec(PY, "-c", "import sys; sys.exit(5)")
        return p.pid, await p.wait()

    try:
        pid, rc = run_with_timeout(loop, main())
    finally:
        policy._watcher = saved
    assert rc == 5
    assert calls == [("add", pid)]


def test_fallback_without_pidfd(loop_name):
    """Where pidfd_open fails (Linux < 5.3, seccomp: ENOSYS/EPERM), ferroloop falls back to
    asyncio's ThreadedChildWatcher: exit codes and pipes work as before."""
    if loop_name == "asyncio":
        pytest.skip("ferroloop's fallback")
    import errno

    import ferroloop

    class NoPidfd(ferroloop.Loop):
        def _watch_child(self, pid, callback, *args):
            raise OSError(errno.ENOSYS, "pidfd_open not available")

    loop = NoPidfd()
    seen = []

    async def main():
        p = await asyncio.create_subprocess_exec(
            PY, "-c", "import sys, time; time.sleep(0.1); print('hi'); sys.exit(9)",
            stdout=PIPE)
        seen.append(any(t.name.startswith("asyncio-waitpid") for t in threading.enumerate()))
        out, _ = await p.communicate()
        return out, p.returncode

    try:
        assert run_with_timeout(loop, main()) == (b"hi\n", 9)
    finally:
        loop.close()
    assert seen == [True]
