"""The logic of tests/cpython/run.py, the gate that runs CPython's asyncio suite on ferroloop:
classification and gating on synthetic outcomes, the per-test observation of ferroloop, the
recording of class/module fixture errors, and two end-to-end exits on a tiny module."""

import importlib.util
import io
import json
import subprocess
import sys
import unittest
from pathlib import Path

import pytest

RUN_PY = Path(__file__).resolve().parent / "cpython" / "run.py"


@pytest.fixture(scope="module")
def run():
    spec = importlib.util.spec_from_file_location("ferroloop_cpython_run", RUN_PY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


STOCK = {
    "A.test_ok": "pass",
    "A.test_broken": "pass",
    "A.test_known": "pass",
    "A.test_stock_fails": "fail",
    "A.test_skipped_here": "pass",
    "A.test_gone": "pass",
    "B.test_on_asyncio": "pass",
    "B.test_on_asyncio_broken": "pass",
    "Internal.test_private": "pass",
    "Internal.test_private_broken": "pass",
    "Internal.test_new_event_loop": "pass",
}


# ---- gate_module: classification and what fails the gate


def test_every_stock_passing_failure_is_a_regression_in_either_row(run):
    tests = dict.fromkeys(STOCK, "pass")
    del tests["A.test_gone"]
    tests.update({"A.test_broken": "fail", "B.test_on_asyncio_broken": "error",
                  "A.test_stock_fails": "fail", "A.test_skipped_here": "skip"})
    on_fl = {"A.test_ok", "A.test_broken", "A.test_known", "A.test_skipped_here", "A.test_gone"}
    g = run.gate_module(tests, on_fl, STOCK)
    assert g["regressions"] == [
        ("A.test_broken", "fail"),
        ("A.test_gone", "missing"),
        ("A.test_skipped_here", "skip"),
        ("B.test_on_asyncio_broken", "error"),
    ]
    # A stock failure is not counted at all; observed tests make up ferroloop's row.
    assert g["ferroloop"] == [5, 2]
    assert g["stock_only"] == [5, 4]


def test_known_differences_must_fail_and_skips_are_left_out(run):
    tests = dict.fromkeys(STOCK, "pass")
    tests["A.test_known"] = "fail"
    tests["A.test_skipped_here"] = "skip"
    known = {"A.test_known": "differs on purpose", "A.test_stock_fails": "stale entry"}
    g = run.gate_module(tests, {"A.test_known"}, STOCK, skips={"A.test_skipped_here"},
                        known=known)
    assert g["regressions"] == []
    assert g["known"] == [("A.test_known", "fail")]
    assert g["unexpected_pass"] == []
    assert g["stale_known"] == ["A.test_stock_fails"]
    assert g["ferroloop"] == [1, 0]
    assert g["stock_only"][0] == len(STOCK) - 3  # minus the known one, the skip, the stock fail

    tests["A.test_known"] = "pass"              # fixed: the entry must go (strict)
    g = run.gate_module(tests, set(), STOCK, skips={"A.test_skipped_here"}, known=known)
    assert g["unexpected_pass"] == ["A.test_known"]
    assert g["regressions"] == []


def test_known_differences_do_not_apply_to_a_stock_run(run):
    tests = dict.fromkeys(STOCK, "pass")
    tests["A.test_known"] = "fail"
    g = run.gate_module(tests, set(), STOCK, known={"A.test_known": "r"}, stock_mode=True)
    assert g["regressions"] == [("A.test_known", "fail")]
    assert g["known"] == []


def test_internal_classes_are_gated_only_where_observed_on_ferroloop(run):
    tests = dict.fromkeys(STOCK, "pass")
    tests["Internal.test_private_broken"] = "fail"
    tests["Internal.test_new_event_loop"] = "fail"
    g = run.gate_module(tests, {"Internal.test_new_event_loop"}, STOCK,
                        internal={"Internal": "tests asyncio's own loop"})
    assert g["internal"] == 2
    assert g["regressions"] == [("Internal.test_new_event_loop", "fail")]
    assert g["ferroloop"] == [1, 0]


def test_deferred_tests_are_listed_until_they_pass_then_fail_the_gate(run):
    tests = dict.fromkeys(STOCK, "pass")
    tests["A.test_known"] = "error"
    deferred = {"A.test_known": "issue 9: UDP", "A.test_stock_fails": "stale entry"}
    g = run.gate_module(tests, {"A.test_known"}, STOCK, deferred=deferred)
    assert g["regressions"] == []
    assert g["deferred"] == [("A.test_known", "error")]
    assert g["known"] == [] and g["unexpected_pass"] == []
    assert g["stale_deferred"] == ["A.test_stock_fails"]
    assert g["ferroloop"] == [1, 0]             # still counted in its row

    tests["A.test_known"] = "pass"              # the feature landed: the entry must go
    g = run.gate_module(tests, {"A.test_known"}, STOCK, deferred=deferred)
    assert g["deferred_pass"] == ["A.test_known"]
    assert g["deferred"] == [] and g["regressions"] == []

    # Not applied to a stock run: there every stock-passing test must pass.
    tests["A.test_known"] = "fail"
    g = run.gate_module(tests, set(), STOCK, deferred=deferred, stock_mode=True)
    assert g["regressions"] == [("A.test_known", "fail")]
    assert g["deferred"] == []


# ---- module_problems: what makes a module unmeasurable


def _module_run(run, status="ok", tests=None, missing=None):
    r = run.ModuleRun("test_x")
    r.status = status
    r.tests = dict(tests or {})
    r.mirrors_missing = dict(missing or {})
    return r


def test_absent_skipped_or_stockless_modules_are_errors_unless_named(run):
    unavailable = {"test_x": {"3.11": "added in 3.12"}}
    stock = {"A.test_ok": "pass"}
    probs, note = run.module_problems("test_x", None, "3.13", stock, unavailable)
    assert len(probs) == 1 and "does not exist" in probs[0] and not note
    probs, note = run.module_problems("test_x", None, "3.11", stock, unavailable)
    assert probs == [] and "added in 3.12" in note
    skipped = _module_run(run, "module_skip")
    assert "skips itself" in run.module_problems("test_x", skipped, "3.13", stock, {})[0][0]
    fine = _module_run(run, tests={"A.test_ok": "pass"})
    assert "no stock outcomes" in run.module_problems("test_x", fine, "3.13", {}, {})[0][0]
    assert run.module_problems("test_x", fine, "3.13", stock, {}) == ([], "")
    broken = _module_run(run, "broken")
    assert "could not run" in run.module_problems("test_x", broken, "3.13", stock, {})[0][0]


def test_every_expected_mirror_class_must_exist_and_run(run):
    module = "test_futures"
    mirrors = run.MIRRORS[module]
    stock = {}
    tests = {}
    for name, c_name in mirrors.items():
        stock[c_name + ".test_a"] = stock[name + ".test_a"] = "pass"
        tests[name + ".test_a"] = "pass"
    ok = _module_run(run, tests=tests)
    assert run.module_problems(module, ok, "3.13", stock, {}) == ([], "")
    first = next(iter(mirrors))
    lacking = _module_run(run, tests=tests, missing={first: "this ferroloop build lacks it"})
    probs, _ = run.module_problems(module, lacking, "3.13", stock, {})
    assert len(probs) == 1 and first in probs[0] and "missing" in probs[0]
    idle = _module_run(run, tests={t: o for t, o in tests.items() if not t.startswith(first)})
    probs, _ = run.module_problems(module, idle, "3.13", stock, {})
    assert len(probs) == 1 and "ran no tests" in probs[0]
    # A stock run has no mirrors.
    assert run.module_problems(module, idle, "3.13", stock, {}, stock_mode=True) == ([], "")


def test_every_expected_loop_mirror_must_exist_and_run(run):
    module = "test_server"
    (name, base), = run.LOOP_MIRRORS[module].items()
    stock = {base + ".test_a": "pass"}
    extended = run.with_mirrored_stock({module: dict(stock)})[module]
    assert extended[name + ".test_a"] == "pass"            # the copy takes the original's
    ok = _module_run(run, tests={name + ".test_a": "pass", base + ".test_a": "pass"})
    assert run.module_problems(module, ok, "3.13", extended, {}) == ([], "")
    idle = _module_run(run, tests={base + ".test_a": "pass"})
    probs, _ = run.module_problems(module, idle, "3.13", extended, {})
    assert len(probs) == 1 and name in probs[0] and "ran no tests" in probs[0]


def test_net_modules_have_their_loop_mirrors_and_internal_twins(run):
    skips = run.config()
    assert set(run.LOOP_MIRRORED) == set(run.LOOP_MIRRORS)
    for module, mirrors in run.LOOP_MIRRORS.items():
        assert module in run.NET_MODULES
        for name, base in mirrors.items():
            assert base in run.LOOP_MIRRORED[module]
            assert name not in skips.INTERNAL_CLASSES[module]
        # The originals keep asyncio's loop and are not run on ferroloop: the gate must not
        # count them as missing.
        for cls in run.LOOP_MIRRORED[module]:
            assert cls in skips.INTERNAL_CLASSES[module], (module, cls)
    for module, entries in skips.DEFERRED.items():
        assert module in run.NET_MODULES
        assert all(why.startswith("issue ") for why in entries.values())


# ---- the child's result stream: observation and fixture errors


def _run_suite(run, observer, *classes):
    records = []
    result_cls = run.result_class(lambda **rec: records.append(rec), observer=observer)
    suite = unittest.TestSuite(unittest.defaultTestLoader.loadTestsFromTestCase(c)
                               for c in classes)
    unittest.TextTestRunner(stream=io.StringIO(), resultclass=result_cls,
                            verbosity=0).run(suite)
    module_run = run.ModuleRun("test_x")
    for rec in records:
        module_run.feed(json.loads(json.dumps(rec)))     # the way it crosses the pipe
    return module_run


def test_each_test_is_observed_on_ferroloop_or_not(run):
    observer = run.Observer()

    class Impl:
        pass

    def make(self):
        return Impl()

    class Cases(unittest.TestCase):
        cls = run.Observed(Impl, observer)
        new = run.Observed(make, observer)

        def test_makes_loop(self):
            observer.loops += 1

        def test_uses_impl(self):
            self.assertIs(self.cls, Impl)                # the very same object
            self.assertIs(type(self).cls, Impl)          # also through the class

        def test_uses_factory(self):
            self.assertIsInstance(self.new(), Impl)      # functions are bound like methods

        def test_untouched(self):
            pass

        def test_fails_after_loop(self):
            observer.loops += 1
            self.fail("boom")

    r = _run_suite(run, observer, Cases)
    assert r.tests == {"Cases.test_makes_loop": "pass", "Cases.test_uses_impl": "pass",
                       "Cases.test_uses_factory": "pass", "Cases.test_untouched": "pass",
                       "Cases.test_fails_after_loop": "fail"}
    assert r.fl == {"Cases.test_makes_loop": {"loop"}, "Cases.test_uses_impl": {"impl"},
                    "Cases.test_uses_factory": {"impl"},
                    "Cases.test_fails_after_loop": {"loop"}}
    assert "boom" in r.tbs["Cases.test_fails_after_loop"]


def test_a_loop_mirror_runs_its_tests_on_ferroloop_and_observes_them(run):
    import asyncio

    import ferroloop

    observer = run.Observer()
    stock_selector_loop = asyncio.SelectorEventLoop
    seen = {}

    class SelectorTests(unittest.TestCase):
        def setUp(self):
            self.loop = asyncio.SelectorEventLoop()
            self.addCleanup(self.loop.close)

        def test_loop(self):
            seen[type(self).__name__] = type(self.loop)
            self.assertEqual(self.loop.run_until_complete(asyncio.sleep(0, 7)), 7)

    mirror = run.loop_mirror("FerroloopSelectorTests", SelectorTests, observer)
    assert issubclass(mirror, SelectorTests)
    r = _run_suite(run, observer, SelectorTests, mirror)
    assert r.tests == {"SelectorTests.test_loop": "pass",
                       "FerroloopSelectorTests.test_loop": "pass"}
    assert seen == {"SelectorTests": stock_selector_loop,
                    "FerroloopSelectorTests": ferroloop.Loop}
    assert r.fl == {"FerroloopSelectorTests.test_loop": {"loop"}}
    assert asyncio.SelectorEventLoop is stock_selector_loop      # put back after each test


def test_what_a_failed_test_leaves_behind_does_not_warn_inside_the_next_test(run):
    import gc
    import warnings

    class Unclosed:
        """Cyclic garbage that warns when collected, like a file a test did not get to close."""

        def __init__(self):
            self.cycle = self

        def __del__(self):
            warnings.warn("unclosed " + type(self).__name__, ResourceWarning)

    class Cases(unittest.TestCase):
        def test_1_fails_half_way(self):
            Unclosed()
            self.fail("NotImplementedError before the resource was handed over")

        def test_2_counts_its_own_warnings(self):
            with self.assertWarns(ResourceWarning) as cm:
                Unclosed()
                gc.collect()
            self.assertEqual(len(cm.warnings), 1)

    enabled = gc.isenabled()
    gc.collect()
    gc.disable()            # no automatic collection between the two tests
    try:
        r = _run_suite(run, run.Observer(), Cases)
    finally:
        if enabled:
            gc.enable()
    assert r.tests == {"Cases.test_1_fails_half_way": "fail",
                       "Cases.test_2_counts_its_own_warnings": "pass"}


def test_class_fixture_errors_are_recorded(run):
    class TornDown(unittest.TestCase):
        @classmethod
        def tearDownClass(cls):
            raise RuntimeError("tearDownClass broke")

        def test_fine(self):
            pass

    class NotSetUp(unittest.TestCase):
        @classmethod
        def setUpClass(cls):
            raise RuntimeError("setUpClass broke")

        def test_never_runs(self):
            pass

    r = _run_suite(run, run.Observer(), TornDown, NotSetUp)
    assert r.tests == {"TornDown.test_fine": "pass"}
    assert sorted(f.split()[0] for f in r.fixture_errors) == ["setUpClass", "tearDownClass"]
    assert any("tearDownClass broke" in tb for tb in r.fixture_errors.values())


# ---- end to end (a one-test module, ~2 s each)


def _gate(tmp_path, stock, *args):
    minor = "%d.%d" % sys.version_info[:2]
    (tmp_path / ("cpython_%s.json" % minor)).write_text(json.dumps(stock))
    return subprocess.run([sys.executable, str(RUN_PY), "--stock-dir", str(tmp_path), *args],
                          capture_output=True, text=True, timeout=300)


CONTEXT_TEST = "DecimalContextTest.test_asyncio_task_decimal_context"


def test_gate_exit_status_end_to_end(tmp_path):
    p = _gate(tmp_path, {"test_context": {CONTEXT_TEST: "pass"}}, "test_context")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "1/1" in p.stdout                      # observed on ferroloop

    # A stock-passing test that did not pass (here: did not run at all) fails the gate.
    p = _gate(tmp_path, {"test_context": {CONTEXT_TEST: "pass", "Gone.test_gone": "pass"}},
              "test_context")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "Gone.test_gone" in p.stdout

    p = _gate(tmp_path, {"test_context": {CONTEXT_TEST: "pass"}}, "test_no_such_module")
    assert p.returncode == 2, p.stdout + p.stderr
    assert "test_no_such_module does not exist" in p.stdout
