//! The step and wake-up of a task as builtins bound to it (what C shows and what another
//! loop's `call_soon` gets), and as ready-queue jobs on ferroloop's loop.

use std::ptr;
use std::sync::OnceLock;

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;

use super::*;
use crate::future::{self, eager};
use crate::pyo::native_type::methods::{enter, noargs_def, o_def};
use crate::pyo::native_type::{self};
use crate::pyo::panic::guard_obj;

struct Defs {
    step: *mut ffi::PyMethodDef,
    step_exc: *mut ffi::PyMethodDef,
    wakeup: *mut ffi::PyMethodDef,
}

// SAFETY: the definitions are leaked, immutable after creation, and only read by CPython
// while attached.
unsafe impl Send for Defs {}
// SAFETY: as above.
unsafe impl Sync for Defs {}

static DEFS: OnceLock<Defs> = OnceLock::new();

fn defs() -> &'static Defs {
    DEFS.get_or_init(|| {
        let leak = |d: ffi::PyMethodDef| Box::into_raw(Box::new(d));
        Defs {
            step: leak(noargs_def(
                c"task_step",
                m_step,
                c"Run one step of the task.",
            )),
            step_exc: leak(o_def(
                c"task_step",
                m_step_exc,
                c"Run one step of the task, throwing the exception into the coroutine.",
            )),
            wakeup: leak(o_def(
                c"task_wakeup",
                m_wakeup,
                c"Wake the task up when the future it awaits is done.",
            )),
        }
    })
}

/// A builtin bound to `task` for `def_`.
fn bound_fn<'py>(
    task: &Bound<'py, PyAny>,
    def_: *mut ffi::PyMethodDef,
) -> PyResult<Bound<'py, PyAny>> {
    let py = task.py();
    // SAFETY: `def_` is a leaked, static method definition; `task` is live. Returns a new
    // reference or NULL with an exception set.
    unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyCFunction_NewEx(def_, task.as_ptr(), ptr::null_mut()),
        )
    }
}

/// The `task_wakeup` builtin bound to `task` (what C shows in a future's `_callbacks`).
pub(crate) fn wakeup_callable<'py>(task: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    bound_fn(task, defs().wakeup)
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
            (true, _) => d.wakeup,
            (false, true) => d.step_exc,
            (false, false) => d.step,
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
    if let Some(core) = crate::event_loop::LoopCore::native_target(&loop_) {
        return crate::event_loop::LoopCore::call_task_soon(
            core,
            crate::event_loop::TaskCall {
                task: task.clone().unbind(),
                arg: exc.map(|e| e.clone().unbind()),
                context: ctx.unbind(),
                wakeup: false,
            },
        );
    }
    match exc {
        None => future::call_soon(&loop_, &bound_fn(task, defs().step)?, None, &ctx),
        Some(e) => future::call_soon(&loop_, &bound_fn(task, defs().step_exc)?, Some(e), &ctx),
    }
}

type TaskFn =
    for<'py> fn(&Bound<'py, PyAny>, &TaskState, Option<Bound<'py, PyAny>>) -> PyResult<()>;

/// Entry of the step/wake-up builtins: `slf` is the task they are bound to.
///
/// # Safety
/// CPython calling convention of a builtin: `slf` live, `arg` NULL or live, attached.
unsafe fn task_entry(
    slf: *mut ffi::PyObject,
    arg: *mut ffi::PyObject,
    f: TaskFn,
) -> *mut ffi::PyObject {
    // SAFETY: by the caller.
    let py = unsafe { Python::assume_attached() };
    guard_obj(py, || {
        // SAFETY: `slf`/`arg` are live borrowed references for the call.
        let (slf, arg) = unsafe {
            let arg = if arg.is_null() {
                None
            } else {
                Some(Bound::from_borrowed_ptr(py, arg))
            };
            (enter(py, slf), arg)
        };
        let ts = native_type::native::<TaskState>(&slf)
            .ok_or_else(|| eager::<PyTypeError>(py, "expected an initialized ferroloop Task"))?;
        f(&slf, ts, arg)?;
        Ok(py.None())
    })
}

unsafe extern "C" fn m_step(
    slf: *mut ffi::PyObject,
    _unused: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: METH_NOARGS convention.
    unsafe { task_entry(slf, ptr::null_mut(), step) }
}

unsafe extern "C" fn m_step_exc(
    slf: *mut ffi::PyObject,
    exc: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: METH_O convention.
    unsafe { task_entry(slf, exc, step) }
}

unsafe extern "C" fn m_wakeup(
    slf: *mut ffi::PyObject,
    fut: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: METH_O convention.
    unsafe { task_entry(slf, fut, wakeup) }
}
