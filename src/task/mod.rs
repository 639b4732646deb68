//! `ferroloop._ferroloop.Task`: asyncio's `Task` implemented in Rust, whose type is a
//! subclass of CPython's C `_asyncio.Task` (so `isinstance(t, asyncio.Task)` and
//! `isinstance(t, asyncio.Future)` hold).
//!
//! The semantics follow `Lib/asyncio/tasks.py` and the C `_asyncio` module (per version:
//! `eager_start` on 3.12+, `uncancel()` resetting `_must_cancel` on 3.13+). The Future part
//! of the state is a [`FutureState`] and every Future method is the Future's own code; the
//! type is built by [`layout::create_type`] like the Future's.
//!
//! Stepping never recurses on the native stack: each step is scheduled for the next loop
//! iteration, and the wake-up registered on the awaited future runs one step. On
//! ferroloop's own loop (see `LoopCore::native_target`) a step or wake-up is a
//! `Job::Task` in the ready queue that calls [`step`]/[`wakeup`] directly; elsewhere it is
//! `loop.call_soon(bound_builtin, ...)`, like the C Task's step wrapper. Awaiting a
//! ferroloop Future or Task registers the wake-up as a Rust value
//! (`future::Callback::Wakeup`); the bound `task_wakeup` builtin is made only when Python
//! code looks at `_callbacks` / `remove_done_callback`, or for another loop's `call_soon`.
//!
//! Exceptions that the step inspects are handled as objects taken out of the error
//! indicator (never as a dropped `PyErr`: CPython calls these functions without PyO3's
//! bookkeeping of attached threads, so dropping a `PyErr` would defer its decrefs).

use std::ffi::{c_int, CStr};
use std::mem;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use pyo3::exceptions::{
    PyAttributeError, PyKeyboardInterrupt, PyRuntimeError, PySystemExit, PyTypeError,
};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyModule, PyString, PyTuple, PyType};

use crate::future::layout::{
    self, call_init, call_noargs, enter, fast, fast_def, getset, guard_obj, noargs, noargs_def,
    o_def, onearg, Native, Ref, TypeData, TypeSpec,
};
use crate::future::{self, eager, opt, or_none, py_bool, FastArgs, FutureState, Status};
use crate::sync::GilCell;

mod registry;

#[derive(Default)]
struct TaskInner {
    coro: Option<Ref>,
    context: Option<Ref>,
    fut_waiter: Option<Ref>,
    /// The name, once given or formatted; until then `Task-{counter}`.
    name: Option<Ref>,
    counter: u64,
    must_cancel: bool,
    log_destroy_pending: bool,
    num_cancels_requested: i64,
    /// The weak reference that registers the pending task with asyncio (see [`registry`]).
    registered: Option<registry::Registration>,
}

/// The Rust state stored in each Task object: the Future's state plus the Task's.
pub struct TaskState {
    fut: FutureState,
    inner: GilCell<TaskInner>,
}

impl TaskState {
    /// The Future part of the task.
    pub fn future(&self) -> &FutureState {
        &self.fut
    }

    fn context<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        or_none(opt(&self.inner.lock().context, py), py)
    }
}

static TYPE: OnceLock<TypeData> = OnceLock::new();

/// Numbers the default names `Task-{n}`: one counter per process, like the C Task's
/// (Python-implemented tasks count separately, in `asyncio.tasks._task_name_counter`).
static TASK_NAME_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Native for TaskState {
    fn new_state() -> Self {
        TaskState {
            fut: FutureState::new(),
            inner: GilCell::new(TaskInner::default()),
        }
    }
    fn type_data() -> &'static OnceLock<TypeData> {
        &TYPE
    }
    fn visit<F: FnMut(&Ref) -> c_int>(&self, visit: &mut F) -> c_int {
        let r = self.fut.visit(&mut *visit);
        if r != 0 {
            return r;
        }
        let Some(g) = self.inner.try_lock() else {
            return 0;
        };
        for r in [&g.coro, &g.context, &g.fut_waiter, &g.name]
            .into_iter()
            .flatten()
        {
            let v = visit(r);
            if v != 0 {
                return v;
            }
        }
        0
    }
    fn clear(&self) {
        self.fut.clear();
        let old = match self.inner.try_lock() {
            Some(mut g) => mem::take(&mut *g),
            None => return,
        };
        drop(old);
    }
    fn finalize(slf: &Bound<'_, PyAny>, st: &Self) {
        finalize(slf, st)
    }
}

/// asyncio objects the task uses, imported once.
struct Names {
    register_task: Py<PyAny>,
    /// `_asyncio._current_tasks`, the `{loop: task}` dict behind `current_task()`.
    current_tasks: Py<PyDict>,
    swap_current_task: Option<Py<PyAny>>,
    register_eager_task: Option<Py<PyAny>>,
    unregister_eager_task: Option<Py<PyAny>>,
    iscoroutine: Py<PyAny>,
    task_repr: Py<PyAny>,
    task_get_stack: Py<PyAny>,
    task_print_stack: Py<PyAny>,
    /// 3.12+: `eager_start` and `get_context`.
    eager: bool,
    /// 3.13+: `uncancel()` down to zero clears `_must_cancel`.
    uncancel_resets: bool,
}

static NAMES: PyOnceLock<Names> = PyOnceLock::new();

fn names(py: Python<'_>) -> PyResult<&'static Names> {
    NAMES.get_or_try_init(py, || {
        let c = py.import("_asyncio")?;
        let base_tasks = py.import("asyncio.base_tasks")?;
        let coroutines = py.import("asyncio.coroutines")?;
        let attr = |m: &Bound<'_, PyModule>, n: &str| m.getattr(n).map(Bound::unbind);
        let eager = py.version_info() >= (3, 12);
        let opt_attr = |n: &str| -> PyResult<Option<Py<PyAny>>> {
            if eager {
                Ok(Some(attr(&c, n)?))
            } else {
                Ok(None)
            }
        };
        Ok(Names {
            register_task: attr(&c, "_register_task")?,
            current_tasks: c.getattr("_current_tasks")?.cast_into::<PyDict>()?.unbind(),
            swap_current_task: opt_attr("_swap_current_task")?,
            register_eager_task: opt_attr("_register_eager_task")?,
            unregister_eager_task: opt_attr("_unregister_eager_task")?,
            iscoroutine: attr(&coroutines, "iscoroutine")?,
            task_repr: attr(&base_tasks, "_task_repr")?,
            task_get_stack: attr(&base_tasks, "_task_get_stack")?,
            task_print_stack: attr(&base_tasks, "_task_print_stack")?,
            eager,
            uncancel_resets: py.version_info() >= (3, 13),
        })
    })
}

// ---------------------------------------------------------------------------------------
// Raw exception handling (see the module docs)
// ---------------------------------------------------------------------------------------

/// Takes the raised exception out of the error indicator, as an object with its
/// `__traceback__` set. Must only be called with an exception set.
fn fetch_exc(py: Python<'_>) -> Bound<'_, PyAny> {
    #[cfg(Py_3_12)]
    // SAFETY: attached; returns a new reference (NULL only if no exception is set).
    let p = unsafe { ffi::PyErr_GetRaisedException() };
    #[cfg(not(Py_3_12))]
    // SAFETY: attached; Fetch hands over three (possibly NULL) new references, Normalize
    // makes `v` an instance, and the traceback is attached to it before `t`/`tb` are
    // released.
    let p = unsafe {
        let (mut t, mut v, mut tb) = (ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
        ffi::PyErr_Fetch(&mut t, &mut v, &mut tb);
        ffi::PyErr_NormalizeException(&mut t, &mut v, &mut tb);
        if !tb.is_null() && !v.is_null() {
            ffi::PyException_SetTraceback(v, tb);
        }
        ffi::Py_XDECREF(t);
        ffi::Py_XDECREF(tb);
        v
    };
    if p.is_null() {
        return eager::<pyo3::exceptions::PySystemError>(py, "error return without exception set")
            .into_value(py)
            .into_bound(py)
            .into_any();
    }
    // SAFETY: `p` is a new reference to a live exception object.
    unsafe { Bound::from_owned_ptr(py, p) }
}

/// A new reference returned by a C API call, or the exception it raised (as an object).
///
/// # Safety
/// `p` must be a new reference or NULL with an exception set; attached.
unsafe fn take<'py>(
    py: Python<'py>,
    p: *mut ffi::PyObject,
) -> Result<Bound<'py, PyAny>, Bound<'py, PyAny>> {
    if p.is_null() {
        Err(fetch_exc(py))
    } else {
        // SAFETY: by the caller.
        Ok(unsafe { Bound::from_owned_ptr(py, p) })
    }
}

/// `callable(*args)` through vectorcall (no argument tuple built).
fn vcall<'py>(
    callable: &Bound<'py, PyAny>,
    args: &[*mut ffi::PyObject],
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: `args` are borrowed references kept alive by the caller for the call; a new
    // reference or NULL with an exception set is returned.
    unsafe {
        Bound::from_owned_ptr_or_err(
            callable.py(),
            ffi::PyObject_Vectorcall(
                callable.as_ptr(),
                args.as_ptr(),
                args.len(),
                ptr::null_mut(),
            ),
        )
    }
}

fn runtime_error<'py>(py: Python<'py>, msg: String) -> PyResult<Bound<'py, PyAny>> {
    py.get_type::<PyRuntimeError>().call1((msg,))
}

fn is_instance_of_exc(exc: &Bound<'_, PyAny>, ty: &Bound<'_, PyAny>) -> bool {
    // SAFETY: both are live; PyErr_GivenExceptionMatches never raises.
    unsafe { ffi::PyErr_GivenExceptionMatches(exc.as_ptr(), ty.as_ptr()) != 0 }
}

// ---------------------------------------------------------------------------------------
// The step and wake-up callables
// ---------------------------------------------------------------------------------------

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
    let ts = layout::native::<TaskState>(task)
        .ok_or_else(|| eager::<PyTypeError>(py, "expected an initialized ferroloop Task"))?;
    if wakeup {
        self::wakeup(task, ts, arg.cloned())
    } else {
        step(task, ts, arg.cloned())
    }
}

/// Schedules a step of `task` (throwing `exc` into the coroutine if given).
fn call_step_soon(
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
        let ts = layout::native::<TaskState>(&slf)
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

// ---------------------------------------------------------------------------------------
// Stepping
// ---------------------------------------------------------------------------------------

/// `_enter_task(loop, task)` as the C Task does it (`enter_task` in `_asynciomodule.c`,
/// 3.11–3.13) on the module's `_current_tasks` dict, without a call: one `setdefault`
/// both checks that no task is current and makes this one current.
fn enter_task(
    current: &Bound<'_, PyDict>,
    loop_: &Bound<'_, PyAny>,
    task: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let py = task.py();
    #[cfg(not(Py_GIL_DISABLED))]
    // SAFETY: all three are live and `current` is a dict; PyDict_SetDefault returns a
    // borrowed reference (the value now stored) or NULL with an exception set. It is
    // compared, then turned into a strong reference before any Python code runs.
    let other = unsafe {
        let now = ffi::PyDict_SetDefault(current.as_ptr(), loop_.as_ptr(), task.as_ptr());
        if now.is_null() {
            return Err(PyErr::fetch(py));
        }
        if now == task.as_ptr() {
            return Ok(());
        }
        Bound::from_borrowed_ptr(py, now)
    };
    #[cfg(Py_GIL_DISABLED)]
    // SAFETY: as above, but PyDict_SetDefaultRef stores a new reference in `now`.
    let other = unsafe {
        let mut now = ptr::null_mut();
        if ffi::PyDict_SetDefaultRef(current.as_ptr(), loop_.as_ptr(), task.as_ptr(), &mut now) < 0
        {
            return Err(PyErr::fetch(py));
        }
        let now = Bound::from_owned_ptr(py, now);
        if now.is(task) {
            return Ok(());
        }
        now
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
fn leave_task(
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

#[cfg(not(Py_3_13))]
extern "C" {
    /// `dict.pop(key, default)` (exported by CPython 3.11 and 3.12; 3.13 made it public
    /// as `PyDict_Pop`): a new reference, `default` when absent, NULL with an exception set.
    fn _PyDict_Pop(
        dict: *mut ffi::PyObject,
        key: *mut ffi::PyObject,
        default: *mut ffi::PyObject,
    ) -> *mut ffi::PyObject;
}

/// Removes `key` from `dict` with a single lookup, returning its value if it was there.
fn dict_pop<'py>(
    dict: &Bound<'py, PyDict>,
    key: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = dict.py();
    #[cfg(Py_3_13)]
    {
        let mut out = ptr::null_mut();
        // SAFETY: `dict` is a dict and `key` live; PyDict_Pop stores a new reference (or
        // NULL when absent) in `out` and returns 1 / 0, or -1 with an exception set.
        match unsafe { ffi::PyDict_Pop(dict.as_ptr(), key.as_ptr(), &mut out) } {
            -1 => Err(PyErr::fetch(py)),
            // SAFETY: a new reference when the key was present.
            1 => Ok(Some(unsafe { Bound::from_owned_ptr(py, out) })),
            _ => Ok(None),
        }
    }
    #[cfg(not(Py_3_13))]
    {
        // A private sentinel: nothing else can be stored under the loop.
        let absent = py.NotImplemented();
        // SAFETY: `dict` is a dict, `key` and `absent` live; a new reference or NULL with
        // an exception set.
        let v = unsafe {
            Bound::from_owned_ptr_or_err(
                py,
                _PyDict_Pop(dict.as_ptr(), key.as_ptr(), absent.as_ptr()),
            )?
        };
        Ok((!v.is(&absent)).then_some(v))
    }
}

/// `Task.__step`: `_enter_task`, one step, `_leave_task`.
fn step<'py>(
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

enum Outcome<'py> {
    Return(Bound<'py, PyAny>),
    Yield(Bound<'py, PyAny>),
    Raise(Bound<'py, PyAny>),
}

/// One step without the enter/leave bookkeeping (`task_step_impl` in C).
fn step_impl<'py>(
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
    let fnames = future::names(py)?;
    let cancelled_error = fnames.cancelled_error.bind(py);
    let mut exc = exc;
    let must_cancel = ts.inner.lock().must_cancel;
    if must_cancel {
        if !exc
            .as_ref()
            .is_some_and(|e| is_instance_of_exc(e, cancelled_error))
        {
            exc = Some(future::make_cancelled_error(py, &ts.fut)?);
        }
        ts.inner.lock().must_cancel = false;
    }
    let (coro, old_waiter) = {
        let mut g = ts.inner.lock();
        (opt(&g.coro, py), g.fut_waiter.take())
    };
    drop(old_waiter);
    let Some(coro) = coro else {
        return Err(eager::<PyRuntimeError>(py, "uninitialized Task object"));
    };

    let outcome = match &exc {
        None => {
            let mut res = ptr::null_mut();
            // SAFETY: `coro` is live; PyIter_Send stores a new reference in `res` (result
            // or return value) or returns PYGEN_ERROR with an exception set.
            let status = unsafe { ffi::PyIter_Send(coro.as_ptr(), ffi::Py_None(), &mut res) };
            match status {
                // SAFETY: `res` is a new reference in both cases.
                ffi::PySendResult::PYGEN_RETURN => {
                    Outcome::Return(unsafe { Bound::from_owned_ptr(py, res) })
                }
                // SAFETY: as above.
                ffi::PySendResult::PYGEN_NEXT => {
                    Outcome::Yield(unsafe { Bound::from_owned_ptr(py, res) })
                }
                ffi::PySendResult::PYGEN_ERROR => Outcome::Raise(fetch_exc(py)),
            }
        }
        Some(e) => {
            static THROW: PyOnceLock<Py<PyString>> = PyOnceLock::new();
            let name = THROW.get_or_init(py, || PyString::intern(py, "throw").unbind());
            // SAFETY: live arguments; returns a new reference or NULL with an exception.
            let r = unsafe {
                take(
                    py,
                    ffi::PyObject_CallMethodOneArg(coro.as_ptr(), name.as_ptr(), e.as_ptr()),
                )
            };
            match r {
                Ok(v) => Outcome::Yield(v),
                Err(err) => {
                    let stop = py.get_type::<pyo3::exceptions::PyStopIteration>();
                    if is_instance_of_exc(&err, stop.as_any()) {
                        Outcome::Return(err.getattr(pyo3::intern!(py, "value"))?)
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
            let must_cancel = mem::take(&mut ts.inner.lock().must_cancel);
            if must_cancel {
                // The task was cancelled right before the coroutine returned.
                let msg = opt(&ts.fut.inner.lock().cancel_msg, py);
                future::cancel_impl(task, &ts.fut, msg)?;
            } else {
                future::set_result(task, &ts.fut, &value)?;
            }
            Ok(())
        }
        Outcome::Raise(err) => {
            if is_instance_of_exc(&err, cancelled_error) {
                // Saved so that `_make_cancelled_error` re-raises it (the chain is kept).
                let old = ts.fut.inner.lock().cancelled_exc.replace(Ref::new(err));
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
fn blocking_attr<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
    static NAME: PyOnceLock<Py<PyString>> = PyOnceLock::new();
    let py = obj.py();
    let name = NAME.get_or_init(py, || {
        PyString::intern(py, "_asyncio_future_blocking").unbind()
    });
    // SAFETY: live arguments; a new reference or NULL with an exception set. An
    // AttributeError is cleared in place (never materialized as a `PyErr`).
    unsafe {
        let p = ffi::PyObject_GetAttr(obj.as_ptr(), name.as_ptr());
        if p.is_null() {
            if ffi::PyErr_ExceptionMatches(ffi::PyExc_AttributeError) != 0 {
                ffi::PyErr_Clear();
                return Ok(None);
            }
            return Err(PyErr::from_value(fetch_exc(py)));
        }
        Ok(Some(Bound::from_owned_ptr(py, p)))
    }
}

/// `futures._get_loop(fut)`: `fut.get_loop()`, else `fut._loop`.
fn future_loop<'py>(fut: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    static NAME: PyOnceLock<Py<PyString>> = PyOnceLock::new();
    let py = fut.py();
    let name = NAME.get_or_init(py, || PyString::intern(py, "get_loop").unbind());
    // SAFETY: as in `blocking_attr`.
    let getter = unsafe {
        let p = ffi::PyObject_GetAttr(fut.as_ptr(), name.as_ptr());
        if p.is_null() {
            if ffi::PyErr_ExceptionMatches(ffi::PyExc_AttributeError) == 0 {
                return Err(PyErr::from_value(fetch_exc(py)));
            }
            ffi::PyErr_Clear();
            None
        } else {
            Some(Bound::from_owned_ptr(py, p))
        }
    };
    match getter {
        Some(g) => g.call0(),
        None => fut.getattr("_loop"),
    }
}

/// `fut.add_done_callback(cb, context=ctx)` through vectorcall.
fn add_done_callback_method(
    fut: &Bound<'_, PyAny>,
    cb: &Bound<'_, PyAny>,
    ctx: &Bound<'_, PyAny>,
) -> PyResult<()> {
    static NAMES: PyOnceLock<(Py<PyString>, Py<PyTuple>)> = PyOnceLock::new();
    let py = fut.py();
    let (name, kwnames) = NAMES.get_or_try_init(py, || -> PyResult<_> {
        Ok((
            PyString::intern(py, "add_done_callback").unbind(),
            PyTuple::new(py, ["context"])?.unbind(),
        ))
    })?;
    let argv = [fut.as_ptr(), cb.as_ptr(), ctx.as_ptr()];
    // SAFETY: borrowed references kept alive by the caller; 2 positionals (self first)
    // then one keyword value. A new reference or NULL with an exception set.
    unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyObject_VectorcallMethod(name.as_ptr(), argv.as_ptr(), 2, kwnames.as_ptr()),
        )
    }
    .map(drop)
}

fn handle_yield<'py>(
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
    let native =
        if layout::is_exact::<FutureState>(&result) || layout::is_exact::<TaskState>(&result) {
            layout::state(&result)
        } else {
            None
        };
    let blocking = match native {
        Some(rst) => {
            let (blocking, rloop) = {
                let g = rst.inner.lock();
                (g.blocking, opt(&g.loop_, py))
            };
            if !rloop.is_some_and(|l| l.is(&loop_)) {
                let e = runtime_error(
                    py,
                    format!(
                        "Task {} got Future {} attached to a different loop",
                        task.repr()?,
                        result.repr()?
                    ),
                )?;
                return call_step_soon(task, ts, Some(&e));
            }
            Some(blocking)
        }
        None => match blocking_attr(&result)? {
            None => None,
            Some(b) if b.is_none() => None,
            Some(b) => {
                if !future_loop(&result)?.is(&loop_) {
                    let e = runtime_error(
                        py,
                        format!(
                            "Task {} got Future {} attached to a different loop",
                            task.repr()?,
                            result.repr()?
                        ),
                    )?;
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
                    rst.inner.lock().blocking = false;
                    future::add_wakeup(&result, rst, task, ctx)?;
                }
                None => {
                    result.setattr("_asyncio_future_blocking", false)?;
                    add_done_callback_method(&result, &wakeup_callable(task)?, &ctx)?;
                }
            }
            let old = ts.inner.lock().fut_waiter.replace(Ref::new(result.clone()));
            drop(old);
            if ts.inner.lock().must_cancel {
                let msg = or_none(opt(&ts.fut.inner.lock().cancel_msg, py), py);
                if result.call_method1("cancel", (msg,))?.is_truthy()? {
                    ts.inner.lock().must_cancel = false;
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
            // SAFETY: `result` is live.
            let is_gen = unsafe { ffi::PyGen_Check(result.as_ptr()) != 0 };
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
fn wakeup<'py>(
    task: &Bound<'py, PyAny>,
    ts: &TaskState,
    fut: Option<Bound<'py, PyAny>>,
) -> PyResult<()> {
    let py = task.py();
    let fut = or_none(fut, py);
    let outcome = match layout::state(&fut) {
        Some(fst)
            if layout::is_exact::<FutureState>(&fut) || layout::is_exact::<TaskState>(&fut) =>
        {
            future::result_outcome(&fut, fst)?
        }
        _ => {
            static NAME: PyOnceLock<Py<PyString>> = PyOnceLock::new();
            let name = NAME.get_or_init(py, || PyString::intern(py, "result").unbind());
            // SAFETY: live arguments; a new reference or NULL with an exception set.
            unsafe {
                take(
                    py,
                    ffi::PyObject_CallMethodNoArgs(fut.as_ptr(), name.as_ptr()),
                )
            }
        }
    };
    match outcome {
        Ok(_) => step(task, ts, None),
        Err(exc) => step(task, ts, Some(exc)),
    }
}

// ---------------------------------------------------------------------------------------
// __init__
// ---------------------------------------------------------------------------------------

fn init<'py>(
    slf: &Bound<'py, PyAny>,
    ts: &TaskState,
    args: &Bound<'py, PyTuple>,
    kwargs: Option<&Bound<'py, PyDict>>,
) -> PyResult<()> {
    let py = slf.py();
    let n = names(py)?;
    if args.len() > 1 {
        return Err(eager::<PyTypeError>(
            py,
            format!(
                "Task() takes at most 1 positional argument ({} given)",
                args.len()
            ),
        ));
    }
    let mut coro = args.iter().next();
    let (mut loop_, mut name, mut context, mut eager_start) = (None, None, None, false);
    if let Some(kw) = kwargs {
        for (k, v) in kw.iter() {
            let k = k.cast_into::<PyString>()?;
            match k.to_str()? {
                "coro" if coro.is_none() => coro = Some(v),
                "loop" => loop_ = Some(v),
                "name" => name = Some(v),
                "context" => context = Some(v),
                "eager_start" if n.eager => eager_start = v.is_truthy()?,
                _ => {
                    return Err(eager::<PyTypeError>(
                        py,
                        format!("Task() got an unexpected keyword argument '{k}'"),
                    ))
                }
            }
        }
    }
    let Some(coro) = coro else {
        return Err(eager::<PyTypeError>(
            py,
            "Task() missing required argument 'coro' (pos 1)",
        ));
    };
    init_with(slf, ts, coro, loop_, name, context, eager_start)
}

/// `ferroloop.Task(coro, loop=loop_, name=name, context=context)` without a Python-level
/// call (no keyword dict, no argument parsing); `None` when the Task type does not exist
/// (then the caller calls the class).
pub(crate) fn new_for_loop<'py>(
    loop_: &Bound<'py, PyAny>,
    coro: &Bound<'py, PyAny>,
    name: Option<&Bound<'py, PyAny>>,
    context: Option<&Bound<'py, PyAny>>,
) -> Option<PyResult<Bound<'py, PyAny>>> {
    let py = loop_.py();
    TYPE.get()?;
    Some((|| {
        let task = layout::new_exact::<TaskState>(py)?;
        let ts = TaskState::lookup(&task)
            .ok_or_else(|| eager::<PyRuntimeError>(py, "ferroloop.Task lost its state"))?;
        init_with(
            &task,
            ts,
            coro.clone(),
            Some(loop_.clone()),
            name.cloned(),
            context.cloned(),
            false,
        )?;
        Ok(task)
    })())
}

/// `Task.__init__` after argument parsing; `loop.create_task()` calls it directly on a
/// new instance (see [`new_for_loop`]).
pub(crate) fn init_with<'py>(
    slf: &Bound<'py, PyAny>,
    ts: &TaskState,
    coro: Bound<'py, PyAny>,
    loop_: Option<Bound<'py, PyAny>>,
    name: Option<Bound<'py, PyAny>>,
    context: Option<Bound<'py, PyAny>>,
    eager_start: bool,
) -> PyResult<()> {
    let py = slf.py();
    let n = names(py)?;
    future::init_loop(slf, &ts.fut, loop_.filter(|l| !l.is_none()))?;

    // SAFETY: `coro` is live.
    let is_coro = unsafe { ffi::Py_TYPE(coro.as_ptr()) == ptr::addr_of_mut!(ffi::PyCoro_Type) }
        || n.iscoroutine.bind(py).call1((&coro,))?.is_truthy()?;
    if !is_coro {
        ts.inner.lock().log_destroy_pending = false;
        return Err(eager::<PyTypeError>(
            py,
            format!("a coroutine was expected, got {}", coro.repr()?),
        ));
    }
    let context = match context {
        Some(c) if !c.is_none() => c,
        // SAFETY: attached; a new reference or NULL with an exception set.
        _ => unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContext_CopyCurrent())? },
    };
    let (name, counter) = match name {
        Some(nm) if !nm.is_none() => {
            if nm.is_exact_instance_of::<PyString>() {
                (Some(nm), 0)
            } else {
                (Some(nm.str()?.into_any()), 0)
            }
        }
        _ => (None, TASK_NAME_COUNTER.fetch_add(1, Ordering::Relaxed) + 1),
    };
    let old = mem::replace(
        &mut *ts.inner.lock(),
        TaskInner {
            coro: Some(Ref::new(coro)),
            context: Some(Ref::new(context)),
            fut_waiter: None,
            name: name.map(Ref::new),
            counter,
            must_cancel: false,
            log_destroy_pending: true,
            num_cancels_requested: 0,
            registered: None,
        },
    );
    drop(old);

    if eager_start && ffi_is_running(&ts.fut.loop_obj(py)?)? {
        return eager_start_task(slf, ts);
    }
    call_step_soon(slf, ts, None)?;
    register_pending(slf, ts)
}

/// Registers a pending task with asyncio (`_register_task`).
fn register_pending(task: &Bound<'_, PyAny>, ts: &TaskState) -> PyResult<()> {
    let py = task.py();
    match registry::get(py) {
        Some(reg) => {
            let registration = reg.register(task)?;
            let old = ts.inner.lock().registered.replace(registration);
            drop(old);
            Ok(())
        }
        None => vcall(names(py)?.register_task.bind(py), &[task.as_ptr()]).map(drop),
    }
}

/// Takes a task that just finished out of asyncio's registry.
fn unregister_if_done(ts: &TaskState) {
    if ts.fut.status() != Status::Pending {
        let registration = ts.inner.lock().registered.take();
        drop(registration);
    }
}

fn ffi_is_running(loop_: &Bound<'_, PyAny>) -> PyResult<bool> {
    loop_
        .call_method0(pyo3::intern!(loop_.py(), "is_running"))?
        .is_truthy()
}

/// 3.12+ `eager_start=True` on a running loop: the first step runs now, inside
/// `__init__`, with the task as the loop's current task (`task_eager_start` in C).
fn eager_start_task(task: &Bound<'_, PyAny>, ts: &TaskState) -> PyResult<()> {
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
    // SAFETY: `ctx` is a live contextvars.Context (copied or given to __init__).
    if unsafe { ffi::PyContext_Enter(ctx.as_ptr()) } < 0 {
        return Err(PyErr::from_value(fetch_exc(py)));
    }
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
    // SAFETY: the context entered above.
    if unsafe { ffi::PyContext_Exit(ctx.as_ptr()) } < 0 {
        chain(Err(PyErr::from_value(fetch_exc(py))));
    }
    if ts.fut.status() == Status::Pending {
        chain(register_pending(task, ts));
    } else {
        let old = ts.inner.lock().coro.take();
        drop(old);
    }
    result
}

// ---------------------------------------------------------------------------------------
// Finalizer, repr
// ---------------------------------------------------------------------------------------

fn finalize(slf: &Bound<'_, PyAny>, ts: &TaskState) {
    let py = slf.py();
    // A dying task leaves asyncio's registry before its finalizer reports it, as the C
    // Task's weak reference is cleared before the GC runs finalizers: the exception
    // handler may keep (resurrect) the task, and all_tasks() must no longer list it.
    let registration = ts.inner.lock().registered.take();
    drop(registration);
    let report = {
        let g = ts.inner.lock();
        g.log_destroy_pending && ts.fut.status() == Status::Pending
    };
    if report {
        let (loop_, source_tb) = {
            let g = ts.fut.inner.lock();
            (opt(&g.loop_, py), opt(&g.source_tb, py))
        };
        if let Some(loop_) = loop_ {
            let saved = PyErr::take(py);
            let run = || -> PyResult<()> {
                let ctx = PyDict::new(py);
                ctx.set_item("task", slf)?;
                ctx.set_item("message", "Task was destroyed but it is pending!")?;
                if let Some(tb) = source_tb {
                    if tb.is_truthy()? {
                        ctx.set_item("source_traceback", tb)?;
                    }
                }
                loop_.call_method1("call_exception_handler", (ctx,))?;
                Ok(())
            };
            if let Err(e) = run() {
                e.write_unraisable(py, Some(slf));
            }
            if let Some(saved) = saved {
                saved.restore(py);
            }
        }
    }
    future::finalize(slf, &ts.fut);
}

fn repr<'py>(slf: &Bound<'py, PyAny>, _ts: &TaskState) -> PyResult<Bound<'py, PyAny>> {
    names(slf.py())?.task_repr.bind(slf.py()).call1((slf,))
}

unsafe extern "C" fn tp_repr(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: reprfunc convention.
    unsafe { call_noargs::<TaskState>(slf, repr) }
}

unsafe extern "C" fn tp_init(
    slf: *mut ffi::PyObject,
    args: *mut ffi::PyObject,
    kwds: *mut ffi::PyObject,
) -> c_int {
    // SAFETY: initproc convention, forwarded verbatim.
    unsafe { call_init::<TaskState>(slf, args, kwds, init) }
}

// ---------------------------------------------------------------------------------------
// Methods
// ---------------------------------------------------------------------------------------

fn none(py: Python<'_>) -> Bound<'_, PyAny> {
    py.None().into_bound(py)
}

fn set_result<'py>(
    slf: &Bound<'py, PyAny>,
    _ts: &TaskState,
    _v: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    Err(eager::<PyRuntimeError>(
        slf.py(),
        "Task does not support set_result() operation",
    ))
}

fn set_exception<'py>(
    slf: &Bound<'py, PyAny>,
    _ts: &TaskState,
    _v: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    Err(eager::<PyRuntimeError>(
        slf.py(),
        "Task does not support set_exception() operation",
    ))
}

/// Parses `(msg=None)`.
fn cancel<'py>(
    slf: &Bound<'py, PyAny>,
    ts: &TaskState,
    args: FastArgs<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    let msg = or_none(future::parse_cancel_args(py, args)?, py);
    {
        let mut g = ts.fut.inner.lock();
        g.log_tb = false;
        if g.status != Status::Pending {
            return Ok(py_bool(py, false));
        }
    }
    let waiter = {
        let mut g = ts.inner.lock();
        g.num_cancels_requested += 1;
        opt(&g.fut_waiter, py)
    };
    if let Some(w) = waiter {
        if w.call_method1("cancel", (&msg,))?.is_truthy()? {
            // Leave `_fut_waiter`: it may be a task that ignores the cancellation.
            return Ok(py_bool(py, true));
        }
    }
    ts.inner.lock().must_cancel = true;
    let old = if msg.is_none() {
        ts.fut.inner.lock().cancel_msg.take()
    } else {
        ts.fut.inner.lock().cancel_msg.replace(Ref::new(msg))
    };
    drop(old);
    Ok(py_bool(py, true))
}

fn cancelling<'py>(slf: &Bound<'py, PyAny>, ts: &TaskState) -> PyResult<Bound<'py, PyAny>> {
    let n = ts.inner.lock().num_cancels_requested;
    Ok(n.into_pyobject(slf.py())?.into_any())
}

fn uncancel<'py>(slf: &Bound<'py, PyAny>, ts: &TaskState) -> PyResult<Bound<'py, PyAny>> {
    let resets = names(slf.py())?.uncancel_resets;
    let n = {
        let mut g = ts.inner.lock();
        if g.num_cancels_requested > 0 {
            g.num_cancels_requested -= 1;
            if resets && g.num_cancels_requested == 0 {
                g.must_cancel = false;
            }
        }
        g.num_cancels_requested
    };
    Ok(n.into_pyobject(slf.py())?.into_any())
}

fn get_coro<'py>(slf: &Bound<'py, PyAny>, ts: &TaskState) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    Ok(or_none(opt(&ts.inner.lock().coro, py), py))
}

fn get_context<'py>(slf: &Bound<'py, PyAny>, ts: &TaskState) -> PyResult<Bound<'py, PyAny>> {
    Ok(ts.context(slf.py()))
}

fn get_name<'py>(slf: &Bound<'py, PyAny>, ts: &TaskState) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    let (name, counter) = {
        let g = ts.inner.lock();
        (opt(&g.name, py), g.counter)
    };
    if let Some(name) = name {
        return Ok(name);
    }
    if counter == 0 {
        // Not initialized.
        return Ok(none(py));
    }
    let name = PyString::new(py, &format!("Task-{counter}")).into_any();
    let old = ts.inner.lock().name.replace(Ref::new(name.clone()));
    drop(old);
    Ok(name)
}

fn set_name<'py>(
    slf: &Bound<'py, PyAny>,
    ts: &TaskState,
    value: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let value = if value.is_exact_instance_of::<PyString>() {
        value.clone()
    } else {
        value.str()?.into_any()
    };
    let old = ts.inner.lock().name.replace(Ref::new(value));
    drop(old);
    Ok(none(slf.py()))
}

/// Parses `(*, limit=None, file=None)` (`file` only when `with_file`).
fn stack_args<'py>(
    py: Python<'py>,
    args: FastArgs<'py>,
    what: &str,
    with_file: bool,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    if !args.pos.is_empty() {
        return Err(eager::<PyTypeError>(
            py,
            format!("{what}() takes no positional arguments"),
        ));
    }
    let (mut limit, mut file) = (none(py), none(py));
    for (k, v) in args.kw {
        match k.to_str()? {
            "limit" => limit = v,
            "file" if with_file => file = v,
            other => {
                return Err(eager::<PyTypeError>(
                    py,
                    format!("{what}() got an unexpected keyword argument '{other}'"),
                ))
            }
        }
    }
    Ok((limit, file))
}

fn get_stack<'py>(
    slf: &Bound<'py, PyAny>,
    _ts: &TaskState,
    args: FastArgs<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    let (limit, _) = stack_args(py, args, "get_stack", false)?;
    names(py)?.task_get_stack.bind(py).call1((slf, limit))
}

fn print_stack<'py>(
    slf: &Bound<'py, PyAny>,
    _ts: &TaskState,
    args: FastArgs<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    let (limit, file) = stack_args(py, args, "print_stack", true)?;
    names(py)?
        .task_print_stack
        .bind(py)
        .call1((slf, limit, file))
}

fn del_method<'py>(slf: &Bound<'py, PyAny>, ts: &TaskState) -> PyResult<Bound<'py, PyAny>> {
    finalize(slf, ts);
    Ok(none(slf.py()))
}

// Attributes.

fn get_log_destroy_pending<'py>(
    slf: &Bound<'py, PyAny>,
    ts: &TaskState,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(py_bool(slf.py(), ts.inner.lock().log_destroy_pending))
}

fn set_log_destroy_pending(
    slf: &Bound<'_, PyAny>,
    ts: &TaskState,
    value: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let Some(v) = value else {
        return Err(eager::<PyAttributeError>(
            slf.py(),
            "can't delete attribute",
        ));
    };
    let b = v.is_truthy()?;
    ts.inner.lock().log_destroy_pending = b;
    Ok(())
}

fn get_must_cancel<'py>(slf: &Bound<'py, PyAny>, ts: &TaskState) -> PyResult<Bound<'py, PyAny>> {
    Ok(py_bool(slf.py(), ts.inner.lock().must_cancel))
}

fn get_fut_waiter<'py>(slf: &Bound<'py, PyAny>, ts: &TaskState) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    Ok(or_none(opt(&ts.inner.lock().fut_waiter, py), py))
}

noargs!(m_cancelling, TaskState, cancelling);
noargs!(m_uncancel, TaskState, uncancel);
noargs!(m_get_coro, TaskState, get_coro);
noargs!(m_get_context, TaskState, get_context);
noargs!(m_get_name, TaskState, get_name);
noargs!(m_del, TaskState, del_method);
onearg!(m_set_name, TaskState, set_name);
onearg!(m_set_result, TaskState, set_result);
onearg!(m_set_exception, TaskState, set_exception);
fast!(m_cancel, TaskState, cancel);
fast!(m_get_stack, TaskState, get_stack);
fast!(m_print_stack, TaskState, print_stack);

fn doc(s: &'static CStr) -> &'static CStr {
    s
}

/// Creates `ferroloop._ferroloop.Task` and adds it to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    if layout::future_type(py).is_none() {
        return Ok(()); // no C `_asyncio`
    }
    let mut methods = layout::shared_future_methods();
    methods.extend([
        o_def(c"set_result", m_set_result, doc(c"Not supported by tasks.")),
        o_def(c"set_exception", m_set_exception, doc(c"Not supported by tasks.")),
        fast_def(
            c"cancel",
            m_cancel,
            c"cancel($self, /, msg=None)\n--\n\nRequest that this task cancel itself.",
        ),
        noargs_def(c"cancelling", m_cancelling, c"Return the count of the task's cancellation requests."),
        noargs_def(c"uncancel", m_uncancel, c"Decrement the task's count of cancellation requests."),
        noargs_def(c"get_coro", m_get_coro, c"Return the coroutine object wrapped by the task."),
        noargs_def(c"get_name", m_get_name, c"Return the task's name."),
        o_def(c"set_name", m_set_name, c"Set the task's name."),
        fast_def(
            c"get_stack",
            m_get_stack,
            c"get_stack($self, /, *, limit=None)\n--\n\nReturn the list of stack frames for this task's coroutine.",
        ),
        fast_def(
            c"print_stack",
            m_print_stack,
            c"print_stack($self, /, *, limit=None, file=None)\n--\n\nPrint the stack or traceback for this task's coroutine.",
        ),
        noargs_def(c"__del__", m_del, c"Report a pending task or an unretrieved exception."),
    ]);
    if py.version_info() >= (3, 12) {
        methods.push(noargs_def(
            c"get_context",
            m_get_context,
            c"Return the contextvars.Context the task runs in.",
        ));
    }
    let mut getsets = layout::shared_future_getsets();
    getsets.extend([
        getset::<TaskState>(
            c"_log_destroy_pending",
            get_log_destroy_pending,
            Some(set_log_destroy_pending),
        ),
        getset::<TaskState>(c"_must_cancel", get_must_cancel, None),
        getset::<TaskState>(c"_coro", get_coro, None),
        getset::<TaskState>(c"_fut_waiter", get_fut_waiter, None),
    ]);
    let slot = |slot: c_int, pfunc: *mut std::ffi::c_void| ffi::PyType_Slot { slot, pfunc };
    let ty: Option<Bound<'_, PyType>> = layout::create_type::<TaskState>(
        py,
        TypeSpec {
            base: "Task",
            name: c"ferroloop._ferroloop.Task",
            doc: c"Task(coro, *, loop=None, name=None, context=None, eager_start=False)\n--\n\nasyncio.Task implemented in Rust (a subclass of _asyncio.Task).",
            methods,
            getsets,
            slots: vec![
                slot(ffi::Py_tp_init, tp_init as *mut _),
                slot(ffi::Py_tp_repr, tp_repr as *mut _),
                slot(ffi::Py_tp_iter, layout::tp_iter as *mut _),
                slot(ffi::Py_am_await, layout::tp_iter as *mut _),
            ],
        },
    )?;
    if let Some(ty) = ty {
        m.add("Task", ty)?;
    }
    Ok(())
}
