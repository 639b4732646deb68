//! Scheduling callbacks: `call_soon`, `call_soon_threadsafe`, `call_later`, `call_at`, and
//! the pool of recycled handles that keeps `call_soon` free of allocations.

use std::sync::atomic::Ordering;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyFloat, PyInt, PyTuple};

use super::ready::Job;
use super::LoopCore;
use crate::clock::monotonic;
use crate::handle::{untrack_scheduled, Handle, SlottedRef};
use crate::names::Names;
use crate::pyo::context::copy_current;

/// How many recycled handles the loop keeps at most.
pub(super) const HANDLE_POOL_SIZE: usize = 1024;

impl LoopCore {
    /// Schedules `callback(*args)` for the next iteration.
    pub(crate) fn call_soon(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        let this = slf.get();
        this.check_closed()?;
        if this.debug_on() {
            this.check_thread()?;
        }
        this.check_callback(slf.py(), &callback, "call_soon")?;
        Self::schedule_soon(slf, callback, args, context)
    }

    /// `call_soon` that may be called from any thread; wakes the loop.
    pub(crate) fn call_soon_threadsafe(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        let this = slf.get();
        this.check_closed()?;
        this.check_callback(slf.py(), &callback, "call_soon_threadsafe")?;
        let handle = Self::schedule_soon(slf, callback, args, context)?;
        // asyncio wakes its loop through the self-pipe that also carries signal numbers,
        // so its next poll queues that pipe's reader: a signal raised before the reader runs
        // is handled there. The byte is written whether or not a signal handler is installed
        // (one may be added before the reader runs), so the flag is set unconditionally.
        this.self_pipe_pending.store(true, Ordering::Release);
        Ok(handle)
    }

    /// Schedules `callback(*args)` to run `delay` seconds from now.
    pub(crate) fn call_later(
        slf: &Bound<'_, Self>,
        delay: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        if delay.is_none() {
            return Err(PyTypeError::new_err("delay must not be None"));
        }
        if let Some(now) = Self::python_time(slf)? {
            // `loop.time` is overridden: asyncio's `self.time() + delay`, as it is.
            let when = now.add(delay)?.extract::<f64>()?;
            return Self::schedule_at(slf, when, callback, args, context, "call_at");
        }
        let now = monotonic();
        let when =
            if delay.is_exact_instance_of::<PyFloat>() || delay.is_exact_instance_of::<PyInt>() {
                now + delay.extract::<f64>()?
            } else {
                // asyncio's `self.time() + delay`: the same result and the same errors
                // ("unsupported operand type(s) for +: 'float' and 'str'") for other types.
                PyFloat::new(slf.py(), now).add(delay)?.extract::<f64>()?
            };
        // asyncio's call_later delegates to call_at, whose checks name call_at().
        Self::schedule_at(slf, when, callback, args, context, "call_at")
    }

    /// Schedules `callback(*args)` at the absolute loop time `when`.
    pub(crate) fn call_at(
        slf: &Bound<'_, Self>,
        when: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        if when.is_none() {
            return Err(PyTypeError::new_err("when cannot be None"));
        }
        let when: f64 = when.extract()?;
        Self::schedule_at(slf, when, callback, args, context, "call_at")
    }

    /// asyncio's `_check_callback`, which `call_soon`, `call_soon_threadsafe`, `call_at`
    /// (so `call_later`) and `run_in_executor` apply in debug mode only. Outside debug mode
    /// anything is accepted: a callback that cannot be called fails when it runs, and the
    /// error goes to the exception handler ("Exception in callback ..."), so the callbacks
    /// scheduled with it (a future's done-callbacks) still run.
    pub(super) fn check_callback(
        &self,
        py: Python<'_>,
        callback: &Bound<'_, PyAny>,
        method: &str,
    ) -> PyResult<()> {
        if !self.debug_on() {
            return Ok(());
        }
        let imports = Names::get(py)?;
        if imports
            .iscoroutine
            .bind(py)
            .call1((callback,))?
            .is_truthy()?
            || imports
                .iscoroutinefunction
                .bind(py)
                .call1((callback,))?
                .is_truthy()?
        {
            return Err(PyTypeError::new_err(format!(
                "coroutines cannot be used with {method}()"
            )));
        }
        if !callback.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "a callable object was expected by {method}(), got {}",
                callback.repr()?
            )));
        }
        Ok(())
    }

    /// The context a handle runs in: the given one, or a copy of the current context.
    pub(super) fn context_for(
        py: Python<'_>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        match context {
            Some(c) if !c.is_none() => Ok(c.unbind()),
            _ => copy_current(py).map(Bound::unbind),
        }
    }

    /// A new handle running `callback(*args)` in `context` (with the scheduling stack in
    /// debug mode).
    pub(super) fn new_handle(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Py<PyAny>,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let tb = slf.get().source_traceback(py)?;
        Handle::new(
            callback.unbind(),
            args.unbind(),
            context,
            slf.clone().into_any().unbind(),
            tb,
        )
        .into_object(py)
        .map(Bound::unbind)
    }

    /// Creates (or reuses) a handle and appends it to the ready queue.
    pub(super) fn schedule_soon(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let this = slf.get();
        let context = Self::context_for(py, context)?;
        let mut parts = Some((callback, args, context));
        if !this.debug_on() {
            // A pooled handle was emptied by `clear_for_reuse`: refilling it drops nothing.
            let refilled = this.queues.with(|q| {
                if q.pool.is_empty() {
                    return None;
                }
                let (callback, args, context) = parts.take()?;
                let h = q.pool.pop()?;
                h.state().refill(
                    callback.unbind(),
                    args.unbind(),
                    context,
                    slf.clone().into_any().unbind(),
                );
                q.ready.push_back(Job::Handle(h.clone_ref(py)));
                Some(h)
            });
            if let Some(h) = refilled {
                this.wake_if_polling();
                return Ok(h);
            }
        }
        let Some((callback, args, context)) = parts else {
            unreachable!("the handle's parts are only taken when a pooled handle is refilled");
        };
        let h = Self::new_handle(slf, callback, args, context)?;
        this.push_ready(h.clone_ref(py));
        Ok(h)
    }

    pub(super) fn schedule_at(
        slf: &Bound<'_, Self>,
        when: f64,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
        method: &str,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed()?;
        if this.debug_on() {
            this.check_thread()?;
        }
        this.check_callback(py, &callback, method)?;
        let own_context = context.as_ref().is_none_or(|c| c.is_none());
        let context = Self::context_for(py, context)?;
        let tb = this.source_traceback(py)?;
        let timer = Handle::new(
            callback.unbind(),
            args.unbind(),
            context,
            slf.clone().into_any().unbind(),
            tb,
        )
        .for_timer(when)
        .into_object(py)?;
        untrack_scheduled(&timer, own_context);
        let timer = timer.unbind();
        this.queues
            .with(|s| s.timers.push(when, timer.clone_ref(py)));
        this.wake_if_polling();
        Ok(timer)
    }
}
