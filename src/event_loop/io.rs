//! `add_reader` / `add_writer` and the owners of registered fds: registration with the
//! reactor, and the dispatch of readiness events to the ready queue.
//!
//! The reactor keeps one owner per fd (see `reactor::registrations`), and `run_once`
//! dispatches over the closed enum [`Owner`]. Next to come, each with its own variant: the
//! stream transport, the listener, the datagram endpoint and the child process. (The
//! socket wait of a `sock_*` call is a reader or writer of the fd's [`Watch`], as in
//! asyncio: see `sock.rs`.) For those, `add_reader`/`add_writer` on their fd must
//! raise `RuntimeError("File descriptor ... is used by transport ...")`, as asyncio's
//! `_ensure_fd_no_transport` does, where `add_io` matches on the owner.

use std::os::fd::RawFd;
use std::sync::atomic::Ordering;

use pyo3::exceptions::{PyKeyboardInterrupt, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyInt, PyTuple};

use super::ready::Job;
use super::{os_error, LoopCore};
use crate::handle::Handle;
use crate::reactor::{Interest, Ready, SIGNALS};

/// Who owns a registered fd.
pub(super) enum Owner {
    /// `add_reader`/`add_writer` callbacks.
    Watch(Watch),
}

/// The reader and writer callbacks of one fd, polled level-triggered as asyncio's
/// selector loop does: each runs on every iteration while its direction is ready. Never
/// registered with neither.
#[derive(Default)]
pub(super) struct Watch {
    pub(super) reader: Option<Py<Handle>>,
    pub(super) writer: Option<Py<Handle>>,
}

impl Watch {
    pub(super) fn interest(&self) -> Interest {
        Interest {
            read: self.reader.is_some(),
            write: self.writer.is_some(),
        }
    }

    /// The reader's (`write == false`) or the writer's slot.
    pub(super) fn slot(&mut self, write: bool) -> &mut Option<Py<Handle>> {
        if write {
            &mut self.writer
        } else {
            &mut self.reader
        }
    }
}

impl Owner {
    /// The Python objects the owner holds, to be released once no state access is open.
    pub(super) fn into_handles(self) -> impl Iterator<Item = Py<Handle>> {
        match self {
            Owner::Watch(w) => w.reader.into_iter().chain(w.writer),
        }
    }
}

impl LoopCore {
    pub(super) fn fd_of(fileobj: &Bound<'_, PyAny>) -> PyResult<RawFd> {
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

    pub(super) fn add_io(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        write: bool,
    ) -> PyResult<Py<Handle>> {
        let this = slf.get();
        this.check_closed()?;
        // asyncio's _add_reader/_add_writer check nothing about the callback.
        let fd = Self::fd_of(fd)?;
        let handle = Self::new_handle(slf, callback, args, Self::context_for(slf.py(), None)?)?;
        let previous = this.registry.with(|registry| {
            this.queues
                .with(|q| match (registry.as_ref(), q.io.owner_of_fd(fd)) {
                    (None, _) => Err((std::io::Error::from_raw_os_error(libc::EBADF), None)),
                    // The fd's owner. (Transports, next, refuse here: asyncio's
                    // _ensure_fd_no_transport raises RuntimeError unless the transport is closing.)
                    (Some(registry), Some((token, Owner::Watch(watch)))) => {
                        let previous = watch.slot(write).replace(handle.clone_ref(slf.py()));
                        let interest = watch.interest();
                        // Also notices an fd number that was closed and reused meanwhile.
                        match q.io.reregister(registry, token, interest) {
                            Ok(()) => Ok(previous),
                            Err(e) => {
                                // Nothing changed: undo, and drop the handle once unlocked.
                                let mut mine = previous;
                                if let Some((_, Owner::Watch(watch))) = q.io.owner_of_fd(fd) {
                                    std::mem::swap(watch.slot(write), &mut mine);
                                }
                                Err((e, mine))
                            }
                        }
                    }
                    (Some(registry), None) => {
                        let mut watch = Watch::default();
                        *watch.slot(write) = Some(handle.clone_ref(slf.py()));
                        match q
                            .io
                            .register(registry, fd, watch.interest(), Owner::Watch(watch))
                        {
                            Ok(_) => Ok(None),
                            Err((e, owner)) => Err((e.into(), owner.into_handles().next())),
                        }
                    }
                })
        });
        let previous = match previous {
            Ok(previous) => previous,
            Err((e, mine)) => {
                drop(mine);
                return Err(os_error(e));
            }
        };
        // asyncio cancels the handle it replaces.
        if let Some(p) = previous {
            p.bind(slf.py()).call_method0("cancel")?;
        }
        Ok(handle)
    }

    pub(super) fn remove_io(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        write: bool,
    ) -> PyResult<bool> {
        let this = slf.get();
        if this.closed.load(Ordering::Acquire) {
            return Ok(false);
        }
        let fd = Self::fd_of(fd)?;
        let removed = this.registry.with(|registry| {
            this.queues.with(|q| {
                let (token, Owner::Watch(watch)) = q.io.owner_of_fd(fd)?;
                let removed = watch.slot(write).take();
                let interest = watch.interest();
                if removed.is_some() {
                    if interest.is_empty() {
                        // An empty watch: nothing to release.
                        q.io.deregister(registry.as_ref(), token);
                    } else if let Some(registry) = registry.as_ref() {
                        // Failing for a closed fd is harmless: epoll dropped it already.
                        let _ = q.io.reregister(registry, token, interest);
                    }
                }
                removed
            })
        });
        match removed {
            Some(h) => {
                h.bind(slf.py()).call_method0("cancel")?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Schedules the callbacks of the fds reported ready.
    pub(super) fn dispatch_io(&self, py: Python<'_>, events: &[Ready]) -> PyResult<()> {
        let mut garbage: Vec<Py<Handle>> = Vec::new();
        self.registry.with(|registry| {
            let Some(registry) = registry.as_ref() else {
                return;
            };
            self.queues.with(|q| {
                for ev in events {
                    if ev.token == SIGNALS {
                        q.ready.push_back(Job::ReadSignals);
                        continue;
                    }
                    // None for the waker's token, and for a stale event: its registration
                    // is gone, even if the fd number has a new one.
                    let Some(owner) = q.io.owner_mut(ev.token) else {
                        continue;
                    };
                    let Owner::Watch(watch) = owner;
                    let before = watch.interest();
                    // asyncio's _process_events: a cancelled handle is removed, not run.
                    for (ready, write) in [(ev.readable, false), (ev.writable, true)] {
                        let slot = watch.slot(write);
                        match slot {
                            Some(h) if ready && h.get().is_cancelled() => {
                                garbage.extend(slot.take())
                            }
                            Some(h) if ready => q.ready.push_back(Job::Handle(h.clone_ref(py))),
                            _ => {}
                        }
                    }
                    let after = watch.interest();
                    let forget = if after.is_empty() {
                        true
                    } else if after != before {
                        // EBADF: the fd was closed behind the loop's back; forget it, as the
                        // selector would on its next select().
                        q.io.reregister(registry, ev.token, after)
                            .is_err_and(|e| e.raw_os_error() == Some(libc::EBADF))
                    } else {
                        false
                    };
                    if forget {
                        if let Some(owner) = q.io.deregister(Some(registry), ev.token) {
                            garbage.extend(owner.into_handles());
                        }
                    }
                }
            });
        });
        drop(garbage);
        Ok(())
    }
}
