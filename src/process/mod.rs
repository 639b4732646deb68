//! Child processes: watching a child's exit natively, without a thread per child.
//!
//! `subprocess_exec`/`subprocess_shell` spawn through asyncio's `_UnixSubprocessTransport`
//! (`subprocess.Popen`, so every Popen argument asyncio passes through works); the loop
//! then watches the child here (`LoopCore._watch_child`, called by the Python layer's
//! `_make_subprocess_transport`):
//!
//! * a pidfd (`pidfd_open`, Linux 5.3+) is registered with the reactor as an
//!   [`Owner::Child`](crate::event_loop::Owner) polled for readability, which it becomes
//!   when the child exits;
//! * the poll that reports it queues a [`ChildWatch`] job among the I/O callbacks, where
//!   asyncio's `PidfdChildWatcher` queues its reader; the job reaps the child
//!   (`waitpid(pid, WNOHANG)`), closes the pidfd and calls the watcher callback
//!   (`loop._child_watcher_callback(pid, returncode, transport)`, asyncio's own for the
//!   running Python version), so `transport._process_exited(returncode)` follows in the
//!   same order as on asyncio with a pidfd watcher.
//!
//! No zombie, no leaked fd: a [`ChildWatch`] that is dropped before it reaped its child
//! (the loop closed, or was collected, with the child still running, or its job was
//! dropped unrun) hands the pid and its pidfd to one shared reaper thread ([`reaper`]),
//! which waits for all such children at once with `poll(2)` on their pidfds, reaps them
//! and closes the fds, and exits when none is left. Why a thread and not the next loop:
//! nothing guarantees another loop ever runs, and a child outliving its loop must still be
//! reaped (asyncio's default watcher on 3.11/3.12, `ThreadedChildWatcher`, keeps reaping
//! after the loop is closed as well, with a thread per child).

mod reaper;

use std::os::fd::{AsRawFd, OwnedFd};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::event_loop::{LoopCore, Owner};
use crate::pyo::errno::os_error;
use crate::reactor::Interest;

/// A watched child: its pid, its pidfd while not reaped, and the callback to call with
/// `(pid, returncode, *args)` once it exited.
pub(crate) struct ChildWatch {
    pid: libc::pid_t,
    pidfd: Option<OwnedFd>,
    callback: Py<PyAny>,
    args: Py<PyTuple>,
}

impl ChildWatch {
    pub(crate) fn visit(&self, visit: &pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        visit.call(&self.callback)?;
        visit.call(&self.args)
    }
}

impl Drop for ChildWatch {
    fn drop(&mut self) {
        // Not reaped (the loop went away first): the shared reaper takes over.
        if let Some(fd) = self.pidfd.take() {
            reaper::hand_off(self.pid, fd);
        }
    }
}

/// `loop._watch_child(pid, callback, *args)`: calls `callback(pid, returncode, *args)` from
/// the loop once child `pid` exited. Raises `OSError` when pidfds are not available (the
/// Python layer then falls back to asyncio's thread watcher).
pub(crate) fn watch_child(
    slf: &Bound<'_, LoopCore>,
    pid: libc::pid_t,
    callback: Bound<'_, PyAny>,
    args: Bound<'_, PyTuple>,
) -> PyResult<()> {
    slf.get().check_open()?;
    let pidfd = crate::sys::pidfd_open(pid).map_err(os_error)?;
    let fd = pidfd.as_raw_fd();
    let watch = ChildWatch {
        pid,
        pidfd: Some(pidfd),
        callback: callback.unbind(),
        args: args.unbind(),
    };
    LoopCore::register_owner(
        slf,
        fd,
        Interest {
            read: true,
            write: false,
        },
        Owner::Child(watch),
    )
}

/// asyncio's warning (`PidfdChildWatcher._do_wait`) for a child reaped by someone else.
const ALREADY_REAPED: &str =
    "child process pid %d exit status already read:  will report returncode 255";

/// The job of a child whose pidfd was reported readable: reap it, close the pidfd, call the
/// callback (asyncio's `PidfdChildWatcher._do_wait`).
pub(crate) fn run_job(slf: &Bound<'_, LoopCore>, mut watch: ChildWatch) -> PyResult<()> {
    let py = slf.py();
    let returncode = match crate::sys::waitpid_nohang(watch.pid) {
        Ok(Some(status)) => crate::sys::waitstatus_to_exitcode(status),
        Ok(None) => {
            // Readable but not exited cannot happen; watch on rather than block.
            let Some(fd) = watch.pidfd.as_ref().map(|f| f.as_raw_fd()) else {
                return Ok(());
            };
            let interest = Interest {
                read: true,
                write: false,
            };
            return LoopCore::register_owner(slf, fd, interest, Owner::Child(watch));
        }
        Err(_) => {
            // ECHILD: reaped elsewhere (Popen.poll(), a user's waitpid), as asyncio says.
            // A failing logger must not keep the transport from hearing of the exit.
            let logged = py
                .import("asyncio.unix_events")
                .and_then(|m| m.getattr(intern!(py, "logger")))
                .and_then(|l| l.call_method1(intern!(py, "warning"), (ALREADY_REAPED, watch.pid)));
            if let Err(e) = logged {
                e.write_unraisable(py, None);
            }
            255
        }
    };
    drop(watch.pidfd.take());
    let mut args: Vec<Bound<'_, PyAny>> = vec![
        watch.pid.into_pyobject(py)?.into_any(),
        returncode.into_pyobject(py)?.into_any(),
    ];
    args.extend(watch.args.bind(py).iter());
    let args = PyTuple::new(py, args)?;
    let callback = watch.callback.bind(py).clone();
    if let Err(err) = callback.call1(&args) {
        return LoopCore::report_call_error(slf, err, &callback, &args);
    }
    Ok(())
}
