//! The ready queue's job model, and the narrow scheduling API that futures, tasks and
//! handles use.
//!
//! The queue holds closed [`Job`]s: a Python-visible `Handle`, a callback scheduled from
//! Rust with no handle (a future's done-callback), or a ferroloop Task's step or wake-up.
//! The run loop matches them (`LoopCore::run_once`): no trait object or function pointer
//! per job.
//!
//! Dependencies point one way: `future`, `task` and `handle` see the loop only through the
//! API at the end of this file ([`NativeLoop`] to schedule a native job or a task step,
//! [`debug_of`] / [`own_debug_flag`] for the debug flag, [`timer_cancelled`]), never
//! through `LoopCore`'s state. One edge goes back, on purpose: running a `Job::Task` calls
//! `task::run_job` (and `task::job_callable` to report an error or in debug mode). That
//! small cycle is the honest shape: the step is the task's code, and a closed enum keeps
//! the call direct where a callback object per job would cost an indirection per step.

use std::sync::atomic::Ordering;

use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::dispatch;
use super::LoopCore;
use crate::handle::{Handle, SlottedRef};
use crate::pyo::call::{call_in_context, vectorcall};
use crate::pyo::context::with_context;

/// `func(arg)` in `context`, scheduled from Rust code.
pub(crate) struct NativeCall {
    pub(super) func: Py<PyAny>,
    pub(super) arg: Option<Py<PyAny>>,
    pub(super) context: Py<PyAny>,
}

/// What the ready queue holds.
pub(crate) enum Job {
    /// A callback with its Python-visible handle (`call_soon`, timers, readers, signals).
    Handle(Py<Handle>),
    /// A callback scheduled from Rust (a future's done-callback): nobody can see or cancel
    /// it, so no `Handle` object is made for it (see `LoopCore::call_soon_native`).
    Call(NativeCall),
    /// A ferroloop Task's step or wake-up, run by calling the Rust step function directly
    /// (see `LoopCore::call_task_soon`).
    Task(TaskCall),
    /// Read the signal socket and schedule the handlers of the signals found: asyncio's
    /// `_read_from_self` reader callback, placed among the I/O callbacks where the poll
    /// reported the socket, whose `_handle_signal` appends each handler to the ready queue
    /// (so it runs on the next iteration, after what this one scheduled before it).
    ReadSignals,
    /// A stream transport's readiness or scheduled protocol call (`net::stream`).
    Stream(crate::net::stream::StreamJob),
    /// A served listening socket is readable: accept (`net::listener`).
    Accept(Py<crate::net::listener::Listener>),
    /// A watched child's pidfd is readable: reap it and report its exit (`process`).
    Child(crate::process::ChildWatch),
    /// A datagram transport's readiness or scheduled protocol call (`net::datagram`).
    Datagram(crate::net::datagram::DatagramJob),
}

/// A step (`wakeup == false`, `arg` = exception to throw in) or a wake-up (`wakeup ==
/// true`, `arg` = the awaited future) of a ferroloop Task, run in `context` — what
/// `loop.call_soon(task_step_or_wakeup, arg, context=context)` would run, without the
/// bound method or the Handle.
pub(crate) struct TaskCall {
    pub(crate) task: Py<PyAny>,
    pub(crate) arg: Option<Py<PyAny>>,
    pub(crate) context: Py<PyAny>,
    pub(crate) wakeup: bool,
}

impl From<Py<Handle>> for Job {
    fn from(h: Py<Handle>) -> Self {
        Job::Handle(h)
    }
}

impl LoopCore {
    /// Wakes the loop thread if it may be blocked in a poll.
    #[inline]
    pub(super) fn wake_if_polling(&self) {
        if self.polling.load(Ordering::SeqCst) {
            // An error means the eventfd counter is saturated, i.e. a wake-up is pending.
            self.waker.with(|waker| {
                if let Some(waker) = waker.as_ref() {
                    let _ = waker.wake();
                }
            });
        }
    }

    #[inline]
    pub(super) fn push_ready(&self, handle: Py<Handle>) {
        self.queues.with(|s| s.ready.push_back(Job::Handle(handle)));
        self.wake_if_polling();
    }

    /// Runs a `Job::Call`. An error is reported as for a handle (asyncio's message names
    /// the callback, the context carries a handle): the handle is made only then.
    pub(super) fn run_native(slf: &Bound<'_, Self>, call: NativeCall) -> PyResult<()> {
        let py = slf.py();
        let NativeCall { func, arg, context } = call;
        let (func, context) = (func.into_bound(py), context.into_bound(py));
        let arg = arg.map(|a| a.into_bound(py));
        let res = match &arg {
            Some(a) => with_context(py, &context, || vectorcall(py, &func, &[a.as_ptr()])),
            None => call_in_context(py, &context, &func, &PyTuple::empty(py)),
        };
        let Err(err) = res else {
            return Ok(());
        };
        Self::report_native_error(slf, err, func, arg, context)
    }

    /// Reports the error of a job that had no `Handle`, as the handle's run would have.
    pub(super) fn report_native_error<'py>(
        slf: &Bound<'py, Self>,
        err: PyErr,
        func: Bound<'py, PyAny>,
        arg: Option<Bound<'py, PyAny>>,
        context: Bound<'py, PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        let args = PyTuple::new(py, arg)?;
        let handle = Handle::new(
            func.clone().unbind(),
            args.clone().unbind(),
            context.unbind(),
            slf.clone().into_any().unbind(),
            None,
        )
        .into_object(py)?;
        handle
            .state()
            .report_error(handle.as_any(), err, &func, &args)
    }

    /// Reports the error of `func(*args)` called by the loop from Rust with no `Handle`
    /// (a child watcher callback), as a handle's run would have.
    pub(crate) fn report_call_error<'py>(
        slf: &Bound<'py, Self>,
        err: PyErr,
        func: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
    ) -> PyResult<()> {
        let py = slf.py();
        let handle = Handle::new(
            func.clone().unbind(),
            args.clone().unbind(),
            Self::context_for(py, None)?,
            slf.clone().into_any().unbind(),
            None,
        )
        .into_object(py)?;
        handle
            .state()
            .report_error(handle.as_any(), err, func, args)
    }

    /// Runs a `Job::Task`: the task's step or wake-up in its context. An unexpected error
    /// is reported as for a handle of the equivalent bound method.
    pub(super) fn run_task(slf: &Bound<'_, Self>, call: TaskCall) -> PyResult<()> {
        let py = slf.py();
        let TaskCall {
            task,
            arg,
            context,
            wakeup,
        } = call;
        let (task, context) = (task.into_bound(py), context.into_bound(py));
        let arg = arg.map(|a| a.into_bound(py));
        let res = with_context(py, &context, || {
            crate::task::run_job(&task, wakeup, arg.as_ref())
        });
        let Err(err) = res else {
            return Ok(());
        };
        let func = crate::task::job_callable(&task, wakeup, arg.is_some())?;
        Self::report_native_error(slf, err, func, arg, context)
    }

    /// Schedules a step or wake-up of a ferroloop Task for the next iteration, as
    /// `loop.call_soon(bound_step_or_wakeup, arg, context=context)` would (see
    /// `call_soon_native`; in debug mode the bound method and a real handle are made).
    pub(super) fn call_task_soon(slf: &Bound<'_, Self>, call: TaskCall) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed()?;
        if this.debug_on() {
            this.check_thread()?;
            let func =
                crate::task::job_callable(call.task.bind(py), call.wakeup, call.arg.is_some())?;
            let args = PyTuple::new(py, call.arg.map(|a| a.into_bound(py)))?;
            Self::schedule_soon(slf, func, args, Some(call.context.into_bound(py)))?;
            return Ok(());
        }
        this.queues.with(|s| s.ready.push_back(Job::Task(call)));
        this.wake_if_polling();
        Ok(())
    }

    /// Schedules `func(arg)` in `context` for the next iteration, as
    /// `loop.call_soon(func, arg, context=context)` would, without making a `Handle` that
    /// nobody could see: for callers in this crate that drop the handle (a future's
    /// done-callbacks). In debug mode a real handle is made, so that slow-callback reports
    /// and source tracebacks work as for any callback.
    pub(super) fn call_soon_native(
        slf: &Bound<'_, Self>,
        func: &Bound<'_, PyAny>,
        arg: Option<&Bound<'_, PyAny>>,
        context: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed()?;
        if this.debug_on() {
            this.check_thread()?;
            let args = PyTuple::new(py, arg)?;
            Self::schedule_soon(slf, func.clone(), args, Some(context.clone()))?;
            return Ok(());
        }
        // `context=None` means a copy of the current context, as for call_soon.
        let context = Self::context_for(py, Some(context.clone()))?;
        this.queues.with(|s| {
            s.ready.push_back(Job::Call(NativeCall {
                func: func.clone().unbind(),
                arg: arg.map(|a| a.clone().unbind()),
                context,
            }))
        });
        this.wake_if_polling();
        Ok(())
    }
}

// ----- the scheduling API of futures, tasks and handles -------------------------------

/// A ferroloop loop whose `call_soon` is ferroloop's own (not replaced by a subclass or on
/// the instance, see [`dispatch`]): only then is skipping the Python-level `call_soon`
/// unobservable, and futures and tasks schedule on it natively.
#[derive(Clone, Copy)]
pub(crate) struct NativeLoop<'a, 'py>(&'a Bound<'py, LoopCore>);

impl<'a, 'py> NativeLoop<'a, 'py> {
    /// `loop_` as a [`NativeLoop`], if it is one.
    #[inline]
    pub(crate) fn of(loop_: &'a Bound<'py, PyAny>) -> Option<Self> {
        dispatch::unpatched(
            loop_,
            pyo3::intern!(loop_.py(), "call_soon"),
            dispatch::Own::CallSoon,
        )
        .map(NativeLoop)
    }

    /// Schedules `func(arg)` in `context` for the next iteration, as
    /// `loop.call_soon(func, arg, context=context)` would, without a `Handle` nobody could
    /// see (a future's done-callbacks; see [`LoopCore::call_soon_native`]).
    #[inline]
    pub(crate) fn call_soon(
        self,
        func: &Bound<'py, PyAny>,
        arg: Option<&Bound<'py, PyAny>>,
        context: &Bound<'py, PyAny>,
    ) -> PyResult<()> {
        LoopCore::call_soon_native(self.0, func, arg, context)
    }

    /// Schedules a step or wake-up of a ferroloop Task for the next iteration (see
    /// [`LoopCore::call_task_soon`]).
    #[inline]
    pub(crate) fn call_task_soon(self, call: TaskCall) -> PyResult<()> {
        LoopCore::call_task_soon(self.0, call)
    }
}

/// `loop_.get_debug()`, read from the flag when `loop_` is a ferroloop loop whose
/// `get_debug` is ferroloop's own.
pub(crate) fn debug_of(loop_: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = loop_.py();
    let name = pyo3::intern!(py, "get_debug");
    match dispatch::unpatched(loop_, name, dispatch::Own::GetDebug) {
        Some(core) => Ok(core.get().debug_on()),
        None => loop_.call_method0(name)?.is_truthy(),
    }
}

/// The debug flag of `loop_` if it is a ferroloop loop (whatever its `get_debug`), for
/// handles, which asyncio's handles read through `loop._debug`.
#[inline]
pub(crate) fn own_debug_flag(loop_: &Bound<'_, PyAny>) -> Option<bool> {
    loop_
        .cast::<LoopCore>()
        .ok()
        .map(|core| core.get().debug_on())
}

/// Tells `loop_`, if it is a ferroloop loop, that one of the timers in its heap was
/// cancelled (asyncio's `_timer_handle_cancelled`).
#[inline]
pub(crate) fn timer_cancelled(loop_: &Bound<'_, PyAny>) {
    if let Ok(core) = loop_.cast::<LoopCore>() {
        core.get().timer_handle_cancelled();
    }
}
