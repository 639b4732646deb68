"""Shared fixtures for ferroloop's loop-core tests.

Every behavioural test takes the ``loop`` (or ``loop_factory``) fixture, which is
parametrized over ``["asyncio", "ferroloop"]``: stock asyncio is the reference, so a test
failing only for the ``ferroloop`` param is a ferroloop bug.

Known ferroloop bugs are marked ``@pytest.mark.ferroloop_bug("...")``: that turns into
``xfail(strict=True)`` for the ferroloop param only (so a fix makes the suite fail until
the marker is removed), and does nothing for the asyncio param.
"""

from __future__ import annotations

import asyncio
import faulthandler
import os
import socket
import sys
import threading
import warnings

import pytest

import ferroloop

# tests/cpython is a standalone runner for CPython's own asyncio suite, not pytest tests.
# tests/integration needs third-party frameworks and has its own conftest: it runs only when
# named (``pytest tests/integration``, as tests/run_all.sh does), never as part of ``pytest tests``.
collect_ignore = ["cpython", "integration"]

LOOP_NAMES = ["asyncio", "ferroloop"]

# The native TCP/Unix transports and servers (issue 8) mark their arrival with
# ``LoopCore._make_socket_transport``. Until ferroloop has it, the networking tests
# (``@requires_native_net``, tests/test_net_*.py) skip their ferroloop param only; the
# asyncio param always runs, so the tests themselves stay checked against the reference.
HAS_NATIVE_NET = hasattr(ferroloop.Loop, "_make_socket_transport")
requires_native_net = pytest.mark.requires_native_net

# A hung test (a loop that never wakes up) would otherwise hang the whole run.
PER_TEST_WATCHDOG_SECONDS = float(os.environ.get("FERROLOOP_TEST_WATCHDOG", "60"))


def _asyncio_factory() -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    # The policy is restored around every test (see _restore_policy), so this is stock.
    assert not isinstance(loop, ferroloop.Loop), "asyncio policy leaked from a test"
    return loop


FACTORIES = {"asyncio": _asyncio_factory, "ferroloop": ferroloop.new_event_loop}


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "ferroloop_bug(reason): known ferroloop deviation from asyncio; "
        "xfail(strict=True) for the ferroloop loop param only",
    )
    config.addinivalue_line(
        "markers",
        "requires_native_net: needs ferroloop's native socket transports; the ferroloop "
        "param skips while ferroloop.Loop has no _make_socket_transport",
    )


def pytest_collection_modifyitems(config, items):
    for item in items:
        callspec = getattr(item, "callspec", None)
        is_ferroloop = callspec is not None and callspec.params.get("loop_factory") == "ferroloop"
        if is_ferroloop and not HAS_NATIVE_NET and item.get_closest_marker("requires_native_net"):
            item.add_marker(
                pytest.mark.skip(reason="ferroloop.Loop has no native socket transports yet "
                                 "(no _make_socket_transport)")
            )
        marker = item.get_closest_marker("ferroloop_bug")
        if marker is None:
            continue
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("loop_factory") == "ferroloop":
            item.add_marker(
                pytest.mark.xfail(strict=True, reason="ferroloop bug: " + marker.args[0])
            )


@pytest.fixture(params=LOOP_NAMES)
def loop_factory(request):
    """A zero-argument callable returning a new event loop of the param's kind."""
    return FACTORIES[request.param]


@pytest.fixture
def loop_name(request, loop_factory):
    return request.node.callspec.params["loop_factory"]


@pytest.fixture
def loop(loop_factory):
    """A fresh loop in non-debug mode (even under ``-X dev``), closed after the test."""
    lp = loop_factory()
    lp.set_debug(False)
    yield lp
    if not lp.is_closed() and not lp.is_running():
        lp.close()


@pytest.fixture(autouse=True)
def _restore_policy():
    """Tests may install ferroloop's policy or set a current loop; undo that."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        policy = asyncio.get_event_loop_policy()
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.set_event_loop_policy(policy)
        asyncio.set_event_loop(None)


@pytest.fixture(autouse=True)
def _watchdog(request):
    """Abort the run, with every thread's stack, if one test hangs.

    A Python timer thread reports through pytest's (suspended) capture; it needs the GIL,
    which a loop blocked in its poll releases. faulthandler's C-level watchdog is the
    backstop for a hang that holds the GIL.
    """
    capman = request.config.pluginmanager.getplugin("capturemanager")

    def fire():
        try:
            if capman is not None:
                capman.suspend_global_capture(in_=False)
        finally:
            sys.stderr.write(
                f"\n*** watchdog: {request.node.nodeid} still running after "
                f"{PER_TEST_WATCHDOG_SECONDS}s; thread dump follows, then exit\n"
            )
            sys.stderr.flush()
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
            sys.stderr.flush()
            os._exit(70)

    timer = threading.Timer(PER_TEST_WATCHDOG_SECONDS, fire)
    timer.daemon = True
    timer.start()
    faulthandler.dump_traceback_later(PER_TEST_WATCHDOG_SECONDS + 15, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()
    timer.cancel()


def run_with_timeout(loop, coro, timeout=10.0):
    """Run ``coro`` on ``loop``; a test bug or loop bug fails instead of hanging."""

    async def guarded():
        return await asyncio.wait_for(coro, timeout)

    return loop.run_until_complete(guarded())


def run_briefly(loop, iterations=1):
    """Run ``iterations`` loop iterations (a zero-delay stop at the end of each)."""
    for _ in range(iterations):
        loop.call_soon(loop.stop)
        loop.run_forever()


@pytest.fixture
def sockpair():
    """A connected pair of non-blocking sockets, closed after the test."""
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()
