//! The resolver pool: up to [`MAX_THREADS`] native threads shared by the process, started on
//! demand and ending after [`IDLE_EXIT`] without work, which run lookups without the GIL
//! and hand each outcome to its loop through `call_soon_threadsafe`; and the `os.fork()`
//! hooks that keep a forked child from inheriting a locked pool.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
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
}

static POOL: Mutex<PoolState> = Mutex::new(PoolState {
    queue: VecDeque::new(),
    threads: 0,
    idle: 0,
    pid: 0,
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
        std::mem::forget(std::mem::take(&mut st.queue));
        st.threads = 0;
        st.idle = 0;
        st.pid = pid;
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
        Ok(_) => {
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
        st.idle += 1;
        let (guard, waited) = WORK
            .wait_timeout(st, IDLE_EXIT)
            .unwrap_or_else(|e| e.into_inner());
        st = guard;
        st.idle -= 1;
        if waited.timed_out() && st.queue.is_empty() {
            st.threads -= 1;
            return;
        }
    }
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
            let _ = LoopCore::call_soon_threadsafe(
                lp,
                pending.bind(py).clone().into_any(),
                PyTuple::empty(py),
                None,
            );
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
            std::mem::forget(std::mem::take(&mut st.queue));
            st.threads = 0;
            st.idle = 0;
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
