#!/usr/bin/env python3
"""Run CPython's own asyncio test suite (``test.test_asyncio``) on ferroloop's event loop.

Usage::

    python tests/cpython/run.py [--json OUT] [--core] [--stock] [-v] [-j N]
                                [--fail-under PCT] [--stock-dir DIR] [module ...]

    python tests/cpython/run.py --core --json out.json --fail-under 99   # what CI runs
    python tests/cpython/run.py -v test_locks test_tasks      # regressions with tracebacks
    python tests/cpython/run.py --stock test_locks            # plain asyncio, for reference

The suite is the one shipped with the interpreter running this script (run it with each
Python you care about). Modules are given as ``test_locks`` (or ``locks``); without any, all
``test_asyncio`` modules of that Python except ``skips.EXCLUDED_MODULES`` run. ``--core``
adds ``CORE_MODULES``, the loop-core set CI gates on.

Each module runs in its own subprocess. Before the test module is imported, the child makes
every way a test gets a "default" loop produce a ``ferroloop.Loop``:

* ``asyncio.set_event_loop_policy(ferroloop.EventLoopPolicy())``;
* ``asyncio.DefaultEventLoopPolicy._loop_factory`` -> ferroloop, so that after a test's
  ``asyncio.set_event_loop_policy(None)`` the re-created default policy (events.py,
  ``_init_event_loop_policy``) still makes ferroloop loops. ``asyncio.new_event_loop()``,
  ``asyncio.run()``, ``asyncio.Runner()`` and ``unittest.IsolatedAsyncioTestCase`` all go
  through the policy's ``new_event_loop()``;
* on 3.12+: ``asyncio.EventLoop`` -> ``ferroloop.Loop`` (``loop_factory=asyncio.EventLoop``).

The child checks that this took (``asyncio.new_event_loop()``, the default policy after
``set_event_loop_policy(None)``, ``asyncio.Runner``) and refuses to run otherwise. Tests that
construct asyncio's own loop classes on purpose (``asyncio.SelectorEventLoop(...)``,
test_utils' ``TestLoop``, ``asyncio.BaseEventLoop()``) keep them: they test asyncio. The
"on-fl" column counts the tests that created at least one ferroloop loop.

Tests listed in ``skips.SKIPS`` are turned into skips (with their reason) before running.
A test that hangs longer than ``--test-timeout`` or crashes the interpreter is recorded as an
error (with the faulthandler traceback) and the module resumes after it in a new process;
a module gets ``--timeout`` seconds in all. Problems not attributable to one test (import
error, crash/hang outside a test, module timeout) are recorded as the pseudo-test
``__run__`` with outcome "error".

Output: a per-module table (passed/failed/errors/skipped, tests run on ferroloop, and,
against the stock outcomes ``<repo>/../shared/cpython-stock/cpython_X.Y.json``, how many
stock-passing tests pass here), then the regressions (stock "pass", anything else here);
``-v`` adds the end of each one's traceback (innermost frames and the exception).
``--json OUT`` writes::

    {"python": "3.11.7",
     "modules": {"test_locks": {"passed": N, "failed": N, "errors": N, "skipped": N,
                                "tests": {"TestClass.test_name": "pass", ...}}},
     "skips": {"TestClass.test_name": "reason", ...}}

with outcomes pass, fail, error, skip, xfail, xpass. The pass rate leaves out tests skipped by
skips.SKIPS. Exit status: 0; 1 if a module's pass rate is under ``--fail-under``; 2 if a
module could not be run (import error, ferroloop missing or not substituted, crash or timeout
outside a test), or if ``--fail-under`` is given without stock outcomes to compare with.
A module missing on this Python (e.g. test_eager_task_factory on 3.11) is reported as absent
and is not an error.

Standard library only.
"""

import argparse
import concurrent.futures
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
DEFAULT_STOCK_DIR = REPO.parent / "shared" / "cpython-stock"

# The loop-core set CI gates on in this milestone.
CORE_MODULES = [
    "test_locks", "test_queues", "test_context", "test_pep492", "test_runners",
    "test_timeouts", "test_waitfor", "test_threads", "test_taskgroups",
]
# The native Future/Task modules, run by name (tests/run_all.sh) next to CORE_MODULES.
NEXT_CORE_MODULES = ["test_futures", "test_futures2", "test_tasks", "test_eager_task_factory"]

RUN_ID = "__run__"          # pseudo-test for failures not attributable to one test
MAX_RESTARTS = 50           # per module, after crashes/hangs inside a test
TB_LINES = 12               # traceback lines shown per regression with -v


def load_skips():
    """Return (EXCLUDED_MODULES, SKIPS) from skips.py next to this file."""
    spec = importlib.util.spec_from_file_location("_ferroloop_cpython_skips", HERE / "skips.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return dict(mod.EXCLUDED_MODULES), {m: dict(t) for m, t in mod.SKIPS.items()}


def load_base_loop_modules():
    """Return (BASE_LOOP_MODULES, its reasons) from skips.py."""
    spec = importlib.util.spec_from_file_location("_ferroloop_cpython_skips2", HERE / "skips.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return set(mod.BASE_LOOP_MODULES), dict(mod.BASE_LOOP_MODULES)


def load_selector_loop_modules():
    """Return SELECTOR_LOOP_MODULES from skips.py."""
    spec = importlib.util.spec_from_file_location("_ferroloop_cpython_skips3", HERE / "skips.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return dict(getattr(mod, "SELECTOR_LOOP_MODULES", {}))


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

def install_ferroloop(module=None):
    """Make every default-loop path of asyncio produce ferroloop loops.

    For the modules in ``skips.BASE_LOOP_MODULES``, ``asyncio.BaseEventLoop()`` (which those
    tests use as "a plain event loop") makes ferroloop loops too.

    Returns a function telling how many ferroloop loops were made through those paths.
    Raises RuntimeError when the substitution does not take.
    """
    import asyncio
    import ferroloop

    created = [0]

    def counted(factory):
        def new_event_loop():
            loop = factory()
            created[0] += 1
            return loop
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
    if hasattr(asyncio, "EventLoop"):
        asyncio.EventLoop = ferroloop.Loop
        for modname in ("unix_events", "windows_events"):
            mod = getattr(asyncio, modname, None)
            if mod is not None and hasattr(mod, "EventLoop"):
                mod.EventLoop = ferroloop.Loop

    # Modules whose tests take asyncio.BaseEventLoop() as "an event loop" (their mocks only
    # set attributes that ferroloop does not use).
    base_loop_modules, _ = load_base_loop_modules()
    if module in base_loop_modules:
        asyncio.BaseEventLoop = counted(ferroloop.Loop)
    # Modules whose generic loop tests are parametrized by asyncio's SelectorEventLoop (one
    # test class per selector): every one of those classes runs on ferroloop instead.
    if module in load_selector_loop_modules():
        def selector_event_loop(selector=None):
            return counted(ferroloop.Loop)()
        asyncio.SelectorEventLoop = selector_event_loop

    # Check every path, then put the ferroloop policy back.
    def check(what, loop):
        try:
            if not type(loop).__module__.startswith("ferroloop"):
                raise RuntimeError("ferroloop not substituted: %s gave %s.%s" % (
                    what, type(loop).__module__, type(loop).__qualname__))
        finally:
            loop.close()

    check("asyncio.new_event_loop()", asyncio.new_event_loop())
    asyncio.set_event_loop_policy(None)
    check("asyncio.new_event_loop() after set_event_loop_policy(None)", asyncio.new_event_loop())
    with asyncio.Runner() as runner:
        if not type(runner.get_loop()).__module__.startswith("ferroloop"):
            raise RuntimeError("ferroloop not substituted: asyncio.Runner() made %r"
                               % runner.get_loop())
    if hasattr(asyncio, "EventLoop"):
        check("asyncio.EventLoop()", asyncio.EventLoop())
    asyncio.set_event_loop_policy(policy)
    asyncio.set_event_loop(None)
    return lambda: created[0]


# Test classes parametrized by ferroloop's own implementations, the way CPython parametrizes
# them by its C and pure-Python ones: module -> {ferroloop class: C-implementation class}.
# Each ferroloop class subclasses the C one (so it also runs the C-only tests) with the
# implementation swapped; its outcomes are compared with the C class's stock outcomes.
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
    (one that wraps the class's Task/Future, which must now wrap ferroloop's)."""
    import ferroloop

    if module == "test_futures":
        future = ferroloop.Future

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
    task = getattr(ferroloop, "Task", None)
    if task is None:
        return {}  # ferroloop has no native Task in this build: nothing to mirror
    if module == "test_tasks":
        return {
            "CTask_CFuture_Tests": {"Task": task, "Future": ferroloop.Future},
            "CTask_CFuture_SubclassTests": {
                "Task": task, "Future": ferroloop.Future,
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


def add_mirrors(module, mod):
    """Add the MIRRORS classes of `module` to the imported test module `mod`."""
    attrs = mirror_attrs(module, mod)
    for name, c_name in MIRRORS.get(module, {}).items():
        c_class = getattr(mod, c_name, None)
        if c_class is None or c_name not in attrs:
            continue
        overrides = dict(attrs[c_name])
        decorate = overrides.pop("__decorate__", None)
        mirror = type(name, (c_class,), overrides)
        mirror.__module__ = mod.__name__
        if decorate is not None:
            mirror = decorate(mirror)
        setattr(mod, name, mirror)


def mirrors_available(module):
    """Whether this ferroloop build has the implementation `module`'s mirrors test."""
    import ferroloop

    needed = "Future" if module == "test_futures" else "Task"
    return hasattr(ferroloop, needed)


def with_mirrored_stock(stock):
    """Stock outcomes extended with the MIRRORS classes (each takes its C class's), for the
    mirrors this ferroloop build can run."""
    for module, mirrors in MIRRORS.items():
        tests = stock.get(module)
        if not tests or not mirrors_available(module):
            continue
        for name, c_name in mirrors.items():
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


def child_main(job_path):
    import faulthandler
    import io
    import traceback
    import unittest

    job = json.loads(Path(job_path).read_text())
    module = job["module"]
    out = open(job["results"], "a", buffering=1)

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
    if job["stock"]:
        ferroloop_loops = lambda: 0
    else:
        try:
            ferroloop_loops = install_ferroloop(module)
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
        add_mirrors(module, mod)
    tests = list(flatten(unittest.defaultTestLoader.loadTestsFromModule(mod)))
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

    class Result(unittest.TextTestResult):
        def startTest(self, test):
            self._fl_before = ferroloop_loops()
            arm()
            emit(start=test_id(test))
            super().startTest(test)

        def stopTest(self, test):
            super().stopTest(test)
            emit(stop=test_id(test))
            arm()

        def _record(self, test, outcome, err=None):
            tb = self._exc_info_to_string(err, test) if err is not None else None
            fl = ferroloop_loops() > getattr(self, "_fl_before", ferroloop_loops())
            emit(id=test_id(test), outcome=outcome, tb=tb, fl=fl)

        def addSuccess(self, t): super().addSuccess(t); self._record(t, "pass")
        def addFailure(self, t, e): super().addFailure(t, e); self._record(t, "fail", e)
        def addError(self, t, e): super().addError(t, e); self._record(t, "error", e)
        def addSkip(self, t, r): super().addSkip(t, r); emit(id=test_id(t), outcome="skip", tb=r)
        def addExpectedFailure(self, t, e):
            super().addExpectedFailure(t, e); self._record(t, "xfail", e)
        def addUnexpectedSuccess(self, t): super().addUnexpectedSuccess(t); self._record(t, "xpass")

        def addSubTest(self, test, subtest, err):
            super().addSubTest(test, subtest, err)
            if err is not None:
                outcome = "fail" if issubclass(err[0], test.failureException) else "error"
                self._record(test, outcome, err)

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
        self.fl = set()         # ids of tests that made a ferroloop loop
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
                if "id" in rec:
                    res.set(rec["id"], rec["outcome"], rec.get("tb"))
                    if rec.get("fl"):
                        res.fl.add(rec["id"])
                elif "event" in rec and rec["event"] != "collected":
                    event, tb = rec["event"], rec.get("tb") or rec.get("reason", "")
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
            "import ferroloop; print(getattr(ferroloop, '__version__', '?'), ferroloop.__file__)"
            % str(HERE))
    if stock:
        return True, "stock asyncio (ferroloop not substituted)"
    p = subprocess.run([sys.executable, "-B", "-c", code], capture_output=True, text=True,
                       cwd=tempfile.gettempdir(), timeout=120)
    if p.returncode:
        return False, (p.stdout + p.stderr).strip()
    return True, "ferroloop " + p.stdout.strip()


def load_stock(stock_dir):
    path = Path(stock_dir) / ("cpython_%d.%d.json" % sys.version_info[:2])
    if not path.is_file():
        return None, path
    data = json.loads(path.read_text())
    return {m: {t: o for t, o in tests.items() if not t.startswith("__")}
            for m, tests in data.items()}, path


def compare(run, stock_tests, skipped_ids):
    """(stock-passing tests considered, of which pass here, regressions [(id, outcome)])."""
    considered = [t for t, o in stock_tests.items() if o == "pass" and t not in skipped_ids]
    regressions = [(t, run.tests.get(t, "missing")) for t in considered
                   if run.tests.get(t) != "pass"]
    return len(considered), len(considered) - len(regressions), regressions


def excerpt(tb, n):
    """The last n lines of a traceback: innermost frames and the exception (what triage needs;
    the outer frames of async tests are the runner's)."""
    lines = [l for l in (tb or "").splitlines() if l.strip()]
    return (["..."] if len(lines) > n else []) + lines[-n:]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See the module docstring for details.")
    ap.add_argument("modules", nargs="*", metavar="module",
                    help="test_asyncio modules (default: all but skips.EXCLUDED_MODULES)")
    ap.add_argument("--json", metavar="OUT", help="write outcomes as JSON to OUT")
    ap.add_argument("--core", action="store_true", help="run CORE_MODULES (plus any named)")
    ap.add_argument("--stock", action="store_true",
                    help="do not substitute ferroloop (reproduce stock asyncio outcomes)")
    ap.add_argument("--stock-dir", default=str(DEFAULT_STOCK_DIR),
                    help="directory of cpython_X.Y.json stock outcomes (default: %(default)s)")
    ap.add_argument("--fail-under", type=float, metavar="PCT",
                    help="exit 1 if a module passes less than PCT%% of its stock-passing tests")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per module (default 600)")
    ap.add_argument("--test-timeout", type=float, default=120,
                    help="seconds per test before it is killed as hung (default 120)")
    ap.add_argument("-j", "--jobs", type=int, default=1, help="modules run in parallel (default 1)")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="show the end of each regression's traceback")
    ap.add_argument("--tb-lines", type=int, default=TB_LINES, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    sys.dont_write_bytecode = True      # leave no __pycache__ in tests/cpython
    excluded, all_skips = load_skips()
    present = available_modules()
    wanted = [normalize(m) for m in args.modules]
    if args.core:
        wanted = CORE_MODULES + wanted
    if not wanted:
        wanted = [m for m in present if m not in excluded]
    wanted = list(dict.fromkeys(wanted))

    pyver = platform.python_version()
    ok, what = preflight(args.stock)
    print("Python %s (%s) -- %s" % (pyver, sys.executable, what.splitlines()[-1] if ok else
                                      "ferroloop NOT usable"))
    if not ok:
        print(what, file=sys.stderr)
        print("error: ferroloop cannot be imported or does not replace asyncio's loop "
              "(build/install it, or use --stock)", file=sys.stderr)
        return 2

    stock, stock_path = load_stock(args.stock_dir)
    if stock is not None and not args.stock:
        stock = with_mirrored_stock(stock)
    if stock is None:
        print("note: no stock outcomes at %s; skipping the comparison" % stock_path)
        if args.fail_under is not None:
            print("error: --fail-under needs the stock outcomes", file=sys.stderr)
            return 2

    runs = {}
    absent = [m for m in wanted if m not in present]
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
    for m in [m for m in to_run if runs[m].status == "absent"]:
        absent.append(m)
    ran = [m for m in to_run if runs[m].status in ("ok", "broken")]
    for m in ran:
        stale = sorted(set(all_skips.get(m, {})) - set(runs[m].tests))
        if stale and runs[m].status == "ok" and args.verbose:
            print("note: skips.SKIPS[%r] names tests this Python's module lacks: %s"
                  % (m, ", ".join(stale)))

    # ---- table
    hdr = "%-26s %6s %6s %6s %7s %6s" % ("module", "passed", "failed", "errors", "skipped", "on-fl")
    if stock is not None:
        hdr += "  %10s %6s %7s" % ("stock-pass", "pass", "rate")
    print()
    print(hdr)
    print("-" * len(hdr))
    totals = [0] * 8
    regressions, below = {}, []
    for m in ran:
        r = runs[m]
        c = r.counts()
        row = [c["passed"], c["failed"], c["errors"], c["skipped"],
               len(r.fl) if not args.stock else 0]
        line = "%-26s %6d %6d %6d %7d %6s" % (m, *row[:4], "-" if args.stock else row[4])
        if stock is not None:
            if m in stock and stock[m]:
                n, good, regs = compare(r, stock[m], set(all_skips.get(m, {})))
                rate = 100.0 * good / n if n else 100.0
                line += "  %10d %6d %6.1f%%" % (n, good, rate)
                row += [n, good]
                regressions[m] = regs
                if args.fail_under is not None and rate < args.fail_under:
                    below.append((m, rate))
            else:
                line += "  %10s %6s %7s" % ("-", "-", "-")
                row += [0, 0]
        totals = [a + b for a, b in zip(totals, row + [0] * (8 - len(row)))]
        if r.status == "broken":
            line += "  BROKEN"
        print(line)
    if len(ran) > 1:
        print("-" * len(hdr))
        line = "%-26s %6d %6d %6d %7d %6s" % ("TOTAL", *totals[:4],
                                                 "-" if args.stock else totals[4])
        if stock is not None and totals[5]:
            line += "  %10d %6d %6.1f%%" % (totals[5], totals[6], 100.0 * totals[6] / totals[5])
        print(line)
    if absent:
        print("absent on Python %s: %s" % (pyver, " ".join(sorted(set(absent)))))
    skipped_mods = [m for m in to_run if runs[m].status == "module_skip"]
    if skipped_mods:
        print("skipped by the module itself: " + " ".join(skipped_mods))

    # ---- regressions
    nreg = sum(len(v) for v in regressions.values())
    if nreg:
        print("\nRegressions (stock pass, not pass here): %d" % nreg)
        for m, regs in regressions.items():
            for tid, outcome in regs:
                print("  %s  %s.%s" % (outcome.upper().ljust(7), m, tid))
                if args.verbose:
                    for l in excerpt(runs[m].tbs.get(tid), args.tb_lines):
                        print("        " + l)
    broken = [m for m in ran if runs[m].status == "broken"]
    for m in broken:
        print("\n%s could not run: %s" % (m, runs[m].note))
        for l in excerpt(runs[m].tbs.get(RUN_ID), args.tb_lines if args.verbose else 4):
            print("    " + l)

    # ---- JSON
    if args.json:
        doc = {"python": pyver, "modules": {}, "skips": {}}
        for m in ran:
            r = runs[m]
            doc["modules"][m] = dict(r.counts(), tests=dict(sorted(r.tests.items())))
            doc["skips"].update((t, why) for t, why in all_skips.get(m, {}).items()
                                if r.tests.get(t) == "skip")
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
        print("\nwrote " + args.json)

    if broken:
        print("FAIL: could not run: " + " ".join(broken))
        return 2
    if below:
        print("FAIL: under %g%% of stock-passing tests: %s" % (
            args.fail_under, ", ".join("%s %.1f%%" % mr for mr in below)))
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--_child":
        child_main(sys.argv[2])
    else:
        sys.exit(main())
