"""Runtime support for generated difftest programs: the trace, normalisation, recorders.

A generated program (see dt_gen.py) is executed with ``T``, ``E``, ``R`` and ``H`` in its
globals.  Everything observable goes through ``T(...)``, which appends one line to the
program's trace.  Values are normalised *at trace time* only in ways that may legitimately
differ between stock asyncio and ferroloop (see ``normalise``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import signal
import threading
import time

_ADDR = re.compile(r"0x[0-9a-fA-F]+")
_WHEN = re.compile(r"when=-?[0-9][0-9.e+-]*")
_TASKN = re.compile(r"\bTask-(\d+)\b")
_PREFIX = re.compile(r"(?<![\w.])(ferroloop\._ferroloop|ferroloop|_asyncio)\.")
_STDLIB = re.compile(r"(/[^\s'\"<>]*?)?/lib/python3\.\d+/")


def normalise(s: str, task_base: int | None) -> str:
    """What may differ between implementations: object addresses, the ``ferroloop.`` /
    ``_asyncio.`` module prefix of type names, the absolute deadline in a TimerHandle's
    repr, where the interpreter is installed, and the process-wide default-task-name
    counter (made relative to the first task of the program)."""
    s = _ADDR.sub("0x?", s)
    s = _PREFIX.sub("", s)
    s = _WHEN.sub("when=?", s)
    s = _STDLIB.sub("<stdlib>/", s)
    if task_base is not None:
        s = _TASKN.sub(lambda m: "Task-+%d" % (int(m.group(1)) - task_base), s)
    return s


def program_frames(msg: str) -> str:
    """A logged message with its debug tracebacks ("Handle created at ...") cut to the
    program's own frames. The 10-frame window differs on purpose (README, known
    differences): asyncio's holds frames of its Python methods that ferroloop implements
    natively (run_until_complete, run_forever, _run_once), so it reaches less far up the
    harness's stack."""
    out, skip_code = [], False
    for line in msg.splitlines():
        if skip_code and line.startswith("    "):
            skip_code = False
            continue
        skip_code = False
        if line.startswith('  File "') and not line.startswith('  File "difftest_'):
            skip_code = True
            continue
        out.append(line)
    return "\n".join(out)


# Reports made when garbage is destroyed: when (within a stage) depends on whether the
# object sat in a reference cycle, which differs where asyncio runs Python frames and
# ferroloop native code.  They are traced at the end of the stage, sorted.
GC_REPORTS = ("Future exception was never retrieved", "Task exception was never retrieved",
              "Task was destroyed but it is pending!")


class Harness:
    def __init__(self):
        self.gc_reports: list[str] = []
        self.lines: list[str] = []
        self.task_base: int | None = None
        self.loop = None
        self._log_handler = None

    # ---- the trace -------------------------------------------------------------------
    def T(self, *parts):
        out = []
        for p in parts:
            out.append(p if isinstance(p, str) else self.R(p))
        self.lines.append(normalise(" ".join(out), self.task_base))

    def R(self, x) -> str:
        try:
            r = repr(x)
        except BaseException as e:  # noqa: BLE001 - a repr that raises is itself a fact
            r = "<repr raised %s>" % self.E(e)
        return r

    def E(self, e) -> str:
        """An exception as ``Type(args)``; groups list their members; chaining noted."""
        if e is None:
            return "None"
        if isinstance(e, type):
            return "class:" + e.__name__
        name = type(e).__name__
        if isinstance(e, BaseExceptionGroup):
            inner = ", ".join(self.E(x) for x in e.exceptions)
            return "%s(%r, [%s])" % (name, e.message, inner)
        try:
            args = ", ".join(self.R(a) for a in e.args)
        except BaseException:  # noqa: BLE001
            args = "?"
        s = "%s(%s)" % (name, args)
        return s

    def EC(self, e) -> str:
        """Like E but with the implicit/explicit chain (``__cause__``/``__context__``)."""
        s = self.E(e)
        if e is not None and not isinstance(e, type):
            if e.__cause__ is not None:
                s += " from " + self.E(e.__cause__)
            elif e.__context__ is not None and not e.__suppress_context__:
                s += " during " + self.E(e.__context__)
        return s

    # ---- exception handler contexts ----------------------------------------------
    def fmt_ctx(self, ctx) -> str:
        parts = []
        for k, v in ctx.items():
            if k == "exception":
                parts.append("exception=" + self.EC(v))
            elif k == "source_traceback":
                parts.append("source_traceback=<%d frames, last %s>" % (
                    len(v), (v[-1].name if v else None)))
            elif k == "message":
                parts.append("message=" + str(v))
            else:
                parts.append("%s=%s" % (k, self.R(v)))
        return "{" + "; ".join(parts) + "}"

    def handler(self, loop, ctx):
        if ctx.get("message") in GC_REPORTS:
            self.gc_reports.append(normalise("EH " + self.fmt_ctx(ctx), self.task_base))
            return
        self.T("EH", self.fmt_ctx(ctx))

    def flush_gc_reports(self):
        reports, self.gc_reports = self.gc_reports, []
        for r in sorted(reports):
            self.lines.append("(gc) " + r)

    def use_recording_handler(self, loop):
        loop.set_exception_handler(self.handler)

    # ---- logging of asyncio's default exception handler ----------------------------
    def _install_logging(self):
        h = self

        class Rec(logging.Handler):
            def emit(self, record):
                exc = record.exc_info[1] if record.exc_info else None
                msg = record.getMessage()
                # Source tracebacks ("Object created at ...") name frames of the harness
                # and program only; keep them, but drop the stdlib line numbers.
                if msg.startswith(GC_REPORTS):
                    h.gc_reports.append(normalise("LOG %s %s exc=%s" % (
                        record.levelname, msg, h.EC(exc)), h.task_base))
                    return
                h.T("LOG", record.levelname, program_frames(msg), "exc=" + h.EC(exc))

        self._log_handler = Rec()
        lg = logging.getLogger("asyncio")
        lg.addHandler(self._log_handler)
        lg.propagate = False
        lg.setLevel(logging.DEBUG)

    def _remove_logging(self):
        lg = logging.getLogger("asyncio")
        lg.removeHandler(self._log_handler)
        lg.propagate = True

    # ---- program lifecycle -----------------------------------------------------------
    def start(self, loop):
        self.loop = loop
        self._install_logging()
        loop.set_debug(False)
        # "Executing <Handle ...> took 0.104 seconds" depends on the machine's load
        loop.slow_callback_duration = 3600.0
        self.use_recording_handler(loop)
        asyncio.set_event_loop(loop)

        async def probe():
            return None

        t = loop.create_task(probe())
        self.task_base = int(t.get_name().split("-")[1])
        loop.run_until_complete(t)

    def stage(self, name, fn, is_async):
        self.T("== stage", name)
        loop = self.loop
        try:
            if is_async:
                r = loop.run_until_complete(fn())
            else:
                r = fn()
            self.T("stage result", r)
        except BaseException as e:  # noqa: BLE001
            self.T("stage raised", self.EC(e))
        try:
            loop.set_debug(False)
            loop.set_task_factory(None)
        except BaseException as e:  # noqa: BLE001
            self.T("stage reset raised", self.EC(e))
        # Automatic collection is off while a program runs (run_program): what garbage
        # cycles report ("... exception was never retrieved", "Task was destroyed but it is
        # pending!") must not depend on when allocation counts trigger the collector, and
        # which objects are in cycles differs where asyncio runs Python frames (e.g.
        # run_until_complete's frame holding a failed task) and ferroloop does not.
        gc.collect()
        self.flush_gc_reports()

    def finish(self, loop):
        self.T("== finish")
        try:
            pending = sorted((t for t in asyncio.all_tasks(loop) if not t.done()),
                             key=lambda t: t.get_name())
            self.T("pending tasks", [t.get_name() for t in pending])
            cancelled = []
            for t in pending:
                try:
                    t.cancel()
                    cancelled.append(t)
                except BaseException as e:  # noqa: BLE001 - e.g. RecursionError in a cycle
                    self.T("cancel raised", t.get_name(), self.EC(e))
            if cancelled:
                loop.run_until_complete(asyncio.gather(*cancelled, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        except BaseException as e:  # noqa: BLE001
            self.T("finish raised", self.EC(e))
        try:
            loop.close()
        except BaseException as e:  # noqa: BLE001
            self.T("close raised", self.EC(e))
        self.T("closed", loop.is_closed())

    def cleanup(self):
        """Whatever a program left behind must not leak into the next one."""
        loop = self.loop
        try:
            if loop is not None and not loop.is_closed():
                if loop.is_running():
                    self.T("loop still running at cleanup")
                else:
                    loop.close()
        except BaseException as e:  # noqa: BLE001
            self.T("cleanup raised", self.EC(e))
        # a loop that failed inside run_forever may still be registered as running
        asyncio.events._set_running_loop(None)
        asyncio.set_event_loop(None)
        # objects in reference cycles (tasks awaiting each other) are destroyed by the
        # collector in an undefined order: what they report is compared as a sorted set
        gc.collect()
        self.flush_gc_reports()
        self._remove_logging()
        for s in (signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(s, signal.SIG_DFL)
        try:
            signal.set_wakeup_fd(-1)
        except ValueError:
            pass


def run_program(source: str, name: str, new_loop) -> list[str]:
    """Execute one generated program on a fresh loop made by ``new_loop``; return its trace."""
    h = Harness()
    g = {"__name__": "difftest_prog", "T": h.T, "E": h.E, "EC": h.EC, "R": h.R, "H": h}
    gc.collect()
    gc.disable()
    try:
        code = compile(source, name, "exec")
        exec(code, g)
        g["run"](new_loop)
    except BaseException as e:  # noqa: BLE001
        h.T("program raised", h.EC(e))
    finally:
        h.cleanup()
        gc.enable()
    # threads started by a program must be finished before the next one starts
    deadline = time.monotonic() + 2
    for th in threading.enumerate():
        if th is not threading.main_thread() and not th.daemon:
            th.join(max(0.0, deadline - time.monotonic()))
    del g
    return h.lines
