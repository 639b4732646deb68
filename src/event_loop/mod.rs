//! The loop core: `LoopCore`, the native base of `ferroloop.Loop`.
//!
//! This file holds the state; the behaviour lives in one file per concern, each an
//! `impl LoopCore` block:
//!
//! | file | concern |
//! |---|---|
//! | `api.rs` | the one `#[pymethods]` block, in `AbstractEventLoop` order, delegating |
//! | `run.rs` | `run_forever`, `run_until_complete`, one iteration (`run_once`), `stop`, `close` |
//! | `schedule.rs` | `call_soon*`, `call_later`, `call_at`, the handle pool |
//! | `ready.rs` | the ready queue's jobs and the narrow scheduling API of futures and tasks |
//! | `io.rs` | the owners of registered fds (`add_reader` / `add_writer` today), readiness dispatch |
//! | [`timers`] | the timer heap and its sweeping |
//! | [`signals`] | `add_signal_handler` through `signal.set_wakeup_fd` |
//! | `sock.rs` | the `sock_*` methods: syscalls in Rust, waits as native readers/writers |
//! | `sendfile.rs` | `sock_sendfile`'s checks and its `sendfile(2)` path |
//! | `tasks.rs` | `create_future`, `create_task`, the task factory |
//! | `executor.rs` | `run_in_executor` and the default executor |
//! | `errors.rs` | the exception handler API and its formatting |
//! | `asyncgens.rs` | async generator hooks, `shutdown_asyncgens` |
//! | `debug.rs` | debug mode, origin tracking, slow-callback reports |
//! | [`fastcall`] | hand-written vectorcall entry points of the hottest methods |
//! | [`dispatch`] | when the native paths may skip `loop.call_soon()` / `loop.get_debug()` |
//!
//! Locking: the state sits in [`GilCell`]s (and two `Mutex`es for the poller and the signal
//! socket, which are never held while Python code runs either) accessed only for queue
//! operations. No Python code runs during an access — Python objects taken out of the
//! state are dropped (and so possibly finalized) after it ends, see
//! [`crate::pyo::gil_cell`] — which keeps re-entrant calls from callbacks
//! (`call_soon` from inside a callback, `__del__` methods scheduling work) safe, with or
//! without the GIL.

mod api;
mod asyncgens;
mod debug;
pub mod dispatch;
mod errors;
mod executor;
pub mod fastcall;
mod io;
mod ready;
mod run;
mod schedule;
mod sendfile;
pub mod signals;
mod sock;
mod sock_address;
mod tasks;
pub mod timers;

pub(crate) use io::{DatagramOwner, Owner, StreamOwner};
use ready::Job;
pub(crate) use ready::{debug_of, own_debug_flag, timer_cancelled, NativeLoop, TaskCall};
pub use run::run_until_complete_cb;
pub(crate) use sock::{accept_connection, socket_from_fd, Attempt};

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use mio::{Registry, Waker};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::{PyTraverseError, PyVisit};

use crate::handle::{Handle, SlottedRef};
use crate::names::Names;
use crate::pyo::errno::os_error;
use crate::pyo::object::ClassAttrCache;
use crate::pyo::GilCell;
use crate::reactor::{Poller, Ready, Registrations};
use signals::SignalSocket;
use timers::{release_timers, TimerHeap};

/// asyncio's `MAXIMUM_SELECT_TIMEOUT`: never block longer than a day in one poll.
const MAXIMUM_SELECT_TIMEOUT: f64 = 24.0 * 3600.0;
/// asyncio's `_clock_resolution` for `time.monotonic()` on Linux.
const CLOCK_RESOLUTION: f64 = 1e-9;
/// While callbacks are ready, no fd is watched and no signal handler is installed, a
/// zero-timeout poll can only find the waker, whose work (`call_soon_threadsafe`) reaches
/// the ready queue directly, so the loop polls on only one iteration in this many. With a
/// signal handler installed it polls every iteration, as asyncio does: the signal socket
/// (asyncio's self-pipe) is only read by a poll.
const POLL_EVERY_BUSY_ITERATIONS: u32 = 64;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic while it was held; the queues stay consistent
    // because every critical section only moves references around.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Queues shared between the loop thread and `call_soon_threadsafe` callers.
#[derive(Default)]
struct Queues {
    ready: VecDeque<Job>,
    timers: TimerHeap<Py<Handle>>,
    /// The registered fds' owners (see [`io`]).
    io: Registrations<Owner>,
    /// Emptied `Handle`s kept for reuse by `call_soon` (see `Handle::is_recyclable`):
    /// scheduling a callback then costs no allocation, deallocation or GC bookkeeping.
    pool: Vec<Py<Handle>>,
}

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
    /// The events of the last poll, kept to be reused by the next.
    io_events: GilCell<Vec<Ready>>,
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
    /// Whether the signal socket may receive or still hold a byte (then every iteration
    /// polls: see POLL_EVERY_BUSY_ITERATIONS): set while a signal handler is installed,
    /// and until the first poll after the last one is removed (see `run_once`).
    signals_watched: AtomicBool,
    /// Set by `call_soon_threadsafe` (so also by `set_debug` on a running loop and by
    /// executor completions, which go through it), cleared when the signal socket is read:
    /// asyncio's wake-up byte goes through the self-pipe that carries signal numbers, so its
    /// next poll queues the pipe's reader whether or not a signal came, even with no signal
    /// handler installed yet; the next iteration here does the same (see `run_once`). A
    /// read of the pipe consumes the wake-up bytes written before it, so a read clears it.
    self_pipe_pending: AtomicBool,
    /// Set once an instance attribute shadows a method the fast paths skip (see
    /// [`dispatch`]); from then on this loop always takes the Python-level calls.
    shadowed: AtomicBool,
    /// Set once an instance attribute `time` is set (see [`LoopCore::python_time`]); from
    /// then on this loop reads its clock through `loop.time()`.
    time_shadowed: AtomicBool,
    /// The loop's class was last seen with ferroloop's own `call_soon`, `get_debug` and
    /// `time` under these version tags (see [`dispatch`]).
    own_call_soon: ClassAttrCache,
    own_get_debug: ClassAttrCache,
    own_time: ClassAttrCache,
    /// The process that made the loop. In a child made by `os.fork()` the loop's epoll
    /// instance is still the parent's (a forked fd shares it): `close()` there must not
    /// deregister anything, or the parent's loop would stop seeing its fds.
    pid: u32,
}

/// What `threading.get_ident()` returns for the calling thread.
fn current_thread_id() -> u64 {
    crate::sys::thread_id()
}

impl LoopCore {
    fn check_closed(&self) -> PyResult<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(PyRuntimeError::new_err("Event loop is closed"));
        }
        Ok(())
    }

    /// `RuntimeError('Event loop is closed')` once closed, for callers outside this module.
    pub(crate) fn check_open(&self) -> PyResult<()> {
        self.check_closed()
    }

    /// Whether `close()` was called.
    pub(crate) fn is_closed_now(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The debug flag (`get_debug()` of an unpatched loop).
    pub(crate) fn is_debug(&self) -> bool {
        self.debug_on()
    }

    /// Whether this is a copy of the loop in a child made by `os.fork()`.
    fn in_forked_child(&self) -> bool {
        self.pid != std::process::id()
    }

    /// Whether the loop runs on the calling thread. Python code calling in is then inside
    /// `run_forever`'s PyO3 trampoline, which PyO3 counts as attached: a `Py` dropped there
    /// is released at once (a hand-written entry point elsewhere defers it to PyO3's pool).
    pub(crate) fn runs_on_this_thread(&self) -> bool {
        self.thread_id.load(Ordering::Relaxed) == current_thread_id()
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

    /// `LoopCore.__new__`: a new, open, not running loop.
    fn create(py: Python<'_>) -> PyResult<Self> {
        // Import what the loop needs now, not lazily: a loop finalized at interpreter exit
        // must not be the first to import (imports fail during finalization).
        Names::get(py)?;
        let (poller, registry, waker) = Poller::new().map_err(os_error)?;
        // Read per loop, as asyncio does (PYTHONASYNCIODEBUG or -X dev at creation time).
        let debug = py
            .import("asyncio.coroutines")?
            .getattr(pyo3::intern!(py, "_is_debug_mode"))?
            .call0()?
            .is_truthy()?;
        Ok(LoopCore {
            queues: GilCell::new(Queues::default()),
            pystate: GilCell::new(PyState::default()),
            poller: Mutex::new(Some(poller)),
            registry: GilCell::new(Some(registry)),
            waker: GilCell::new(Some(waker)),
            signal_socket: Mutex::new(None),
            io_events: GilCell::new(Vec::new()),
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
            signals_watched: AtomicBool::new(false),
            self_pipe_pending: AtomicBool::new(false),
            shadowed: AtomicBool::new(false),
            time_shadowed: AtomicBool::new(false),
            own_call_soon: ClassAttrCache::new(),
            own_get_debug: ClassAttrCache::new(),
            own_time: ClassAttrCache::new(),
            pid: std::process::id(),
        })
    }

    /// tp_traverse: what the queues and the Python-level state reference.
    fn traverse(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.queues
            .try_with(|q| -> Result<(), PyTraverseError> {
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
                        Job::ReadSignals => {}
                        Job::Stream(j) => j.visit(&visit)?,
                        Job::Accept(l) => visit.call(l)?,
                        Job::Child(c) => c.visit(&visit)?,
                        Job::Datagram(j) => j.visit(&visit)?,
                    }
                }
                for owner in q.io.owners() {
                    match owner {
                        Owner::Watch(w) => {
                            visit.call(&w.reader)?;
                            visit.call(&w.writer)?;
                            visit.call(&w.fileobj)?;
                        }
                        Owner::Stream(so) => so.visit(&visit)?,
                        Owner::Listener(l) => visit.call(l)?,
                        Owner::Child(c) => c.visit(&visit)?,
                        Owner::Datagram(d) => d.visit(&visit)?,
                    }
                }
                // Scheduled timers are untracked (see handle::untrack_scheduled): the loop
                // reports what they reference.
                for t in q.timers.iter() {
                    t.handle.state().traverse_refs(&visit)?;
                }
                Ok(())
            })
            .transpose()?;
        self.pystate
            .try_with(|st| -> Result<(), PyTraverseError> {
                visit.call(&st.exception_handler)?;
                visit.call(&st.task_factory)?;
                visit.call(&st.default_executor)?;
                visit.call(&st.asyncgens)?;
                visit.call(&st.current_handle)?;
                for h in st.signal_handlers.values() {
                    visit.call(h)?;
                }
                Ok(())
            })
            .transpose()?;
        Ok(())
    }

    /// tp_clear: drops everything the loop references.
    fn clear(&self, py: Python<'_>) {
        let q = self.queues.try_with(|q| {
            (
                std::mem::take(&mut q.ready),
                std::mem::take(&mut q.io),
                q.timers.drain(),
            )
        });
        let q = q.map(|(ready, io, timers)| {
            release_timers(py, Some(timers));
            (ready, io)
        });
        let st = self.pystate.try_with(std::mem::take);
        drop((q, st));
    }
}
