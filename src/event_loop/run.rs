//! Running the loop: `run_forever`, `run_until_complete`, one iteration (`run_once`),
//! `stop` and `close`.
//!
//! One iteration (`run_once`) does what asyncio's `BaseEventLoop._run_once` does: drop
//! cancelled timers, poll for I/O (releasing the GIL while it waits), move due timers to
//! the ready queue, then run the callbacks that were ready when the iteration started.
//! New callbacks scheduled by those run in the next iteration.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Duration;

use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PySystemExit, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use super::ready::Job;
use super::schedule::HANDLE_POOL_SIZE;
use super::timers::release_timers;
use super::{current_thread_id, lock, os_error, LoopCore, Queues};
use super::{CLOCK_RESOLUTION, MAXIMUM_SELECT_TIMEOUT, POLL_EVERY_BUSY_ITERATIONS};
use crate::clock::monotonic;
use crate::handle::{retrack_unscheduled, Handle, SlottedRef};
use crate::names::{events_attr, logger, Names};
use crate::reactor::{SIGNALS, WAKER};

/// Whether a timer whose deadline is NaN is due at once. asyncio 3.11 and 3.12 compute the
/// poll timeout as `min(max(0, when - now), MAXIMUM_SELECT_TIMEOUT)`, which is 0 for NaN;
/// 3.13 compares instead, keeps the NaN and its selector raises `ValueError` (see
/// `run_once`). Either way, a NaN timer is moved to the ready queue when the loop does
/// poll (`TimerHeap::pop_due`).
const NAN_TIMER_IS_DUE: bool = cfg!(not(Py_3_13));

/// The poll timeout for a first timer `dt` seconds away: asyncio's clamp to
/// `[0, MAXIMUM_SELECT_TIMEOUT]`, total over every float (NaN and infinities included), so
/// that no deadline can make the conversion to `Duration` panic.
fn poll_timeout(dt: f64) -> Duration {
    if dt.is_nan() || dt <= 0.0 {
        return Duration::ZERO;
    }
    let secs = dt.min(MAXIMUM_SELECT_TIMEOUT);
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::from_secs(MAXIMUM_SELECT_TIMEOUT as u64))
}

/// What `run_forever` changed, restored by `restore()` on its normal way out and by `Drop`
/// when a panic unwinds through it (asyncio's `_run_forever_cleanup` in a `finally:`):
/// a loop is never left looking like it is running.
struct RunForeverGuard<'a, 'py> {
    slf: &'a Bound<'py, LoopCore>,
    /// `sys.get_asyncgen_hooks()` from before the run, once read.
    old_hooks: Option<Bound<'py, PyAny>>,
    armed: bool,
}

impl RunForeverGuard<'_, '_> {
    /// Restores everything, even when one step fails; returns the first error.
    fn restore(&mut self) -> PyResult<()> {
        self.armed = false;
        let py = self.slf.py();
        let this = self.slf.get();
        this.stopping.store(false, Ordering::Release);
        this.thread_id.store(0, Ordering::Release);
        this.polling.store(false, Ordering::SeqCst);
        let r1 = events_attr(py, intern!(py, "_set_running_loop"))
            .and_then(|f| f.call1((py.None(),)))
            .map(drop);
        let r2 = this.set_coroutine_origin_tracking(py, false);
        let r3 = match self.old_hooks.take() {
            None => Ok(()),
            Some(hooks) => hooks
                .cast_into::<PyTuple>()
                .map_err(PyErr::from)
                .and_then(|h| Names::get(py)?.set_asyncgen_hooks.bind(py).call1(h))
                .map(drop),
        };
        r1.and(r2).and(r3)
    }
}

impl Drop for RunForeverGuard<'_, '_> {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = self.restore() {
                e.write_unraisable(self.slf.py(), Some(self.slf.as_any()));
            }
        }
    }
}

impl LoopCore {
    /// Runs the loop until `stop()` is called.
    pub(super) fn run_forever(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed()?;
        this.check_running(py)?;
        let imports = Names::get(py)?;
        // From here on, every way out (an error, a panic unwinding through) restores the
        // loop's state: see RunForeverGuard.
        let mut guard = RunForeverGuard {
            slf,
            old_hooks: None,
            armed: true,
        };
        let result = (|| -> PyResult<()> {
            this.set_coroutine_origin_tracking(py, this.debug_on())?;
            guard.old_hooks = Some(imports.get_asyncgen_hooks.bind(py).call0()?);
            this.thread_id.store(current_thread_id(), Ordering::Release);
            let kw = PyDict::new(py);
            kw.set_item(
                "firstiter",
                slf.getattr(intern!(py, "_asyncgen_firstiter_hook"))?,
            )?;
            kw.set_item(
                "finalizer",
                slf.getattr(intern!(py, "_asyncgen_finalizer_hook"))?,
            )?;
            imports.set_asyncgen_hooks.bind(py).call((), Some(&kw))?;
            events_attr(py, intern!(py, "_set_running_loop"))?.call1((slf,))?;
            let mut batch = VecDeque::new();
            let mut recycled = Vec::new();
            loop {
                Self::run_once(slf, &mut batch, &mut recycled)?;
                if this.stopping.load(Ordering::Acquire) {
                    return Ok(());
                }
            }
        })();
        let restored = guard.restore();
        result?;
        restored
    }

    /// Runs until `future` (a future or coroutine) is done and returns its result.
    pub(super) fn run_until_complete(
        slf: &Bound<'_, Self>,
        future: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed()?;
        this.check_running(py)?;
        let imports = Names::get(py)?;
        let new_task = !imports.isfuture.bind(py).call1((future,))?.is_truthy()?;
        let kw = PyDict::new(py);
        kw.set_item("loop", slf)?;
        let fut = imports.ensure_future.bind(py).call((future,), Some(&kw))?;
        if new_task {
            // An exception will propagate from here; the task must not warn about it.
            fut.setattr(intern!(py, "_log_destroy_pending"), false)?;
        }
        let done_cb = wrap_pyfunction!(run_until_complete_cb, py)?;
        fut.call_method1(intern!(py, "add_done_callback"), (&done_cb,))?;
        let res = slf.call_method0(intern!(py, "run_forever"));
        let removed = fut.call_method1(intern!(py, "remove_done_callback"), (&done_cb,));
        if let Err(e) = res {
            if new_task
                && fut.call_method0(intern!(py, "done"))?.is_truthy()?
                && !fut.call_method0(intern!(py, "cancelled"))?.is_truthy()?
            {
                // Mark the exception retrieved; the error propagates from run_forever.
                let _ = fut.call_method0(intern!(py, "exception"));
            }
            return Err(e);
        }
        removed?;
        if !fut.call_method0(intern!(py, "done"))?.is_truthy()? {
            return Err(PyRuntimeError::new_err(
                "Event loop stopped before Future completed.",
            ));
        }
        Ok(fut.call_method0(intern!(py, "result"))?.unbind())
    }

    pub(super) fn check_running(&self, py: Python<'_>) -> PyResult<()> {
        if self.is_running_inner() {
            return Err(PyRuntimeError::new_err(
                "This event loop is already running",
            ));
        }
        let running = events_attr(py, intern!(py, "_get_running_loop"))?.call0()?;
        if !running.is_none() {
            return Err(PyRuntimeError::new_err(
                "Cannot run the event loop while another loop is running",
            ));
        }
        Ok(())
    }

    /// Moves the due timers to the ready queue and swaps the ready queue into `batch`.
    /// `now` is `loop.time()` when that is overridden (see [`LoopCore::python_time`]),
    /// read before the queues' guard was taken; `None` reads the native clock.
    #[inline]
    pub(super) fn take_batch(
        py: Python<'_>,
        q: &mut Queues,
        batch: &mut VecDeque<Job>,
        now: Option<f64>,
    ) {
        if !q.timers.is_empty() {
            let end_time = now.unwrap_or_else(monotonic) + CLOCK_RESOLUTION;
            while let Some(t) = q.timers.pop_due(end_time) {
                t.handle.state().unschedule();
                retrack_unscheduled(py, &t.handle);
                q.ready.push_back(Job::Handle(t.handle));
            }
        }
        std::mem::swap(batch, &mut q.ready);
    }

    /// One loop iteration, as asyncio's `_run_once`. `batch` is an empty buffer owned by
    /// the caller; the callbacks to run are swapped into it, which keeps the fast path
    /// (callbacks ready, nothing to poll) down to a single lock and no allocation.
    pub(super) fn run_once(
        slf: &Bound<'_, Self>,
        batch: &mut VecDeque<Job>,
        recycled: &mut Vec<Py<Handle>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        debug_assert!(batch.is_empty());

        // An overridden `loop.time()` is Python code: called before the queues' guard, and
        // only when timers are scheduled (the clock decides nothing else here), so an
        // iteration without timers pays no check of the override.
        let timed = this.queues.with(|q| !q.timers.is_empty());
        let now = if timed {
            Self::python_time_f64(slf)?
        } else {
            None
        };
        // One access to the queues; what it takes out is released after it.
        let (surplus, dead_timers, first_timer_in, busy, skip_poll, nan_poll) =
            this.queues.with(|q| {
                // Hand last iteration's recycled handles to the pool (usually a swap: call_soon
                // drains the pool as fast as the loop refills it).
                // (An `Option`: dropping `None` is inline, where an empty `Vec` is a call of
                // its drop glue on every iteration.)
                let surplus: Option<Vec<Py<Handle>>> = if q.pool.is_empty() {
                    std::mem::swap(&mut q.pool, recycled);
                    None
                } else if recycled.is_empty() {
                    None
                } else {
                    let keep = recycled
                        .len()
                        .min(HANDLE_POOL_SIZE.saturating_sub(q.pool.len()));
                    q.pool.extend(recycled.drain(..keep));
                    // Beyond the pool's size, handles are freed once the access ends.
                    Some(std::mem::take(recycled))
                };
                let dead_timers = if q.timers.is_empty() {
                    None
                } else {
                    Some(this.sweep_timers(q))
                };
                // Time until the first timer, if any: a timer already due makes the iteration
                // as busy as a ready callback does.
                let first_timer_in = q
                    .timers
                    .peek()
                    .map(|t| t.when - now.unwrap_or_else(monotonic));
                let busy = !q.ready.is_empty()
                    || this.stopping.load(Ordering::Acquire)
                    || first_timer_in
                        .is_some_and(|dt| dt <= 0.0 || (NAN_TIMER_IS_DUE && dt.is_nan()));
                // asyncio 3.13 hands a NaN timeout to its selector, whose `math.ceil` raises.
                let nan_poll = !busy && first_timer_in.is_some_and(f64::is_nan);
                let skip_poll =
                    busy && q.io.is_empty() && !this.signals_watched.load(Ordering::Relaxed) && {
                        // Only the loop thread touches this counter: a plain load and store.
                        let n = this.busy_iterations_without_poll.load(Ordering::Relaxed);
                        this.busy_iterations_without_poll
                            .store(n + 1, Ordering::Relaxed);
                        n < POLL_EVERY_BUSY_ITERATIONS
                    };
                if skip_poll {
                    // Nothing can be missed by not polling: see POLL_EVERY_BUSY_ITERATIONS.
                    // A wake-up since the last read is what a poll would have found: queue
                    // the signal socket's read where asyncio's self-pipe reader runs (after
                    // the ready callbacks, before the timers now due).
                    if this.self_pipe_pending.load(Ordering::Relaxed)
                        && this.self_pipe_pending.swap(false, Ordering::AcqRel)
                    {
                        q.ready.push_back(Job::ReadSignals);
                    }
                    Self::take_batch(py, q, batch, now);
                } else if !nan_poll {
                    // Set during the access: a producer that pushes after it ends sees the
                    // flag (the cell's exclusive access orders the two) and wakes us.
                    this.polling.store(true, Ordering::SeqCst);
                }
                (
                    surplus,
                    dead_timers,
                    first_timer_in,
                    busy,
                    skip_poll,
                    nan_poll,
                )
            });
        if nan_poll {
            // The error leaves run_forever; the timer stays and the loop stays usable.
            release_timers(py, dead_timers);
            drop(surplus);
            return Err(PyValueError::new_err("cannot convert float NaN to integer"));
        }
        if skip_poll {
            release_timers(py, dead_timers);
            drop(surplus);
        } else {
            this.busy_iterations_without_poll
                .store(0, Ordering::Relaxed);
            let timeout = if busy {
                Some(Duration::ZERO)
            } else {
                first_timer_in.map(poll_timeout)
            };
            drop(surplus);
            if !busy {
                // A signal that arrived since the last Python code ran would not interrupt
                // a poll that has not started yet: run its Python-level handler now.
                if let Err(e) = py.check_signals() {
                    this.polling.store(false, Ordering::SeqCst);
                    return Err(e);
                }
            }
            // The poll's events go to a buffer kept across iterations (no allocation).
            let mut events = this.io_events.with(std::mem::take);
            let res = {
                let mut guard = lock(&this.poller);
                match guard.as_mut() {
                    None => Ok(()),
                    Some(poller) if busy => poller.poll(timeout, &mut events),
                    Some(poller) => py.detach(|| poller.poll(timeout, &mut events)),
                }
            };
            this.polling.store(false, Ordering::SeqCst);
            release_timers(py, dead_timers);
            match res {
                Ok(()) => {}
                // A signal arrived: run Python-level handlers (KeyboardInterrupt for Ctrl-C).
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => py.check_signals()?,
                Err(e) => return Err(os_error(e)),
            }
            if events.iter().any(|e| e.token != WAKER) {
                this.dispatch_io(py, &events)?;
            }
            // (A plain load first, as above: the swap, an atomic read-modify-write, only
            // after a wake-up.)
            if this.self_pipe_pending.load(Ordering::Relaxed)
                && this.self_pipe_pending.swap(false, Ordering::AcqRel)
                && !events.iter().any(|e| e.token == SIGNALS)
            {
                // Where asyncio's self-pipe reader runs after a call_soon_threadsafe wake-up.
                this.queues.with(|q| q.ready.push_back(Job::ReadSignals));
            }
            // Once the last signal handler is gone (and `set_wakeup_fd(-1)` called), no
            // byte can reach the signal socket any more, but one written before may still
            // be there: asyncio's next poll reads it and drops it (no handler). This poll
            // did that (its read job is queued), so busy iterations may skip polls again.
            if this.signals_watched.load(Ordering::Relaxed)
                && this.pystate.with(|s| s.signal_handlers.is_empty())
            {
                this.signals_watched.store(false, Ordering::Relaxed);
            }
            events.clear();
            this.io_events.with(|e| *e = events);
            // asyncio reads `self.time()` again after its select (no Python code ran since
            // the first read, so an own clock is still own).
            let now = match now {
                Some(_) => Self::python_time_f64(slf)?,
                None => None,
            };
            this.queues.with(|q| Self::take_batch(py, q, batch, now));
        }

        // Run the batch. SystemExit/KeyboardInterrupt leave the rest queued.
        let debug = this.debug_on();
        while let Some(job) = batch.pop_front() {
            let res = match job {
                Job::Handle(h) => {
                    let res = if debug {
                        Self::run_handle_debug(slf, &h)
                    } else {
                        h.state().run(h.bind(py).as_any())
                    };
                    if h.state().is_recyclable(h.bind(py)) {
                        h.state().clear_for_reuse();
                        recycled.push(h);
                    } else {
                        h.drop_ref(py);
                    }
                    res
                }
                Job::Call(call) => Self::run_native(slf, call),
                Job::Task(call) => Self::run_task(slf, call),
                Job::ReadSignals => Self::dispatch_signals(slf),
                Job::Stream(job) => crate::net::stream::run_job(slf, job),
                Job::Accept(listener) => crate::net::listener::run_job(slf, listener),
                Job::Child(watch) => crate::process::run_job(slf, watch),
                Job::Datagram(job) => crate::net::datagram::run_job(slf, job),
            };
            if let Err(e) = res {
                this.queues.with(|q| {
                    while let Some(rest) = batch.pop_back() {
                        q.ready.push_front(rest);
                    }
                });
                return Err(e);
            }
        }
        Ok(())
    }

    /// Stops the loop after the current iteration.
    pub(super) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.wake_if_polling();
    }

    /// Closes the loop: drops pending callbacks, removes signal handlers, shuts the
    /// default executor down without waiting and releases the epoll and waker fds.
    pub(super) fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.is_running_inner() {
            return Err(PyRuntimeError::new_err("Cannot close a running event loop"));
        }
        if this.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        if this.debug_on() {
            logger(py)?.call_method1(intern!(py, "debug"), ("Close %r", slf))?;
        }
        // Signal handlers go first, while the loop still counts as open.
        let finalizing = Names::get(py)?
            .is_finalizing
            .bind(py)
            .call0()?
            .is_truthy()?;
        let sigs: Vec<i32> = this
            .pystate
            .with(|s| s.signal_handlers.keys().copied().collect());
        if !finalizing {
            for sig in sigs {
                Self::remove_signal_handler_inner(slf, sig)?;
            }
        } else if !sigs.is_empty() {
            let msg = format!(
                "Closing the loop {} on interpreter shutdown stage, skipping signal handlers removal",
                slf.repr()?
            );
            let imports = Names::get(py)?;
            imports
                .warn
                .bind(py)
                .call1((msg, imports.resource_warning.bind(py)))?;
            let handlers = this
                .pystate
                .with(|s| std::mem::take(&mut s.signal_handlers));
            this.signals_watched.store(false, Ordering::Relaxed);
            drop(handlers);
        }
        this.closed.store(true, Ordering::Release);
        // The resolver threads end with the last loop that used them, as asyncio's
        // default executor (which runs its lookups) is shut down here.
        crate::net::dns::loop_closed(py, slf);
        let (ready, pool, timers, mut io) = this.queues.with(|q| {
            (
                std::mem::take(&mut q.ready),
                std::mem::take(&mut q.pool),
                q.timers.drain(),
                std::mem::take(&mut q.io),
            )
        });
        release_timers(py, Some(timers));
        drop((ready, pool));
        // Release every fd the loop owns now, as asyncio's close() does, even if the loop
        // object lives on. In a forked child the epoll instance is the parent's: closing
        // the child's copies of the fds is all it may do (deregistering them would take
        // them from the parent's loop).
        let registry = this.registry.with(|s| s.take());
        let forked = this.in_forked_child();
        let owners = io.drain(registry.as_ref().filter(|_| !forked));
        let signal_socket = lock(&this.signal_socket).take();
        if let (Some(registry), Some(sock)) = (&registry, &signal_socket) {
            if !forked {
                sock.deregister(registry);
            }
        }
        drop(signal_socket);
        drop(owners);
        drop(registry);
        drop(this.waker.with(|s| s.take()));
        drop(lock(&this.poller).take());
        this.executor_shutdown_called.store(true, Ordering::Release);
        let executor = this.pystate.with(|s| s.default_executor.take());
        if let Some(ex) = executor {
            let kw = PyDict::new(py);
            kw.set_item("wait", false)?;
            ex.bind(py)
                .call_method(intern!(py, "shutdown"), (), Some(&kw))?;
        }
        Ok(())
    }

    /// Emits asyncio's `ResourceWarning` for a loop garbage-collected while open.
    pub(super) fn warn_unclosed(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        let imports = Names::get(py)?;
        let kw = PyDict::new(py);
        kw.set_item("source", slf)?;
        imports.warn.bind(py).call(
            (
                format!("unclosed event loop {}", slf.repr()?),
                imports.resource_warning.bind(py),
            ),
            Some(&kw),
        )?;
        if !this.is_running_inner() {
            Self::close(slf)?;
        }
        Ok(())
    }
}

/// Done-callback of `run_until_complete`: stops the loop once the future is done,
/// except when it ended with SystemExit/KeyboardInterrupt (run_forever already raised).
#[pyfunction]
pub fn run_until_complete_cb(fut: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = fut.py();
    if !fut.call_method0(intern!(py, "cancelled"))?.is_truthy()? {
        let exc = fut.call_method0(intern!(py, "exception"))?;
        if exc.is_instance_of::<PySystemExit>() || exc.is_instance_of::<PyKeyboardInterrupt>() {
            return Ok(());
        }
    }
    let lp = match fut.call_method0(intern!(py, "get_loop")) {
        Ok(l) => l,
        Err(_) => fut.getattr(intern!(py, "_loop"))?,
    };
    lp.call_method0(intern!(py, "stop"))?;
    Ok(())
}
