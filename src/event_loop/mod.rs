//! The loop core: `LoopCore`, the native base of `ferroloop.Loop`.
//!
//! One iteration (`run_once`) does what asyncio's `BaseEventLoop._run_once` does:
//! drop cancelled timers, poll for I/O (releasing the GIL while it waits), move due
//! timers to the ready queue, then run the callbacks that were ready when the iteration
//! started. New callbacks scheduled by those run in the next iteration.
//!
//! Locking: all mutable state sits behind `std::sync::Mutex`es that are held only for
//! queue operations. No Python code runs while a lock is held — Python objects taken out
//! of the state are dropped (and so possibly finalized) after the guard is released —
//! which keeps re-entrant calls from callbacks (`call_soon` from inside a callback,
//! `__del__` methods scheduling work) deadlock-free, with or without the GIL.

pub mod dispatch;
pub mod fastcall;
pub mod reactor;
pub mod signals;
pub mod timers;

use std::collections::{HashMap, VecDeque};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use mio::{Registry, Waker};
use pyo3::exceptions::{
    PyKeyboardInterrupt, PyOSError, PyRuntimeError, PySystemExit, PyTypeError, PyValueError,
};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyCFunction, PyDict, PyInt, PyList, PyString, PyTuple};
use pyo3::PyClassInitializer;
use pyo3::{PyTraverseError, PyVisit};

use crate::clock::monotonic;
use crate::handle::{
    call_in_context, retrack_unscheduled, untrack_scheduled, vectorcall, with_context, Handle,
    TimerHandle,
};
use crate::py::{events_attr, logger, Imports};
use crate::sync::GilCell;
use reactor::{Poller, Ready, Watch, SIGNALS, WAKER};
use signals::SignalSocket;
use timers::{TimerHeap, MIN_CANCELLED_TIMER_HANDLES_FRACTION, MIN_SCHEDULED_TIMER_HANDLES};

/// asyncio's `MAXIMUM_SELECT_TIMEOUT`: never block longer than a day in one poll.
const MAXIMUM_SELECT_TIMEOUT: f64 = 24.0 * 3600.0;
/// asyncio's `_clock_resolution` for `time.monotonic()` on Linux.
const CLOCK_RESOLUTION: f64 = 1e-9;
/// asyncio's `constants.DEBUG_STACK_DEPTH`.
const DEBUG_STACK_DEPTH: i64 = 10;
/// While callbacks are ready and no fd is watched, a zero-timeout poll can only find the
/// waker or the signal socket — both of which only add work that the ready queue already
/// receives directly — so the loop polls on only one iteration in this many.
const POLL_EVERY_BUSY_ITERATIONS: u32 = 64;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic while it was held; the queues stay consistent
    // because every critical section only moves references around.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The reader and writer callbacks of one watched fd.
#[derive(Default)]
struct IoEntry {
    reader: Option<Py<Handle>>,
    writer: Option<Py<Handle>>,
}

impl IoEntry {
    fn watch(&self) -> Watch {
        Watch {
            read: self.reader.is_some(),
            write: self.writer.is_some(),
        }
    }
}

/// `func(arg)` in `context`, scheduled from Rust code.
pub(crate) struct NativeCall {
    func: Py<PyAny>,
    arg: Option<Py<PyAny>>,
    context: Py<PyAny>,
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

/// Queues shared between the loop thread and `call_soon_threadsafe` callers.
#[derive(Default)]
struct Queues {
    ready: VecDeque<Job>,
    timers: TimerHeap<Py<TimerHandle>>,
    io: HashMap<RawFd, IoEntry>,
    /// Emptied `Handle`s kept for reuse by `call_soon` (see `Handle::is_recyclable`):
    /// scheduling a callback then costs no allocation, deallocation or GC bookkeeping.
    pool: Vec<Py<Handle>>,
}

/// How many recycled handles the loop keeps at most.
const HANDLE_POOL_SIZE: usize = 1024;

/// Python-level configuration and bookkeeping of the loop.
#[derive(Default)]
struct PyState {
    exception_handler: Option<Py<PyAny>>,
    task_factory: Option<Py<PyAny>>,
    default_executor: Option<Py<PyAny>>,
    asyncgens: Option<Py<PyAny>>,
    signal_handlers: HashMap<i32, Py<Handle>>,
    current_handle: Option<Py<Handle>>,
    /// The depth to restore when coroutine origin tracking is switched off again.
    origin_tracking_saved_depth: Option<i64>,
}

/// The native event loop. `ferroloop.Loop` subclasses it together with
/// `asyncio.AbstractEventLoop`.
#[pyclass(module = "ferroloop._ferroloop", subclass, frozen)]
pub struct LoopCore {
    queues: GilCell<Queues>,
    pystate: GilCell<PyState>,
    poller: Mutex<Option<Poller>>,
    /// Registration handle of the poller (a dup of its epoll fd); `None` once closed.
    registry: GilCell<Option<Registry>>,
    /// The eventfd that wakes a blocked poll; `None` once closed.
    waker: GilCell<Option<Waker>>,
    signal_socket: Mutex<Option<SignalSocket>>,
    /// Set while the loop thread is in, or about to enter, a poll that may block.
    polling: AtomicBool,
    closed: AtomicBool,
    stopping: AtomicBool,
    debug: AtomicBool,
    /// `threading.get_ident()` of the thread running the loop; 0 when not running.
    thread_id: AtomicU64,
    timer_cancelled_count: AtomicUsize,
    slow_callback_duration: AtomicU64,
    executor_shutdown_called: AtomicBool,
    asyncgens_shutdown_called: AtomicBool,
    busy_iterations_without_poll: AtomicU32,
    /// Set once an instance attribute shadows a method the fast paths skip (see
    /// [`dispatch`]); from then on this loop always takes the Python-level calls.
    shadowed: AtomicBool,
}

fn current_thread_id() -> u64 {
    // SAFETY: pthread_self has no preconditions and cannot fail. Its value is what
    // `threading.get_ident()` returns on Linux.
    unsafe { libc::pthread_self() as u64 }
}

fn is_timer_cancelled(py: Python<'_>, h: &Py<TimerHandle>) -> bool {
    h.bind(py).as_super().get().is_cancelled()
}

fn os_error(e: std::io::Error) -> PyErr {
    PyOSError::new_err((e.raw_os_error().unwrap_or(0), e.to_string()))
}

impl LoopCore {
    fn check_closed(&self) -> PyResult<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(PyRuntimeError::new_err("Event loop is closed"));
        }
        Ok(())
    }

    fn is_running_inner(&self) -> bool {
        self.thread_id.load(Ordering::Acquire) != 0
    }

    fn debug_on(&self) -> bool {
        self.debug.load(Ordering::Relaxed)
    }

    /// asyncio's `_check_thread`, applied in debug mode.
    fn check_thread(&self) -> PyResult<()> {
        let tid = self.thread_id.load(Ordering::Acquire);
        if tid != 0 && tid != current_thread_id() {
            return Err(PyRuntimeError::new_err(
                "Non-thread-safe operation invoked on an event loop other than the current one",
            ));
        }
        Ok(())
    }

    /// Called by `TimerHandle.cancel()` for a timer still in the heap.
    pub fn timer_handle_cancelled(&self) {
        self.timer_cancelled_count.fetch_add(1, Ordering::Relaxed);
    }

    /// Wakes the loop thread if it may be blocked in a poll.
    #[inline]
    fn wake_if_polling(&self) {
        if self.polling.load(Ordering::SeqCst) {
            // An error means the eventfd counter is saturated, i.e. a wake-up is pending.
            if let Some(waker) = self.waker.lock().as_ref() {
                let _ = waker.wake();
            }
        }
    }

    #[inline]
    fn push_ready(&self, handle: Py<Handle>) {
        self.queues.lock().ready.push_back(Job::Handle(handle));
        self.wake_if_polling();
    }

    /// Runs `callback` checks: cheap ones always, asyncio's full checks in debug mode.
    fn check_callback(
        &self,
        py: Python<'_>,
        callback: &Bound<'_, PyAny>,
        method: &str,
    ) -> PyResult<()> {
        let debug = self.debug_on();
        let callable = callback.is_callable();
        if callable && !debug {
            return Ok(());
        }
        let imports = Imports::get(py)?;
        if (!callable || debug)
            && (imports
                .iscoroutine
                .bind(py)
                .call1((callback,))?
                .is_truthy()?
                || (debug
                    && imports
                        .iscoroutinefunction
                        .bind(py)
                        .call1((callback,))?
                        .is_truthy()?))
        {
            return Err(PyTypeError::new_err(format!(
                "coroutines cannot be used with {method}()"
            )));
        }
        if !callable {
            return Err(PyTypeError::new_err(format!(
                "a callable object was expected by {method}(), got {}",
                callback.repr()?
            )));
        }
        Ok(())
    }

    /// The context a handle runs in: the given one, or a copy of the current context.
    fn context_for(py: Python<'_>, context: Option<Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
        match context {
            Some(c) if !c.is_none() => Ok(c.unbind()),
            _ => {
                // SAFETY: the GIL is held; PyContext_CopyCurrent returns a new reference
                // or NULL with an exception set, which from_owned_ptr_or_err handles.
                unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContext_CopyCurrent()) }
                    .map(Bound::unbind)
            }
        }
    }

    /// In debug mode, the stack that scheduled a handle (for error reports).
    fn source_traceback(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        if !self.debug_on() {
            return Ok(None);
        }
        let imports = Imports::get(py)?;
        let frame = imports.getframe.bind(py).call1((0,))?;
        Ok(Some(
            imports.extract_stack.bind(py).call1((frame,))?.unbind(),
        ))
    }

    /// A new handle running `callback(*args)` in `context` (with the scheduling stack in
    /// debug mode).
    fn new_handle(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Py<PyAny>,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let tb = slf.get().source_traceback(py)?;
        Py::new(
            py,
            Handle::new(
                callback.unbind(),
                args.unbind(),
                context,
                slf.clone().into_any().unbind(),
                tb,
            ),
        )
    }

    /// Creates (or reuses) a handle and appends it to the ready queue.
    fn schedule_soon(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let this = slf.get();
        let context = Self::context_for(py, context)?;
        if !this.debug_on() {
            let mut q = this.queues.lock();
            if let Some(h) = q.pool.pop() {
                h.get().refill(
                    callback.unbind(),
                    args.unbind(),
                    context,
                    slf.clone().into_any().unbind(),
                );
                q.ready.push_back(Job::Handle(h.clone_ref(py)));
                drop(q);
                this.wake_if_polling();
                return Ok(h);
            }
            drop(q);
        }
        let h = Self::new_handle(slf, callback, args, context)?;
        this.push_ready(h.clone_ref(py));
        Ok(h)
    }

    /// Pulls every signal number from the signal socket and schedules its handler.
    fn dispatch_signals(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let mut sigs = Vec::new();
        if let Some(sock) = lock(&this.signal_socket).as_mut() {
            sock.drain(&mut sigs);
        }
        for sig in sigs {
            let handler = this
                .pystate
                .lock()
                .signal_handlers
                .get(&sig)
                .map(|h| h.clone_ref(py));
            if let Some(h) = handler {
                if h.get().is_cancelled() {
                    Self::remove_signal_handler_inner(slf, sig)?;
                } else {
                    this.push_ready(h);
                }
            }
        }
        Ok(())
    }

    /// Schedules the callbacks of the fds reported ready.
    fn dispatch_io(&self, py: Python<'_>, events: &[Ready]) -> PyResult<()> {
        let mut garbage: Vec<Py<Handle>> = Vec::new();
        let registry = self.registry.lock();
        let Some(registry) = registry.as_ref() else {
            return Ok(());
        };
        {
            let mut q = self.queues.lock();
            for ev in events {
                if ev.token == WAKER || ev.token == SIGNALS {
                    continue;
                }
                let fd = ev.token.0 as RawFd;
                let Some(entry) = q.io.get_mut(&fd) else {
                    continue;
                };
                let old = entry.watch();
                let mut to_run: [Option<Py<Handle>>; 2] = [None, None];
                if ev.readable {
                    if let Some(r) = &entry.reader {
                        if r.get().is_cancelled() {
                            garbage.extend(entry.reader.take());
                        } else {
                            to_run[0] = Some(r.clone_ref(py));
                        }
                    }
                }
                if ev.writable {
                    if let Some(w) = &entry.writer {
                        if w.get().is_cancelled() {
                            garbage.extend(entry.writer.take());
                        } else {
                            to_run[1] = Some(w.clone_ref(py));
                        }
                    }
                }
                let new = entry.watch();
                if new == Watch::default() {
                    q.io.remove(&fd);
                }
                // Level-triggered semantics: re-arm so a still-ready fd is reported again.
                let res = if old != new {
                    reactor::update(registry, fd, old, new)
                } else {
                    reactor::rearm_watch(registry, fd, new)
                };
                if let Err(e) = res {
                    // The fd was closed behind the loop's back; forget it, as the selector
                    // would on its next select().
                    if e.raw_os_error() == Some(libc::EBADF) {
                        if let Some(entry) = q.io.remove(&fd) {
                            garbage.extend(entry.reader);
                            garbage.extend(entry.writer);
                        }
                    }
                }
                for h in to_run.into_iter().flatten() {
                    q.ready.push_back(Job::Handle(h));
                }
            }
        }
        drop(garbage);
        Ok(())
    }

    /// Drops cancelled timers: all of them when they are more than half of a large heap,
    /// otherwise those at the top. Returns them, to be released outside the lock.
    fn sweep_timers(&self, py: Python<'_>, q: &mut Queues) -> Vec<timers::Timer<Py<TimerHandle>>> {
        let n = q.timers.len();
        let cancelled = self.timer_cancelled_count.load(Ordering::Relaxed);
        if n > MIN_SCHEDULED_TIMER_HANDLES
            && cancelled as f64 / n as f64 > MIN_CANCELLED_TIMER_HANDLES_FRACTION
        {
            self.timer_cancelled_count.store(0, Ordering::Relaxed);
            return q.timers.remove_where(|h| is_timer_cancelled(py, h));
        }
        let mut dead = Vec::new();
        while q
            .timers
            .peek()
            .is_some_and(|t| is_timer_cancelled(py, &t.handle))
        {
            dead.extend(q.timers.pop());
            let _ = self.timer_cancelled_count.fetch_update(
                Ordering::Relaxed,
                Ordering::Relaxed,
                |c| c.checked_sub(1),
            );
        }
        dead
    }

    /// Moves the due timers to the ready queue and swaps the ready queue into `batch`.
    fn take_batch(py: Python<'_>, q: &mut Queues, batch: &mut VecDeque<Job>) {
        if !q.timers.is_empty() {
            let end_time = monotonic() + CLOCK_RESOLUTION;
            while let Some(t) = q.timers.pop_due(end_time) {
                t.handle.get().unschedule();
                retrack_unscheduled(py, &t.handle);
                q.ready
                    .push_back(Job::Handle(t.handle.into_bound(py).into_super().unbind()));
            }
        }
        std::mem::swap(batch, &mut q.ready);
    }

    /// One loop iteration, as asyncio's `_run_once`. `batch` is an empty buffer owned by
    /// the caller; the callbacks to run are swapped into it, which keeps the fast path
    /// (callbacks ready, nothing to poll) down to a single lock and no allocation.
    fn run_once(
        slf: &Bound<'_, Self>,
        batch: &mut VecDeque<Job>,
        recycled: &mut Vec<Py<Handle>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        debug_assert!(batch.is_empty());

        let mut q = this.queues.lock();
        // Hand last iteration's recycled handles to the pool (usually a swap: call_soon
        // drains the pool as fast as the loop refills it).
        let surplus: Vec<Py<Handle>> = if q.pool.is_empty() {
            std::mem::swap(&mut q.pool, recycled);
            Vec::new()
        } else if recycled.is_empty() {
            Vec::new()
        } else {
            let keep = recycled
                .len()
                .min(HANDLE_POOL_SIZE.saturating_sub(q.pool.len()));
            q.pool.extend(recycled.drain(..keep));
            // Beyond the pool's size, handles are freed once the lock is released.
            std::mem::take(recycled)
        };
        let dead_timers = if q.timers.is_empty() {
            None
        } else {
            Some(this.sweep_timers(py, &mut q))
        };
        // Time until the first timer, if any: a timer already due makes the iteration as
        // busy as a ready callback does.
        let first_timer_in = q.timers.peek().map(|t| t.when - monotonic());
        let busy = !q.ready.is_empty()
            || this.stopping.load(Ordering::Acquire)
            || first_timer_in.is_some_and(|dt| dt <= 0.0);
        let skip_poll = busy && q.io.is_empty() && {
            // Only the loop thread touches this counter: a plain load and store.
            let n = this.busy_iterations_without_poll.load(Ordering::Relaxed);
            this.busy_iterations_without_poll
                .store(n + 1, Ordering::Relaxed);
            n < POLL_EVERY_BUSY_ITERATIONS
        };
        if skip_poll {
            // Nothing can be missed by not polling: see POLL_EVERY_BUSY_ITERATIONS.
            Self::take_batch(py, &mut q, batch);
            drop(q);
            release_timers(py, dead_timers);
            drop(surplus);
        } else {
            this.busy_iterations_without_poll
                .store(0, Ordering::Relaxed);
            let timeout = if busy {
                Some(Duration::ZERO)
            } else {
                first_timer_in
                    .map(|dt| Duration::from_secs_f64(dt.clamp(0.0, MAXIMUM_SELECT_TIMEOUT)))
            };
            // Set under the lock: a producer that pushes after we release it sees the
            // flag (the mutex orders the two) and wakes us.
            this.polling.store(true, Ordering::SeqCst);
            drop(q);
            drop(surplus);
            if !busy {
                // A signal that arrived since the last Python code ran would not interrupt
                // a poll that has not started yet: run its Python-level handler now.
                if let Err(e) = py.check_signals() {
                    this.polling.store(false, Ordering::SeqCst);
                    return Err(e);
                }
            }
            let mut events = Vec::new();
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
            if events.iter().any(|e| e.token == SIGNALS) {
                Self::dispatch_signals(slf)?;
            }
            if events
                .iter()
                .any(|e| e.token != SIGNALS && e.token != WAKER)
            {
                this.dispatch_io(py, &events)?;
            }
            Self::take_batch(py, &mut this.queues.lock(), batch);
        }

        // Run the batch. SystemExit/KeyboardInterrupt leave the rest queued.
        let debug = this.debug_on();
        while let Some(job) = batch.pop_front() {
            let res = match job {
                Job::Handle(h) => {
                    let res = if debug {
                        Self::run_handle_debug(slf, &h)
                    } else {
                        h.get().run(h.bind(py).as_any())
                    };
                    if h.get().is_recyclable(h.bind(py)) {
                        h.get().clear_for_reuse();
                        recycled.push(h);
                    } else {
                        h.drop_ref(py);
                    }
                    res
                }
                Job::Call(call) => Self::run_native(slf, call),
                Job::Task(call) => Self::run_task(slf, call),
            };
            if let Err(e) = res {
                let mut q = this.queues.lock();
                while let Some(rest) = batch.pop_back() {
                    q.ready.push_front(rest);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Runs a `Job::Call`. An error is reported as for a handle (asyncio's message names
    /// the callback, the context carries a handle): the handle is made only then.
    fn run_native(slf: &Bound<'_, Self>, call: NativeCall) -> PyResult<()> {
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
    fn report_native_error<'py>(
        slf: &Bound<'py, Self>,
        err: PyErr,
        func: Bound<'py, PyAny>,
        arg: Option<Bound<'py, PyAny>>,
        context: Bound<'py, PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        let args = PyTuple::new(py, arg)?;
        let handle = Bound::new(
            py,
            Handle::new(
                func.clone().unbind(),
                args.clone().unbind(),
                context.unbind(),
                slf.clone().into_any().unbind(),
                None,
            ),
        )?;
        handle
            .get()
            .report_error(handle.as_any(), err, &func, &args)
    }

    /// Runs a `Job::Task`: the task's step or wake-up in its context. An unexpected error
    /// is reported as for a handle of the equivalent bound method.
    fn run_task(slf: &Bound<'_, Self>, call: TaskCall) -> PyResult<()> {
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
    pub(crate) fn call_task_soon(slf: &Bound<'_, Self>, call: TaskCall) -> PyResult<()> {
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
        this.queues.lock().ready.push_back(Job::Task(call));
        this.wake_if_polling();
        Ok(())
    }

    /// Schedules `func(arg)` in `context` for the next iteration, as
    /// `loop.call_soon(func, arg, context=context)` would, without making a `Handle` that
    /// nobody could see: for callers in this crate that drop the handle (a future's
    /// done-callbacks). In debug mode a real handle is made, so that slow-callback reports
    /// and source tracebacks work as for any callback.
    pub(crate) fn call_soon_native(
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
        this.queues.lock().ready.push_back(Job::Call(NativeCall {
            func: func.clone().unbind(),
            arg: arg.map(|a| a.clone().unbind()),
            context,
        }));
        this.wake_if_polling();
        Ok(())
    }

    /// The loop to schedule on with `call_soon_native` when `loop_` is a ferroloop loop
    /// whose `call_soon` is ferroloop's own (not replaced by a subclass or on the instance):
    /// only then is skipping the Python-level `call_soon` unobservable.
    pub(crate) fn native_target<'a, 'py>(
        loop_: &'a Bound<'py, PyAny>,
    ) -> Option<&'a Bound<'py, LoopCore>> {
        dispatch::unpatched(loop_, pyo3::intern!(loop_.py(), "call_soon"), |o| {
            &o.call_soon
        })
    }

    /// `loop_.get_debug()`, read from the flag when `loop_` is a ferroloop loop whose
    /// `get_debug` is ferroloop's own.
    pub(crate) fn debug_of(loop_: &Bound<'_, PyAny>) -> PyResult<bool> {
        let py = loop_.py();
        let name = pyo3::intern!(py, "get_debug");
        match dispatch::unpatched(loop_, name, |o| &o.get_debug) {
            Some(core) => Ok(core.get().debug_on()),
            None => loop_.call_method0(name)?.is_truthy(),
        }
    }

    fn generic_setattr(
        slf: &Bound<'_, Self>,
        name: &Bound<'_, PyString>,
        value: *mut ffi::PyObject,
    ) -> PyResult<()> {
        if dispatch::shadows_fast_path(name) {
            slf.get().shadowed.store(true, Ordering::Relaxed);
        }
        // SAFETY: `slf` and `name` are live; `value` is live or NULL (deletion), which is
        // PyObject_GenericSetAttr's contract; it returns -1 with an exception set on error.
        if unsafe { ffi::PyObject_GenericSetAttr(slf.as_ptr(), name.as_ptr(), value) } < 0 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }

    /// Runs a handle in debug mode: tracks the current handle and reports slow callbacks.
    fn run_handle_debug(slf: &Bound<'_, Self>, h: &Py<Handle>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let previous = this.pystate.lock().current_handle.replace(h.clone_ref(py));
        drop(previous);
        let t0 = monotonic();
        let res = h.get().run(h.bind(py).as_any());
        let dt = monotonic() - t0;
        let current = this.pystate.lock().current_handle.take();
        drop(current);
        res?;
        if dt >= f64::from_bits(this.slow_callback_duration.load(Ordering::Relaxed)) {
            let cb = h.bind(py).getattr("_callback")?;
            let task_cls = Imports::get(py)?.task_cls.bind(py);
            let owner = cb.getattr("__self__").ok();
            let desc = match owner {
                Some(o) if o.is_instance(task_cls)? => o.repr()?.unbind(),
                _ => h.bind(py).str()?.unbind(),
            };
            logger(py)?.call_method1("warning", ("Executing %s took %.3f seconds", desc, dt))?;
        }
        Ok(())
    }

    fn set_coroutine_origin_tracking(&self, py: Python<'_>, enabled: bool) -> PyResult<()> {
        let imports = Imports::get(py)?;
        let saved = self.pystate.lock().origin_tracking_saved_depth;
        if enabled == saved.is_some() {
            return Ok(());
        }
        if enabled {
            let depth: i64 = imports
                .get_coroutine_origin_tracking_depth
                .bind(py)
                .call0()?
                .extract()?;
            imports
                .set_coroutine_origin_tracking_depth
                .bind(py)
                .call1((DEBUG_STACK_DEPTH,))?;
            self.pystate.lock().origin_tracking_saved_depth = Some(depth);
        } else {
            imports
                .set_coroutine_origin_tracking_depth
                .bind(py)
                .call1((saved.unwrap_or(0),))?;
            self.pystate.lock().origin_tracking_saved_depth = None;
        }
        Ok(())
    }

    fn check_running(&self, py: Python<'_>) -> PyResult<()> {
        if self.is_running_inner() {
            return Err(PyRuntimeError::new_err(
                "This event loop is already running",
            ));
        }
        let running = events_attr(py, "_get_running_loop")?.call0()?;
        if !running.is_none() {
            return Err(PyRuntimeError::new_err(
                "Cannot run the event loop while another loop is running",
            ));
        }
        Ok(())
    }

    fn fd_of(fileobj: &Bound<'_, PyAny>) -> PyResult<RawFd> {
        // asyncio's selectors._fileobj_to_fd.
        let fd: i64 = if fileobj.is_instance_of::<PyInt>() {
            fileobj.extract()?
        } else {
            match fileobj.call_method0("fileno") {
                Ok(v) => v.extract().map_err(|_| {
                    PyValueError::new_err(format!(
                        "Invalid file object: {}",
                        fileobj.repr().map(|r| r.to_string()).unwrap_or_default()
                    ))
                })?,
                Err(e) if e.is_instance_of::<PyKeyboardInterrupt>(fileobj.py()) => return Err(e),
                Err(_) => {
                    return Err(PyValueError::new_err(format!(
                        "Invalid file object: {}",
                        fileobj.repr()?
                    )))
                }
            }
        };
        if fd < 0 || fd > i32::MAX as i64 {
            return Err(PyValueError::new_err(format!(
                "Invalid file descriptor: {fd}"
            )));
        }
        Ok(fd as RawFd)
    }

    fn add_io(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        write: bool,
    ) -> PyResult<Py<Handle>> {
        let this = slf.get();
        this.check_closed()?;
        let method = if write { "add_writer" } else { "add_reader" };
        this.check_callback(slf.py(), &callback, method)?;
        let fd = Self::fd_of(fd)?;
        let handle = Self::new_handle(slf, callback, args, Self::context_for(slf.py(), None)?)?;
        let previous = {
            let mut q = this.queues.lock();
            let entry = q.io.entry(fd).or_default();
            let old = entry.watch();
            let slot = if write {
                &mut entry.writer
            } else {
                &mut entry.reader
            };
            let previous = slot.replace(handle.clone_ref(slf.py()));
            let new = entry.watch();
            let res = match this.registry.lock().as_ref() {
                Some(registry) => reactor::update(registry, fd, old, new),
                None => Err(std::io::Error::from_raw_os_error(libc::EBADF)),
            };
            if let Err(e) = res {
                let slot = if write {
                    &mut entry.writer
                } else {
                    &mut entry.reader
                };
                let mine = std::mem::replace(slot, previous);
                if entry.watch() == Watch::default() {
                    q.io.remove(&fd);
                }
                drop(q);
                drop(mine);
                return Err(os_error(e));
            }
            previous
        };
        // asyncio cancels the handle it replaces.
        if let Some(p) = previous {
            p.bind(slf.py()).call_method0("cancel")?;
        }
        Ok(handle)
    }

    fn remove_io(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>, write: bool) -> PyResult<bool> {
        let this = slf.get();
        if this.closed.load(Ordering::Acquire) {
            return Ok(false);
        }
        let fd = Self::fd_of(fd)?;
        let removed = {
            let mut q = this.queues.lock();
            let Some(entry) = q.io.get_mut(&fd) else {
                return Ok(false);
            };
            let old = entry.watch();
            let removed = if write {
                entry.writer.take()
            } else {
                entry.reader.take()
            };
            let new = entry.watch();
            if new == Watch::default() {
                q.io.remove(&fd);
            }
            // Failing to deregister a closed fd is harmless: epoll dropped it already.
            if let Some(registry) = this.registry.lock().as_ref() {
                let _ = reactor::update(registry, fd, old, new);
            }
            removed
        };
        match removed {
            Some(h) => {
                h.bind(slf.py()).call_method0("cancel")?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn remove_signal_handler_inner(slf: &Bound<'_, Self>, sig: i32) -> PyResult<bool> {
        let py = slf.py();
        let this = slf.get();
        let (removed, none_left) = {
            let mut st = this.pystate.lock();
            let removed = st.signal_handlers.remove(&sig);
            (removed, st.signal_handlers.is_empty())
        };
        if removed.is_none() {
            return Ok(false);
        }
        drop(removed);
        let signal_mod = Imports::get(py)?.signal.bind(py);
        let sigint: i32 = signal_mod.getattr("SIGINT")?.extract()?;
        let handler = if sig == sigint {
            signal_mod.getattr("default_int_handler")?
        } else {
            signal_mod.getattr("SIG_DFL")?
        };
        if let Err(e) = signal_mod.call_method1("signal", (sig, handler)) {
            if e.is_instance_of::<PyOSError>(py)
                && e.value(py).getattr("errno")?.extract::<i32>().ok() == Some(libc::EINVAL)
            {
                return Err(PyRuntimeError::new_err(format!(
                    "sig {sig} cannot be caught"
                )));
            }
            return Err(e);
        }
        if none_left {
            if let Err(e) = signal_mod.call_method1("set_wakeup_fd", (-1,)) {
                logger(py)?.call_method1("info", ("set_wakeup_fd(-1) failed: %s", e.value(py)))?;
            }
        }
        Ok(true)
    }

    /// `future.set_result(None)` unless it was cancelled, via asyncio's helper.
    fn resolve_soon_threadsafe(slf: &Bound<'_, Self>, future: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let f = Imports::get(py)?.set_result_unless_cancelled.bind(py);
        slf.call_method1("call_soon_threadsafe", (f, future, py.None()))?;
        Ok(())
    }
}

#[pymethods]
impl LoopCore {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(
        py: Python<'_>,
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        // Import what the loop needs now, not lazily: a loop finalized at interpreter exit
        // must not be the first to import (imports fail during finalization).
        Imports::get(py)?;
        let (poller, registry, waker) = Poller::new().map_err(os_error)?;
        // Read per loop, as asyncio does (PYTHONASYNCIODEBUG or -X dev at creation time).
        let debug = py
            .import("asyncio.coroutines")?
            .getattr("_is_debug_mode")?
            .call0()?
            .is_truthy()?;
        Ok(LoopCore {
            queues: GilCell::new(Queues::default()),
            pystate: GilCell::new(PyState::default()),
            poller: Mutex::new(Some(poller)),
            registry: GilCell::new(Some(registry)),
            waker: GilCell::new(Some(waker)),
            signal_socket: Mutex::new(None),
            polling: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            debug: AtomicBool::new(debug),
            thread_id: AtomicU64::new(0),
            timer_cancelled_count: AtomicUsize::new(0),
            slow_callback_duration: AtomicU64::new(0.1f64.to_bits()),
            executor_shutdown_called: AtomicBool::new(false),
            asyncgens_shutdown_called: AtomicBool::new(false),
            busy_iterations_without_poll: AtomicU32::new(0),
            shadowed: AtomicBool::new(false),
        })
    }

    // ----- running and stopping -------------------------------------------------------

    /// Runs the loop until `stop()` is called.
    fn run_forever(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed()?;
        this.check_running(py)?;
        let imports = Imports::get(py)?;
        this.set_coroutine_origin_tracking(py, this.debug_on())?;
        let old_hooks = imports.get_asyncgen_hooks.bind(py).call0()?;
        this.thread_id.store(current_thread_id(), Ordering::Release);
        let result = (|| -> PyResult<()> {
            let kw = PyDict::new(py);
            kw.set_item("firstiter", slf.getattr("_asyncgen_firstiter_hook")?)?;
            kw.set_item("finalizer", slf.getattr("_asyncgen_finalizer_hook")?)?;
            imports.set_asyncgen_hooks.bind(py).call((), Some(&kw))?;
            events_attr(py, "_set_running_loop")?.call1((slf,))?;
            let mut batch = VecDeque::new();
            let mut recycled = Vec::new();
            loop {
                Self::run_once(slf, &mut batch, &mut recycled)?;
                if this.stopping.load(Ordering::Acquire) {
                    return Ok(());
                }
            }
        })();
        this.stopping.store(false, Ordering::Release);
        this.thread_id.store(0, Ordering::Release);
        let r1 = events_attr(py, "_set_running_loop").and_then(|f| f.call1((py.None(),)));
        let r2 = this.set_coroutine_origin_tracking(py, false);
        let r3 = imports
            .set_asyncgen_hooks
            .bind(py)
            .call1(old_hooks.cast::<PyTuple>().map_err(PyErr::from)?);
        result?;
        r1?;
        r2?;
        r3?;
        Ok(())
    }

    /// Runs until `future` (a future or coroutine) is done and returns its result.
    fn run_until_complete(slf: &Bound<'_, Self>, future: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed()?;
        this.check_running(py)?;
        let imports = Imports::get(py)?;
        let new_task = !imports.isfuture.bind(py).call1((future,))?.is_truthy()?;
        let kw = PyDict::new(py);
        kw.set_item("loop", slf)?;
        let fut = imports.ensure_future.bind(py).call((future,), Some(&kw))?;
        if new_task {
            // An exception will propagate from here; the task must not warn about it.
            fut.setattr("_log_destroy_pending", false)?;
        }
        let done_cb = wrap_pyfunction!(run_until_complete_cb, py)?;
        fut.call_method1("add_done_callback", (&done_cb,))?;
        let res = slf.call_method0("run_forever");
        let removed = fut.call_method1("remove_done_callback", (&done_cb,));
        if let Err(e) = res {
            if new_task
                && fut.call_method0("done")?.is_truthy()?
                && !fut.call_method0("cancelled")?.is_truthy()?
            {
                // Mark the exception retrieved; the error propagates from run_forever.
                let _ = fut.call_method0("exception");
            }
            return Err(e);
        }
        removed?;
        if !fut.call_method0("done")?.is_truthy()? {
            return Err(PyRuntimeError::new_err(
                "Event loop stopped before Future completed.",
            ));
        }
        Ok(fut.call_method0("result")?.unbind())
    }

    /// Stops the loop after the current iteration.
    fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.wake_if_polling();
    }

    fn is_running(&self) -> bool {
        self.is_running_inner()
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Closes the loop: drops pending callbacks, removes signal handlers, shuts the
    /// default executor down without waiting and releases the epoll and waker fds.
    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.is_running_inner() {
            return Err(PyRuntimeError::new_err("Cannot close a running event loop"));
        }
        if this.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        if this.debug_on() {
            logger(py)?.call_method1("debug", ("Close %r", slf))?;
        }
        // Signal handlers go first, while the loop still counts as open.
        let finalizing = Imports::get(py)?
            .is_finalizing
            .bind(py)
            .call0()?
            .is_truthy()?;
        let sigs: Vec<i32> = this
            .pystate
            .lock()
            .signal_handlers
            .keys()
            .copied()
            .collect();
        if !finalizing {
            for sig in sigs {
                Self::remove_signal_handler_inner(slf, sig)?;
            }
        } else if !sigs.is_empty() {
            let msg = format!(
                "Closing the loop {} on interpreter shutdown stage, skipping signal handlers removal",
                slf.repr()?
            );
            let imports = Imports::get(py)?;
            imports
                .warn
                .bind(py)
                .call1((msg, imports.resource_warning.bind(py)))?;
            let handlers = std::mem::take(&mut this.pystate.lock().signal_handlers);
            drop(handlers);
        }
        this.closed.store(true, Ordering::Release);
        let (ready, pool, timers, io) = {
            let mut q = this.queues.lock();
            (
                std::mem::take(&mut q.ready),
                std::mem::take(&mut q.pool),
                q.timers.drain(),
                std::mem::take(&mut q.io),
            )
        };
        release_timers(py, Some(timers));
        drop((ready, pool));
        // Release every fd the loop owns now, as asyncio's close() does, even if the loop
        // object lives on.
        let registry = this.registry.lock().take();
        if let Some(registry) = &registry {
            for (fd, entry) in &io {
                let _ = reactor::update(registry, *fd, entry.watch(), Watch::default());
            }
            if let Some(sock) = lock(&this.signal_socket).take() {
                sock.deregister(registry);
            }
        }
        drop(io);
        drop(registry);
        drop(this.waker.lock().take());
        drop(lock(&this.poller).take());
        this.executor_shutdown_called.store(true, Ordering::Release);
        let executor = this.pystate.lock().default_executor.take();
        if let Some(ex) = executor {
            let kw = PyDict::new(py);
            kw.set_item("wait", false)?;
            ex.bind(py).call_method("shutdown", (), Some(&kw))?;
        }
        Ok(())
    }

    /// Emits asyncio's `ResourceWarning` for a loop garbage-collected while open.
    fn _warn_unclosed(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        let imports = Imports::get(py)?;
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

    // ----- scheduling -----------------------------------------------------------------

    /// Schedules `callback(*args)` for the next iteration.
    #[pyo3(signature = (callback, *args, context=None))]
    pub fn call_soon(
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
    #[pyo3(signature = (callback, *args, context=None))]
    pub fn call_soon_threadsafe(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        let this = slf.get();
        this.check_closed()?;
        this.check_callback(slf.py(), &callback, "call_soon_threadsafe")?;
        Self::schedule_soon(slf, callback, args, context)
    }

    /// Schedules `callback(*args)` to run `delay` seconds from now.
    #[pyo3(signature = (delay, callback, *args, context=None))]
    pub fn call_later(
        slf: &Bound<'_, Self>,
        delay: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        if delay.is_none() {
            return Err(PyTypeError::new_err("delay must not be None"));
        }
        let delay: f64 = delay.extract()?;
        // asyncio's call_later delegates to call_at, whose checks name call_at().
        Self::schedule_at(slf, monotonic() + delay, callback, args, context, "call_at")
    }

    /// Schedules `callback(*args)` at the absolute loop time `when`.
    #[pyo3(signature = (when, callback, *args, context=None))]
    pub fn call_at(
        slf: &Bound<'_, Self>,
        when: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        if when.is_none() {
            return Err(PyTypeError::new_err("when cannot be None"));
        }
        let when: f64 = when.extract()?;
        Self::schedule_at(slf, when, callback, args, context, "call_at")
    }

    /// The loop's clock (`time.monotonic()`).
    fn time(&self) -> f64 {
        monotonic()
    }

    /// A new `asyncio.Future` bound to this loop.
    fn create_future(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        if let Some(fut) = crate::future::new_for_loop(slf.as_any()) {
            return Ok(fut?.unbind());
        }
        let kw = PyDict::new(py);
        kw.set_item("loop", slf)?;
        Ok(Imports::get(py)?
            .future_cls
            .bind(py)
            .call((), Some(&kw))?
            .unbind())
    }

    /// Wraps a coroutine in a task (through the task factory, if one is set).
    #[pyo3(signature = (coro, *, name=None, context=None))]
    fn create_task(
        slf: &Bound<'_, Self>,
        coro: &Bound<'_, PyAny>,
        name: Option<&Bound<'_, PyAny>>,
        context: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed()?;
        let factory = this
            .pystate
            .lock()
            .task_factory
            .as_ref()
            .map(|f| f.clone_ref(py));
        let context = context.filter(|c| !c.is_none());
        let name = name.filter(|n| !n.is_none());
        let task = match factory {
            None => {
                let task = match crate::task::new_for_loop(slf.as_any(), coro, name, context) {
                    Some(task) => task?,
                    None => {
                        let kw = PyDict::new(py);
                        kw.set_item("loop", slf)?;
                        kw.set_item("name", name)?;
                        kw.set_item("context", context)?;
                        Imports::get(py)?
                            .task_cls
                            .bind(py)
                            .call((coro,), Some(&kw))?
                    }
                };
                if this.debug_on() {
                    if let Ok(tb) = task.getattr(pyo3::intern!(py, "_source_traceback")) {
                        if tb.is_truthy()? {
                            tb.del_item(-1)?;
                        }
                    }
                }
                task
            }
            Some(f) => {
                let task = match context {
                    None => f.bind(py).call1((slf, coro))?,
                    Some(ctx) => {
                        let kw = PyDict::new(py);
                        kw.set_item("context", ctx)?;
                        f.bind(py).call((slf, coro), Some(&kw))?
                    }
                };
                if let Some(n) = name {
                    task.call_method1("set_name", (n,))?;
                }
                task
            }
        };
        Ok(task.unbind())
    }

    #[pyo3(signature = (factory))]
    fn set_task_factory(&self, factory: &Bound<'_, PyAny>) -> PyResult<()> {
        if !factory.is_none() && !factory.is_callable() {
            return Err(PyTypeError::new_err(
                "task factory must be a callable or None",
            ));
        }
        let new = (!factory.is_none()).then(|| factory.clone().unbind());
        let old = std::mem::replace(&mut self.pystate.lock().task_factory, new);
        drop(old);
        Ok(())
    }

    fn get_task_factory(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.pystate
            .lock()
            .task_factory
            .as_ref()
            .map(|f| f.clone_ref(py))
    }

    // ----- I/O readiness --------------------------------------------------------------

    /// Calls `callback(*args)` whenever `fd` is readable.
    #[pyo3(signature = (fd, callback, *args))]
    fn add_reader(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<Py<Handle>> {
        Self::add_io(slf, fd, callback, args, false)
    }

    /// Calls `callback(*args)` whenever `fd` is writable.
    #[pyo3(signature = (fd, callback, *args))]
    fn add_writer(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<Py<Handle>> {
        Self::add_io(slf, fd, callback, args, true)
    }

    /// Stops watching `fd` for reading; True if it was watched.
    fn remove_reader(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        Self::remove_io(slf, fd, false)
    }

    /// Stops watching `fd` for writing; True if it was watched.
    fn remove_writer(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        Self::remove_io(slf, fd, true)
    }

    // ----- signals --------------------------------------------------------------------

    /// Runs `callback(*args)` on the loop whenever signal `sig` arrives (main thread only).
    #[pyo3(signature = (sig, callback, *args))]
    fn add_signal_handler(
        slf: &Bound<'_, Self>,
        sig: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let imports = Imports::get(py)?;
        if imports
            .iscoroutine
            .bind(py)
            .call1((&callback,))?
            .is_truthy()?
            || imports
                .iscoroutinefunction
                .bind(py)
                .call1((&callback,))?
                .is_truthy()?
        {
            return Err(PyTypeError::new_err(
                "coroutines cannot be used with add_signal_handler()",
            ));
        }
        let signal_mod = imports.signal.bind(py);
        let sig = signals::check_signal(sig, signal_mod)?;
        this.check_closed()?;
        let wakeup_fd = {
            let mut sock = lock(&this.signal_socket);
            if sock.is_none() {
                let registry = this.registry.lock();
                let Some(registry) = registry.as_ref() else {
                    return Err(PyRuntimeError::new_err("Event loop is closed"));
                };
                *sock = Some(SignalSocket::new(registry).map_err(os_error)?);
            }
            sock.as_ref().map(|s| s.wakeup_fd()).unwrap_or(-1)
        };
        // set_wakeup_fd raises ValueError outside the main thread: check that first.
        if let Err(e) = signal_mod.call_method1("set_wakeup_fd", (wakeup_fd,)) {
            if e.is_instance_of::<PyValueError>(py) || e.is_instance_of::<PyOSError>(py) {
                return Err(PyRuntimeError::new_err(e.value(py).str()?.unbind()));
            }
            return Err(e);
        }
        let handle = Self::new_handle(slf, callback, args, Self::context_for(slf.py(), None)?)?;
        let old = this.pystate.lock().signal_handlers.insert(sig, handle);
        drop(old);
        let noop = wrap_pyfunction!(signals::_sighandler_noop, py)?;
        let installed = signal_mod
            .call_method1("signal", (sig, noop))
            .and_then(|_| signal_mod.call_method1("siginterrupt", (sig, false)));
        if let Err(e) = installed {
            let (gone, none_left) = {
                let mut st = this.pystate.lock();
                (
                    st.signal_handlers.remove(&sig),
                    st.signal_handlers.is_empty(),
                )
            };
            drop(gone);
            if none_left {
                if let Err(e2) = signal_mod.call_method1("set_wakeup_fd", (-1,)) {
                    logger(py)?
                        .call_method1("info", ("set_wakeup_fd(-1) failed: %s", e2.value(py)))?;
                }
            }
            if e.is_instance_of::<PyOSError>(py)
                && e.value(py).getattr("errno")?.extract::<i32>().ok() == Some(libc::EINVAL)
            {
                return Err(PyRuntimeError::new_err(format!(
                    "sig {sig} cannot be caught"
                )));
            }
            return Err(e);
        }
        Ok(())
    }

    /// Removes the handler for `sig`; True if one was installed.
    fn remove_signal_handler(slf: &Bound<'_, Self>, sig: &Bound<'_, PyAny>) -> PyResult<bool> {
        let py = slf.py();
        let sig = signals::check_signal(sig, Imports::get(py)?.signal.bind(py))?;
        Self::remove_signal_handler_inner(slf, sig)
    }

    #[getter]
    fn _signal_handlers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let handlers: Vec<(i32, Py<Handle>)> = self
            .pystate
            .lock()
            .signal_handlers
            .iter()
            .map(|(sig, h)| (*sig, h.clone_ref(py)))
            .collect();
        let d = PyDict::new(py);
        for (sig, h) in handlers {
            d.set_item(sig, h)?;
        }
        Ok(d)
    }

    // ----- executors ------------------------------------------------------------------

    /// Runs `func(*args)` in `executor` (the default thread pool when None) and returns
    /// an asyncio future for the result.
    #[pyo3(signature = (executor, func, *args))]
    fn run_in_executor(
        slf: &Bound<'_, Self>,
        executor: &Bound<'_, PyAny>,
        func: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed()?;
        if this.debug_on() {
            this.check_callback(py, func, "run_in_executor")?;
        }
        let imports = Imports::get(py)?;
        let executor = if executor.is_none() {
            if this.executor_shutdown_called.load(Ordering::Acquire) {
                return Err(PyRuntimeError::new_err("Executor shutdown has been called"));
            }
            let existing = this
                .pystate
                .lock()
                .default_executor
                .as_ref()
                .map(|e| e.clone_ref(py));
            match existing {
                Some(e) => e.into_bound(py),
                None => {
                    let kw = PyDict::new(py);
                    kw.set_item("thread_name_prefix", "asyncio")?;
                    let e = imports.thread_pool_executor.bind(py).call((), Some(&kw))?;
                    let old = this
                        .pystate
                        .lock()
                        .default_executor
                        .replace(e.clone().unbind());
                    drop(old);
                    e
                }
            }
        } else {
            executor.clone()
        };
        let mut call_args = vec![func.clone()];
        call_args.extend(args.iter());
        let cf = executor.call_method1("submit", PyTuple::new(py, call_args)?)?;
        let kw = PyDict::new(py);
        kw.set_item("loop", slf)?;
        Ok(imports
            .wrap_future
            .bind(py)
            .call((cf,), Some(&kw))?
            .unbind())
    }

    /// Sets the executor used by `run_in_executor(None, ...)`.
    fn set_default_executor(&self, executor: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = executor.py();
        if !executor.is_instance(Imports::get(py)?.thread_pool_executor.bind(py))? {
            return Err(PyTypeError::new_err(
                "executor must be ThreadPoolExecutor instance",
            ));
        }
        let old = self
            .pystate
            .lock()
            .default_executor
            .replace(executor.clone().unbind());
        drop(old);
        Ok(())
    }

    #[getter]
    fn _default_executor(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.pystate
            .lock()
            .default_executor
            .as_ref()
            .map(|e| e.clone_ref(py))
    }

    /// Starts shutting the default executor down in a helper thread; returns a future
    /// resolved when its threads are joined (asyncio's `shutdown_default_executor`).
    #[pyo3(signature = (timeout=None))]
    fn _shutdown_default_executor(
        slf: &Bound<'_, Self>,
        timeout: Option<f64>,
    ) -> PyResult<Option<Py<PyAny>>> {
        let py = slf.py();
        let this = slf.get();
        this.executor_shutdown_called.store(true, Ordering::Release);
        let Some(executor) = this
            .pystate
            .lock()
            .default_executor
            .as_ref()
            .map(|e| e.clone_ref(py))
        else {
            return Ok(None);
        };
        let future = Self::create_future(slf)?;
        let loop_ref = slf.clone().unbind();
        let fut_ref = future.clone_ref(py);
        let exec_ref = executor.clone_ref(py);
        let target = PyCFunction::new_closure(py, None, None, move |args, _kw| -> PyResult<()> {
            let py = args.py();
            let lp = loop_ref.bind(py);
            let fut = fut_ref.bind(py);
            let kw = PyDict::new(py);
            kw.set_item("wait", true)?;
            match exec_ref.bind(py).call_method("shutdown", (), Some(&kw)) {
                Ok(_) => {
                    if !lp.get().closed.load(Ordering::Acquire) {
                        Self::resolve_soon_threadsafe(lp, fut)?;
                    }
                }
                Err(e) if e.is_instance_of::<pyo3::exceptions::PyException>(py) => {
                    if !lp.get().closed.load(Ordering::Acquire)
                        && !fut.call_method0("cancelled")?.is_truthy()?
                    {
                        let setter = fut.getattr("set_exception")?;
                        lp.call_method1("call_soon_threadsafe", (setter, e.value(py)))?;
                    }
                }
                Err(e) => return Err(e),
            }
            Ok(())
        })?;
        let kw = PyDict::new(py);
        kw.set_item("target", target)?;
        let thread = Imports::get(py)?.thread_cls.bind(py).call((), Some(&kw))?;
        thread.call_method0("start")?;
        let result = PyTuple::new(
            py,
            [
                future.into_any(),
                thread.unbind(),
                timeout.into_pyobject(py)?.into_any().unbind(),
            ],
        )?;
        Ok(Some(result.into_any().unbind()))
    }

    // ----- debug ----------------------------------------------------------------------

    pub fn get_debug(&self) -> bool {
        self.debug_on()
    }

    /// Generic attribute assignment that notes when an instance attribute shadows a
    /// method the fast paths skip (see [`dispatch`]).
    fn __setattr__(
        slf: &Bound<'_, Self>,
        name: &Bound<'_, PyString>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        Self::generic_setattr(slf, name, value.as_ptr())
    }

    fn __delattr__(slf: &Bound<'_, Self>, name: &Bound<'_, PyString>) -> PyResult<()> {
        Self::generic_setattr(slf, name, std::ptr::null_mut())
    }

    fn set_debug(slf: &Bound<'_, Self>, enabled: &Bound<'_, PyAny>) -> PyResult<()> {
        let this = slf.get();
        let enabled = enabled.is_truthy()?;
        this.debug.store(enabled, Ordering::Relaxed);
        if this.is_running_inner() {
            let f = slf.getattr("_set_coroutine_origin_tracking")?;
            slf.call_method1("call_soon_threadsafe", (f, enabled))?;
        }
        Ok(())
    }

    fn _set_coroutine_origin_tracking(&self, py: Python<'_>, enabled: bool) -> PyResult<()> {
        self.set_coroutine_origin_tracking(py, enabled)
    }

    #[getter]
    fn get_slow_callback_duration(&self) -> f64 {
        f64::from_bits(self.slow_callback_duration.load(Ordering::Relaxed))
    }

    #[setter]
    fn set_slow_callback_duration(&self, value: f64) {
        self.slow_callback_duration
            .store(value.to_bits(), Ordering::Relaxed);
    }

    /// asyncio's `_clock_resolution`: the resolution of `time.monotonic()`.
    #[getter]
    fn _clock_resolution(&self) -> f64 {
        CLOCK_RESOLUTION
    }

    #[getter]
    fn _debug(&self) -> bool {
        self.debug_on()
    }

    #[getter]
    fn _closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    #[getter]
    fn _stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    #[getter]
    fn _thread_id(&self) -> Option<u64> {
        match self.thread_id.load(Ordering::Acquire) {
            0 => None,
            t => Some(t),
        }
    }

    #[getter]
    fn _current_handle(&self, py: Python<'_>) -> Option<Py<Handle>> {
        self.pystate
            .lock()
            .current_handle
            .as_ref()
            .map(|h| h.clone_ref(py))
    }

    /// Number of callbacks ready to run (for introspection and tests).
    #[getter]
    fn _ready_count(&self) -> usize {
        self.queues.lock().ready.len()
    }

    /// Number of timers in the heap, cancelled ones included.
    #[getter]
    fn _timer_count(&self) -> usize {
        self.queues.lock().timers.len()
    }

    // ----- exception handling ---------------------------------------------------------

    fn get_exception_handler(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.pystate
            .lock()
            .exception_handler
            .as_ref()
            .map(|h| h.clone_ref(py))
    }

    fn set_exception_handler(&self, handler: &Bound<'_, PyAny>) -> PyResult<()> {
        if !handler.is_none() && !handler.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "A callable object or None is expected, got {}",
                handler.repr()?
            )));
        }
        let new = (!handler.is_none()).then(|| handler.clone().unbind());
        let old = std::mem::replace(&mut self.pystate.lock().exception_handler, new);
        drop(old);
        Ok(())
    }

    /// Logs `context` through asyncio's logger, in asyncio's format.
    fn default_exception_handler(
        slf: &Bound<'_, Self>,
        context: &Bound<'_, PyDict>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let imports = Imports::get(py)?;
        let message = match context.get_item("message")? {
            Some(m) if m.is_truthy()? => m.str()?.to_string(),
            _ => "Unhandled exception in event loop".to_string(),
        };
        let exc_info: Bound<'_, PyAny> = match context.get_item("exception")? {
            Some(e) if !e.is_none() => PyTuple::new(
                py,
                [
                    e.get_type().into_any(),
                    e.clone(),
                    e.getattr("__traceback__")?,
                ],
            )?
            .into_any(),
            _ => pyo3::types::PyBool::new(py, false).to_owned().into_any(),
        };
        if !context.contains("source_traceback")? {
            let current = this
                .pystate
                .lock()
                .current_handle
                .as_ref()
                .map(|h| h.clone_ref(py));
            if let Some(h) = current {
                let tb = h.bind(py).getattr("_source_traceback")?;
                if tb.is_truthy()? {
                    context.set_item("handle_traceback", tb)?;
                }
            }
        }
        let mut lines = vec![message];
        let keys = context.keys();
        keys.sort()?;
        for key in keys.iter() {
            let k = key.str()?.to_string();
            if k == "message" || k == "exception" {
                continue;
            }
            let value = context
                .get_item(&key)?
                .unwrap_or_else(|| py.None().into_bound(py));
            let text = match k.as_str() {
                "source_traceback" | "handle_traceback" => {
                    let tb: String = PyString::new(py, "")
                        .call_method1("join", (imports.format_list.bind(py).call1((&value,))?,))?
                        .extract()?;
                    let what = if k == "source_traceback" {
                        "Object"
                    } else {
                        "Handle"
                    };
                    format!(
                        "{what} created at (most recent call last):\n{}",
                        tb.trim_end()
                    )
                }
                _ => value.repr()?.to_string(),
            };
            lines.push(format!("{k}: {text}"));
        }
        let kw = PyDict::new(py);
        kw.set_item("exc_info", exc_info)?;
        logger(py)?.call_method("error", (lines.join("\n"),), Some(&kw))?;
        Ok(())
    }

    /// Reports `context` to the custom exception handler, or the default one.
    fn call_exception_handler(slf: &Bound<'_, Self>, context: &Bound<'_, PyDict>) -> PyResult<()> {
        let py = slf.py();
        let handler = slf
            .get()
            .pystate
            .lock()
            .exception_handler
            .as_ref()
            .map(|h| h.clone_ref(py));
        let fatal = |e: &PyErr| {
            e.is_instance_of::<PySystemExit>(py) || e.is_instance_of::<PyKeyboardInterrupt>(py)
        };
        let log_error = |msg: &str| -> PyResult<()> {
            let kw = PyDict::new(py);
            kw.set_item("exc_info", true)?;
            logger(py)?.call_method("error", (msg,), Some(&kw))?;
            Ok(())
        };
        match handler {
            None => {
                if let Err(e) = slf.call_method1("default_exception_handler", (context,)) {
                    if fatal(&e) {
                        return Err(e);
                    }
                    e.restore(py);
                    // logging's exc_info=True reads the exception being handled.
                    let res = with_exception_set(py, || {
                        log_error("Exception in default exception handler")
                    });
                    res?;
                }
            }
            Some(h) => {
                let run = || -> PyResult<()> {
                    let mut thing = None;
                    for key in ["task", "future", "handle"] {
                        if let Some(v) = context.get_item(key)? {
                            if !v.is_none() {
                                thing = Some(v);
                                break;
                            }
                        }
                    }
                    let ctx = match thing {
                        Some(t) if t.hasattr("get_context")? => {
                            Some(t.call_method0("get_context")?)
                        }
                        _ => None,
                    };
                    match ctx {
                        Some(c) if !c.is_none() && c.hasattr("run")? => {
                            c.call_method1("run", (h.bind(py), slf, context))?;
                        }
                        _ => {
                            h.bind(py).call1((slf, context))?;
                        }
                    }
                    Ok(())
                };
                if let Err(exc) = run() {
                    if fatal(&exc) {
                        return Err(exc);
                    }
                    let inner = PyDict::new(py);
                    inner.set_item("message", "Unhandled error in exception handler")?;
                    inner.set_item("exception", exc.value(py))?;
                    inner.set_item("context", context)?;
                    if let Err(e2) = slf.call_method1("default_exception_handler", (inner,)) {
                        if fatal(&e2) {
                            return Err(e2);
                        }
                        e2.restore(py);
                        let res = with_exception_set(py, || {
                            log_error(
                                "Exception in default exception handler while handling an \
                                 unexpected error in custom exception handler",
                            )
                        });
                        res?;
                    }
                }
            }
        }
        Ok(())
    }

    // ----- async generators -----------------------------------------------------------

    fn _asyncgen_firstiter_hook(slf: &Bound<'_, Self>, agen: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let imports = Imports::get(py)?;
        if this.asyncgens_shutdown_called.load(Ordering::Acquire) {
            let kw = PyDict::new(py);
            kw.set_item("source", slf)?;
            imports.warn.bind(py).call(
                (
                    format!(
                        "asynchronous generator {} was scheduled after loop.shutdown_asyncgens() call",
                        agen.repr()?
                    ),
                    imports.resource_warning.bind(py),
                ),
                Some(&kw),
            )?;
        }
        Self::asyncgens(slf)?.call_method1("add", (agen,))?;
        Ok(())
    }

    fn _asyncgen_finalizer_hook(slf: &Bound<'_, Self>, agen: &Bound<'_, PyAny>) -> PyResult<()> {
        Self::asyncgens(slf)?.call_method1("discard", (agen,))?;
        if !slf.get().closed.load(Ordering::Acquire) {
            let create_task = slf.getattr("create_task")?;
            let aclose = agen.call_method0("aclose")?;
            slf.call_method1("call_soon_threadsafe", (create_task, aclose))?;
        }
        Ok(())
    }

    /// The live async generators the loop will close on `shutdown_asyncgens()`.
    #[getter]
    fn _asyncgens<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Self::asyncgens(slf)
    }

    /// Starts closing every live async generator; returns a future done when all are
    /// closed (None if there is none). `ferroloop.Loop.shutdown_asyncgens` awaits it.
    fn _shutdown_asyncgens(slf: &Bound<'_, Self>) -> PyResult<Option<Py<PyAny>>> {
        let py = slf.py();
        let this = slf.get();
        this.asyncgens_shutdown_called
            .store(true, Ordering::Release);
        let set = Self::asyncgens(slf)?;
        if set.len()? == 0 {
            return Ok(None);
        }
        let agens = PyList::new(py, set.try_iter()?.collect::<PyResult<Vec<_>>>()?)?;
        set.call_method0("clear")?;
        let mut tasks = Vec::with_capacity(agens.len());
        for agen in agens.iter() {
            let task = Self::create_task(slf, &agen.call_method0("aclose")?, None, None)?;
            tasks.push(task);
        }
        let kw = PyDict::new(py);
        kw.set_item("return_exceptions", true)?;
        let gathered = Imports::get(py)?
            .gather
            .bind(py)
            .call(PyTuple::new(py, tasks)?, Some(&kw))?;
        Ok(Some(
            PyTuple::new(py, [gathered.into_any(), agens.into_any()])?
                .into_any()
                .unbind(),
        ))
    }

    fn _check_closed(&self) -> PyResult<()> {
        self.check_closed()
    }

    fn _check_running(&self, py: Python<'_>) -> PyResult<()> {
        self.check_running(py)
    }

    fn _check_thread(&self) -> PyResult<()> {
        self.check_thread()
    }

    fn _timer_handle_cancelled(&self, _handle: &Bound<'_, PyAny>) {
        self.timer_handle_cancelled();
    }

    fn _run_once(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::run_once(slf, &mut VecDeque::new(), &mut Vec::new())
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let this = slf.get();
        let cap = |b: bool| if b { "True" } else { "False" };
        Ok(format!(
            "<{} running={} closed={} debug={}>",
            slf.get_type().name()?,
            cap(this.is_running_inner()),
            cap(this.closed.load(Ordering::Acquire)),
            cap(this.debug_on())
        ))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(q) = self.queues.try_lock() {
            for job in q.ready.iter() {
                match job {
                    Job::Handle(h) => visit.call(h)?,
                    Job::Call(c) => {
                        visit.call(&c.func)?;
                        visit.call(c.arg.as_ref())?;
                        visit.call(&c.context)?;
                    }
                    Job::Task(c) => {
                        visit.call(&c.task)?;
                        visit.call(c.arg.as_ref())?;
                        visit.call(&c.context)?;
                    }
                }
            }
            for entry in q.io.values() {
                visit.call(&entry.reader)?;
                visit.call(&entry.writer)?;
            }
            // Scheduled timers are untracked (see handle::untrack_scheduled): the loop
            // reports what they reference.
            // SAFETY: the garbage collector runs tp_traverse attached to the interpreter.
            let py = unsafe { Python::assume_attached() };
            for t in q.timers.iter() {
                t.handle.bind(py).as_super().get().traverse_refs(&visit)?;
            }
        }
        if let Some(st) = self.pystate.try_lock() {
            visit.call(&st.exception_handler)?;
            visit.call(&st.task_factory)?;
            visit.call(&st.default_executor)?;
            visit.call(&st.asyncgens)?;
            visit.call(&st.current_handle)?;
            for h in st.signal_handlers.values() {
                visit.call(h)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        let q = self.queues.try_lock().map(|mut q| {
            (
                std::mem::take(&mut q.ready),
                std::mem::take(&mut q.io),
                q.timers.drain(),
            )
        });
        // SAFETY: the garbage collector runs tp_clear attached to the interpreter.
        let py = unsafe { Python::assume_attached() };
        let q = q.map(|(ready, io, timers)| {
            release_timers(py, Some(timers));
            (ready, io)
        });
        let st = self
            .pystate
            .try_lock()
            .map(|mut st| std::mem::take(&mut *st));
        drop((q, st));
    }
}

impl LoopCore {
    fn schedule_at(
        slf: &Bound<'_, Self>,
        when: f64,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
        method: &str,
    ) -> PyResult<Py<TimerHandle>> {
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
        let init = PyClassInitializer::from(
            Handle::new(
                callback.unbind(),
                args.unbind(),
                context,
                slf.clone().into_any().unbind(),
                tb,
            )
            .for_timer(),
        )
        .add_subclass(TimerHandle::new(when));
        let timer = Bound::new(py, init)?;
        untrack_scheduled(&timer, own_context);
        let timer = timer.unbind();
        this.queues.lock().timers.push(when, timer.clone_ref(py));
        this.wake_if_polling();
        Ok(timer)
    }

    fn asyncgens<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        if let Some(s) = this.pystate.lock().asyncgens.as_ref() {
            return Ok(s.bind(py).clone());
        }
        let set = Imports::get(py)?.weakset.bind(py).call0()?;
        let mut st = this.pystate.lock();
        Ok(st
            .asyncgens
            .get_or_insert_with(|| set.unbind())
            .bind(py)
            .clone())
    }
}

/// Marks timers taken out of the heap as unscheduled and drops them (outside any lock:
/// dropping a handle can run arbitrary Python code).
fn release_timers(py: Python<'_>, timers: Option<Vec<timers::Timer<Py<TimerHandle>>>>) {
    for t in timers.iter().flatten() {
        t.handle.get().unschedule();
        retrack_unscheduled(py, &t.handle);
    }
}

/// Runs `f` while the error fetched from `py` is the exception "being handled", so that
/// `logging`'s `exc_info=True` reports it, as it does inside an `except` block in Python.
fn with_exception_set<R>(py: Python<'_>, f: impl FnOnce() -> R) -> R {
    let err = PyErr::take(py);
    match err {
        None => f(),
        Some(err) => {
            let value = err.into_value(py);
            // SAFETY: the GIL is held; PyErr_SetHandledException takes a borrowed reference
            // (it increments it) and NULL restores "no exception being handled".
            unsafe { ffi::PyErr_SetHandledException(value.as_ptr()) };
            let r = f();
            // SAFETY: as above, clearing the handled exception.
            unsafe { ffi::PyErr_SetHandledException(std::ptr::null_mut()) };
            r
        }
    }
}

/// Done-callback of `run_until_complete`: stops the loop once the future is done,
/// except when it ended with SystemExit/KeyboardInterrupt (run_forever already raised).
#[pyfunction]
pub fn run_until_complete_cb(fut: &Bound<'_, PyAny>) -> PyResult<()> {
    if !fut.call_method0("cancelled")?.is_truthy()? {
        let exc = fut.call_method0("exception")?;
        if exc.is_instance_of::<PySystemExit>() || exc.is_instance_of::<PyKeyboardInterrupt>() {
            return Ok(());
        }
    }
    let lp = match fut.call_method0("get_loop") {
        Ok(l) => l,
        Err(_) => fut.getattr("_loop")?,
    };
    lp.call_method0("stop")?;
    Ok(())
}
