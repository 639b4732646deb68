"""Seeded generator of random asyncio programs over the loop-core API.

``generate(seed, version)`` returns the source of one program.  A program is a list of
*stages*; each stage is an ``async def`` run with ``loop.run_until_complete`` or a plain
``def`` run between two of them (signals across runs, ``run_forever``/``stop``, misuse of a
stopped loop).  Async stages are built from *fragments*, each exercising one area; a stage
sometimes runs several fragments concurrently under ``gather``.

Determinism rules the fragments follow (so that a difference in the trace is a difference of
the loop, never of timing):
* timers whose mutual order is traced have delays 0/negative or distinct multiples of STEP
  (30 ms), all computed from (nearly) the same ``loop.time()``; timers with the same deadline
  only trace a label shared by the whole tie group, never their order;
* only one fragment per stage uses timers, threads or signals (``solo`` fragments run alone);
* threads report to the loop only through futures that the program awaits, or through
  ``call_soon_threadsafe`` from one thread (FIFO); a fragment joins its threads and then
  settles (``SETTLE_THREADS``) before the program goes on;
* nothing depends on garbage collection timing except after an explicit ``gc.collect()``
  of objects without reference cycles.
"""

from __future__ import annotations

import os
import random
import textwrap

STEP = 0.03


# What a fragment runs once its threads are done (joined, or back in their executor's pool
# after the result the fragment awaited). A thread's ``call_soon_threadsafe`` appends its
# callback and then writes a wake-up byte to asyncio's self-pipe, which also carries signal
# numbers; the loop may run the callback (and the step awaiting its result) before the poll
# that finds the byte, or after it. Which iteration then reads the pipe depends on the
# thread's timing, so a signal raised by a following fragment is read (and goes to the
# handler installed at that moment) on one iteration or the next, on stock asyncio too
# (ferroloop's signal socket models the same pipe). Two iterations later the byte has been
# read in any case: settling keeps the programs deterministic without taking threads out of
# the programs that also use signals.
SETTLE_THREADS = "await H_settle()  # the threads' wake-up bytes are read: see SETTLE_THREADS"


def ind(code: str, n: int) -> str:
    return textwrap.indent(code, " " * n)


class Gen:
    def __init__(self, seed: int, version: tuple[int, int], exclude=frozenset()):
        self.exclude = frozenset(exclude)
        self.rng = random.Random(seed)
        self.seed = seed
        self.version = version
        self.n = 0
        self.uses_threads = False
        self.kept_agen = False

    def uid(self, prefix: str) -> str:
        self.n += 1
        return "%s%d" % (prefix, self.n)

    def choice(self, xs):
        return self.rng.choice(xs)

    def randint(self, a, b):
        return self.rng.randint(a, b)

    def coin(self, p=0.5):
        return self.rng.random() < p


# --------------------------------------------------------------------------------------
# Fragments.  Each returns (source of an ``async def NAME():``, kind) where kind is
# "soon" (may run concurrently with other "soon" fragments) or "solo".
# --------------------------------------------------------------------------------------


def frag_callbacks(g: Gen, name: str):
    n = g.randint(3, 8)
    body = [
        "hs = {}",
        "var = contextvars.ContextVar('v', default='dflt')",
        "def cb(i, *a):",
        "    T('%s cb', i, *a, var.get())" % name,
        "def nest(i, depth):",
        "    T('%s nest', i, depth)" % name,
        "    if depth: loop.call_soon(nest, i, depth - 1)",
        "def canc(j):",
        "    h = hs.get(j)",
        "    T('%s canc', j, None if h is None else (h.cancel(), h.cancelled()))" % name,
        "def boom(i):",
        "    T('%s boom', i)" % name,
        "    raise ValueError('boom', i)",
    ]
    for i in range(n):
        op = g.choice(["soon", "soon", "args", "cancel", "nest", "canc", "later0", "ctx",
                       "boom", "repr", "partial", "method", "at_past"])
        if op == "soon":
            body.append("hs[%d] = loop.call_soon(cb, %d)" % (i, i))
        elif op == "args":
            body.append("hs[%d] = loop.call_soon(cb, %d, 'x', None, 2.5)" % (i, i))
        elif op == "cancel":
            body.append("hs[%d] = loop.call_soon(cb, %d); hs[%d].cancel()" % (i, i, i))
        elif op == "nest":
            body.append("hs[%d] = loop.call_soon(nest, %d, %d)" % (i, i, g.randint(0, 3)))
        elif op == "canc":
            body.append("hs[%d] = loop.call_soon(canc, %d)" % (i, g.randint(0, n)))
        elif op == "later0":
            body.append("hs[%d] = loop.call_later(%s, cb, %d, 'later')"
                        % (i, g.choice(["0", "-1", "0.0", "-0.5"]), i))
        elif op == "at_past":
            body.append("hs[%d] = loop.call_at(loop.time() - 1, cb, %d, 'at')" % (i, i))
        elif op == "ctx":
            body.append("c = contextvars.copy_context(); c.run(var.set, 'ctx%d')" % i)
            body.append("hs[%d] = loop.call_soon(cb, %d, context=c)" % (i, i))
        elif op == "boom":
            body.append("hs[%d] = loop.call_soon(boom, %d)" % (i, i))
        elif op == "repr":
            body.append("hs[%d] = loop.call_soon(cb, %d, 'r'); T('%s repr', hs[%d])"
                        % (i, i, name, i))
        elif op == "partial":
            body.append("hs[%d] = loop.call_soon(functools.partial(cb, %d, 'p')); T('%s repr', hs[%d])"
                        % (i, i, name, i))
        elif op == "method":
            body.append("hs[%d] = loop.call_soon([].append, %d); T('%s repr', hs[%d])"
                        % (i, i, name, i))
    if g.coin(0.3):
        body.append("T('%s threadsafe', loop.call_soon_threadsafe(cb, 'ts'))" % name)
    body.append("await H_settle()")
    body.append("T('%s cancelled', [(k, h.cancelled()) for k, h in sorted(hs.items())])" % name)
    if g.coin(0.3):
        body.append("T('%s repr after', [R(h) for k, h in sorted(hs.items())])" % name)
    return "async def %s():\n%s\n" % (name, ind("\n".join(body), 4)), "soon"


def frag_timers(g: Gen, name: str):
    n = g.randint(2, 7)
    body = [
        "done = loop.create_future()",
        "hs = {}",
        "t0 = loop.time()",
        # Timers run in deadline order whatever the machine's load, so the order of the
        # timer callbacks themselves (prim) is traced as one sequence.  What a timer
        # callback schedules (der) runs an iteration later, when a stall of the process
        # may have made the next deadline due too: it is traced per scheduling timer.
        "prim = []; der = {}",
        "def tcb(label):",
        "    prim.append(label)",
        "def dcb(parent, label):",
        "    der.setdefault(parent, []).append(label)",
        "def canc(j):",
        "    h = hs.get(j)",
        "    prim.append(('canc', j, None if h is None else (h.cancel(), h.cancelled())))",
        "def resched(label):",
        "    prim.append('resched ' + label)",
        "    hs[label + 'n'] = loop.call_later(0, dcb, label, 'nested0')",
        "    loop.call_soon(dcb, label, 'soon')",
        "    der.setdefault(label, []).append('resched')",
    ]
    # Plain timers may share a delay (a tie group: they all trace the same label, so their
    # mutual order is not observed).  A timer that does more (cancels another, schedules
    # more) gets a delay of its own, at least STEP away from every other timer.
    free = [1, 2, 3, 4]
    g.rng.shuffle(free)
    shared = [-1, 0, free.pop()]
    maxk = 0
    for i in range(n):
        op = g.choice(["later", "later", "at", "cancel", "canc", "resched", "soon"])
        if op in ("canc", "resched") and free:
            k = free.pop()
        else:
            if op in ("canc", "resched"):
                op = "later"
            k = g.choice(shared)
        maxk = max(maxk, k)
        label = "'d%d'" % k
        d = "%r" % round(k * STEP, 3) if k >= 0 else "-1"
        # Deadlines are fixed from t0: a process stalled for a whole STEP between two
        # call_later()s would otherwise swap their deadlines.  call_later keeps the delay
        # -1, due before every deadline from t0 (unless the process stalls for a second).
        if op == "later" and k >= 0:
            op = "at"
        if op == "later":
            body.append("hs[%d] = loop.call_later(%s, tcb, %s)" % (i, d, label))
        elif op == "at":
            body.append("hs[%d] = loop.call_at(t0 + %s, tcb, %s)" % (i, d, label))
        elif op == "cancel":  # never runs: its deadline's order does not matter
            body.append("hs[%d] = loop.call_later(%s, tcb, %s); hs[%d].cancel()" % (i, d, label, i))
        elif op == "canc":
            body.append("hs[%d] = loop.call_at(t0 + %s, canc, %d)" % (i, d, g.randint(0, n)))
        elif op == "resched":
            body.append("hs[%d] = loop.call_at(t0 + %s, resched, %s)" % (i, d, label))
        elif op == "soon":
            body.append("hs[%d] = loop.call_soon(tcb, 'soon%d')" % (i, i))
    if g.coin(0.3):
        body.append("hinf = loop.call_later(float('inf'), tcb, 'inf'); T('%s inf', hinf.cancelled()); hinf.cancel()" % name)
    if g.coin(0.3):
        body.append("T('%s istimer', [type(h).__name__ for k, h in sorted(hs.items())])" % name)
    body.append("loop.call_at(t0 + %r, done.set_result, 'end')" % round((maxk + 1) * STEP, 3))
    body.append("T('%s done', await done)" % name)
    body.append("await H_settle()")
    body.append("T('%s timers', prim)" % name)
    body.append("T('%s derived', sorted(der.items()))" % name)
    body.append("T('%s cancelled', [(k, h.cancelled()) for k, h in sorted(hs.items(), key=str)])"
                % name)
    # canc() traces which handle it cancelled: the order of "canc" vs a tie group member is
    # not fixed when they share a deadline, so tie groups with a canc are made distinct.
    src = "async def %s():\n%s\n" % (name, ind("\n".join(body), 4))
    return src, "solo"


def frag_futures(g: Gen, name: str):
    body = [
        "def dcb(tag):",
        "    def f(fut):",
        "        T('%s dcb', tag, fut.cancelled() or fut.exception() if fut.done() else 'notdone')" % name,
        "    f.__qualname__ = 'dcb_' + tag",
        "    return f",
    ]
    mk = g.choice(["loop.create_future()", "asyncio.Future(loop=loop)"])
    body.append("fut = %s" % mk)
    body.append("T('%s new', fut, type(fut).__name__, fut.done(), fut.get_loop() is loop)" % name)
    cbs = []
    for i in range(g.randint(0, 5)):
        op = g.choice(["add", "add", "add_ctx", "dup", "remove", "remove_missing", "bad"])
        if op == "add" or (op in ("dup", "remove") and not cbs):
            body.append("c%d = dcb('c%d'); fut.add_done_callback(c%d)" % (i, i, i))
            cbs.append(i)
        elif op == "add_ctx":
            body.append("c%d = dcb('x%d'); fut.add_done_callback(c%d, context=contextvars.copy_context())"
                        % (i, i, i))
            cbs.append(i)
        elif op == "dup":
            j = g.choice(cbs)
            body.append("fut.add_done_callback(c%d)" % j)
        elif op == "remove":
            j = g.choice(cbs)
            body.append("T('%s removed', fut.remove_done_callback(c%d))" % (name, j))
        elif op == "remove_missing":
            body.append("T('%s removed', fut.remove_done_callback(print))" % name)
        elif op == "bad" and "noncallable" not in g.exclude:
            body.append("H_try('%s add bad', fut.add_done_callback, 42)" % name)
    if g.coin(0.4):
        body.append("T('%s repr', fut)" % name)
    if g.coin(0.3):
        body.append("H_try('%s result pending', fut.result)" % name)
        body.append("H_try('%s exception pending', fut.exception)" % name)
    outcome = g.choice(["result", "exception", "cancel", "cancel_msg", "exc_class",
                        "stopiter", "soon_result", "await_in_task"])
    if outcome == "result":
        body.append("fut.set_result(%r)" % (g.choice([1, "s", None, (1, 2)]),))
    elif outcome == "exception":
        body.append("fut.set_exception(KeyError('k'))")
    elif outcome == "exc_class":
        body.append("fut.set_exception(ZeroDivisionError)")
    elif outcome == "stopiter":
        body.append("H_try('%s stopiter', fut.set_exception, StopIteration('si'))" % name)
        body.append("fut.set_result('after-stopiter')")
    elif outcome == "cancel":
        body.append("T('%s cancel', fut.cancel())" % name)
    elif outcome == "cancel_msg":
        body.append("T('%s cancel', fut.cancel(msg='why %s'))" % (name, name))
    elif outcome == "soon_result":
        body.append("loop.call_soon(fut.set_result, 'soon')")
    elif outcome == "await_in_task":
        body.append("async def waiter():")
        body.append("    try:")
        body.append("        return await fut")
        body.append("    except BaseException as e:")
        body.append("        T('%s waiter caught', EC(e)); raise" % name)
        body.append("wt = loop.create_task(waiter())")
        body.append("await asyncio.sleep(0)")
        body.append("T('%s fut repr', fut)" % name)
        w = g.choice(["fut.set_result('w')", "fut.cancel('m')", "wt.cancel('wm')",
                      "fut.set_exception(OSError(2, 'nope'))"])
        body.append("%s" % w)
        body.append("try:\n    T('%s wt', await wt)\nexcept BaseException as e:\n    T('%s wt raised', EC(e))"
                    % (name, name))
    body.append("await H_settle()")
    body.append("T('%s state', fut.done(), fut.cancelled(), fut)" % name)
    body.append("H_try('%s result', fut.result)" % name)
    body.append("H_try('%s exception', fut.exception)" % name)
    if g.coin(0.4):
        body.append("H_try('%s set again', fut.set_result, 2)" % name)
        body.append("H_try('%s set exc again', fut.set_exception, ValueError())" % name)
        body.append("T('%s cancel again', fut.cancel())" % name)
    if g.coin(0.3):
        body.append("c9 = dcb('late'); fut.add_done_callback(c9)")
        body.append("await H_settle()")
    return "async def %s():\n%s\n" % (name, ind("\n".join(body), 4)), "soon"


def _coro_defs(g: Gen, name: str):
    return [
        "async def work(tag, steps, how='ret'):",
        "    try:",
        "        for _ in range(steps):",
        "            await asyncio.sleep(0)",
        "        if how == 'raise':",
        "            raise ValueError(tag)",
        "        if how == 'cancel_self':",
        "            asyncio.current_task().cancel('self ' + tag)",
        "            await asyncio.sleep(0)",
        "        return tag",
        "    except asyncio.CancelledError as e:",
        "        T('%s work cancelled', tag, EC(e))" % name,
        "        raise",
        "    finally:",
        "        T('%s work exit', tag)" % name,
        "async def swallow(tag):",
        "    try:",
        "        await asyncio.sleep(0); await asyncio.sleep(0)",
        "    except asyncio.CancelledError as e:",
        "        T('%s swallowed', tag, EC(e), asyncio.current_task().cancelling() if HAS_CANCELLING else None)" % name,
        "        return 'swallowed ' + tag",
        "    return 'not cancelled ' + tag",
    ]


def frag_tasks(g: Gen, name: str):
    body = _coro_defs(g, name)
    body.append("ts = []")
    n = g.randint(1, 5)
    for i in range(n):
        steps = g.randint(0, 3)
        how = g.choice(["ret", "ret", "raise", "cancel_self"])
        mk = g.choice(["loop.create_task", "asyncio.create_task", "asyncio.ensure_future",
                       "named", "Task"])
        co = "work('t%d', %d, %r)" % (i, steps, how)
        if g.coin(0.15):
            co = "swallow('t%d')" % i
        if mk == "named":
            body.append("ts.append(loop.create_task(%s, name=%r))" % (co, g.choice(["n%d" % i, "", "dup"])))
        elif mk == "Task":
            body.append("ts.append(asyncio.Task(%s, loop=loop))" % co)
        else:
            body.append("ts.append(%s(%s))" % (mk, co))
    for _ in range(g.randint(0, 3)):
        op = g.choice(["cancel", "cancel_msg", "sleep", "name", "repr", "uncancel", "cancel2",
                       "set_name", "current"])
        j = g.randint(0, n - 1)
        if op == "cancel":
            body.append("T('%s cancel', ts[%d].cancel())" % (name, j))
        elif op == "cancel_msg":
            body.append("T('%s cancel msg', ts[%d].cancel(msg='m%d'))" % (name, j, j))
        elif op == "cancel2":
            body.append("T('%s cancel2', ts[%d].cancel('a'), ts[%d].cancel('b'), ts[%d].cancelling())"
                        % (name, j, j, j))
        elif op == "uncancel":
            body.append("T('%s uncancel', ts[%d].cancel(), ts[%d].cancelling(), ts[%d].uncancel(), ts[%d].cancelling())"
                        % (name, j, j, j, j))
        elif op == "sleep":
            body.append("await asyncio.sleep(0)")
        elif op == "name":
            body.append("T('%s names', [t.get_name() for t in ts])" % name)
        elif op == "set_name":
            body.append("ts[%d].set_name(%r); T('%s name', ts[%d].get_name())"
                        % (j, g.choice(["x", 3, None]), name, j))
        elif op == "repr":
            body.append("T('%s repr', ts[%d])" % (name, j))
        elif op == "current":
            body.append("T('%s current', asyncio.current_task() is not None, len(asyncio.all_tasks()) >= %d)"
                        % (name, 1))
    body.append("for i, t in enumerate(ts):")
    body.append("    try:")
    body.append("        T('%s await', i, await t)" % name)
    body.append("    except BaseException as e:")
    body.append("        T('%s await raised', i, EC(e))" % name)
    body.append("for i, t in enumerate(ts):")
    body.append("    T('%s final', i, t.done(), t.cancelled(), t)" % name)
    body.append("    H_try('%s result' + str(i), t.result)" % name)
    body.append("    H_try('%s exception' + str(i), t.exception)" % name)
    if g.coin(0.3):
        body.append("H_try('%s task set_result', ts[0].set_result, 1)" % name)
        body.append("H_try('%s task set_exception', ts[0].set_exception, ValueError())" % name)
    return "async def %s():\n%s\n" % (name, ind("\n".join(body), 4)), "soon"


def frag_combinators(g: Gen, name: str):
    body = _coro_defs(g, name)
    op = g.choice(["gather", "gather_exc", "gather_cancel", "gather_child_cancel", "wait",
                   "wait_for", "wait_for_timeout", "shield", "timeout", "taskgroup",
                   "taskgroup_cancel", "as_completed", "wait_for_zero", "timeout_reschedule"])
    kids = [(g.randint(0, 3), g.choice(["ret", "ret", "raise", "cancel_self"])) for _ in range(g.randint(1, 4))]
    mk = ", ".join("work('k%d', %d, %r)" % (i, s, h) for i, (s, h) in enumerate(kids))
    solo = False
    if op in ("gather", "gather_exc"):
        re = op == "gather_exc"
        body.append("try:\n    T('%s gather', await asyncio.gather(%s, return_exceptions=%r))\n"
                    "except BaseException as e:\n    T('%s gather raised', EC(e))" % (name, mk, re, name))
    elif op == "gather_cancel":
        body.append("gf = asyncio.gather(%s, return_exceptions=%r)" % (mk, g.coin()))
        body.append("for _ in range(%d): await asyncio.sleep(0)" % g.randint(0, 2))
        body.append("T('%s gather cancel', gf.cancel(%s))" % (name, g.choice(["", "msg='gm'"])))
        body.append("try:\n    T('%s gather', await gf)\nexcept BaseException as e:\n    T('%s gather raised', EC(e))"
                    % (name, name))
    elif op == "gather_child_cancel":
        body.append("ks = [asyncio.ensure_future(c) for c in (%s,)]" % mk)
        body.append("gf = asyncio.gather(*ks, return_exceptions=%r)" % g.coin())
        body.append("ks[%d].cancel('child')" % g.randint(0, len(kids) - 1))
        body.append("try:\n    T('%s gather', await gf)\nexcept BaseException as e:\n    T('%s gather raised', EC(e))"
                    % (name, name))
    elif op == "wait":
        rw = g.choice(["FIRST_COMPLETED", "FIRST_EXCEPTION", "ALL_COMPLETED"])
        body.append("ks = [loop.create_task(c, name='k%%d' %% i) for i, c in enumerate((%s,))]" % mk)
        body.append("d, p = await asyncio.wait(ks, return_when=asyncio.%s)" % rw)
        body.append("T('%s wait', sorted(t.get_name() for t in d), sorted(t.get_name() for t in p))" % name)
        body.append("await asyncio.gather(*ks, return_exceptions=True)")
        body.append("H_try('%s wait empty', asyncio.wait, [])" % name)
    elif op == "wait_for":
        body.append("try:\n    T('%s wait_for', await asyncio.wait_for(work('wf', %d, %r), %s))\n"
                    "except BaseException as e:\n    T('%s wait_for raised', EC(e))"
                    % (name, kids[0][0], kids[0][1], g.choice(["None", "10"]), name))
    elif op == "wait_for_timeout":
        solo = True
        body.append("async def slow():\n    try:\n        await asyncio.sleep(%r)\n        return 'slow'\n"
                    "    except asyncio.CancelledError as e:\n        T('%s slow cancelled', EC(e)); raise" % (10 * STEP, name))
        body.append("try:\n    T('%s wait_for', await asyncio.wait_for(slow(), %r))\n"
                    "except BaseException as e:\n    T('%s wait_for raised', EC(e))" % (name, STEP, name))
    elif op == "wait_for_zero":
        body.append("try:\n    T('%s wait_for0', await asyncio.wait_for(work('z', %d), %s))\n"
                    "except BaseException as e:\n    T('%s wait_for0 raised', EC(e))"
                    % (name, g.randint(0, 2), g.choice(["0", "-1"]), name))
    elif op == "shield":
        body.append("inner = loop.create_task(work('inner', %d, %r))" % kids[0])
        body.append("outer = asyncio.ensure_future(asyncio.shield(inner))")
        body.append("await asyncio.sleep(0)")
        body.append("T('%s outer cancel', outer.cancel(%s))" % (name, g.choice(["", "'om'"])))
        body.append("try:\n    T('%s outer', await outer)\nexcept BaseException as e:\n    T('%s outer raised', EC(e))"
                    % (name, name))
        body.append("try:\n    T('%s inner', await inner)\nexcept BaseException as e:\n    T('%s inner raised', EC(e))"
                    % (name, name))
    elif op == "timeout":
        solo = True
        d, body_d = g.choice([(0, 10 * STEP), (STEP, 10 * STEP), (10 * STEP, STEP), (None, STEP),
                              (-1, 0)])
        body.append("try:\n    async with asyncio.timeout(%r) as cm:\n"
                    "        T('%s in timeout', cm.expired(), cm.when() is None)\n"
                    "        await asyncio.sleep(%r)\n        T('%s timeout body done')\n"
                    "    T('%s after timeout', cm.expired())\n"
                    "except BaseException as e:\n    T('%s timeout raised', EC(e), asyncio.current_task().cancelling())"
                    % (d, name, body_d, name, name, name))
    elif op == "timeout_reschedule":
        solo = True
        body.append("try:\n    async with asyncio.timeout(None) as cm:\n"
                    "        cm.reschedule(loop.time() + %r)\n"
                    "        await asyncio.sleep(%r)\n"
                    "except BaseException as e:\n    T('%s resched raised', EC(e), cm.expired())"
                    % (STEP, 10 * STEP, name))
    elif op in ("taskgroup", "taskgroup_cancel"):
        body.append("try:\n    async with asyncio.TaskGroup() as tg:\n"
                    "        ks = [tg.create_task(c, name='g%%d' %% i) for i, c in enumerate((%s,))]\n"
                    "        %s\n"
                    "    T('%s tg ok', [k.result() for k in ks])\n"
                    "except BaseException as e:\n    T('%s tg raised', EC(e))"
                    % (mk, "ks[0].cancel('tgc'); await asyncio.sleep(0)" if op == "taskgroup_cancel" else "pass",
                       name, name))
        body.append("T('%s tg tasks', [(k.get_name(), k.cancelled()) for k in ks])" % name)
    elif op == "as_completed":
        body.append("res = []")
        # as_completed() makes a set of its argument: coroutines would become tasks in an
        # address-dependent order, so the tasks are made here, in order
        body.append("aw = [loop.create_task(work('a%%d' %% i, i)) for i in range(%d)]" % g.randint(1, 4))
        body.append("for f in asyncio.as_completed(aw):")
        body.append("    res.append(await f)")
        body.append("T('%s as_completed', res)" % name)
    return "async def %s():\n%s\n" % (name, ind("\n".join(body), 4)), ("solo" if solo else "soon")


def frag_eager(g: Gen, name: str):
    body = _coro_defs(g, name)
    body += [
        "async def eager(tag, n):",
        "    T('%s eager start', tag)" % name,
        "    for _ in range(n): await asyncio.sleep(0)",
        "    T('%s eager end', tag)" % name,
        "    return tag",
        "loop.set_task_factory(asyncio.eager_task_factory)",
        "ts = []",
    ]
    for i in range(g.randint(1, 4)):
        body.append("ts.append(loop.create_task(eager('e%d', %d))); T('%s created', %d, ts[-1].done())"
                    % (i, g.choice([0, 0, 1, 2]), name, i))
    body.append("loop.set_task_factory(None)")
    body.append("T('%s results', [await t for t in ts])" % name)
    return "async def %s():\n%s\n" % (name, ind("\n".join(body), 4)), "soon"


def frag_sync(g: Gen, name: str):
    kind = g.choice(["lock", "event", "condition", "semaphore", "bsem", "queue", "pqueue",
                     "lifo", "queue_join"])
    n = g.randint(1, 4)
    body = []
    if kind == "lock":
        body += [
            "lk = asyncio.Lock()",
            "async def user(i):",
            "    try:",
            "        async with lk:",
            "            T('%s lock got', i, lk.locked())" % name,
            "            await asyncio.sleep(0)",
            "    except asyncio.CancelledError:",
            "        T('%s lock user cancelled', i); raise" % name,
            "us = [loop.create_task(user(i)) for i in range(%d)]" % n,
            "await asyncio.sleep(0)",
        ]
        if g.coin():
            body.append("us[%d].cancel()" % g.randint(0, n - 1))
        body.append("T('%s lock gather', await asyncio.gather(*us, return_exceptions=True))" % name)
        body.append("H_try('%s release unlocked', lk.release)" % name)
        body.append("T('%s lock repr', lk)" % name)
    elif kind == "event":
        body += [
            "ev = asyncio.Event()",
            "async def w(i):",
            "    T('%s ev wait', i, await ev.wait())" % name,
            "ws = [loop.create_task(w(i)) for i in range(%d)]" % n,
            "await asyncio.sleep(0)",
            "T('%s ev repr', ev)" % name,
            "loop.call_soon(ev.set)",
            "await asyncio.gather(*ws)",
            "ev.clear(); T('%s ev', ev.is_set())" % name,
        ]
    elif kind == "condition":
        body += [
            "cv = asyncio.Condition()",
            "async def w(i):",
            "    async with cv:",
            "        await cv.wait()",
            "        T('%s cv woke', i)" % name,
            "ws = [loop.create_task(w(i)) for i in range(%d)]" % n,
            "await asyncio.sleep(0)",
            "async with cv:",
            "    cv.notify(%d)" % g.randint(0, n),
            "await asyncio.sleep(0); await asyncio.sleep(0)",
            "async with cv:",
            "    cv.notify_all()",
            "await asyncio.gather(*ws)",
            "H_try('%s notify unlocked', cv.notify)" % name,
        ]
    elif kind in ("semaphore", "bsem"):
        cls = "Semaphore" if kind == "semaphore" else "BoundedSemaphore"
        body += [
            "sm = asyncio.%s(%d)" % (cls, g.randint(1, 2)),
            "async def user(i):",
            "    async with sm:",
            "        T('%s sem in', i, sm.locked())" % name,
            "        await asyncio.sleep(0)",
            "await asyncio.gather(*[user(i) for i in range(%d)])" % (n + 1),
            "H_try('%s over-release', sm.release)" % name,
            "T('%s sem repr', sm)" % name,
            "H_try('%s sem bad', asyncio.Semaphore, -1)" % name,
        ]
    elif kind in ("queue", "pqueue", "lifo", "queue_join"):
        cls = {"queue": "Queue", "pqueue": "PriorityQueue", "lifo": "LifoQueue",
               "queue_join": "Queue"}[kind]
        items = [g.randint(0, 9) for _ in range(n + 2)]
        body += [
            "q = asyncio.%s(maxsize=%d)" % (cls, g.randint(0, 3)),
            "async def prod():",
            "    for x in %r:" % items,
            "        await q.put(x); T('%s put', x, q.qsize())" % name,
            "async def cons():",
            "    out = []",
            "    for _ in range(%d):" % len(items),
            "        out.append(await q.get()); q.task_done()",
            "    return out",
            "T('%s q', await asyncio.gather(cons(), prod()))" % name,
            "H_try('%s get_nowait', q.get_nowait)" % name,
            "H_try('%s task_done', q.task_done)" % name,
            "T('%s q repr', q, q.empty(), q.full())" % name,
        ]
        if kind == "queue_join":
            body += [
                "q2 = asyncio.Queue(1); q2.put_nowait(1)",
                "H_try('%s put_nowait full', q2.put_nowait, 2)" % name,
                "async def joiner():",
                "    await q2.join(); T('%s joined')" % name,
                "jt = loop.create_task(joiner()); await asyncio.sleep(0)",
                "q2.get_nowait(); q2.task_done(); await jt",
            ]
            if g.version >= (3, 13):
                body += [
                    "q2.put_nowait('s'); q2.shutdown()",
                    "H_try('%s put after shutdown', q2.put_nowait, 3)" % name,
                    "T('%s get after shutdown', await q2.get())" % name,
                    "try:\n    await q2.get()\nexcept BaseException as e:\n    T('%s shutdown get', EC(e))" % name,
                ]
    return "async def %s():\n%s\n" % (name, ind("\n".join(body), 4)), "soon"


def frag_executor(g: Gen, name: str):
    g.uses_threads = True
    body = [
        "def job(x, fail=False):",
        "    if fail: raise RuntimeError('job failed', x)",
        "    return x * 2",
    ]
    exe = g.choice(["None", "ex"])
    if exe == "ex":
        body.append("ex = concurrent.futures.ThreadPoolExecutor(max_workers=1)")
    for i in range(g.randint(1, 4)):
        body.append("try:\n    T('%s exec', await loop.run_in_executor(%s, job, %d, %r))\n"
                    "except BaseException as e:\n    T('%s exec raised', EC(e))"
                    % (name, exe, i, g.coin(0.3), name))
    if g.coin(0.4):
        body.append("fs = [loop.run_in_executor(%s, job, i) for i in range(3)]" % exe)
        body.append("T('%s exec gather', await asyncio.gather(*fs))" % name)
    if g.coin(0.3):
        body.append("async def co(): pass")
        body.append("H_try('%s exec coro fn', loop.run_in_executor, None, co)" % name)
    if g.coin(0.3):
        body.append("T('%s to_thread', await asyncio.to_thread(job, 21))" % name)
    if exe == "ex":
        body.append("ex.shutdown(wait=True)")
    # call_soon_threadsafe from one thread: FIFO
    if g.coin(0.5):
        body += [
            "fin = loop.create_future()",
            "def thr():",
            "    for i in range(%d):" % g.randint(1, 5),
            "        loop.call_soon_threadsafe(T, '%s ts', i)" % name,
            "    loop.call_soon_threadsafe(fin.set_result, 'thr done')",
            "th = threading.Thread(target=thr); th.start()",
            "T('%s thread', await fin); th.join()" % name,
        ]
    if g.coin(0.3):
        body += [
            "fut = loop.create_future()",
            "def thr2():",
            "    cf = asyncio.run_coroutine_threadsafe(asyncio.sleep(0, 'rct'), loop)",
            "    loop.call_soon_threadsafe(fut.set_result, cf.result(5))",
            "th = threading.Thread(target=thr2); th.start()",
            "T('%s rct', await fut); th.join()" % name,
        ]
    body.append(SETTLE_THREADS)
    return "async def %s():\n%s\n" % (name, ind("\n".join(body), 4)), "solo"


def frag_handler(g: Gen, name: str):
    body = []
    which = g.choice(["default", "record", "raising", "direct", "never_retrieved",
                      "task_never_retrieved", "get_handler"])
    if which == "default":
        body += [
            "loop.set_exception_handler(None)",
            "def bad(): raise KeyError('cb')",
            "loop.call_soon(bad)",
            "loop.call_soon(lambda: None)",
            "await H_settle()",
            "loop.call_exception_handler({'message': 'custom msg', 'x': 1})",
            "loop.call_exception_handler({'message': 'with exc', 'exception': OSError(5, 'io')})",
            "H.use_recording_handler(loop)",
        ]
    elif which == "record":
        body += [
            "def bad(a): raise ValueError('bad', a)",
            "h = loop.call_soon(bad, 1)",
            "loop.call_later(0, bad, 2)",
            "await H_settle()",
        ]
    elif which == "raising":
        body += [
            "def hraise(lp, ctx):",
            "    T('%s handler got', H.fmt_ctx(ctx))" % name,
            "    raise RuntimeError('handler failed')",
            "loop.set_exception_handler(hraise)",
            "def bad(): raise KeyError('cb')",
            "loop.call_soon(bad)",
            "await H_settle()",
            "loop.call_exception_handler({'message': 'direct'})",
            "H.use_recording_handler(loop)",
        ]
    elif which == "direct":
        body += [
            "loop.call_exception_handler({'message': 'm1', 'future': loop.create_future()})",
            "T('%s handler is', loop.get_exception_handler() is not None)" % name,
            "H_try('%s set handler bad', loop.set_exception_handler, 5)" % name,
            "loop.default_exception_handler({'message': 'dflt', 'exception': ValueError('v')})",
        ]
    elif which == "never_retrieved":
        body += [
            "f = loop.create_future() if %r else asyncio.Future(loop=loop)" % g.coin(),
            "f.set_exception(ValueError('never'))",
            "del f; gc.collect()",
            "await H_settle()",
        ]
    elif which == "task_never_retrieved":
        body += [
            "async def fail(): raise ValueError('task never')",
            "t = loop.create_task(fail(), name='nr')",
            "await asyncio.sleep(0); await asyncio.sleep(0)",
            "del t; gc.collect()",
            "await H_settle()",
        ]
    elif which == "get_handler":
        body += [
            "T('%s get', loop.get_exception_handler() == H.handler)" % name,
        ]
    return "async def %s():\n%s\n" % (name, ind("\n".join(body), 4)), "solo"


def frag_misuse(g: Gen, name: str):
    cases = [
        "H_try('%s soon noncallable', loop.call_soon, 42)",
        "H_try('%s soon coro fn', loop.call_soon, H_coro_fn)",
        "H_try('%s later str', loop.call_later, 'x', print)",
        "H_try('%s later none', loop.call_later, None, print)",
        # call_at('x') is a known difference (README; test_call_at_converts_when_to_float):
        # ferroloop rejects a non-number deadline at once, asyncio's heap fails later.
        "H_try('%s soon kw', loop.call_soon, print, foo=1)",
        "H_try('%s soon noargs', loop.call_soon)",
        "H_try('%s later noargs', loop.call_later, 1)",
        "H_try('%s ruc running', loop.run_until_complete, asyncio.sleep(0))",
        "H_try('%s close running', loop.close)",
        "H_try('%s create_task int', loop.create_task, 1)",
        "H_try('%s ensure_future int', asyncio.ensure_future, 1)",
        "H_try('%s sleep neg', asyncio.sleep, -1)",
        "H_try('%s wait_for neg', asyncio.wait_for, asyncio.sleep(0), -1)",
        "H_try('%s gather empty', asyncio.gather)",
        "H_try('%s set_debug', loop.set_debug, 1); loop.set_debug(False)",
        "H_try('%s task factory bad', loop.set_task_factory, 3)",
        "H_try('%s default executor', loop.set_default_executor, 3)",
        "H_try('%s signal coro', loop.add_signal_handler, signal.SIGUSR1, H_coro_fn)",
        "H_try('%s signal kill', loop.add_signal_handler, signal.SIGKILL, print)",
        "H_try('%s signal bad', loop.add_signal_handler, 12345, print)",
        "H_try('%s signal str', loop.add_signal_handler, 'x', print)",
        "H_try('%s remove signal', loop.remove_signal_handler, signal.SIGUSR2)",
        "H_try('%s reader badfd', loop.add_reader, -1, print)",
        "H_try('%s reader obj', loop.add_reader, object(), print)",
        "H_try('%s remove reader', loop.remove_reader, 10**6)",
        "H_try('%s exec coro', loop.run_in_executor, None, H_coro_fn)",
        "H_try('%s future loop', asyncio.Future, loop=1)",
        "H_try('%s time', loop.time() > 0)",
        "H_try('%s running', loop.is_running(), loop.is_closed(), asyncio.get_running_loop() is loop)",
        "H_try('%s later nan', H_nan_timer)",
        "H_try('%s create_future', lambda: type(loop.create_future()).__name__)",
        "H_try('%s get_debug', loop.get_debug)",
        "H_try('%s shield none', asyncio.shield, None)",
        "H_try('%s task name', loop.create_task, H_coro_fn(), name=5)",
    ]
    if g.version < (3, 13):
        # asyncio 3.13.0's run_forever() on a running loop raises, then its cleanup clears the
        # running loop (a CPython bug): every later get_running_loop() in the program fails
        cases.append("H_try('%s run_forever running', loop.run_forever)")
    if g.version >= (3, 12):
        cases.append("H_try('%s eager bad', asyncio.eager_task_factory, loop, 1)")
    for tag, words in MISUSE_TAGS.items():
        if tag in g.exclude:
            cases = [c for c in cases if not any(w in c for w in words)]
    body = [g.choice(cases) % name for _ in range(g.randint(1, 4))]
    if g.coin(0.3):
        body.insert(0, "loop.set_debug(True)")
        body.append("loop.set_debug(False)")
    body.append("await H_settle()")
    return "async def %s():\n%s\n" % (name, ind("\n".join(body), 4)), "solo"


def frag_debug(g: Gen, name: str):
    body = [
        "loop.set_debug(True)",
        "def cb(): T('%s debug cb')" % name,
        "h = loop.call_soon(cb); T('%s dbg handle', h)" % name,
        "th = loop.call_later(10, cb); T('%s dbg timer repr has created', 'created at' in repr(th)); th.cancel()" % name,
        "T('%s dbg cancelled', th)" % name,
        "async def co(): await asyncio.sleep(0); return 1",
        "def make(): return loop.create_task(co(), name='dbg')",
        "t = make(); T('%s dbg task', t)" % name,
        "T('%s dbg src tb', [f.name for f in (t._source_traceback or [])][-2:])" % name,
        "T('%s dbg await', await t, t)" % name,
        # Where a future's debug creation point ends is a known difference (README;
        # test_future_source_traceback_has_no_create_future_frame): asyncio's includes its own
        # Python create_future frame. Trace that one is recorded, not where it ends.
        "f = loop.create_future(); T('%s dbg fut', repr(f).split(' created at ')[0], bool(f._source_traceback))" % name,
        "f.cancel()",
        "await H_settle()",
    ]
    if g.coin(0.5):
        body += [
            "res = loop.create_future()",
            "def other():",
            "    try:",
            "        loop.call_soon(print)",
            "        r = 'no error'",
            "    except BaseException as e:",
            "        r = EC(e)",
            "    loop.call_soon_threadsafe(res.set_result, r)",
            "th2 = threading.Thread(target=other); th2.start()",
            "T('%s dbg other thread', await res); th2.join()" % name,
            SETTLE_THREADS,
        ]
        g.uses_threads = True
    if g.coin(0.4):
        body += [
            "def bad(): raise ValueError('dbg')",
            "loop.call_soon(bad)",
            "await H_settle()",
        ]
    body.append("loop.set_debug(False)")
    return "async def %s():\n%s\n" % (name, ind("\n".join(body), 4)), "solo"


def frag_signals(g: Gen, name: str):
    sigs = ["signal.SIGUSR1", "signal.SIGUSR2"]
    kill = "os.kill(os.getpid(), %s)" if not g.uses_threads else "signal.raise_signal(%s)"
    body = [
        "done = loop.create_future()",
        "def sh(tag):",
        "    T('%s sig', tag)" % name,
        "def cb(tag):",
        "    T('%s cb', tag)" % name,
        "inst = set()",
        "def killer(s):",
        "    if s in inst: %s" % (kill % "s"),
    ]
    installed = set()
    for i in range(g.randint(2, 6)):
        op = g.choice(["add", "kill", "kill", "soon", "remove", "kill_in_cb", "replace"])
        s = g.choice(sigs)
        if op == "add" or (op == "kill" and s not in installed):
            body.append("loop.add_signal_handler(%s, sh, 'h%d-%s'); inst.add(%s)" % (s, i, s[-4:], s))
            installed.add(s)
            if op == "kill":
                body.append(kill % s)
        elif op == "replace":
            body.append("loop.add_signal_handler(%s, cb, 'replaced%d'); inst.add(%s)" % (s, i, s))
            installed.add(s)
        elif op == "kill":
            body.append(kill % s)
        elif op == "soon":
            body.append("loop.call_soon(cb, 's%d')" % i)
        elif op == "remove":
            body.append("T('%s remove', loop.remove_signal_handler(%s)); inst.discard(%s)" % (name, s, s))
            installed.discard(s)
        elif op == "kill_in_cb":
            if s in installed:
                body.append("loop.call_soon(cb, 'before%d'); loop.call_soon(killer, %s); loop.call_soon(cb, 'after%d')"
                            % (i, s, i))
        if g.coin(0.3):
            body.append("await asyncio.sleep(0)")
    body.append("await H_settle()")
    body.append("for s in (signal.SIGUSR1, signal.SIGUSR2): T('%s rm', loop.remove_signal_handler(s)); inst.discard(s)" % name)
    return "async def %s():\n%s\n" % (name, ind("\n".join(body), 4)), "solo"


def frag_asyncgen(g: Gen, name: str):
    body = [
        "async def agen(tag, n):",
        "    try:",
        "        for i in range(n):",
        "            try:",
        "                yield i",
        "            except ValueError as e:",
        "                T('%s agen caught', tag, EC(e))" % name,
        "                yield 'thrown'",
        "            await asyncio.sleep(0)",
        "    except GeneratorExit:",
        "        T('%s agen exit', tag)" % name,
        "        raise",
        "    finally:",
        "        T('%s agen finally', tag)" % name,
    ]
    for i in range(g.randint(1, 3)):
        op = g.choice(["full", "aclose", "athrow", "abandon", "break"])
        if op in ("athrow", "abandon"):
            if g.kept_agen:
                op = "aclose"
            g.kept_agen = True
        if op == "full":
            body.append("T('%s full', [x async for x in agen('a%d', 3)])" % (name, i))
        elif op == "aclose":
            body.append("ag = agen('a%d', 5); T('%s first', await ag.__anext__()); await ag.aclose(); "
                        "T('%s closed')" % (i, name, name))
        elif op == "athrow":
            body.append("ag = agen('a%d', 5); await ag.__anext__(); T('%s athrow', await ag.athrow(ValueError('t')))"
                        % (i, name))
            body.append("H_keep.append(ag)")
        elif op == "abandon":
            body.append("ag = agen('a%d', 5); T('%s first', await ag.__anext__()); H_keep.append(ag)" % (i, name))
        elif op == "break":
            body.append("async for x in agen('a%d', 5):\n    if x == 1: break" % i)
    body.append("await H_settle()")
    return "async def %s():\n%s\n" % (name, ind("\n".join(body), 4)), "soon"


def frag_cycle(g: Gen, name: str):
    """Tasks awaiting each other (issue 11 item 0): must not crash."""
    body = [
        "Tk = {}",
        "async def a(): await Tk['b']",
        "async def b(): await Tk['a']",
        "Tk['a'] = loop.create_task(a(), name='ca'); Tk['b'] = loop.create_task(b(), name='cb')",
        # a cycle of pending tasks is garbage: the automatic collector would destroy it at
        # an allocation-dependent moment; keep it until the program's final gc.collect()
        "H_keep.append(dict(Tk))",
        "await asyncio.sleep(0); await asyncio.sleep(0)",
        "T('%s cycle', Tk['a'].done(), Tk['b'].done())" % name,
        "T('%s cancel', Tk['%s'].cancel())" % (name, g.choice("ab")),
        "for k in 'ab':",
        "    try:",
        "        await Tk[k]",
        "    except BaseException as e:",
        "        T('%s awaited', k, EC(e))" % name,
    ]
    return "async def %s():\n%s\n" % (name, ind("\n".join(body), 4)), "solo"


def frag_task_edges(g: Gen, name: str):
    """What a Task does with odd coroutines: bad yields, awaiting itself, StopIteration,
    awaitables that are not coroutines, custom task factories, coroutine introspection."""
    cases = [
        # a yield of something that is not a future
        "class Bad:\n    def __await__(self):\n        yield %r\n"
        "async def co(): await Bad()\n"
        "t = loop.create_task(co())\n"
        "try:\n    await t\nexcept BaseException as e:\n    T(NAME + ' bad yield', EC(e), t)"
        % (g.choice([1, None, "s"]),),
        # a future yielded without _asyncio_future_blocking
        "class Bad2:\n    def __await__(self):\n        f = loop.create_future(); f.set_result(1)\n"
        "        yield f\n"
        "async def co(): await Bad2()\n"
        "t = loop.create_task(co())\n"
        "try:\n    await t\nexcept BaseException as e:\n    T(NAME + ' bad yield fut', EC(e))",
        # await itself
        "async def co(): await asyncio.current_task()\n"
        "t = loop.create_task(co())\n"
        "try:\n    await t\nexcept BaseException as e:\n    T(NAME + ' self await', EC(e))",
        # StopIteration out of a coroutine
        "async def co(): raise StopIteration('si')\n"
        "t = loop.create_task(co())\n"
        "try:\n    await t\nexcept BaseException as e:\n    T(NAME + ' stopiter', EC(e))",
        # an awaitable that is not a coroutine
        "class Aw:\n    def __await__(self):\n        yield from asyncio.sleep(0).__await__()\n        return 'aw'\n"
        "f = asyncio.ensure_future(Aw())\n"
        "T(NAME + ' ensure_future awaitable', type(f).__name__, await f)",
        # a future of another loop
        "other = asyncio.new_event_loop()\n"
        "try:\n    of = other.create_future()\n    async def co(): await of\n"
        "    t = loop.create_task(co())\n"
        "    try:\n        await t\n    except BaseException as e:\n        T(NAME + ' other loop', EC(e))\n"
        "finally:\n    other.close()",
        # custom task factory
        "def factory(lp, coro, **kw):\n    T(NAME + ' factory', sorted(kw))\n"
        "    return asyncio.Task(coro, loop=lp, **kw)\n"
        "loop.set_task_factory(factory)\n"
        "T(NAME + ' get factory', loop.get_task_factory() is factory)\n"
        "t = loop.create_task(asyncio.sleep(0, 'f'), name='fac')\n"
        "loop.set_task_factory(None)\n"
        "T(NAME + ' factory task', type(t).__name__, t.get_name(), await t)",
        # introspection
        "async def co():\n    await asyncio.sleep(0)\n    return 1\n"
        "c = co(); t = loop.create_task(c, name='intro')\n"
        "T(NAME + ' coro', t.get_coro() is c, len(t.get_stack()), t.get_stack(limit=1)[0].f_code.co_name if t.get_stack() else None)\n"
        "await asyncio.sleep(0)\n"
        "T(NAME + ' stack', [f.f_code.co_name for f in t.get_stack()])\n"
        "await t\nT(NAME + ' done stack', t.get_stack(), t.get_coro() is c)",
        # context= of create_task and of callbacks
        "var = contextvars.ContextVar('tv', default='d')\n"
        "ctx = contextvars.copy_context(); ctx.run(var.set, 'in ctx')\n"
        "async def co():\n    T(NAME + ' task var', var.get()); var.set('changed')\n"
        "await loop.create_task(co(), context=ctx)\n"
        "T(NAME + ' after', var.get(), ctx[var])\n"
        "await loop.create_task(co())\nT(NAME + ' after2', var.get())",
        # current_task in a callback, all_tasks
        "fut = loop.create_future()\n"
        "loop.call_soon(lambda: fut.set_result(asyncio.current_task()))\n"
        "T(NAME + ' current in cb', await fut)\n"
        "T(NAME + ' current', asyncio.current_task().get_name().startswith('Task-'), asyncio.current_task(loop) is asyncio.current_task())",
        # cancel before the first step, and a task cancelled while awaiting a shielded future
        "async def co():\n    T(NAME + ' never runs')\n"
        "t = loop.create_task(co()); T(NAME + ' early cancel', t.cancel('early'), t.cancelling())\n"
        "try:\n    await t\nexcept BaseException as e:\n    T(NAME + ' early', EC(e), t)",
        # cancelling a task whose coroutine catches CancelledError and awaits again
        "async def co():\n    try:\n        await asyncio.sleep(0); await asyncio.sleep(0)\n"
        "    except asyncio.CancelledError as e:\n        T(NAME + ' caught', EC(e), asyncio.current_task().uncancel())\n"
        "        await asyncio.sleep(0)\n        return 'recovered'\n"
        "t = loop.create_task(co()); await asyncio.sleep(0); t.cancel('c1')\n"
        "T(NAME + ' recovered', await t, t.cancelling(), t.cancelled())",
        # a task's exception with a traceback; a task returning a future
        "async def co():\n    return loop.create_future()\n"
        "t = loop.create_task(co()); r = await t; T(NAME + ' returned fut', type(r).__name__, r.done()); r.cancel()",
        # wrap_future of a concurrent future
        "cf = concurrent.futures.Future()\n"
        "af = asyncio.wrap_future(cf)\n"
        "cf.set_result('cf')\n"
        "T(NAME + ' wrap_future', await af)",
        # asyncio.sleep with result, sleep(0) vs sleep(negative)
        "T(NAME + ' sleep result', await asyncio.sleep(0, 'r0'), await asyncio.sleep(-1, 'rn'))",
    ]
    picks = g.rng.sample(cases, g.randint(1, 3))
    body = ["NAME = %r" % name] + picks
    return "async def %s():\n%s\n" % (name, ind("\n".join(body), 4)), "soon"


def frag_handles(g: Gen, name: str):
    """The Handle / TimerHandle API itself."""
    body = [
        "def cb(*a): T('%s cb', *a)" % name,
        "h = loop.call_soon(cb, 1)",
        "th1 = loop.call_at(loop.time() + 100, cb, 2)",
        "th2 = loop.call_at(th1.when(), cb, 3)",
        "th3 = loop.call_at(th1.when() + 1, cb, 4)",
        ("T('%s isinstance', isinstance(h, asyncio.Handle), isinstance(th1, asyncio.TimerHandle),"
         " isinstance(th1, asyncio.Handle), isinstance(h, asyncio.TimerHandle))" % name),
        "T('%s types', type(h).__name__, type(th1).__name__)" % name,
        "T('%s cmp', th1 == th2, th1 < th3, th3 > th1, th1 <= th2, th1 >= th3, th1 != th3, th1 == th1)" % name,
        "H_try('%s cmp handle', lambda: th1 < h)" % name,
        "T('%s eq other', th1 == 5, h == h, h != h)" % name,
        "T('%s when', th2.when() == th1.when(), th3.when() - th1.when())" % name,
        ("T('%s ctx', type(h.get_context()).__name__, h.get_context() is not None)" % name
         if g.version >= (3, 12) else "T('%s has ctx', hasattr(h, 'get_context'))" % name),
        "T('%s cancelled', h.cancelled(), th1.cancelled())" % name,
        "th1.cancel(); th1.cancel(); th2.cancel(); th3.cancel()",
        "T('%s cancelled2', th1.cancelled(), th1 == th2, th1, th2)" % name,
        "H_try('%s hash', lambda: (hash(h) == hash(h), hash(th3) == hash(th3)))" % name,
        "await H_settle()",
        "T('%s after run', h.cancelled(), h); h.cancel(); T('%s cancel after run', h.cancelled(), h)" % (name, name),
    ]
    return "async def %s():\n%s\n" % (name, ind("\n".join(body), 4)), "soon"


def sync_base_exceptions(g: Gen, name: str):
    """SystemExit / KeyboardInterrupt from a callback or a task escape the loop; the loop
    stays usable."""
    exc = g.choice(["SystemExit('se')", "KeyboardInterrupt()", "SystemExit(3)"])
    where = g.choice(["callback", "task", "timer0", "handler"])
    if where == "callback":
        setup = "def bad(): raise %s\n    loop.call_soon(T, '%s before'); loop.call_soon(bad); loop.call_soon(T, '%s after')\n    co = asyncio.sleep(0)" % (exc, name, name)
    elif where == "timer0":
        setup = "def bad(): raise %s\n    loop.call_later(0, bad); loop.call_soon(T, '%s soon')\n    co = asyncio.sleep(0); co2 = None" % (exc, name)
    elif where == "handler":
        setup = ("def hbad(lp, ctx): raise %s\n    loop.set_exception_handler(hbad)\n"
                 "    def bad(): raise ValueError('v')\n    loop.call_soon(bad); loop.call_soon(T, '%s after')\n    co = asyncio.sleep(0)"
                 % (exc, name))
    else:
        setup = ("async def tbad():\n        await asyncio.sleep(0)\n        raise %s\n"
                 "    t = loop.create_task(tbad(), name='tbad')\n    co = asyncio.sleep(0); co = t" % exc)
    return ("def %s():\n"
            "    %s\n"
            "    try:\n"
            "        T('%s ruc', loop.run_until_complete(co))\n"
            "        T('%s ruc2', loop.run_until_complete(asyncio.sleep(0, 'again')))\n"
            "    except BaseException as e:\n"
            "        T('%s escaped', EC(e), loop.is_running())\n"
            "    H.use_recording_handler(loop)\n"
            "    T('%s usable', loop.run_until_complete(asyncio.sleep(0, 'usable')))\n"
            "    for t in sorted(asyncio.all_tasks(loop), key=lambda t: t.get_name()):\n"
            "        if t.get_name() == 'tbad': T('%s tbad', t.done(), t)\n"
            % (name, setup, name, name, name, name, name))


# ---- sync (between run_until_complete) stages ----------------------------------------


def sync_signals_across_runs(g: Gen, name: str):
    kill = "os.kill(os.getpid(), signal.SIGUSR2)" if not g.uses_threads else "signal.raise_signal(signal.SIGUSR2)"
    n = g.randint(2, 3)
    return ("def %s():\n"
            "    def h(tag): T('%s sig', tag, loop.remove_signal_handler(signal.SIGUSR2))\n"
            "    async def m(tag):\n"
            "        loop.add_signal_handler(signal.SIGUSR2, h, tag); %s; return tag\n"
            "    for tag in %r: T('%s ruc', loop.run_until_complete(m(tag)))\n"
            "    loop.run_until_complete(asyncio.sleep(0)); loop.run_until_complete(asyncio.sleep(0))\n"
            % (name, name, kill, "ABC"[:n], name))


def sync_run_forever(g: Gen, name: str):
    k = g.randint(0, 3)
    return ("def %s():\n"
            "    def cb(i):\n"
            "        T('%s rf cb', i)\n"
            "        if i == %d: loop.stop(); T('%s stopped in', i)\n"
            "    for i in range(5): loop.call_soon(cb, i)\n"
            "    loop.run_forever()\n"
            "    T('%s after rf', loop.is_running())\n"
            "    loop.run_until_complete(asyncio.sleep(0))\n"
            "    loop.stop(); loop.run_forever(); T('%s stop before run')\n"
            % (name, name, k, name, name, name))


def sync_ruc_variants(g: Gen, name: str):
    return ("def %s():\n"
            "    f = loop.create_future(); loop.call_soon(f.set_result, 'rf')\n"
            "    T('%s ruc fut', loop.run_until_complete(f))\n"
            "    try:\n"
            "        loop.run_until_complete(asyncio.sleep(0, 'x'))\n"
            "        async def boom(): raise OSError(7, 'ruc')\n"
            "        loop.run_until_complete(boom())\n"
            "    except BaseException as e:\n"
            "        T('%s ruc raised', EC(e))\n"
            "    def stopper(): loop.stop()\n"
            "    async def long(): await asyncio.sleep(0); await asyncio.sleep(0); return 'long'\n"
            "    loop.call_soon(stopper)\n"
            "    try:\n"
            "        T('%s ruc stopped', loop.run_until_complete(long()))\n"
            "    except BaseException as e:\n"
            "        T('%s ruc stopped raised', EC(e))\n"
            "    H_try('%s ruc coro fn', loop.run_until_complete, H_coro_fn)\n"
            % (name, name, name, name, name, name))


def sync_nan(g: Gen, name: str):
    return ("def %s():\n"
            "    try:\n"
            "        h = loop.call_later(float('nan'), T, '%s nan timer ran')\n"
            "        T('%s nan scheduled')\n"
            "    except BaseException as e:\n"
            "        T('%s nan raised', EC(e))\n"
            "    stop = loop.call_later(%r, loop.stop)\n"
            "    try:\n"
            "        loop.run_forever()\n"
            "    finally:\n"
            "        stop.cancel()  # asyncio 3.13 raises out of run_forever: no stale stop\n"
            "    T('%s nan after', loop.is_running())\n"
            % (name, name, name, name, STEP, name))


FRAGMENTS = [
    (frag_callbacks, 6), (frag_timers, 4), (frag_futures, 6), (frag_tasks, 6),
    (frag_combinators, 6), (frag_sync, 5), (frag_executor, 2), (frag_handler, 3),
    (frag_misuse, 3), (frag_debug, 2), (frag_signals, 2), (frag_asyncgen, 3), (frag_cycle, 1),
    (frag_task_edges, 5), (frag_handles, 2),
]
SYNC_STAGES = [(sync_signals_across_runs, 2), (sync_run_forever, 2), (sync_ruc_variants, 2),
               (sync_nan, 1), (sync_base_exceptions, 3)]

PRELUDE = '''\
# difftest program: seed={seed} python={ver}
# replay: python tests/difftest/run.py --seed {seed} --show
import asyncio, concurrent.futures, contextvars, functools, gc, os, signal, sys, threading
loop = None
HAS_CANCELLING = sys.version_info >= (3, 11)
H_keep = []

async def H_settle():
    for _ in range(8):
        await asyncio.sleep(0)

async def H_coro_fn():
    pass

def H_try(label, fn, *a, **kw):
    if not callable(fn):
        T(label, fn)
        return
    try:
        r = fn(*a, **kw)
    except BaseException as e:
        T(label, 'raised', EC(e))
        return
    if asyncio.iscoroutine(r):
        r.close()
        r = '<coroutine>'
    elif asyncio.isfuture(r):
        r.cancel()
        r = '<future>'
    T(label, 'returned', r)

def H_nan_timer():
    h = loop.call_later(float('nan'), T, 'nan timer ran')
    h.cancel()
    return h.cancelled()
'''


# --exclude TAG (DIFFTEST_EXCLUDE=TAG,...) leaves areas out, to triage while a known
# difference is being fixed: a fragment's or stage's name (e.g. signals, cycle, nan,
# signals_across_runs, handles) or one of these tags for single misuse cases:
MISUSE_TAGS = {
    "noncallable": ["noncallable"],
    "nan": ["later nan"],
    "messages": ["noargs", "soon kw", "later str", "at str"],
}


def area(fn) -> str:
    return fn.__name__.split("_", 1)[1]


def excluding(table, exclude):
    return [(fn, w) for fn, w in table if area(fn) not in exclude]


def weighted(g: Gen, table):
    total = sum(w for _, w in table)
    x = g.rng.random() * total
    for fn, w in table:
        x -= w
        if x < 0:
            return fn
    return table[-1][0]


def generate(seed: int, version: tuple[int, int], exclude=None) -> str:
    if exclude is None:
        exclude = {x for x in os.environ.get("DIFFTEST_EXCLUDE", "").split(",") if x}
    g = Gen(seed, version, exclude)
    frags = list(FRAGMENTS)
    if version >= (3, 12):
        frags.append((frag_eager, 2))
    frags = excluding(frags, g.exclude)
    sync_stages = excluding(SYNC_STAGES, g.exclude)
    parts = [PRELUDE.format(seed=seed, ver="%d.%d" % version)]
    stages = []  # (name, is_async)
    for si in range(g.randint(2, 6)):
        if g.coin(0.15) and sync_stages:
            name = g.uid("s")
            parts.append(weighted(g, sync_stages)(g, name))
            stages.append((name, False))
            continue
        name = g.uid("st")
        members = []
        kinds = []
        for _ in range(g.randint(1, 3)):
            fname = g.uid("f")
            src, kind = weighted(g, frags)(g, fname)
            parts.append(src)
            members.append(fname)
            kinds.append(kind)
        solo = [m for m, k in zip(members, kinds) if k == "solo"]
        soon = [m for m, k in zip(members, kinds) if k == "soon"]
        body = []
        # solo fragments run alone (in sequence); "soon" ones may run concurrently
        for m in members:
            if m in solo:
                body.append("T('>', %r); await %s()" % (m, m))
        if len(soon) > 1 and g.coin(0.6):
            body.append("T('> gather', %r)" % soon)
            body.append("T('gathered', await asyncio.gather(%s, return_exceptions=True))"
                        % ", ".join("%s()" % m for m in soon))
        else:
            for m in soon:
                body.append("T('>', %r); await %s()" % (m, m))
        parts.append("async def %s():\n%s\n" % (name, ind("\n".join(body), 4)))
        stages.append((name, True))
    parts.append("def run(new_loop):\n    global loop\n    loop = new_loop()\n    H.start(loop)\n"
                 + "".join("    H.stage(%r, %s, %r)\n" % (n, n, a) for n, a in stages)
                 + "    H.finish(loop)\n")
    return "\n".join(parts)
