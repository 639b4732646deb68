"""What tests/cpython/run.py leaves out of CPython's asyncio test suite on ferroloop.

EXCLUDED_MODULES: modules of ``test.test_asyncio`` that test asyncio's own loop implementation
(its private classes and methods) or no event loop at all, so they tell nothing about ferroloop.
They are left out of the default module list; naming one on the command line still runs it.

SKIPS: single tests that cannot apply to ferroloop, per module, each with the reason written out
(e.g. the test asserts on a private attribute of asyncio's own loop class). run.py turns each
into a unittest skip with that reason and lists it under "skips" in its JSON output. A test
that fails because ferroloop behaves differently from asyncio is a bug, not a skip.

KNOWN_DIFFERENCES: single tests that pass on stock asyncio and fail on ferroloop because
ferroloop behaves differently, on purpose or until fixed, each with its reason (CPython's
``expectedFailure`` habit). They run; the gate fails if one of them passes (remove it then), and
on every other stock-passing test that does not pass.

INTERNAL_CLASSES: test classes that test asyncio's own loop implementation inside a module that
is otherwise run. Their tests still run; one that is observed using ferroloop (it made or ran a
ferroloop loop) is gated like any other, the others are reported as "internal" and not gated.
This includes the classes that run.py's LOOP_MIRRORS copy onto ferroloop: the originals keep
asyncio's own SelectorEventLoop (one class per selector) and are left out of ferroloop runs
(run.py's LOOP_MIRRORED); their ferroloop copy is gated.

DEFERRED: single stock-passing tests, in a module gated for one part of the loop, that exercise a
part another open issue builds (UDP, pipes, subprocesses: issue 9), each with that issue as its
reason. Like KNOWN_DIFFERENCES they run and are not regressions while they do not pass, and the
gate fails once one passes (remove its entry then: from that point it is gated). They are not
differences: the issue that lands the feature empties its entries.

UNAVAILABLE_MODULES: modules that may be absent, skip themselves at import, or have no stock
outcomes on a given Python version without that being an error (any other requested module in
that state is an error).

Test ids are ``TestClass.test_method`` (``type(test).__name__ + "." + test._testMethodName``).
"""

EXCLUDED_MODULES = {
    "test_selector_events":
        "tests BaseSelectorEventLoop and its private _Selector*Transport classes "
        "on mocked selectors",
    "test_proactor_events":
        "tests BaseProactorEventLoop and its private _Proactor*Transport classes "
        "on a mocked proactor",
    "test_windows_events":
        "Windows only (raises SkipTest elsewhere): ProactorEventLoop and IocpProactor",
    "test_windows_utils":
        "Windows only (raises SkipTest elsewhere): asyncio.windows_utils pipes and Popen",
    "test_transports":
        "tests the asyncio.transports base classes themselves; no event loop is created",
    "test_protocols":
        "tests the asyncio.protocols abstract classes themselves; no event loop is created",
}

# Modules whose tests create "an event loop" as ``asyncio.BaseEventLoop()`` (with a mocked
# selector) rather than through the policy; run.py makes that call return a ferroloop loop so
# the tests exercise ferroloop. Module -> what the tests use the loop for.
BASE_LOOP_MODULES = {
    "test_pep492":
        "BaseTest.setUp builds the loop for every test (async with/for, awaitables, "
        "coroutine wrappers) as asyncio.BaseEventLoop()",
    "test_runners":
        "BaseTest.new_loop builds the loop that asyncio.run/asyncio.Runner drive as "
        "asyncio.BaseEventLoop(), via a test policy",
}

# module -> {"TestClass.test_method": "reason"}. A test may exist on some Python versions only.
SKIPS = {
    "test_events": {
        "FerroloopEventLoopTests.test_timeout_rounding":
            "counts calls of loop._run_once by replacing it on the instance and reports "
            "loop._selector: both are asyncio's private iteration machinery, which ferroloop's "
            "native run_forever neither calls through Python nor has",
        "FerroloopEventLoopTests.test_internal_fds":
            "asserts on BaseSelectorEventLoop's private self-pipe bookkeeping (loop._internal_fds, "
            "_csock, _ssock), and skips itself on any loop that is not a BaseSelectorEventLoop; "
            "ferroloop wakes its poll with an eventfd",
    },
    "test_unix_events": {
        f"SelectorEventLoopUnixSockSendfileTests.{name}":
            "checks that _sock_sendfile_native_impl left (or did not leave) a writer registered "
            "by looking the socket up in loop._selector, the selectors.BaseSelector of asyncio's "
            "selector loop; ferroloop's registrations live in its native reactor"
        for name in ("test_sock_sendfile_cancel1", "test_sock_sendfile_cancel2",
                     "test_sock_sendfile_blocking_error", "test_sock_sendfile_os_error_first_call",
                     "test_sock_sendfile_os_error_next_call", "test_sock_sendfile_exception")
    },
    "test_runners": {
        # 3.12+
        "RunTests.test_loop_factory_default_event_loop":
            "asserts that asyncio.EventLoop is asyncio's own SelectorEventLoop; run.py rebinds "
            "asyncio.EventLoop to ferroloop.Loop so that loop_factory=asyncio.EventLoop runs "
            "on ferroloop",
    },
}

# module -> {"TestClass.test_method": "reason"}: stock-passing tests expected to fail on ferroloop.
KNOWN_DIFFERENCES = {
    "test_tasks": {
        f"FerroloopTask_FerroloopFuture_Tests.{name}":
            "calls ferroloop.Future.set_result/set_exception unbound on a ferroloop.Task; the Task "
            "subclasses C asyncio.Task (so isinstance(t, asyncio.Task) holds), so it cannot also "
            "subclass ferroloop.Future (two native layouts) and the method descriptor rejects it. "
            "Calling the base's methods unbound on a task is not a documented use of either class."
        for name in ("test_set_result_causes_invalid_state",
                     "test_set_exception_causes_invalid_state")
    },
}


def _selector_twins(mirror, *classes):
    """INTERNAL_CLASSES entries for the classes run.py's LOOP_MIRRORS copy onto ferroloop."""
    return {cls: f"runs its tests on asyncio's own SelectorEventLoop; run.py's LOOP_MIRRORS "
                 f"runs the same tests on ferroloop as {mirror}" for cls in classes}


_SELECTOR_CLASSES = ("EPollEventLoopTests", "PollEventLoopTests", "SelectEventLoopTests")

# module -> {class name: reason}.
INTERNAL_CLASSES = {
    "test_events": _selector_twins("FerroloopEventLoopTests", *_SELECTOR_CLASSES),
    "test_sock_lowlevel": _selector_twins("FerroloopEventLoopTests", *_SELECTOR_CLASSES),
    "test_sendfile": _selector_twins("FerroloopEventLoopTests", *_SELECTOR_CLASSES),
    "test_server": _selector_twins("FerroloopStartServerTests", "SelectorStartServerTests"),
    "test_buffered_proto": _selector_twins("FerroloopBufferedProtocolTests",
                                           "BufferedProtocolSelectorTests"),
    "test_unix_events": {
        **_selector_twins("FerroloopUnixSocketTests", "SelectorEventLoopUnixSocketTests"),
        "SelectorEventLoopSignalTests":
            "_UnixSelectorEventLoop's private signal machinery (_check_signal, _handle_signal, "
            "_signal_handlers) with asyncio.unix_events.signal mocked",
        "UnixReadPipeTransportTests":
            "asyncio's private _UnixReadPipeTransport on test_utils' TestLoop with os.read mocked",
        "UnixWritePipeTransportTests":
            "asyncio's private _UnixWritePipeTransport on test_utils' TestLoop with os.write "
            "mocked",
        "AbstractChildWatcherTests":
            "asyncio.AbstractChildWatcher's abstract methods raise NotImplementedError; no loop",
        "BaseChildWatcherTests":
            "asyncio's private BaseChildWatcher._do_waitpid raises NotImplementedError; no loop",
        "SafeChildWatcherTests":
            "asyncio's SafeChildWatcher on test_utils' TestLoop with os.waitpid mocked",
        "FastChildWatcherTests":
            "asyncio's FastChildWatcher on test_utils' TestLoop with os.waitpid mocked",
    },
    "test_base_events": {
        "BaseEventLoopTests":
            "drives asyncio.BaseEventLoop's private machinery (_run_once, _ready, _scheduled, "
            "_selector, _process_events) on a BaseEventLoop with a mocked selector; its tests that "
            "make their own loop with asyncio.new_event_loop() run on ferroloop and are gated",
        "BaseEventLoopWithSelectorTests":
            "asyncio.SelectorEventLoop's networking internals (_make_*_transport, sock_* "
            "helpers) on mocked sockets",
        "BaseLoopSockSendfileTests":
            "the sendfile fallback of asyncio's BaseSelectorEventLoop",
    },
}


# module -> {"TestClass.test_method": "issue and reason"}: stock-passing tests of parts of the
# loop that another open issue builds. A test may exist on some Python versions only.
DEFERRED: dict[str, dict[str, str]] = {}

# module -> {"X.Y": reason}: Pythons on which the module may be missing (absent, skipped at
# import, or without stock outcomes).
UNAVAILABLE_MODULES = {
    "test_eager_task_factory": {
        "3.11": "eager task factories (and this test module) were added in CPython 3.12",
    },
    "test_staggered": {
        "3.11": "this test module of asyncio.staggered was added in CPython 3.12",
        "3.12": "this test module of asyncio.staggered came with a later 3.12 bug-fix "
                "release; CPython 3.12.1 has none",
    },
}
