//! The resolver pool: up to [`MAX_THREADS`] native threads shared by the process, started on
//! demand and ending after [`IDLE_EXIT`] without work, or as soon as no open loop has used
//! the pool (asyncio's executor threads end at `loop.close()`), which run lookups without
//! the GIL and hand each outcome to its loop through `call_soon_threadsafe`; and the
//! `os.fork()` hooks that keep a forked child from inheriting a locked pool.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::request::{run, Outcome, Request};
use super::Pending;
use crate::event_loop::LoopCore;

/// The most resolver threads the process runs at once.
const MAX_THREADS: usize = 4;
/// How long an idle resolver thread waits for work before it ends.
const IDLE_EXIT: Duration = Duration::from_secs(10);

// ----- the resolver pool ----------------------------------------------------------------

/// A lookup waiting for a resolver thread, and where its outcome goes.
pub(super) struct Job {
    pub(super) req: Request,
    pub(super) pending: Py<Pending>,
    pub(super) loop_: Py<LoopCore>,
}

struct PoolState {
    queue: VecDeque<Job>,
    threads: usize,
    idle: usize,
    /// The process the threads were started in (a forked child has none of them).
    pid: u32,
    /// The open loops that have handed the pool a lookup (their addresses): when the last
    /// of them closes, the idle threads end at once instead of after [`IDLE_EXIT`].
    users: Vec<usize>,
    /// The threads started and not yet joined.
    handles: Vec<JoinHandle<()>>,
    /// The threads that have left (or are leaving) [`worker`], to be joined.
    exited: Vec<ThreadId>,
}

static POOL: Mutex<PoolState> = Mutex::new(PoolState {
    queue: VecDeque::new(),
    threads: 0,
    idle: 0,
    pid: 0,
    users: Vec::new(),
    handles: Vec::new(),
    exited: Vec::new(),
});
static WORK: Condvar = Condvar::new();
/// Lookups handed to the pool since the process started (for tests: the fast path must
/// not add to it).
static SUBMITTED: AtomicU64 = AtomicU64::new(0);
/// Lookups skipped because their future was cancelled before a thread took them.
static SKIPPED: AtomicU64 = AtomicU64::new(0);

fn pool() -> MutexGuard<'static, PoolState> {
    // Critical sections only move jobs and counters: a poisoned lock is still consistent.
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Queues `job`, starting a resolver thread if none is idle and fewer than
/// [`MAX_THREADS`] run; gives the job back if no thread could be started at all.
pub(super) fn submit(job: Job) -> Result<(), Job> {
    let mut st = pool();
    let pid = std::process::id();
    if st.pid != pid {
        // A forked child: the parent's threads (and what they were doing) are not here.
        // The queued jobs belong to the parent's loops; leak them rather than decref
        // objects of another process's state.
        forget_the_parents(&mut st);
        st.pid = pid;
    }
    let user = job.loop_.as_ptr() as usize;
    if !st.users.contains(&user) {
        st.users.push(user);
    }
    if st.idle > st.queue.len() || st.threads >= MAX_THREADS {
        st.queue.push_back(job);
        WORK.notify_one();
        SUBMITTED.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    let spawned = std::thread::Builder::new()
        .name("ferroloop-resolver".into())
        .spawn(worker);
    match spawned {
        Ok(handle) => {
            // Threads that ended on their own (idle) are detached here, not joined.
            let exited = std::mem::take(&mut st.exited);
            st.handles.retain(|h| !exited.contains(&h.thread().id()));
            st.handles.push(handle);
            st.threads += 1;
            st.queue.push_back(job);
            SUBMITTED.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Err(_) if st.threads > 0 => {
            st.queue.push_back(job);
            WORK.notify_one();
            SUBMITTED.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Err(_) => Err(job),
    }
}

/// A resolver thread: runs queued lookups without the GIL, hands each outcome to its loop.
fn worker() {
    let mut st = pool();
    loop {
        if let Some(job) = st.queue.pop_front() {
            drop(st);
            if job.pending.get().abandoned.load(Ordering::Acquire) {
                // Cancelled before it started: not looked up, as asyncio's executor drops
                // a work item whose future was cancelled.
                SKIPPED.fetch_add(1, Ordering::Relaxed);
                let _ = Python::try_attach(move |_| drop(job));
            } else {
                let outcome = run(&job.req);
                deliver(job, outcome);
            }
            st = pool();
            continue;
        }
        if st.users.is_empty() {
            // Every loop that used the pool is closed: end now, as asyncio's executor
            // threads do at loop.close().
            return leave(st);
        }
        st.idle += 1;
        let (guard, waited) = WORK
            .wait_timeout(st, IDLE_EXIT)
            .unwrap_or_else(|e| e.into_inner());
        st = guard;
        st.idle -= 1;
        if waited.timed_out() && st.queue.is_empty() {
            return leave(st);
        }
    }
}

/// A resolver thread leaves the pool (it returns from [`worker`] right after).
fn leave(mut st: MutexGuard<'_, PoolState>) {
    st.threads -= 1;
    st.exited.push(std::thread::current().id());
    if st.idle == 0 {
        LEFT.notify_all();
    }
}

/// Signalled when the last idle thread has left (see [`loop_closed`]).
static LEFT: Condvar = Condvar::new();

/// A loop is closing: if it was the last open loop to have used the pool, the idle
/// resolver threads end, and are joined here (the GIL released), so that a `close()`
/// leaves no idle thread behind, as asyncio's `close()` shuts its default executor down
/// (an `os.fork()` just after it sees a single-threaded process). A thread in the middle
/// of a lookup ends once it is done, as an executor thread does.
pub(crate) fn loop_closed(py: Python<'_>, lp: &Bound<'_, LoopCore>) {
    let user = lp.as_ptr() as usize;
    let joins = {
        let mut st = pool();
        let Some(i) = st.users.iter().position(|&u| u == user) else {
            return;
        };
        st.users.swap_remove(i);
        if !st.users.is_empty() || st.pid != std::process::id() {
            return;
        }
        WORK.notify_all();
        // Idle threads only wait for the lock, then leave: this wait is short.
        while st.idle > 0 && st.users.is_empty() {
            let (guard, waited) = LEFT
                .wait_timeout(st, Duration::from_secs(1))
                .unwrap_or_else(|e| e.into_inner());
            st = guard;
            if waited.timed_out() {
                break;
            }
        }
        let exited = std::mem::take(&mut st.exited);
        let (done, running) = std::mem::take(&mut st.handles)
            .into_iter()
            .partition(|h| exited.contains(&h.thread().id()));
        st.handles = running;
        done
    };
    py.detach(move || {
        for h in joins {
            let _ = h.join();
        }
    });
}

/// In a forked child: the parent's threads (and what they were doing) are not here. The
/// queued jobs belong to the parent's loops and the handles to its threads; leak them
/// rather than drop another process's state.
fn forget_the_parents(st: &mut PoolState) {
    std::mem::forget(std::mem::take(&mut st.queue));
    std::mem::forget(std::mem::take(&mut st.handles));
    st.exited.clear();
    st.users.clear();
    st.threads = 0;
    st.idle = 0;
}

/// Stores `outcome` in the job's [`Pending`] and schedules it on its loop (thread-safe).
fn deliver(job: Job, outcome: Outcome) {
    let Job { pending, loop_, .. } = job;
    *pending
        .get()
        .outcome
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(outcome);
    // Not attached during interpreter shutdown: the loop is gone, and so is the lookup.
    // (The references are then dropped without the GIL: PyO3 defers those decrefs.)
    let _ = Python::try_attach(move |py| {
        let lp = loop_.bind(py);
        if matches!(
            lp.call_method0(intern!(py, "is_closed"))
                .and_then(|c| c.is_truthy()),
            Ok(false)
        ) {
            // A loop closed meanwhile drops the outcome, as asyncio's executor does.
            let scheduled = LoopCore::call_soon_threadsafe(
                lp,
                pending.bind(py).clone().into_any(),
                PyTuple::empty(py),
                None,
            );
            // Any other failure leaves the lookup's future pending for good (as a
            // debug-mode source traceback once did): it is reported, not swallowed.
            if let Err(e) = scheduled {
                let closed = lp
                    .call_method0(intern!(py, "is_closed"))
                    .and_then(|c| c.is_truthy())
                    .unwrap_or(true);
                if !closed {
                    e.write_unraisable(py, Some(lp));
                }
            }
        }
        drop((pending, loop_));
    });
}

/// `_ferroloop._resolver_stats()`: `(lookups handed to the pool so far, resolver threads
/// running, lookups skipped as cancelled before they started)`, for tests.
#[pyfunction]
fn _resolver_stats() -> (u64, usize, u64) {
    let threads = pool().threads;
    (
        SUBMITTED.load(Ordering::Relaxed),
        threads,
        SKIPPED.load(Ordering::Relaxed),
    )
}

thread_local! {
    /// The pool's lock, held by the forking thread from `os.fork()`'s before-hook to its
    /// after-hooks (see [`_resolver_before_fork`]).
    static HELD_FOR_FORK: std::cell::RefCell<Option<MutexGuard<'static, PoolState>>> =
        const { std::cell::RefCell::new(None) };
}

/// `os.fork()`'s before-hook: takes the pool's lock, so that no resolver thread holds it
/// at the moment of the fork. A child inherits a locked mutex as it was, without the
/// thread that would unlock it, and its first lookup would hang. No thread waits for the
/// GIL while it holds this lock, so taking it with the GIL held cannot deadlock.
#[pyfunction]
fn _resolver_before_fork() {
    let guard = pool();
    HELD_FOR_FORK.with(|h| *h.borrow_mut() = Some(guard));
}

/// `os.fork()`'s after-hook in the parent: releases the lock taken before the fork.
#[pyfunction]
fn _resolver_after_fork_in_parent() {
    HELD_FOR_FORK.with(|h| drop(h.borrow_mut().take()));
}

/// `os.fork()`'s after-hook in the child: the parent's resolver threads do not exist
/// here, so the pool starts empty (the queued jobs belong to the parent's loops and are
/// leaked rather than dropped), then the lock taken before the fork is released.
#[pyfunction]
fn _resolver_after_fork_in_child() {
    HELD_FOR_FORK.with(|h| {
        if let Some(mut st) = h.borrow_mut().take() {
            forget_the_parents(&mut st);
            st.pid = std::process::id();
        }
    });
}

/// For tests: a thread that holds the pool's lock for `seconds`, as a resolver thread
/// does briefly, so that a test can fork while it is held.
#[pyfunction]
fn _resolver_hold_lock(py: Python<'_>, seconds: f64) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let guard = pool();
        let _ = tx.send(());
        std::thread::sleep(std::time::Duration::from_secs_f64(seconds.max(0.0)));
        drop(guard);
    });
    py.detach(move || {
        let _ = rx.recv();
    });
}

/// Registers the pool's functions (statistics and fork hooks) in the module.
pub(super) fn register(m: &Bound<'_, pyo3::types::PyModule>) -> PyResult<()> {
    m.add_function(pyo3::wrap_pyfunction!(_resolver_stats, m)?)?;
    m.add_function(pyo3::wrap_pyfunction!(_resolver_before_fork, m)?)?;
    m.add_function(pyo3::wrap_pyfunction!(_resolver_after_fork_in_parent, m)?)?;
    m.add_function(pyo3::wrap_pyfunction!(_resolver_after_fork_in_child, m)?)?;
    m.add_function(pyo3::wrap_pyfunction!(_resolver_hold_lock, m)?)?;
    Ok(())
}
