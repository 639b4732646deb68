"""Integration tests: real frameworks talking to ferroloop over loopback.

Run them with ``python -m pytest -p no:cacheprovider tests/integration`` after
``pip install -r tests/integration/requirements.txt`` (``tests/run_all.sh`` does both, on every
CPython it tests). This directory is its own pytest root (``pytest.ini``), so ferroloop's unit
test fixtures (tests/conftest.py) are not loaded here; ``pytest tests`` does not collect it
(tests/conftest.py's ``collect_ignore``), so ferroloop's own suite needs no framework.

Every test runs on stock asyncio (the reference) and on ferroloop (param ``loop_name``); on
the ferroloop param it asserts that the framework's code really ran on a ``ferroloop.Loop``
(``type(asyncio.get_running_loop()).__module__`` starts with ``"ferroloop"``).

A framework that is not installed makes its tests skip (``pytest.importorskip``); with
``FERROLOOP_INTEGRATION_STRICT=1`` (what ``tests/run_all.sh`` sets) any skip fails the run, so
in CI every integration test must really run.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import sys
import warnings

import pytest

from _integ import LOOP_NAMES

STRICT = os.environ.get("FERROLOOP_INTEGRATION_STRICT") == "1"
TEST_TIMEOUT = float(os.environ.get("FERROLOOP_INTEGRATION_TIMEOUT", "120"))


@pytest.fixture(params=LOOP_NAMES)
def loop_name(request) -> str:
    return request.param


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


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "allow_loop_errors(prefix): an asyncio-logger error starting with prefix "
        "is expected (asyncio logs it too)")


@pytest.fixture(autouse=True)
def _no_loop_errors(request, caplog):
    """Errors the loop reports (unhandled exceptions in callbacks, tasks destroyed while
    pending, "Task exception was never retrieved", ...) go to the ``asyncio`` logger: a test
    during which it logged an error fails, on either loop."""
    caplog.set_level(logging.WARNING, logger="asyncio")
    yield
    allowed = tuple(m.args[0] for m in request.node.iter_markers("allow_loop_errors"))
    errors = [r for r in caplog.get_records("call") + caplog.get_records("teardown")
              if r.name == "asyncio" and r.levelno >= logging.ERROR
              and not (allowed and r.getMessage().startswith(allowed))]
    assert not errors, "the loop logged errors:\n" + "\n".join(
        caplog.handler.format(r) for r in errors)


@pytest.fixture(autouse=True)
def _watchdog(request):
    """A hung test dumps every thread's stack and ends the run instead of hanging CI."""
    faulthandler.dump_traceback_later(TEST_TIMEOUT, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


_skipped: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        _skipped.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session, exitstatus):
    if STRICT and _skipped:
        sys.stderr.write(
            "\nFERROLOOP_INTEGRATION_STRICT=1: integration tests must run, these skipped:\n  "
            + "\n  ".join(_skipped) + "\n"
        )
        session.exitstatus = 1
