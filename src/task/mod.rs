//! `ferroloop._ferroloop.Task`: asyncio's `Task` implemented in Rust, whose type is a
//! subclass of CPython's C `_asyncio.Task` (so `isinstance(t, asyncio.Task)` and
//! `isinstance(t, asyncio.Future)` hold).
//!
//! The semantics follow `Lib/asyncio/tasks.py` and the C `_asyncio` module (per version:
//! `eager_start` on 3.12+, `uncancel()` resetting `_must_cancel` on 3.13+). The Future part
//! of the state is a [`FutureState`] and every Future method is the Future's own code; the
//! type is built by [`native_type::create_type`] like the Future's.
//!
//! Stepping never recurses on the native stack: each step is scheduled for the next loop
//! iteration, and the wake-up registered on the awaited future runs one step. On
//! ferroloop's own loop (see `event_loop::NativeLoop`) a step or wake-up is a
//! `Job::Task` in the ready queue that calls `step`/`wakeup` directly; elsewhere it is
//! `loop.call_soon(bound_builtin, ...)`, like the C Task's step wrapper. Awaiting a
//! ferroloop Future or Task registers the wake-up as a Rust value
//! (`future::Callback::Wakeup`); the bound `task_wakeup` builtin is made only when Python
//! code looks at `_callbacks` / `remove_done_callback`, or for another loop's `call_soon`.
//!
//! Exceptions that the step inspects are handled as objects taken out of the error
//! indicator (never as a dropped `PyErr`: CPython calls these functions without PyO3's
//! bookkeeping of attached threads, so dropping a `PyErr` would defer its decrefs).
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | the state ([`TaskState`]), `__init__`, the finalizer |
//! | `step.rs` | stepping: `__step`, `__wakeup`, what a yielded value means, eager start |
//! | `callables.rs` | the step/wake-up builtins and the ready-queue jobs that stand for them |
//! | `methods.rs` | the Task's own methods and attributes, and its type object |
//! | `registry.rs` | registration with asyncio's `all_tasks()` |

mod callables;
mod methods;
mod registry;
mod step;

use callables::call_step_soon;
pub(crate) use callables::{job_callable, run_job, wakeup_callable};
pub use methods::register;
use step::*;

use std::ffi::c_int;
use std::mem;
use std::sync::OnceLock;

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use crate::future::{self, eager, opt, or_none, FutureState, Status};
use crate::names::names;
use crate::pyo::call::vcall;
use crate::pyo::context::copy_current;
use crate::pyo::native_type::{self, Native, TypeData};
use crate::pyo::object::is_exact_coroutine;
use crate::pyo::GilCell;
use crate::pyo::Ref;

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
        or_none(self.inner.with(|s| opt(&s.context, py)), py)
    }
}

static TYPE: OnceLock<TypeData> = OnceLock::new();

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
        self.inner
            .try_with(|g| {
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
            })
            .unwrap_or(0)
    }
    fn clear(&self) {
        self.fut.clear();
        let old = self.inner.try_with(mem::take);
        drop(old);
    }
    fn finalize(slf: &Bound<'_, PyAny>, st: &Self) {
        finalize(slf, st)
    }
}

fn init<'py>(
    slf: &Bound<'py, PyAny>,
    ts: &TaskState,
    args: &Bound<'py, PyTuple>,
    kwargs: Option<&Bound<'py, PyDict>>,
) -> PyResult<()> {
    let py = slf.py();
    let n = names(py)?;
    static SIG: future::args::Signature = future::args::Signature {
        fname: "Task",
        posonly: 0,
        keywords: &["coro", "loop", "name", "context"],
        minpos: 1,
        maxpos: 1,
    };
    static SIG_EAGER: future::args::Signature = future::args::Signature {
        fname: "Task",
        posonly: 0,
        keywords: &["coro", "loop", "name", "context", "eager_start"],
        minpos: 1,
        maxpos: 1,
    };
    let sig = if n.eager_tasks { &SIG_EAGER } else { &SIG };
    let bound = future::args::unpack(
        py,
        sig,
        &future::args::positional(args),
        &future::args::from_dict(kwargs),
    )?;
    let mut bound = bound.into_iter();
    let mut next = || bound.next().flatten();
    let (coro, loop_, name, context) = (next(), next(), next(), next());
    let eager_start = match next() {
        Some(v) => v.is_truthy()?,
        None => false,
    };
    let coro = coro.unwrap_or_else(|| py.None().into_bound(py));
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
        let task = native_type::new_exact::<TaskState>(py)?;
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

    let is_coro =
        is_exact_coroutine(&coro) || n.iscoroutine.bind(py).call1((&coro,))?.is_truthy()?;
    if !is_coro {
        ts.inner.with(|s| s.log_destroy_pending = false);
        return Err(eager::<PyTypeError>(
            py,
            format!("a coroutine was expected, got {}", coro.repr()?),
        ));
    }
    let context = match context {
        Some(c) if !c.is_none() => c,
        _ => copy_current(py)?,
    };
    let (name, counter) = match name {
        Some(nm) if !nm.is_none() => {
            if nm.is_exact_instance_of::<PyString>() {
                (Some(nm), 0)
            } else {
                (Some(nm.str()?.into_any()), 0)
            }
        }
        _ => (None, crate::pyo::task_counter::next_task_number(py)),
    };
    let old = ts.inner.replace(TaskInner {
        coro: Some(Ref::new(coro)),
        context: Some(Ref::new(context)),
        fut_waiter: None,
        name: name.map(Ref::new),
        counter,
        must_cancel: false,
        log_destroy_pending: true,
        num_cancels_requested: 0,
        registered: None,
    });
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
            let old = ts.inner.with(|s| s.registered.replace(registration));
            drop(old);
            Ok(())
        }
        None => vcall(names(py)?.register_task.bind(py), &[task.as_ptr()]).map(drop),
    }
}

/// Takes a task that just finished out of asyncio's registry.
fn unregister_if_done(ts: &TaskState) {
    if ts.fut.status() != Status::Pending {
        let registration = ts.inner.with(|s| s.registered.take());
        drop(registration);
    }
}

fn finalize(slf: &Bound<'_, PyAny>, ts: &TaskState) {
    let py = slf.py();
    // A dying task leaves asyncio's registry before its finalizer reports it, as the C
    // Task's weak reference is cleared before the GC runs finalizers: the exception
    // handler may keep (resurrect) the task, and all_tasks() must no longer list it.
    let registration = ts.inner.with(|s| s.registered.take());
    drop(registration);
    let report = ts.inner.with(|g| g.log_destroy_pending) && ts.fut.status() == Status::Pending;
    if report {
        let (loop_, source_tb) = ts
            .fut
            .inner
            .with(|g| (opt(&g.loop_, py), opt(&g.source_tb, py)));
        if let Some(loop_) = loop_ {
            let saved = PyErr::take(py);
            let run = || -> PyResult<()> {
                // The C Task's keys, in its order.
                let ctx = PyDict::new(py);
                ctx.set_item("message", "Task was destroyed but it is pending!")?;
                ctx.set_item("task", slf)?;
                if let Some(tb) = source_tb {
                    ctx.set_item("source_traceback", tb)?;
                }
                loop_.call_method1(intern!(py, "call_exception_handler"), (ctx,))?;
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
