//! Stepping a task: `__step` (with `_enter_task` / `_leave_task`), `__wakeup`, what a
//! yielded value means, and 3.12+'s eager start.

use std::mem;

use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PySystemExit};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::callables::{call_step_soon, wakeup_callable};
use super::*;
use crate::future::layout;
use crate::future::{self, eager, opt, or_none, FutureState, Status};
use crate::names::names;
use crate::pyo::call::{call_method0_raw, call_method1_raw, call_method_kw, send_none};
use crate::pyo::context::{enter_raw, exit_raw};
use crate::pyo::dict::dict_pop;
use crate::pyo::dict::setdefault_other;
use crate::pyo::exc::is_instance_of_exc;
use crate::pyo::native_type::{self};
use crate::pyo::object::{getattr_opt, is_generator};
use crate::pyo::Ref;

pub(super) fn runtime_error<'py>(py: Python<'py>, msg: String) -> PyResult<Bound<'py, PyAny>> {
    py.get_type::<PyRuntimeError>().call1((msg,))
}

/// The error a task steps with when it awaits a future of another loop (the C Task's).
fn different_loop_error<'py>(
    task: &Bound<'py, PyAny>,
    result: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let msg = format!(
        "Task {} got Future {} attached to a different loop",
        task.repr()?,
        result.repr()?
    );
    runtime_error(task.py(), msg)
}

/// `_enter_task(loop, task)` as the C Task does it (`enter_task` in `_asynciomodule.c`,
/// 3.11–3.13) on the module's `_current_tasks` dict, without a call: one `setdefault`
/// both checks that no task is current and makes this one current.
pub(super) fn enter_task(
    current: &Bound<'_, PyDict>,
    loop_: &Bound<'_, PyAny>,
    task: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let py = task.py();
    let Some(other) = setdefault_other(current, loop_, task)? else {
        return Ok(());
    };
    Err(eager::<PyRuntimeError>(
        py,
        format!(
            "Cannot enter into task {} while another task {} is being executed.",
            task.repr()?,
            other.repr()?
        ),
    ))
}

/// `_leave_task(loop, task)` as the C Task does it: one `pop`, putting back what was there
/// if it was not `task`.
pub(super) fn leave_task(
    current: &Bound<'_, PyDict>,
    loop_: &Bound<'_, PyAny>,
    task: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let py = task.py();
    let item = dict_pop(current, loop_)?;
    if item.as_ref().is_some_and(|i| i.is(task)) {
        return Ok(());
    }
    if let Some(i) = &item {
        current.set_item(loop_, i)?;
    }
    let item = or_none(item, py);
    Err(eager::<PyRuntimeError>(
        py,
        format!(
            "Leaving task {} does not match the current task {}.",
            task.repr()?,
            item.repr()?
        ),
    ))
}

/// `Task.__step`: `_enter_task`, one step, `_leave_task`.
pub(super) fn step<'py>(
    task: &Bound<'py, PyAny>,
    ts: &TaskState,
    exc: Option<Bound<'py, PyAny>>,
) -> PyResult<()> {
    let py = task.py();
    let n = names(py)?;
    let loop_ = ts.fut.loop_obj(py)?;
    let current = n.current_tasks.bind(py);
    enter_task(current, &loop_, task)?;
    let r = step_impl(task, ts, exc);
    unregister_if_done(ts);
    let l = leave_task(current, &loop_, task);
    match (r, l) {
        (Ok(()), l) => l,
        (Err(e), Ok(_)) => Err(e),
        (Err(e), Err(e2)) => {
            e2.set_context(py, Some(e));
            Err(e2)
        }
    }
}

/// How the coroutine's `send()` / `throw()` ended.
use crate::pyo::call::Sent as Outcome;

/// One step without the enter/leave bookkeeping (`task_step_impl` in C).
pub(super) fn step_impl<'py>(
    task: &Bound<'py, PyAny>,
    ts: &TaskState,
    exc: Option<Bound<'py, PyAny>>,
) -> PyResult<()> {
    let py = task.py();
    if ts.fut.status() != Status::Pending {
        let e = or_none(exc, py);
        return Err(future::invalid_state(
            py,
            format!("_step(): already done: {} {}", task.repr()?, e.repr()?),
        )?);
    }
    let fnames = names(py)?;
    let cancelled_error = fnames.cancelled_error.bind(py);
    let mut exc = exc;
    let must_cancel = ts.inner.with(|s| s.must_cancel);
    if must_cancel {
        if !exc
            .as_ref()
            .is_some_and(|e| is_instance_of_exc(e, cancelled_error))
        {
            exc = Some(future::make_cancelled_error(py, &ts.fut)?);
        }
        ts.inner.with(|s| s.must_cancel = false);
    }
    let (coro, old_waiter) = ts.inner.with(|g| (opt(&g.coro, py), g.fut_waiter.take()));
    drop(old_waiter);
    let Some(coro) = coro else {
        return Err(eager::<PyRuntimeError>(py, "uninitialized Task object"));
    };

    let outcome = match &exc {
        None => send_none(&coro),
        Some(e) => {
            let r = call_method1_raw(&coro, names(py)?.str_throw.bind(py), e);
            match r {
                Ok(v) => Outcome::Yield(v),
                Err(err) => {
                    let stop = py.get_type::<pyo3::exceptions::PyStopIteration>();
                    if is_instance_of_exc(&err, stop.as_any()) {
                        Outcome::Return(err.getattr(intern!(py, "value"))?)
                    } else {
                        Outcome::Raise(err)
                    }
                }
            }
        }
    };
    drop(exc);

    match outcome {
        Outcome::Return(value) => {
            let must_cancel = ts.inner.with(|g| mem::take(&mut g.must_cancel));
            if must_cancel {
                // The task was cancelled right before the coroutine returned.
                let msg = ts.fut.inner.with(|s| opt(&s.cancel_msg, py));
                future::cancel_impl(task, &ts.fut, msg)?;
            } else {
                future::set_result(task, &ts.fut, &value)?;
            }
            Ok(())
        }
        Outcome::Raise(err) => {
            if is_instance_of_exc(&err, cancelled_error) {
                // Saved so that `_make_cancelled_error` re-raises it (the chain is kept).
                let old = ts
                    .fut
                    .inner
                    .with(|s| s.cancelled_exc.replace(Ref::new(err)));
                drop(old);
                future::cancel_impl(task, &ts.fut, None)?;
                return Ok(());
            }
            future::set_exception(task, &ts.fut, &err)?;
            let ki = py.get_type::<PyKeyboardInterrupt>();
            let se = py.get_type::<PySystemExit>();
            if is_instance_of_exc(&err, ki.as_any()) || is_instance_of_exc(&err, se.as_any()) {
                return Err(PyErr::from_value(err));
            }
            Ok(())
        }
        Outcome::Yield(result) => handle_yield(task, ts, result),
    }
}

/// `future._asyncio_future_blocking` or `None` when there is no such attribute.
pub(super) fn blocking_attr<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = obj.py();
    getattr_opt(obj, names(py)?.str_asyncio_future_blocking.bind(py))
}

/// `futures._get_loop(fut)`: `fut.get_loop()`, else `fut._loop`.
pub(super) fn future_loop<'py>(fut: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = fut.py();
    let getter = getattr_opt(fut, names(py)?.str_get_loop.bind(py))?;
    match getter {
        Some(g) => g.call0(),
        None => fut.getattr(intern!(py, "_loop")),
    }
}

/// `fut.add_done_callback(cb, context=ctx)` through vectorcall.
pub(super) fn add_done_callback_method(
    fut: &Bound<'_, PyAny>,
    cb: &Bound<'_, PyAny>,
    ctx: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let py = fut.py();
    let n = names(py)?;
    let (name, kwnames) = (n.str_add_done_callback.bind(py), n.kwnames_context.bind(py));
    call_method_kw(fut, name, &[cb], kwnames, &[ctx]).map(drop)
}

pub(super) fn handle_yield<'py>(
    task: &Bound<'py, PyAny>,
    ts: &TaskState,
    result: Bound<'py, PyAny>,
) -> PyResult<()> {
    let py = task.py();
    if result.is_none() {
        // A bare `yield` relinquishes control for one loop iteration (checked first, as
        // the C Task does: `None` has no `_asyncio_future_blocking`).
        return call_step_soon(task, ts, None);
    }
    let loop_ = ts.fut.loop_obj(py)?;
    let ctx = ts.context(py);

    // Our own Future and Task types (exactly: a subclass may override the protocol).
    let native = if native_type::is_exact::<FutureState>(&result)
        || native_type::is_exact::<TaskState>(&result)
    {
        layout::state(&result)
    } else {
        None
    };
    let blocking = match native {
        Some(rst) => {
            let (blocking, rloop) = rst.inner.with(|g| (g.blocking, opt(&g.loop_, py)));
            if !rloop.is_some_and(|l| l.is(&loop_)) {
                let e = different_loop_error(task, &result)?;
                return call_step_soon(task, ts, Some(&e));
            }
            Some(blocking)
        }
        None => match blocking_attr(&result)? {
            None => None,
            Some(b) if b.is_none() => None,
            Some(b) => {
                if !future_loop(&result)?.is(&loop_) {
                    let e = different_loop_error(task, &result)?;
                    return call_step_soon(task, ts, Some(&e));
                }
                Some(b.is_truthy()?)
            }
        },
    };
    match blocking {
        Some(true) => {
            if result.is(task) {
                let e =
                    runtime_error(py, format!("Task cannot await on itself: {}", task.repr()?))?;
                return call_step_soon(task, ts, Some(&e));
            }
            match native {
                Some(rst) => {
                    rst.inner.with(|s| s.blocking = false);
                    future::add_wakeup(&result, rst, task, ctx)?;
                }
                None => {
                    result.setattr(intern!(py, "_asyncio_future_blocking"), false)?;
                    add_done_callback_method(&result, &wakeup_callable(task)?, &ctx)?;
                }
            }
            let old = ts
                .inner
                .with(|s| s.fut_waiter.replace(Ref::new(result.clone())));
            drop(old);
            if ts.inner.with(|s| s.must_cancel) {
                let msg = or_none(ts.fut.inner.with(|s| opt(&s.cancel_msg, py)), py);
                if result
                    .call_method1(intern!(py, "cancel"), (msg,))?
                    .is_truthy()?
                {
                    ts.inner.with(|s| s.must_cancel = false);
                }
            }
            Ok(())
        }
        Some(false) => {
            let e = runtime_error(
                py,
                format!(
                    "yield was used instead of yield from in task {} with {}",
                    task.repr()?,
                    result.repr()?
                ),
            )?;
            call_step_soon(task, ts, Some(&e))
        }
        None => {
            let is_gen = is_generator(&result);
            let msg = if is_gen {
                format!(
                    "yield was used instead of yield from for generator in task {} with {}",
                    task.repr()?,
                    result.repr()?
                )
            } else {
                format!("Task got bad yield: {}", result.repr()?)
            };
            let e = runtime_error(py, msg)?;
            call_step_soon(task, ts, Some(&e))
        }
    }
}

/// `Task.__wakeup(future)`: one step, throwing the future's exception if it has one.
pub(super) fn wakeup<'py>(
    task: &Bound<'py, PyAny>,
    ts: &TaskState,
    fut: Option<Bound<'py, PyAny>>,
) -> PyResult<()> {
    let py = task.py();
    let fut = or_none(fut, py);
    let outcome = match layout::state(&fut) {
        Some(fst)
            if native_type::is_exact::<FutureState>(&fut)
                || native_type::is_exact::<TaskState>(&fut) =>
        {
            future::result_outcome(&fut, fst)?
        }
        _ => call_method0_raw(&fut, names(py)?.str_result.bind(py)),
    };
    match outcome {
        Ok(_) => step(task, ts, None),
        Err(exc) => step(task, ts, Some(exc)),
    }
}

pub(super) fn ffi_is_running(loop_: &Bound<'_, PyAny>) -> PyResult<bool> {
    loop_
        .call_method0(intern!(loop_.py(), "is_running"))?
        .is_truthy()
}

/// 3.12+ `eager_start=True` on a running loop: the first step runs now, inside
/// `__init__`, with the task as the loop's current task (`task_eager_start` in C).
pub(super) fn eager_start_task(task: &Bound<'_, PyAny>, ts: &TaskState) -> PyResult<()> {
    let py = task.py();
    let n = names(py)?;
    let (Some(swap), Some(reg), Some(unreg)) = (
        n.swap_current_task.as_ref(),
        n.register_eager_task.as_ref(),
        n.unregister_eager_task.as_ref(),
    ) else {
        return Err(eager::<PyRuntimeError>(py, "eager tasks need Python 3.12+"));
    };
    let loop_ = ts.fut.loop_obj(py)?;
    let prev = swap.bind(py).call1((&loop_, task))?;
    reg.bind(py).call1((task,))?;
    let ctx = ts.context(py);
    // `ctx` is the contextvars.Context copied or given to __init__.
    enter_raw(&ctx).map_err(PyErr::from_value)?;
    let mut result = step_impl(task, ts, None);
    let mut chain = |r: PyResult<()>| {
        if let Err(e) = r {
            result = match mem::replace(&mut result, Ok(())) {
                Ok(()) => Err(e),
                Err(first) => {
                    e.set_context(py, Some(first));
                    Err(e)
                }
            };
        }
    };
    chain(swap.bind(py).call1((&loop_, &prev)).map(drop));
    chain(unreg.bind(py).call1((task,)).map(drop));
    // Leaves the context entered above.
    chain(exit_raw(&ctx).map_err(PyErr::from_value));
    if ts.fut.status() == Status::Pending {
        chain(register_pending(task, ts));
    } else {
        let old = ts.inner.with(|s| s.coro.take());
        drop(old);
    }
    result
}
