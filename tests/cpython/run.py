#!/usr/bin/env python3
"""Run CPython's own asyncio test suite (``test.test_asyncio``) on ferroloop and gate on it.

Usage::

    python tests/cpython/run.py [--json OUT] [--core] [--net] [--stock] [-v] [-j N]
                                [--fail-under PCT] [--stock-dir DIR] [module ...]

    python tests/cpython/run.py --core --json out.json        # the gate CI runs
    python tests/cpython/run.py -v test_locks test_tasks      # regressions with tracebacks
    python tests/cpython/run.py --stock test_locks            # plain asyncio, for reference

The suite is the one shipped with the interpreter running this script (run it with each
Python you care about). Modules are given as ``test_locks`` (or ``locks``); without any, all
``test_asyncio`` modules of that Python except ``skips.EXCLUDED_MODULES`` run. ``--core``
adds ``CORE_MODULES``, the set CI gates on (it includes the networking modules); ``--net`` adds
only ``NET_MODULES``, the networking modules (TCP and Unix transports, servers, streams,
``sock_*``, sendfile).

Substitution. Each module runs in its own subprocess. Before the test module is imported,
the child makes every way a test gets a "default" loop produce a ``ferroloop.Loop``:

* ``asyncio.set_event_loop_policy(ferroloop.EventLoopPolicy())``;
* ``asyncio.DefaultEventLoopPolicy._loop_factory`` -> ferroloop, so that after a test's
  ``asyncio.set_event_loop_policy(None)`` the re-created default policy (events.py,
  ``_init_event_loop_policy``) still makes ferroloop loops. ``asyncio.new_event_loop()``,
  ``asyncio.run()``, ``asyncio.Runner()`` and ``unittest.IsolatedAsyncioTestCase`` all go
  through the policy's ``new_event_loop()``;
* on 3.12+: ``asyncio.EventLoop`` -> ``ferroloop.Loop`` (``loop_factory=asyncio.EventLoop``);
* in ``skips.BASE_LOOP_MODULES``: ``asyncio.BaseEventLoop()``, which those modules' tests use
  as "an event loop";
* in the ``LOOP_MIRRORS`` classes (below): ``asyncio.SelectorEventLoop(...)``.

The child checks that this took (``asyncio.new_event_loop()``, the default policy after
``set_event_loop_policy(None)``, ``asyncio.Runner``) and refuses to run otherwise. Tests that
construct asyncio's own loop classes on purpose (test_utils' ``TestLoop``,
``asyncio.BaseEventLoop()`` elsewhere) keep them: they test asyncio. In test_futures,
test_tasks and test_eager_task_factory the child also adds ``MIRRORS``: copies of the C
implementation's test classes with ferroloop's ``Future``/``Task`` swapped in, compared with
the C classes' stock outcomes. Likewise ``LOOP_MIRRORS``: a copy of one class whose tests take
``asyncio.SelectorEventLoop(...)`` as "the event loop" (test_events' ``EPollEventLoopTests``,
test_server's ``SelectorStartServerTests``, ...), in which that call makes a ferroloop loop,
compared with the stock outcomes of the class it copies; the original classes (one per
selector) keep asyncio's loop, are ``skips.INTERNAL_CLASSES`` and are left out of ferroloop
runs (``LOOP_MIRRORED``). Every mirror expected for a module must be made and run.

Observation. For every test the child records whether it ran on ferroloop: it asked for a
ferroloop loop through one of the paths above, a ferroloop loop ran
(``asyncio.events._set_running_loop`` saw one), or it fetched ferroloop's Future/Task from a
mirror class. Only those tests make up ferroloop's row ("on ferroloop"); the rest (asyncio's
own Py/C classes on its ``TestLoop``, helper functions) are the "stock-only" row.

The gate (exit status), against the stock outcomes ``cpython_X.Y.json`` of the nearest
``shared/cpython-stock`` directory above the repository (or ``--stock-dir``):

* 1 if any test that passes on stock asyncio does not pass here (fails, errors, is skipped
  or did not run), in either row, unless ``skips.SKIPS`` turns it into a skip (it cannot
  apply to ferroloop) or ``skips.KNOWN_DIFFERENCES`` lists it (it runs and must not pass:
  a listed test that passes fails the gate, like an unexpected success); tests of
  ``skips.INTERNAL_CLASSES`` are gated only if observed on ferroloop; a test of
  ``skips.DEFERRED`` (a part of the loop that another open issue builds: UDP, pipes,
  subprocesses) is not gated while it does not pass, and fails the gate once it
  passes, until its entry is removed (like a known difference);
  1 also if a ``setUpClass``/``tearDownClass``/``setUpModule``/``tearDownModule`` (or class
  cleanup) errors, or, with ``--fail-under PCT``, if a module's ferroloop row passes less
  than PCT %;
* 2 if a module could not be measured: it is absent, raises ``SkipTest`` at import, or has no
  stock outcomes (unless ``skips.UNAVAILABLE_MODULES`` names it for this Python), could not be
  imported, crashed or hung outside a test, or an expected mirror class is missing or ran
  nothing; or if ferroloop cannot be substituted, or the stock outcomes file is missing.

Tests listed in ``skips.SKIPS`` are turned into skips (with their reason) before running.
A test that hangs longer than ``--test-timeout`` or crashes the interpreter is recorded as an
error (with the faulthandler traceback) and the module resumes after it in a new process;
a module gets ``--timeout`` seconds in all. Problems not attributable to one test (import
error, crash/hang outside a test, module timeout) are recorded as the pseudo-test
``__run__`` with outcome "error".

Output: a per-module table (stock-passing tests and how many pass here, on ferroloop and
stock-only apart, known differences), then the regressions and every other gate failure;
``-v`` adds the end of each one's traceback. ``--json OUT`` writes::

    {"python": "3.11.7",
     "modules": {"test_locks": {"passed": N, "failed": N, "errors": N, "skipped": N,
                                "tests": {"TestClass.test_name": "pass", ...},
                                "on_ferroloop": {"TestClass.test_name": ["loop"], ...},
                                "fixture_errors": {"tearDownClass (...)": "traceback"},
                                "gate": {"ferroloop": [stock_pass, pass],
                                         "stock_only": [stock_pass, pass], "internal": N,
                                         "known": [...], "deferred": [...],
                                         "regressions": [...], ...}}},
     "skips": {"TestClass.test_name": "reason", ...},
     "problems": ["..."]}

with outcomes pass, fail, error, skip, xfail, xpass; on_ferroloop kinds "loop" (made or ran
a ferroloop loop) and "impl" (used ferroloop's Future/Task through a mirror class).

Standard library only.
"""

import argparse
import concurrent.futures
import gc
import importlib.util
import json
import os
import pkgutil
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
STOCK_SUBDIR = Path("shared") / "cpython-stock"

# The networking modules (`--net`): TCP and Unix transports, servers, streams, the sock_* API and
# sendfile, with their loop tests on ferroloop through LOOP_MIRRORS; their tests of UDP, pipes and
# subprocesses are skips.DEFERRED to the issue that builds those.
NET_MODULES = [
    "test_events", "test_sock_lowlevel", "test_server", "test_streams",
    "test_buffered_proto", "test_sendfile", "test_unix_events",
]

# The set CI gates on (`--core`): the whole suite but skips.EXCLUDED_MODULES (the loop core,
# the native Future/Task modules, test_base_events (its tests that run on ferroloop;
# skips.INTERNAL_CLASSES), networking, subprocesses, TLS). `--core` reports a module of the
# running Python that is in neither list.
CORE_MODULES = [
    "test_locks", "test_queues", "test_context", "test_pep492", "test_runners",
    "test_timeouts", "test_waitfor", "test_threads", "test_taskgroups",
    "test_futures", "test_futures2", "test_tasks", "test_eager_task_factory",
    "test_base_events", "test_subprocess", "test_ssl", "test_sslproto", "test_staggered",
] + NET_MODULES

RUN_ID = "__run__"          # pseudo-test for failures not attributable to one test
MAX_RESTARTS = 50           # per module, after crashes/hangs inside a test
TB_LINES = 12               # traceback lines shown per regression with -v


# Stock outcomes kept in this repository, for a Python the shared directory lacks.
OWN_STOCK_DIR = Path(__file__).resolve().parent / "stock"


def default_stock_dir():
    """``shared/cpython-stock`` in the nearest directory above the repository that has one
    (the integration checkout and its worktrees share it)."""
    for parent in REPO.parents:
        if (parent / STOCK_SUBDIR).is_dir():
            return parent / STOCK_SUBDIR
    return REPO.parent / STOCK_SUBDIR


_CONFIG = None


def config():
    """skips.py next to this file, loaded once (without writing bytecode next to it)."""
    global _CONFIG
    if _CONFIG is None:
        spec = importlib.util.spec_from_file_location("_ferroloop_cpython_skips",
                                                      HERE / "skips.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        _CONFIG = mod
    return _CONFIG


def available_modules():
    """Names of the test_* modules in this interpreter's test.test_asyncio package."""
    spec = importlib.util.find_spec("test.test_asyncio")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("this Python has no test.test_asyncio package (install its test suite)")
    return sorted(m.name for m in pkgutil.iter_modules(spec.submodule_search_locations)
                  if m.name.startswith("test_"))


def normalize(name):
    name = name.removeprefix("test.test_asyncio.").removesuffix(".py")
    return name if name.startswith("test_") else "test_" + name


# ----------------------------------------------------------------------------------------------
# Child side: runs one module (in its own process) and streams results as JSON lines.
# ----------------------------------------------------------------------------------------------

class Observer:
    """Counts, in the child, the ways a test can touch ferroloop; the runner compares the counts
    before and after each test. ``loops``: a ferroloop loop was asked for through one of the
    substituted paths, or one ran (``asyncio.events._set_running_loop`` was handed one);
    ``impl``: ferroloop's Future/Task (or a mirror helper making one) was fetched from a
    mirror class."""

    def __init__(self):
        self.loops = 0
        self.impl = 0

    def snapshot(self):
        return (self.loops, self.impl)

    def kinds(self, before):
        """What happened since ``snapshot()`` returned ``before``: a list of "loop", "impl"."""
        return [k for k, a, b in zip(("loop", "impl"), before, self.snapshot()) if b > a]


OBSERVER = Observer()


class Observed:
    """A mirror class's attribute holding one of ferroloop's implementations (a class, or a
    function making an instance): hands out the very same object (so ``isinstance``,
    subclassing and ``cls.__new__`` behave as with a plain attribute) and counts each fetch,
    on the instance or on the class (test_tasks reads ``self.__class__.Task``)."""

    def __init__(self, value, observer):
        self.value = value
        self.observer = observer

    def __get__(self, obj, owner=None):
        self.observer.impl += 1
        value = self.value
        if obj is not None and hasattr(value, "__get__") and not isinstance(value, type):
            return value.__get__(obj, owner)    # a function: bind it like a method
        return value


def install_ferroloop(module=None, observer=OBSERVER):
    """Make every default-loop path of asyncio produce ferroloop loops, counting in
    ``observer.loops`` each loop asked for through them and each ferroloop loop that runs.

    For the modules in ``skips.BASE_LOOP_MODULES``, ``asyncio.BaseEventLoop()`` (which those
    tests use as "a plain event loop") makes ferroloop loops too. (``LOOP_MIRRORS`` classes
    substitute ``asyncio.SelectorEventLoop`` themselves, test by test.)

    Raises RuntimeError when the substitution does not take.
    """
    import asyncio
    import ferroloop

    def counted(factory):
        def new_event_loop():
            observer.loops += 1         # counted before the call: a test whose loop
            return factory()            # creation raises still ran on ferroloop
        return new_event_loop

    # The policy a test finds installed. Counted per instance, so its type stays ferroloop's.
    policy = ferroloop.EventLoopPolicy()
    policy.new_event_loop = counted(policy.new_event_loop)
    asyncio.set_event_loop_policy(policy)

    # The policy asyncio re-creates after set_event_loop_policy(None): events.py
    # _init_event_loop_policy() instantiates asyncio.DefaultEventLoopPolicy, whose
    # new_event_loop() returns self._loop_factory() (BaseDefaultEventLoopPolicy).
    asyncio.DefaultEventLoopPolicy._loop_factory = staticmethod(counted(ferroloop.Loop))

    # 3.12+: asyncio.EventLoop is the documented loop_factory for the platform's default loop.
    # Left a class (tests may isinstance() it); its loops are seen when they run.
    if hasattr(asyncio, "EventLoop"):
        asyncio.EventLoop = ferroloop.Loop
        for modname in ("unix_events", "windows_events"):
            mod = getattr(asyncio, modname, None)
            if mod is not None and hasattr(mod, "EventLoop"):
                mod.EventLoop = ferroloop.Loop

    # Every loop that runs: ferroloop's run_forever, like asyncio's, looks
    # asyncio.events._set_running_loop up at call time.
    set_running_loop = asyncio.events._set_running_loop

    def observed_set_running_loop(loop):
        if isinstance(loop, ferroloop.Loop):
            observer.loops += 1
        return set_running_loop(loop)

    asyncio.events._set_running_loop = observed_set_running_loop

    # Modules whose tests take asyncio.BaseEventLoop() as "an event loop" (their mocks only
    # set attributes that ferroloop does not use).
    if module in config().BASE_LOOP_MODULES:
        asyncio.BaseEventLoop = counted(ferroloop.Loop)

    # Check every path, then put the ferroloop policy back.
    def check(what, loop):
        try:
            if not isinstance(loop, ferroloop.Loop):
                raise RuntimeError("ferroloop not substituted: %s gave %s.%s" % (
                    what, type(loop).__module__, type(loop).__qualname__))
        finally:
            loop.close()

    check("asyncio.new_event_loop()", asyncio.new_event_loop())
    asyncio.set_event_loop_policy(None)
    check("asyncio.new_event_loop() after set_event_loop_policy(None)", asyncio.new_event_loop())
    with asyncio.Runner() as runner:
        if not isinstance(runner.get_loop(), ferroloop.Loop):
            raise RuntimeError("ferroloop not substituted: asyncio.Runner() made %r"
                               % runner.get_loop())
    if hasattr(asyncio, "EventLoop"):
        check("asyncio.EventLoop()", asyncio.EventLoop())
    asyncio.set_event_loop_policy(policy)
    asyncio.set_event_loop(None)


# Test classes parametrized by ferroloop's own implementations, the way CPython parametrizes
# them by its C and pure-Python ones: module -> {ferroloop class: C-implementation class}.
# Each ferroloop class subclasses the C one (so it also runs the C-only tests) with the
# implementation swapped; its outcomes are compared with the C class's stock outcomes.
# Every one is expected on every build and Python that has the module (the gate errors
# otherwise): ferroloop always exports Future and Task.
MIRRORS = {
    "test_futures": {
        "FerroloopFutureTests": "CFutureTests",
        "FerroloopSubFutureTests": "CSubFutureTests",
        "FerroloopFutureDoneCallbackTests": "CFutureDoneCallbackTests",
        "FerroloopSubFutureDoneCallbackTests": "CSubFutureDoneCallbackTests",
        "FerroloopFutureInheritanceTests": "CFutureInheritanceTests",
    },
    "test_tasks": {
        "FerroloopTask_FerroloopFuture_Tests": "CTask_CFuture_Tests",
        "FerroloopTask_FerroloopFuture_SubclassTests": "CTask_CFuture_SubclassTests",
        "FerroloopCurrentLoopTests": "CCurrentLoopTests",
    },
    "test_eager_task_factory": {
        "FerroloopEagerTaskFactoryLoopTests": "CEagerTaskFactoryLoopTests",
        "FerroloopNonEagerTaskTests": "NonEagerCTaskTests",
        "FerroloopEagerTaskTests": "EagerCTaskTests",
    },
}


def mirror_attrs(module, mod):
    """What each mirror class overrides: {C class name: {attribute: value}}. The key
    "__decorate__" names a class decorator of the test module to apply again to the mirror
    (one that wraps the class's Task/Future, which must now wrap ferroloop's). Raises
    AttributeError if this ferroloop build lacks Future or Task."""
    import ferroloop

    future = ferroloop.Future
    task = ferroloop.Task
    if module == "test_futures":
        class SubFuture(future):
            pass

        return {
            "CFutureTests": {"cls": future},
            "CSubFutureTests": {"cls": SubFuture},
            "CFutureDoneCallbackTests": {"_new_future": lambda self: future(loop=self.loop)},
            "CSubFutureDoneCallbackTests": {
                "_new_future": lambda self: SubFuture(loop=self.loop)},
            "CFutureInheritanceTests": {"_get_future_cls": lambda self: future},
        }
    if module == "test_tasks":
        return {
            "CTask_CFuture_Tests": {"Task": task, "Future": future},
            "CTask_CFuture_SubclassTests": {
                "Task": task, "Future": future,
                "__decorate__": getattr(mod, "add_subclass_tests", None)},
            "CCurrentLoopTests": {"new_task": lambda self, coro: task(coro, loop=self.loop)},
        }
    if module == "test_eager_task_factory":
        return {
            "CEagerTaskFactoryLoopTests": {"Task": task},
            "NonEagerCTaskTests": {"Task": task},
            "EagerCTaskTests": {"Task": task},
        }
    return {}


# Test classes whose tests take ``asyncio.SelectorEventLoop(...)`` as "the event loop" (made in
# setUp or create_event_loop(); where a module parametrizes them by selector, one class per
# selector): module -> {ferroloop class: class it copies}. The ferroloop class subclasses the
# original and runs each test (setUp, the test, tearDown, cleanups) with
# asyncio.SelectorEventLoop making ferroloop loops; its outcomes are compared with the
# original's stock outcomes. One copy per module, of the epoll class where there is one per
# selector (Linux's default selector; the tests are the same in each); the originals keep
# asyncio's own loop and are skips.INTERNAL_CLASSES, not run on ferroloop runs (LOOP_MIRRORED).
LOOP_MIRRORS = {
    "test_events": {"FerroloopEventLoopTests": "EPollEventLoopTests"},
    "test_sock_lowlevel": {"FerroloopEventLoopTests": "EPollEventLoopTests"},
    "test_sendfile": {"FerroloopEventLoopTests": "EPollEventLoopTests"},
    "test_server": {"FerroloopStartServerTests": "SelectorStartServerTests"},
    "test_buffered_proto": {"FerroloopBufferedProtocolTests": "BufferedProtocolSelectorTests"},
    "test_unix_events": {"FerroloopUnixSocketTests": "SelectorEventLoopUnixSocketTests"},
}


_SELECTOR_CLASSES = ("EPollEventLoopTests", "PollEventLoopTests", "SelectEventLoopTests")

# The classes each module's LOOP_MIRRORS copy stands in for: a ferroloop run leaves them out, since
# they would only run asyncio's own loop again (once per selector; the stock outcomes have that),
# two thirds of test_events' time. They are skips.INTERNAL_CLASSES, so the gate does not miss them.
LOOP_MIRRORED = {
    "test_events": _SELECTOR_CLASSES,
    "test_sock_lowlevel": _SELECTOR_CLASSES,
    "test_sendfile": _SELECTOR_CLASSES,
    "test_server": ("SelectorStartServerTests",),
    "test_buffered_proto": ("BufferedProtocolSelectorTests",),
    "test_unix_events": ("SelectorEventLoopUnixSocketTests",),
}


def expected_mirrors(module):
    """{mirror class: class it copies}, of MIRRORS and LOOP_MIRRORS, for `module`."""
    return {**MIRRORS.get(module, {}), **LOOP_MIRRORS.get(module, {})}


def loop_mirror(name, base, observer=OBSERVER):
    """A copy of test class `base`, named `name`, whose tests run with
    ``asyncio.SelectorEventLoop(...)`` making ferroloop loops (each counted in
    ``observer.loops``, so the tests are observed on ferroloop)."""
    import asyncio
    import ferroloop

    def selector_event_loop(selector=None):
        observer.loops += 1         # counted before the call, as install_ferroloop's
        return ferroloop.Loop()

    def run(self, result=None):
        saved = asyncio.SelectorEventLoop
        asyncio.SelectorEventLoop = selector_event_loop
        try:
            return base.run(self, result)
        finally:
            asyncio.SelectorEventLoop = saved

    return type(name, (base,), {"run": run, "__module__": base.__module__})


def add_mirrors(module, mod, observer=OBSERVER):
    """Add the MIRRORS and LOOP_MIRRORS classes of `module` to the imported test module `mod`.
    Returns {mirror name: why it could not be made} for the ones missing."""
    missing = {}
    for name, base_name in LOOP_MIRRORS.get(module, {}).items():
        base = getattr(mod, base_name, None)
        if base is None:
            missing[name] = "%s has no class %s to mirror" % (mod.__name__, base_name)
        else:
            setattr(mod, name, loop_mirror(name, base, observer))
    mirrors = MIRRORS.get(module, {})
    if not mirrors:
        return missing
    try:
        attrs = mirror_attrs(module, mod)
    except AttributeError as e:
        missing.update((name, "this ferroloop build lacks it: %s" % e) for name in mirrors)
        return missing
    for name, c_name in mirrors.items():
        c_class = getattr(mod, c_name, None)
        if c_class is None:
            missing[name] = "%s has no class %s to mirror" % (mod.__name__, c_name)
            continue
        if c_name not in attrs:
            missing[name] = "run.mirror_attrs has no overrides for %s" % c_name
            continue
        overrides = dict(attrs[c_name])
        decorate = overrides.pop("__decorate__", None)
        mirror = type(name, (c_class,), overrides)
        mirror.__module__ = mod.__name__
        if decorate is not None:
            mirror = decorate(mirror)   # may replace the overrides with subclasses of them
        for attr in overrides:
            value = mirror.__dict__.get(attr)
            if value is not None and not isinstance(value, Observed):
                setattr(mirror, attr, Observed(value, observer))
        setattr(mod, name, mirror)
    return missing


def with_mirrored_stock(stock):
    """Stock outcomes extended with the MIRRORS and LOOP_MIRRORS classes (each takes the
    outcomes of the class it copies)."""
    for module in set(MIRRORS) | set(LOOP_MIRRORS):
        tests = stock.get(module)
        if not tests:
            continue
        for name, c_name in expected_mirrors(module).items():
            prefix = c_name + "."
            for tid, outcome in list(tests.items()):
                if tid.startswith(prefix):
                    tests[name + "." + tid[len(prefix):]] = outcome
    return stock


def test_id(test):
    return type(test).__name__ + "." + getattr(test, "_testMethodName", str(test))


def flatten(suite):
    import unittest
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from flatten(t)
        else:
            yield t


def result_class(emit, arm=lambda: None, observer=OBSERVER):
    """The unittest result class of the child: streams, through emit(**record), each test's
    start, outcome (with traceback) and stop (with what ``observer`` saw during it), and the
    errors of class/module fixtures; calls arm() around each test (the hang watchdog)."""
    import unittest

    def is_fixture(test):
        # unittest reports errors of setUpClass/tearDownClass/setUpModule/tearDownModule and
        # of class/module cleanups with a stand-in "test" (unittest.suite._ErrorHolder).
        return not isinstance(test, unittest.TestCase)

    class Result(unittest.TextTestResult):
        _started = None

        def startTest(self, test):
            self._before = observer.snapshot()
            self._failed = False
            self._started = test
            arm()
            emit(start=test_id(test))
            super().startTest(test)

        def stopTest(self, test):
            super().stopTest(test)
            if self._started is not test:
                # 3.12.1's TestCase.run() calls stopTest() but not startTest() for a
                # skipped test (its skip was recorded through addSkip already).
                return
            self._started = None
            if self._failed:
                # A test that failed half-way may leave objects it would have closed (a pipe
                # whose transport could not be made): collect them now, so that their
                # ResourceWarnings are not caught by the next test's assertWarns.
                gc.collect()
            emit(stop=test_id(test), fl=observer.kinds(self._before))
            arm()

        def _record(self, test, outcome, err=None):
            if outcome in ("fail", "error"):
                self._failed = True
            tb = self._exc_info_to_string(err, test) if err is not None else None
            if is_fixture(test):
                emit(fixture=str(test), outcome=outcome, tb=tb)
            else:
                emit(id=test_id(test), outcome=outcome, tb=tb)

        def addSuccess(self, t): super().addSuccess(t); self._record(t, "pass")
        def addFailure(self, t, e): super().addFailure(t, e); self._record(t, "fail", e)
        def addError(self, t, e): super().addError(t, e); self._record(t, "error", e)
        def addSkip(self, t, r):
            super().addSkip(t, r)
            if not is_fixture(t):
                emit(id=test_id(t), outcome="skip", tb=r)
        def addExpectedFailure(self, t, e):
            super().addExpectedFailure(t, e); self._record(t, "xfail", e)
        def addUnexpectedSuccess(self, t): super().addUnexpectedSuccess(t); self._record(t, "xpass")

        def addSubTest(self, test, subtest, err):
            super().addSubTest(test, subtest, err)
            if err is not None:
                outcome = "fail" if issubclass(err[0], test.failureException) else "error"
                self._record(test, outcome, err)

    return Result


def child_main(job_path):
    import faulthandler
    import io
    import traceback
    import unittest

    job = json.loads(Path(job_path).read_text())
    module = job["module"]
    out = open(job["results"], "a", buffering=1)

    # A process started in the background by a non-interactive shell (`cmd &`, nohup) starts
    # with SIGINT ignored, and Python keeps it so. CPython's tests that interrupt themselves
    # (test_runners' _thread.interrupt_main()) then wait forever, on stock asyncio as on
    # ferroloop: give the tests the SIGINT handling of an interpreter started from a terminal.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def emit(**rec):
        out.write(json.dumps(rec) + "\n")
        out.flush()

    fault = open(job["fault"], "w")
    faulthandler.enable(file=fault, all_threads=True)
    test_timeout = job["test_timeout"]

    def arm():
        # Always armed: a hang in a test, a fixture or between tests kills this process after
        # dumping every thread's stack to the fault file; the parent resumes the module.
        fault.seek(0)
        fault.truncate()
        faulthandler.dump_traceback_later(test_timeout, exit=True, file=fault)

    arm()
    if not job["stock"]:
        try:
            install_ferroloop(module)
        except BaseException:
            emit(event="subst_error", tb=traceback.format_exc())
            sys.exit(3)

    name = "test.test_asyncio." + module
    try:
        mod = importlib.import_module(name)
    except unittest.SkipTest as e:
        emit(event="module_skip", reason=str(e))
        return
    except ModuleNotFoundError as e:
        if e.name in (name, None) or name.startswith(e.name + "."):
            emit(event="absent")
            return
        emit(event="import_error", tb=traceback.format_exc())
        sys.exit(4)
    except BaseException:
        emit(event="import_error", tb=traceback.format_exc())
        sys.exit(4)

    if not job["stock"]:
        missing = add_mirrors(module, mod)
        emit(event="mirrors", missing=missing)
    tests = list(flatten(unittest.defaultTestLoader.loadTestsFromModule(mod)))
    if not job["stock"]:
        mirrored = LOOP_MIRRORED.get(module, ())
        tests = [t for t in tests if type(t).__name__ not in mirrored]
    skips = job["skips"]
    for t in tests:
        reason = skips.get(test_id(t))
        method = getattr(t, "_testMethodName", None)
        if reason is not None and method:
            # Instance attribute shadowing the method; TestCase.run() sees __unittest_skip__
            # and reports the skip without running setUp.
            setattr(t, method, unittest.skip(reason)(getattr(t, method)))
    done = set(job["exclude"])
    tests = [t for t in tests if test_id(t) not in done]
    emit(event="collected", ids=[test_id(t) for t in tests])

    Result = result_class(emit, arm)
    unittest.TextTestRunner(stream=io.StringIO(), resultclass=Result, verbosity=0).run(
        unittest.TestSuite(tests))
    faulthandler.cancel_dump_traceback_later()
    emit(event="done")
    out.close()
    # Skip interpreter teardown: leftover threads or loops of the tests must not hang us.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# ----------------------------------------------------------------------------------------------
# Parent side.
# ----------------------------------------------------------------------------------------------

class ModuleRun:
    """Outcome of one module: status is ok, absent, module_skip or broken."""

    def __init__(self, module):
        self.module = module
        self.status = "ok"
        self.note = ""
        self.tests = {}         # id -> outcome
        self.tbs = {}           # id -> traceback text
        self.fl = {}            # id -> set of Observer kinds, for tests observed on ferroloop
        self.fixture_errors = {}  # "tearDownClass (module.Class)" & co. -> traceback
        self.mirrors_missing = {}   # mirror class name -> why the child could not make it
        self.seconds = 0.0
        self.restarts = 0

    def set(self, tid, outcome, tb=None):
        # The first failure of a test wins (a later tearDown error does not mask it).
        prev = self.tests.get(tid)
        if prev in ("fail", "error") and outcome not in ("fail", "error"):
            return
        if prev in ("fail", "error"):
            if tb:
                self.tbs[tid] = (self.tbs.get(tid) or "") + "\n" + tb
            return
        self.tests[tid] = outcome
        if tb:
            self.tbs[tid] = tb

    def feed(self, rec):
        """Take one record of the child's results stream. Returns (event, detail) for the
        events that end the child's run (done, absent, module_skip, subst_error,
        import_error), else None."""
        if "id" in rec:
            self.set(rec["id"], rec["outcome"], rec.get("tb"))
        elif "stop" in rec:
            if rec.get("fl"):
                self.fl.setdefault(rec["stop"], set()).update(rec["fl"])
        elif "fixture" in rec:
            if rec["outcome"] in ("fail", "error"):
                prev = self.fixture_errors.get(rec["fixture"])
                self.fixture_errors[rec["fixture"]] = "\n".join(
                    x for x in (prev, rec.get("tb") or rec["outcome"]) if x)
        elif rec.get("event") == "mirrors":
            self.mirrors_missing.update(rec.get("missing") or {})
        elif "event" in rec and rec["event"] != "collected":
            return rec["event"], rec.get("tb") or rec.get("reason", "")
        return None

    def broken(self, note, tb=""):
        self.status = "broken"
        self.note = note
        self.set(RUN_ID, "error", (note + "\n" + tb).strip())

    def counts(self):
        vals = list(self.tests.values())
        return {"passed": vals.count("pass"), "failed": vals.count("fail"),
                "errors": vals.count("error"), "skipped": vals.count("skip")}


def kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def run_module(module, args, skips):
    """Run one module in child processes, resuming after crashes/hangs inside a test."""
    res = ModuleRun(module)
    workdir = Path(tempfile.mkdtemp(prefix="ferroloop-cpython-%s-" % module))
    t0 = time.monotonic()
    try:
        while True:
            results = workdir / "results.jsonl"
            fault = workdir / "fault.txt"
            log = workdir / "output.txt"
            results.write_text("")
            job = workdir / "job.json"
            job.write_text(json.dumps({
                "module": module, "stock": args.stock, "skips": skips,
                "exclude": sorted(res.tests), "test_timeout": args.test_timeout,
                "results": str(results), "fault": str(fault)}))
            run_dir = workdir / "cwd"          # tests write TESTFN & co. into the cwd
            run_dir.mkdir(exist_ok=True)
            budget = args.timeout - (time.monotonic() - t0)
            with open(log, "wb") as logf:
                proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()),
                                         "--_child", str(job)],
                                        cwd=run_dir, stdin=subprocess.DEVNULL, stdout=logf,
                                        stderr=subprocess.STDOUT, start_new_session=True)
                try:
                    rc = proc.wait(timeout=max(budget, 1))
                    timed_out = False
                except subprocess.TimeoutExpired:
                    kill_group(proc)
                    rc, timed_out = proc.returncode, True
                else:
                    # Reap what the tests left behind in the child's process group.
                    kill_group(proc)

            event, tb = None, ""
            for line in results.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                ev = res.feed(rec)
                if ev is not None:
                    event, tb = ev
            fault_text = fault.read_text(errors="replace").strip() if fault.exists() else ""
            output_tail = log.read_bytes()[-3000:].decode(errors="replace").strip()

            if event == "done":
                break
            if event == "absent":
                res.status = "absent"
                break
            if event == "module_skip":
                res.status, res.note = "module_skip", tb
                break
            if event == "subst_error":
                res.broken("ferroloop could not be substituted", tb)
                break
            if event == "import_error":
                res.broken("module could not be imported", tb)
                break

            # The child died or hung. Blame the test that had started and not finished.
            last = last_started_unfinished(results)
            why = ("module timeout (%ds)" % args.timeout if timed_out else
                   "hung > %ds (--test-timeout)" % args.test_timeout
                   if fault_text.startswith("Timeout") else
                   "process died (exit status %s)" % rc)
            fault_text = trim_fault(fault_text)
            detail = "\n".join(x for x in (why, fault_text, output_tail[-1500:]) if x)
            if last is None or timed_out:
                if last is not None:
                    res.set(last, "error", detail)
                res.broken(why, fault_text or output_tail)
                break
            res.set(last, "error", detail)
            res.restarts += 1
            if res.restarts > MAX_RESTARTS:
                res.broken("more than %d crashes/hangs; giving up" % MAX_RESTARTS)
                break
    finally:
        res.seconds = time.monotonic() - t0
        shutil.rmtree(workdir, ignore_errors=True)
    return res


def trim_fault(text, limit=6000):
    """A faulthandler dump without the frames of unittest and of this runner."""
    me = str(Path(__file__).resolve())
    keep = [l for l in text.splitlines()
            if not (("/unittest/" in l or me in l) and l.lstrip().startswith("File "))
            and not l.startswith("Extension modules:")]
    return "\n".join(keep).strip()[:limit]


def last_started_unfinished(results_path):
    """The id of the test that started and did not stop (the child died inside it), or None."""
    current = None
    for line in results_path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if "start" in rec:
            current = rec["start"]
        elif "stop" in rec:
            current = None
    return current


def preflight(stock):
    """Check in a subprocess that ferroloop imports and takes over asyncio's default loop."""
    code = ("import sys; sys.path.insert(0, %r); import run; run.install_ferroloop(); "
            "import ferroloop; ferroloop.Future, ferroloop.Task; "
            "print(getattr(ferroloop, '__version__', '?'), ferroloop.__file__)"
            % str(HERE))
    if stock:
        return True, "stock asyncio (ferroloop not substituted)"
    p = subprocess.run([sys.executable, "-B", "-c", code], capture_output=True, text=True,
                       cwd=tempfile.gettempdir(), timeout=120)
    if p.returncode:
        return False, (p.stdout + p.stderr).strip()
    return True, "ferroloop " + p.stdout.strip()


def load_stock(stock_dir):
    """The stock outcomes for this Python: ``stock_dir``'s, else this repository's own
    (``tests/cpython/stock``: 3.12, which the shared directory does not have)."""
    name = "cpython_%d.%d.json" % sys.version_info[:2]
    path = Path(stock_dir) / name
    if not path.is_file() and (OWN_STOCK_DIR / name).is_file():
        path = OWN_STOCK_DIR / name
    if not path.is_file():
        return None, path
    data = json.loads(path.read_text())
    return {m: {t: o for t, o in tests.items() if not t.startswith("__")}
            for m, tests in data.items()}, path


def class_of(tid):
    return tid.split(".", 1)[0]


def gate_module(tests, on_fl, stock_tests, skips=(), known=None, internal=(), stock_mode=False,
                deferred=None):
    """Classify one module's outcomes against stock asyncio's and find what fails the gate.

    tests: {id: outcome} of this run (a stock-passing id missing here did not run);
    on_fl: ids observed on ferroloop; stock_tests: {id: stock outcome}; skips: ids turned into
    skips by skips.SKIPS; known: {id: reason} of skips.KNOWN_DIFFERENCES; internal: class names
    of skips.INTERNAL_CLASSES; stock_mode: this run is stock asyncio (known differences and
    deferred tests do not apply); deferred: {id: reason} of skips.DEFERRED, treated like known
    differences (not passing: listed, not a regression; passing: the entry must go) but
    reported apart, as "deferred" / "deferred_pass" / "stale_deferred".

    Only tests that pass on stock asyncio are considered. Returns a dict:
    ferroloop / stock_only: [stock-passing, passing here] for tests observed on ferroloop and the
    rest; internal: how many stock-passing tests of internal classes, not observed on ferroloop,
    were left ungated; known: [(id, outcome)] known differences that did not pass (as
    expected); regressions: [(id, outcome)] stock-passing tests not passing here and not known;
    unexpected_pass: [id] known differences that passed; stale_known: [id] known differences
    this Python's stock run does not pass (the entry has no effect here).
    """
    known = {} if stock_mode or known is None else known
    deferred = {} if stock_mode or deferred is None else deferred
    skips, internal = set(skips), set(internal)
    res = {"ferroloop": [0, 0], "stock_only": [0, 0], "internal": 0,
           "known": [], "regressions": [], "unexpected_pass": [], "stale_known": [],
           "deferred": [], "deferred_pass": [], "stale_deferred": []}
    for tid, stock_outcome in sorted(stock_tests.items()):
        if stock_outcome != "pass" or tid in skips:
            continue
        outcome = tests.get(tid, "missing")
        observed = tid in on_fl
        if class_of(tid) in internal and not observed:
            res["internal"] += 1
            continue
        row = res["ferroloop" if observed else "stock_only"]
        row[0] += 1
        row[1] += outcome == "pass"
        if tid in known:
            if outcome == "pass":
                res["unexpected_pass"].append(tid)
            else:
                res["known"].append((tid, outcome))
        elif tid in deferred:
            if outcome == "pass":
                res["deferred_pass"].append(tid)
            else:
                res["deferred"].append((tid, outcome))
        elif outcome != "pass":
            res["regressions"].append((tid, outcome))
    res["stale_known"] = sorted(t for t in known
                                if t in tests and stock_tests.get(t) != "pass")
    res["stale_deferred"] = sorted(t for t in deferred
                                   if t in tests and stock_tests.get(t) != "pass")
    return res


def module_problems(module, run, pyver, stock_tests, unavailable, stock_mode=False):
    """Why `module` could not be measured (an empty list if it could): run is its ModuleRun
    or None if this Python does not have it; stock_tests its stock outcomes (None or {} if
    there are none); unavailable: skips.UNAVAILABLE_MODULES. Returns (problems, note): note
    explains a module allowed to be unavailable on this Python."""
    allowed = unavailable.get(module, {}).get(pyver)
    status = "absent" if run is None else run.status
    if status == "broken":
        return ["%s could not run: %s" % (module, run.note)], ""
    why = {"absent": "does not exist on Python %s" % pyver,
           "module_skip": "skips itself at import (%s)" % (run.note if run else "")}.get(status)
    if why is None and not stock_tests:
        why = "has no stock outcomes for Python %s" % pyver
    if why is not None:
        if allowed:
            return [], "%s %s: %s" % (module, why, allowed)
        return ["%s %s (not named in skips.UNAVAILABLE_MODULES)" % (module, why)], ""
    problems = []
    if not stock_mode:
        mirrors = expected_mirrors(module)
        for name, why in sorted(run.mirrors_missing.items()):
            problems.append("%s: mirror class %s is missing: %s" % (module, name, why))
        for name, c_name in mirrors.items():
            if name in run.mirrors_missing:
                continue
            if not any(class_of(t) == name for t in run.tests):
                problems.append("%s: mirror class %s ran no tests" % (module, name))
            if not any(class_of(t) == c_name and o == "pass" for t, o in stock_tests.items()):
                problems.append("%s: mirror class %s has no stock-passing tests to compare with "
                                "(%s)" % (module, name, c_name))
    return problems, ""


def excerpt(tb, n):
    """The last n lines of a traceback: innermost frames and the exception (what triage needs;
    the outer frames of async tests are the runner's)."""
    lines = [l for l in (tb or "").splitlines() if l.strip()]
    return (["..."] if len(lines) > n else []) + lines[-n:]


def fmt_pair(pair):
    n, good = pair
    return "%d/%d" % (good, n) if n else "-"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See the module docstring for details.")
    ap.add_argument("modules", nargs="*", metavar="module",
                    help="test_asyncio modules (default: all but skips.EXCLUDED_MODULES)")
    ap.add_argument("--json", metavar="OUT", help="write outcomes as JSON to OUT")
    ap.add_argument("--core", action="store_true", help="run CORE_MODULES (plus any named)")
    ap.add_argument("--net", action="store_true",
                    help="run NET_MODULES, the networking modules (plus any named)")
    ap.add_argument("--stock", action="store_true",
                    help="do not substitute ferroloop (reproduce stock asyncio outcomes)")
    ap.add_argument("--stock-dir", default=None,
                    help="directory of cpython_X.Y.json stock outcomes (default: %s)"
                    % default_stock_dir())
    ap.add_argument("--fail-under", type=float, metavar="PCT",
                    help="also exit 1 if a module's tests on ferroloop pass less than PCT%% "
                         "of their stock-passing ones (known differences count as failing)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per module (default 600)")
    ap.add_argument("--test-timeout", type=float, default=120,
                    help="seconds per test before it is killed as hung (default 120)")
    ap.add_argument("-j", "--jobs", type=int, default=1, help="modules run in parallel (default 1)")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="show the end of each regression's traceback")
    ap.add_argument("--tb-lines", type=int, default=TB_LINES, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    sys.dont_write_bytecode = True      # leave no __pycache__ in tests/cpython
    cfg = config()
    excluded = dict(cfg.EXCLUDED_MODULES)
    all_skips = {m: dict(t) for m, t in cfg.SKIPS.items()}
    present = available_modules()
    wanted = [normalize(m) for m in args.modules]
    if args.net:
        wanted = NET_MODULES + wanted
    if args.core:
        wanted = CORE_MODULES + wanted
    if not wanted:
        wanted = [m for m in present if m not in excluded]
    wanted = list(dict.fromkeys(wanted))

    pyver = platform.python_version()
    pyminor = "%d.%d" % sys.version_info[:2]
    ok, what = preflight(args.stock)
    print("Python %s (%s) -- %s" % (pyver, sys.executable, what.splitlines()[-1] if ok else
                                      "ferroloop NOT usable"))
    if not ok:
        print(what, file=sys.stderr)
        print("error: ferroloop cannot be imported, lacks Future/Task, or does not replace "
              "asyncio's loop (build/install it, or use --stock)", file=sys.stderr)
        return 2

    stock, stock_path = load_stock(args.stock_dir or default_stock_dir())
    if stock is None:
        print("error: no stock outcomes at %s (--stock-dir); nothing to gate against"
              % stock_path, file=sys.stderr)
        return 2
    if not args.stock:
        stock = with_mirrored_stock(stock)

    runs = {}
    to_run = [m for m in wanted if m in present]
    for m in to_run:
        if m in excluded:
            print("note: %s is in EXCLUDED_MODULES (%s); running it as asked" % (m, excluded[m]))

    def job(m):
        return run_module(m, args, all_skips.get(m, {}))

    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        futs = {pool.submit(job, m): m for m in to_run}
        for fut in concurrent.futures.as_completed(futs):
            r = fut.result()
            runs[r.module] = r
            c = r.counts()
            extra = {"absent": " absent on this Python",
                     "module_skip": " module skipped: " + r.note,
                     "broken": " BROKEN: " + r.note}.get(r.status, "")
            print("  %-26s %4d passed %3d failed %3d errors %3d skipped %6.1fs%s%s" % (
                r.module, c["passed"], c["failed"], c["errors"], c["skipped"], r.seconds,
                " (%d restarts)" % r.restarts if r.restarts else "", extra), flush=True)

    # ---- what could not be measured
    problems, notes, ran = [], [], []
    for m in wanted:
        probs, note = module_problems(m, runs.get(m), pyminor, stock.get(m),
                                      cfg.UNAVAILABLE_MODULES, args.stock)
        problems += probs
        if note:
            notes.append(note)
        if m in runs and runs[m].status in ("ok", "broken") and stock.get(m):
            ran.append(m)
    if args.core:
        # The whole suite is gated: a module of this Python that is neither gated nor
        # excluded with its reason (one a newer CPython adds, say) is an error.
        for m in present:
            if m not in wanted and m not in excluded:
                problems.append("%s is in this Python's test_asyncio but neither in CORE_MODULES "
                                "nor in skips.EXCLUDED_MODULES" % m)

    # ---- gate each module
    gates = {}
    for m in ran:
        r = runs[m]
        gates[m] = gate_module(r.tests, set(r.fl), stock[m], all_skips.get(m, {}),
                               cfg.KNOWN_DIFFERENCES.get(m, {}),
                               cfg.INTERNAL_CLASSES.get(m, {}), args.stock,
                               cfg.DEFERRED.get(m, {}))
        if args.verbose:
            mirrored = tuple(c + "." for c in expected_mirrors(m))
            for what, listed in (("SKIPS", all_skips.get(m, {})),
                                 ("KNOWN_DIFFERENCES", cfg.KNOWN_DIFFERENCES.get(m, {})),
                                 ("DEFERRED", cfg.DEFERRED.get(m, {}))):
                # A stock run has no mirror classes.
                stale = sorted(t for t in set(listed) - set(r.tests)
                               if not (args.stock and t.startswith(mirrored)))
                if stale and r.status == "ok":
                    print("note: skips.%s[%r] names tests this Python's module lacks: %s"
                          % (what, m, ", ".join(stale)))

    # ---- table
    if ran:
        print()
    hdr = "%-24s %6s %6s %6s %7s  %-11s %6s  %-11s %5s %5s %5s %5s" % (
        "module", "passed", "failed", "errors", "skipped", "on-fl pass", "rate",
        "stock-only", "known", "defer", "skips", "intrn")
    if ran:
        print(hdr)
        print("-" * len(hdr))
    tot = {"c": [0, 0, 0, 0], "fl": [0, 0], "so": [0, 0], "known": 0, "deferred": 0, "skips": 0,
           "internal": 0}
    below = []
    for m in ran:
        r, g = runs[m], gates[m]
        c = r.counts()
        nskips = sum(1 for t in all_skips.get(m, {}) if r.tests.get(t) == "skip")
        fl, so = g["ferroloop"], g["stock_only"]
        rate = 100.0 * fl[1] / fl[0] if fl[0] else None
        if args.fail_under is not None and rate is not None and rate < args.fail_under:
            below.append((m, rate))
        print("%-24s %6d %6d %6d %7d  %-11s %6s  %-11s %5d %5d %5d %5d%s" % (
            m, c["passed"], c["failed"], c["errors"], c["skipped"], fmt_pair(fl),
            "%.1f%%" % rate if rate is not None else "-", fmt_pair(so), len(g["known"]),
            len(g["deferred"]), nskips, g["internal"],
            "  BROKEN" if r.status == "broken" else ""))
        tot["c"] = [a + b for a, b in zip(tot["c"], (c["passed"], c["failed"], c["errors"],
                                                        c["skipped"]))]
        tot["fl"] = [a + b for a, b in zip(tot["fl"], fl)]
        tot["so"] = [a + b for a, b in zip(tot["so"], so)]
        tot["known"] += len(g["known"])
        tot["deferred"] += len(g["deferred"])
        tot["skips"] += nskips
        tot["internal"] += g["internal"]
    if len(ran) > 1:
        print("-" * len(hdr))
        rate = "%.1f%%" % (100.0 * tot["fl"][1] / tot["fl"][0]) if tot["fl"][0] else "-"
        print("%-24s %6d %6d %6d %7d  %-11s %6s  %-11s %5d %5d %5d %5d" % (
            "TOTAL", *tot["c"], fmt_pair(tot["fl"]), rate, fmt_pair(tot["so"]),
            tot["known"], tot["deferred"], tot["skips"], tot["internal"]))
    if ran:
        print("on-fl pass: passing here/passing on stock, of the tests observed on ferroloop "
              "(its loop, Future or Task);\nstock-only: the same for the other tests (asyncio's "
              "own classes); known: skips.KNOWN_DIFFERENCES, failing\nas expected; defer: "
              "skips.DEFERRED (another issue builds what they test), not passing yet;\nskips: "
              "skips.SKIPS; intrn: tests of skips.INTERNAL_CLASSES not run on ferroloop (not "
              "gated).")
    for note in notes:
        print("note: " + note)

    # ---- gate failures
    failures = []
    regs = [(m, t, o) for m in ran for t, o in gates[m]["regressions"]]
    if regs:
        print("\nRegressions (stock pass, not pass here, not a known difference): %d" % len(regs))
        for m, tid, outcome in regs:
            where = "on-fl" if tid in runs[m].fl else "stock-only"
            print("  %s  %s.%s  [%s]" % (outcome.upper().ljust(7), m, tid, where))
            # Always shown: a regression in CI must be diagnosable from its log alone (a hang
            # shows the stacks faulthandler dumped).
            tb = runs[m].tbs.get(tid) or ""
            for l in (tb.splitlines() if tb.startswith("hung") else excerpt(tb, args.tb_lines)):
                print("        " + l)
        failures.append("%d regression(s)" % len(regs))
    xpass = [(m, t) for m in ran for t in gates[m]["unexpected_pass"]]
    if xpass:
        print("\nKnown differences that pass now (remove them from skips.KNOWN_DIFFERENCES):")
        for m, tid in xpass:
            print("  %s.%s" % (m, tid))
        failures.append("%d known difference(s) passing" % len(xpass))
    dpass = [(m, t) for m in ran for t in gates[m]["deferred_pass"]]
    if dpass:
        print("\nDeferred tests that pass now (remove them from skips.DEFERRED):")
        for m, tid in dpass:
            print("  %s.%s" % (m, tid))
        failures.append("%d deferred test(s) passing" % len(dpass))
    fix = [(m, f, tb) for m in ran for f, tb in sorted(runs[m].fixture_errors.items())]
    if fix:
        print("\nErrors in class/module fixtures:")
        for m, f, tb in fix:
            print("  %s: %s" % (m, f))
            for l in excerpt(tb, args.tb_lines if args.verbose else 3):
                print("        " + l)
        failures.append("%d fixture error(s)" % len(fix))
    if below:
        failures.append("under %g%% on ferroloop: %s" % (
            args.fail_under, ", ".join("%s %.1f%%" % mr for mr in below)))
    if args.verbose:
        for m in ran:
            for tid, outcome in gates[m]["known"]:
                print("known difference (%s): %s.%s" % (outcome, m, tid))
            for tid, outcome in gates[m]["deferred"]:
                print("deferred (%s): %s.%s" % (outcome, m, tid))
            for tid in gates[m]["stale_known"]:
                print("note: known difference %s.%s does not pass on stock Python %s"
                      % (m, tid, pyver))
            for tid in gates[m]["stale_deferred"]:
                print("note: deferred test %s.%s does not pass on stock Python %s"
                      % (m, tid, pyver))
    for m in ran:
        if runs[m].status == "broken":
            print("\n%s could not run: %s" % (m, runs[m].note))
            for l in excerpt(runs[m].tbs.get(RUN_ID), args.tb_lines if args.verbose else 4):
                print("    " + l)
    if problems:
        print("\nCould not measure:")
        for p in problems:
            print("  " + p)

    # ---- JSON
    if args.json:
        doc = {"python": pyver, "modules": {}, "skips": {}, "problems": problems}
        for m in ran:
            r, g = runs[m], gates[m]
            doc["modules"][m] = dict(
                r.counts(), tests=dict(sorted(r.tests.items())),
                on_ferroloop={t: sorted(k) for t, k in sorted(r.fl.items())},
                fixture_errors=r.fixture_errors, gate=g)
            doc["skips"].update((t, why) for t, why in all_skips.get(m, {}).items()
                                if r.tests.get(t) == "skip")
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
        print("\nwrote " + args.json)

    if problems:
        print("ERROR: could not measure %d module(s)/mirror(s)%s" % (
            len(problems), "; also " + ", ".join(failures) if failures else ""))
        return 2
    if failures:
        print("FAIL: " + "; ".join(failures))
        return 1
    print("OK: every stock-passing test passes here (%d on ferroloop, %d stock-only), "
          "%d known difference(s) and %d deferred test(s) aside"
          % (tot["fl"][1], tot["so"][1], tot["known"], tot["deferred"]))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--_child":
        child_main(sys.argv[2])
    else:
        sys.exit(main())
