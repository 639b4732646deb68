//! `add_reader` / `add_writer`: registration of watched fds with the reactor, and the
//! dispatch of readiness events to the ready queue.

use std::os::fd::RawFd;
use std::sync::atomic::Ordering;

use pyo3::exceptions::{PyKeyboardInterrupt, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyInt, PyTuple};

use super::reactor::{self, Ready, Watch, SIGNALS, WAKER};
use super::ready::Job;
use super::{os_error, LoopCore};
use crate::handle::Handle;

/// The reader and writer callbacks of one watched fd.
#[derive(Default)]
pub(super) struct IoEntry {
    pub(super) reader: Option<Py<Handle>>,
    pub(super) writer: Option<Py<Handle>>,
}

impl IoEntry {
    pub(super) fn watch(&self) -> Watch {
        Watch {
            read: self.reader.is_some(),
            write: self.writer.is_some(),
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
        let previous = this.queues.with(|q| {
            let entry = q.io.entry(fd).or_default();
            let old = entry.watch();
            let slot = if write {
                &mut entry.writer
            } else {
                &mut entry.reader
            };
            let previous = slot.replace(handle.clone_ref(slf.py()));
            let new = entry.watch();
            let res = this.registry.with(|registry| match registry.as_ref() {
                Some(registry) => reactor::update(registry, fd, old, new),
                None => Err(std::io::Error::from_raw_os_error(libc::EBADF)),
            });
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
                return Err((e, mine));
            }
            Ok(previous)
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
        let removed = this.queues.with(|q| {
            let entry = q.io.get_mut(&fd)?;
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
            this.registry.with(|registry| {
                if let Some(registry) = registry.as_ref() {
                    let _ = reactor::update(registry, fd, old, new);
                }
            });
            removed
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
                    if ev.token == WAKER {
                        continue;
                    }
                    if ev.token == SIGNALS {
                        q.ready.push_back(Job::ReadSignals);
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
            });
        });
        drop(garbage);
        Ok(())
    }
}
