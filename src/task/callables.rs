//! The step and wake-up of a task as builtins bound to it (what C shows and what another
//! loop's `call_soon` gets), and as ready-queue jobs on ferroloop's loop.

use std::sync::OnceLock;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

use super::*;
use crate::event_loop::{NativeLoop, TaskCall};
use crate::future::{self, eager};
use crate::pyo::native_type::methods::{noargs, noargs_def, o_def, onearg, LeakedDef};
use crate::pyo::native_type::{self};

struct Defs {
    step: LeakedDef,
    step_exc: LeakedDef,
    wakeup: LeakedDef,
}

static DEFS: OnceLock<Defs> = OnceLock::new();

fn defs() -> &'static Defs {
    DEFS.get_or_init(|| Defs {
        step: LeakedDef::new(noargs_def(
            c"task_step",
            m_step,
            c"Run one step of the task.",
        )),
        step_exc: LeakedDef::new(o_def(
            c"task_step",
            m_step_exc,
            c"Run one step of the task, throwing the exception into the coroutine.",
        )),
        wakeup: LeakedDef::new(o_def(
            c"task_wakeup",
            m_wakeup,
            c"Wake the task up when the future it awaits is done.",
        )),
    })
}

/// A builtin bound to `task` for `def_`.
fn bound_fn<'py>(task: &Bound<'py, PyAny>, def_: &LeakedDef) -> PyResult<Bound<'py, PyAny>> {
    def_.bind(task)
}

/// The `task_wakeup` builtin bound to `task` (what C shows in a future's `_callbacks`).
pub(crate) fn wakeup_callable<'py>(task: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    bound_fn(task, &defs().wakeup)
}

/// The builtin a [`crate::event_loop::TaskCall`] stands for: the wake-up, or the step
/// (taking the exception to throw in when `has_arg`).
pub(crate) fn job_callable<'py>(
    task: &Bound<'py, PyAny>,
    wakeup: bool,
    has_arg: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let d = defs();
    bound_fn(
        task,
        match (wakeup, has_arg) {
            (true, _) => &d.wakeup,
            (false, true) => &d.step_exc,
            (false, false) => &d.step,
        },
    )
}

/// Runs a [`crate::event_loop::TaskCall`] (the caller entered the task's context): what
/// calling [`job_callable`] with `arg` does, without the builtin.
pub(crate) fn run_job(
    task: &Bound<'_, PyAny>,
    wakeup: bool,
    arg: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let py = task.py();
    let ts = native_type::native::<TaskState>(task)
        .ok_or_else(|| eager::<PyTypeError>(py, "expected an initialized ferroloop Task"))?;
    if wakeup {
        self::wakeup(task, ts, arg.cloned())
    } else {
        step(task, ts, arg.cloned())
    }
}

/// Schedules a step of `task` (throwing `exc` into the coroutine if given).
pub(super) fn call_step_soon(
    task: &Bound<'_, PyAny>,
    ts: &TaskState,
    exc: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let py = task.py();
    let loop_ = ts.fut.loop_obj(py)?;
    let ctx = ts.context(py);
    if let Some(native) = NativeLoop::of(&loop_) {
        return native.call_task_soon(TaskCall {
            task: task.clone().unbind(),
            arg: exc.map(|e| e.clone().unbind()),
            context: ctx.unbind(),
            wakeup: false,
        });
    }
    match exc {
        None => future::call_soon(&loop_, &bound_fn(task, &defs().step)?, None, &ctx),
        Some(e) => future::call_soon(&loop_, &bound_fn(task, &defs().step_exc)?, Some(e), &ctx),
    }
}

// The builtins' C functions: `self` is the task they are bound to.

fn step_method<'py>(slf: &Bound<'py, PyAny>, ts: &TaskState) -> PyResult<Bound<'py, PyAny>> {
    step(slf, ts, None)?;
    Ok(slf.py().None().into_bound(slf.py()))
}

fn step_exc_method<'py>(
    slf: &Bound<'py, PyAny>,
    ts: &TaskState,
    exc: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    step(slf, ts, Some(exc.clone()))?;
    Ok(slf.py().None().into_bound(slf.py()))
}

fn wakeup_method<'py>(
    slf: &Bound<'py, PyAny>,
    ts: &TaskState,
    fut: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    wakeup(slf, ts, Some(fut.clone()))?;
    Ok(slf.py().None().into_bound(slf.py()))
}

noargs!(m_step, TaskState, step_method);
onearg!(m_step_exc, TaskState, step_exc_method);
onearg!(m_wakeup, TaskState, wakeup_method);
