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
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyInt, PyTuple};

use pyo3::exceptions::PyRuntimeError;

use super::ready::Job;
use super::{os_error, LoopCore};
use crate::handle::{Handle, SlottedRef};
use crate::net::datagram::{DatagramCore, DatagramJob};
use crate::net::listener::Listener;
use crate::net::stream::{StreamCore, StreamEvent, StreamJob};
use crate::reactor::{Interest, Ready, SIGNALS};

/// What `add_reader`/`add_writer` (and a `sock_*` wait) may do on an fd with an owner
/// other than a watch.
enum Taken {
    /// A live transport uses it (the Python-visible transport, for the message):
    /// asyncio's `_ensure_fd_no_transport` raises.
    InUse(Py<PyAny>),
    /// A closing transport or a listener: the watch replaces it, as asyncio's reader
    /// replaces theirs.
    Replace,
}

/// Who owns a registered fd.
pub(crate) enum Owner {
    /// `add_reader`/`add_writer` callbacks.
    Watch(Watch),
    /// A stream transport (`net::stream`), for its whole life.
    Stream(StreamOwner),
    /// A server's listening socket (`net::listener`), while it is served.
    Listener(Py<Listener>),
    /// A child process's pidfd (`process`), until the child exited.
    Child(crate::process::ChildWatch),
    /// A datagram transport (`net::datagram`), for its whole life.
    Datagram(DatagramOwner),
}

/// A datagram transport's registration (as [`StreamOwner`] for a stream transport).
pub(crate) struct DatagramOwner {
    core: Py<DatagramCore>,
    transport: Py<PyAny>,
    interest: Interest,
    read_gen: u32,
}

impl DatagramOwner {
    pub(super) fn visit(&self, visit: &pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        visit.call(&self.core)?;
        visit.call(&self.transport)
    }

    pub(crate) fn new(core: Py<DatagramCore>, transport: Py<PyAny>) -> Self {
        DatagramOwner {
            core,
            transport,
            interest: Interest::default(),
            read_gen: 0,
        }
    }
}

/// A stream transport's registration: what it is polled for, mirrored here so that a
/// poll's dispatch needs no access to the transport's state.
pub(crate) struct StreamOwner {
    core: Py<StreamCore>,
    /// The Python-visible transport: kept alive while it owns the fd (see `net::stream`).
    transport: Py<PyAny>,
    interest: Interest,
    /// The transport's reader generation when reading was last switched (see
    /// `StreamEvent::Readable`).
    read_gen: u32,
}

impl StreamOwner {
    pub(super) fn visit(&self, visit: &pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        visit.call(&self.core)?;
        visit.call(&self.transport)
    }

    pub(crate) fn new(core: Py<StreamCore>, transport: Py<PyAny>) -> Self {
        StreamOwner {
            core,
            transport,
            interest: Interest::default(),
            read_gen: 0,
        }
    }
}

impl Owner {
    /// The native object behind a transport or listener owner.
    fn object_ptr(&self) -> *mut pyo3::ffi::PyObject {
        match self {
            Owner::Watch(_) => std::ptr::null_mut(),
            Owner::Stream(so) => so.core.as_ptr(),
            Owner::Listener(l) => l.as_ptr(),
            Owner::Child(_) => std::ptr::null_mut(),
            Owner::Datagram(d) => d.core.as_ptr(),
        }
    }
}

/// The reader and writer callbacks of one fd, polled level-triggered as asyncio's
/// selector loop does: each runs on every iteration while its direction is ready. Never
/// registered with neither.
#[derive(Default)]
pub(crate) struct Watch {
    pub(super) reader: Option<Py<Handle>>,
    pub(super) writer: Option<Py<Handle>>,
    /// The file object (not an int) given to the `add_reader`/`add_writer` that created the
    /// watch, kept as the epoll selector's key keeps it (its `modify` keeps the key's
    /// `fileobj`): `remove_reader(sock)` once `sock` is closed (its `fileno()` is -1 then)
    /// finds the watch by identity, as asyncio's selector finds its key (`_fileobj_lookup`).
    pub(super) fileobj: Option<Py<PyAny>>,
}

impl Watch {
    pub(super) fn interest(&self) -> Interest {
        Interest {
            read: self.reader.is_some(),
            write: self.writer.is_some(),
        }
    }

    /// What the watch references, to be released once no state access is open.
    fn into_refs(self) -> impl Iterator<Item = Py<PyAny>> {
        let handles = self.reader.into_iter().chain(self.writer).map(Py::into_any);
        handles.chain(self.fileobj)
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
    /// The callback handles of a watch (none for other owners), to be cancelled or
    /// released once no state access is open.
    pub(super) fn into_handles(self) -> impl Iterator<Item = Py<Handle>> {
        let w = match self {
            Owner::Watch(w) => w,
            _ => Watch::default(),
        };
        w.reader.into_iter().chain(w.writer)
    }
}

impl LoopCore {
    pub(super) fn fd_of(fileobj: &Bound<'_, PyAny>) -> PyResult<RawFd> {
        // asyncio's selectors._fileobj_to_fd.
        let fd: i64 = if fileobj.is_instance_of::<PyInt>() {
            fileobj.extract()?
        } else {
            match fileobj.call_method0(intern!(fileobj.py(), "fileno")) {
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
        slf.get().check_closed()?;
        // asyncio's _add_reader/_add_writer check nothing about the callback.
        let fileobj = (!fd.is_instance_of::<PyInt>()).then(|| fd.clone().unbind());
        let fd = Self::fd_of(fd)?;
        Self::add_io_fd(slf, fd, fileobj, callback, args, write)
    }

    /// [`Self::add_io`] on an fd number already checked (a `sock_*` call's wait), given
    /// as `fileobj` unless it was an int.
    pub(super) fn add_io_fd(
        slf: &Bound<'_, Self>,
        fd: RawFd,
        fileobj: Option<Py<PyAny>>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        write: bool,
    ) -> PyResult<Py<Handle>> {
        let this = slf.get();
        this.check_closed()?;
        let handle = Self::new_handle(slf, callback, args, Self::context_for(slf.py(), None)?)?;
        Self::take_over_from_transport(slf, fd)?;
        // Taken by a new watch; else dropped once unlocked.
        let mut fileobj = fileobj;
        let previous = this.registry.with(|registry| {
            this.queues
                .with(|q| match (registry.as_ref(), q.io.owner_of_fd(fd)) {
                    (None, _) => Err((std::io::Error::from_raw_os_error(libc::EBADF), None, None)),
                    // The fd's owner. (Transports, next, refuse here: asyncio's
                    // _ensure_fd_no_transport raises RuntimeError unless the transport is closing.)
                    (Some(registry), Some((token, Owner::Watch(watch)))) => {
                        // The watch keeps the file object it was created with.
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
                                Err((e, mine, None))
                            }
                        }
                    }
                    // Taken over just before (see take_over_from_transport).
                    (Some(_), Some(_)) => {
                        Err((std::io::Error::from_raw_os_error(libc::EEXIST), None, None))
                    }
                    (Some(registry), None) => {
                        let mut watch = Watch {
                            fileobj: fileobj.take(),
                            ..Watch::default()
                        };
                        *watch.slot(write) = Some(handle.clone_ref(slf.py()));
                        match q
                            .io
                            .register(registry, fd, watch.interest(), Owner::Watch(watch))
                        {
                            Ok(_) => Ok(None),
                            // The owner (its handle, its file object) goes once unlocked.
                            Err((e, owner)) => Err((e.into(), None, Some(owner))),
                        }
                    }
                })
        });
        let previous = match previous {
            Ok(previous) => previous,
            Err((e, mine, owner)) => {
                drop((mine, owner));
                return Err(os_error(e));
            }
        };
        // asyncio cancels the handle it replaces.
        if let Some(p) = previous {
            p.bind(slf.py())
                .as_any()
                .call_method0(intern!(slf.py(), "cancel"))?;
        }
        Ok(handle)
    }

    pub(super) fn remove_io(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        write: bool,
    ) -> PyResult<bool> {
        if slf.get().closed.load(Ordering::Acquire) {
            return Ok(false);
        }
        let fd = match Self::fd_of(fd) {
            Ok(n) => n,
            // selectors' `_fileobj_lookup`: a file object whose `fileno()` fails now (a
            // socket closed since it was added) is still found among the registered ones.
            Err(e) if e.is_instance_of::<PyValueError>(slf.py()) => {
                match Self::fd_registered_as(slf, fd) {
                    Some(n) => n,
                    None => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        Self::remove_io_fd(slf, fd, write)
    }

    /// The fd of the watch added with the file object `fileobj` (compared by identity).
    fn fd_registered_as(slf: &Bound<'_, Self>, fileobj: &Bound<'_, PyAny>) -> Option<RawFd> {
        let ptr = fileobj.as_ptr();
        slf.get().queues.with(|q| {
            q.io.find_fd(|owner| match owner {
                Owner::Watch(w) => w.fileobj.as_ref().is_some_and(|f| f.as_ptr() == ptr),
                _ => false,
            })
        })
    }

    /// [`Self::remove_io`] on an fd number already checked (the end of a `sock_*` call's
    /// wait).
    pub(super) fn remove_io_fd(slf: &Bound<'_, Self>, fd: RawFd, write: bool) -> PyResult<bool> {
        let this = slf.get();
        if this.closed.load(Ordering::Acquire) {
            return Ok(false);
        }
        if let Some(Taken::InUse(core)) = Self::fd_taken(slf, fd) {
            return Err(Self::in_use_error(slf.py(), fd, core));
        }
        let (removed, gone) = this.registry.with(|registry| {
            this.queues.with(|q| {
                let Some((token, Owner::Watch(watch))) = q.io.owner_of_fd(fd) else {
                    return (None, None);
                };
                let removed = watch.slot(write).take();
                let interest = watch.interest();
                let mut gone = None;
                if removed.is_some() {
                    if interest.is_empty() {
                        // An empty watch: only its file object to release, once unlocked.
                        gone = q.io.deregister(registry.as_ref(), token);
                    } else if let Some(registry) = registry.as_ref() {
                        // Failing for a closed fd is harmless: epoll dropped it already.
                        let _ = q.io.reregister(registry, token, interest);
                    }
                }
                (removed, gone)
            })
        });
        drop(gone);
        match removed {
            Some(h) => {
                h.bind(slf.py())
                    .as_any()
                    .call_method0(intern!(slf.py(), "cancel"))?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Schedules the callbacks of the fds reported ready.
    pub(super) fn dispatch_io(&self, py: Python<'_>, events: &[Ready]) -> PyResult<()> {
        // Nearly always stays `None` (see `run_once`'s `surplus`).
        let mut garbage: Option<Vec<Py<PyAny>>> = None;
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
                    let watch = match owner {
                        Owner::Watch(watch) => watch,
                        Owner::Stream(so) => {
                            if ev.readable && so.interest.read {
                                q.ready.push_back(Job::Stream(StreamJob {
                                    core: so.core.clone_ref(py),
                                    event: StreamEvent::Readable(so.read_gen),
                                }));
                            }
                            if ev.writable && so.interest.write {
                                q.ready.push_back(Job::Stream(StreamJob {
                                    core: so.core.clone_ref(py),
                                    event: StreamEvent::Writable,
                                }));
                            }
                            continue;
                        }
                        Owner::Listener(l) => {
                            if ev.readable {
                                q.ready.push_back(Job::Accept(l.clone_ref(py)));
                            }
                            continue;
                        }
                        Owner::Child(_) => {
                            // The child exited: its job reaps it. One event per child.
                            if let Some(Owner::Child(c)) = q.io.deregister(Some(registry), ev.token)
                            {
                                q.ready.push_back(Job::Child(c));
                            }
                            continue;
                        }
                        Owner::Datagram(d) => {
                            if ev.readable && d.interest.read {
                                q.ready.push_back(Job::Datagram(DatagramJob {
                                    core: d.core.clone_ref(py),
                                    event: StreamEvent::Readable(d.read_gen),
                                }));
                            }
                            if ev.writable && d.interest.write {
                                q.ready.push_back(Job::Datagram(DatagramJob {
                                    core: d.core.clone_ref(py),
                                    event: StreamEvent::Writable,
                                }));
                            }
                            continue;
                        }
                    };
                    let before = watch.interest();
                    // asyncio's _process_events: a cancelled handle is removed, not run.
                    for (ready, write) in [(ev.readable, false), (ev.writable, true)] {
                        let slot = watch.slot(write);
                        match slot {
                            Some(h) if ready && h.state().is_cancelled() => garbage
                                .get_or_insert_with(Vec::new)
                                .extend(slot.take().map(Py::into_any)),
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
                        if let Some(Owner::Watch(w)) = q.io.deregister(Some(registry), ev.token) {
                            garbage.get_or_insert_with(Vec::new).extend(w.into_refs());
                        }
                    }
                }
            });
        });
        drop(garbage);
        Ok(())
    }

    /// Who else than a watch owns `fd`, if anyone.
    fn fd_taken(slf: &Bound<'_, Self>, fd: RawFd) -> Option<Taken> {
        let py = slf.py();
        slf.get().queues.with(|q| match q.io.owner_of_fd(fd) {
            Some((_, Owner::Stream(so))) => {
                if so.core.get().is_closing_now() {
                    Some(Taken::Replace)
                } else {
                    Some(Taken::InUse(so.transport.clone_ref(py)))
                }
            }
            Some((_, Owner::Datagram(d))) => {
                if d.core.get().is_closing_now() {
                    Some(Taken::Replace)
                } else {
                    Some(Taken::InUse(d.transport.clone_ref(py)))
                }
            }
            Some((_, Owner::Listener(_))) => Some(Taken::Replace),
            _ => None,
        })
    }

    /// Refuses `fd` if a live transport owns it (a pipe transport over an fd another
    /// transport uses: the reactor keeps one owner per fd).
    pub(crate) fn ensure_fd_no_transport(slf: &Bound<'_, Self>, fd: RawFd) -> PyResult<()> {
        match Self::fd_taken(slf, fd) {
            Some(Taken::InUse(core)) => Err(Self::in_use_error(slf.py(), fd, core)),
            _ => Ok(()),
        }
    }

    /// asyncio's `_ensure_fd_no_transport` error.
    fn in_use_error(py: Python<'_>, fd: RawFd, transport: Py<PyAny>) -> PyErr {
        let transport = transport
            .bind(py)
            .repr()
            .map(|r| r.to_string())
            .unwrap_or_default();
        PyRuntimeError::new_err(format!(
            "File descriptor {fd} is used by transport {transport}"
        ))
    }

    /// Before a watch takes `fd`: refuse if a live transport uses it; take it from a
    /// closing transport or a listener (whose registration then goes).
    pub(crate) fn take_over_from_transport(slf: &Bound<'_, Self>, fd: RawFd) -> PyResult<()> {
        match Self::fd_taken(slf, fd) {
            None => Ok(()),
            Some(Taken::InUse(core)) => Err(Self::in_use_error(slf.py(), fd, core)),
            Some(Taken::Replace) => {
                let this = slf.get();
                let old = this.registry.with(|registry| {
                    this.queues.with(|q| {
                        let token = q.io.token_of(fd)?;
                        q.io.deregister(registry.as_ref(), token)
                    })
                });
                if let Some(Owner::Listener(l)) = &old {
                    l.get().deactivate();
                }
                drop(old);
                Ok(())
            }
        }
    }

    /// Makes `owner` (a transport or listener) the owner of `fd`, polled for nothing until
    /// [`Self::set_owner_interest`]. A watch on the fd is replaced and its callbacks
    /// cancelled, as asyncio's transport replaces a reader added before it.
    pub(crate) fn adopt_fd(slf: &Bound<'_, Self>, fd: RawFd, owner: Owner) -> PyResult<()> {
        let this = slf.get();
        let res = this.registry.with(|registry| {
            this.queues.with(|q| {
                let Some(registry) = registry.as_ref() else {
                    return Err((
                        std::io::Error::from_raw_os_error(libc::EBADF),
                        Some(owner),
                        None,
                    ));
                };
                let old =
                    q.io.token_of(fd)
                        .and_then(|t| q.io.deregister(Some(registry), t));
                match q.io.register(registry, fd, Interest::default(), owner) {
                    Ok(_) => Ok(old),
                    Err((e, owner)) => Err((e.into(), Some(owner), old)),
                }
            })
        });
        match res {
            Ok(old) => {
                if let Some(old) = old {
                    for h in old.into_handles() {
                        h.bind(slf.py())
                            .as_any()
                            .call_method0(intern!(slf.py(), "cancel"))?;
                    }
                }
                Ok(())
            }
            Err((e, owner, old)) => {
                drop((owner, old));
                Err(os_error(e))
            }
        }
    }

    /// Polls `fd` for `interest` on behalf of its owner `who` (a transport's core or a
    /// listener); nothing happens if `who` no longer owns it. The error is epoll's, when it
    /// refuses the fd (a closed fd, or one epoll cannot poll, such as `/dev/zero`).
    pub(crate) fn set_owner_interest(
        slf: &Bound<'_, Self>,
        fd: RawFd,
        who: *mut pyo3::ffi::PyObject,
        interest: Interest,
        read_gen: u32,
    ) -> std::io::Result<()> {
        let this = slf.get();
        this.registry.with(|registry| {
            let Some(registry) = registry.as_ref() else {
                return Ok(());
            };
            this.queues.with(|q| {
                let Some((token, owner)) = q.io.owner_of_fd(fd) else {
                    return Ok(());
                };
                if owner.object_ptr() != who {
                    return Ok(());
                }
                let changed = match owner {
                    Owner::Stream(so) => {
                        so.read_gen = read_gen;
                        let changed = so.interest != interest;
                        so.interest = interest;
                        changed
                    }
                    Owner::Datagram(d) => {
                        d.read_gen = read_gen;
                        let changed = d.interest != interest;
                        d.interest = interest;
                        changed
                    }
                    _ => true,
                };
                if changed {
                    q.io.reregister(registry, token, interest)?;
                }
                Ok(())
            })
        })
    }

    /// Forgets the registration of `fd` if `who` owns it (a transport that is closed).
    pub(crate) fn release_fd(slf: &Bound<'_, Self>, fd: RawFd, who: *mut pyo3::ffi::PyObject) {
        let this = slf.get();
        let old = this.registry.with(|registry| {
            this.queues.with(|q| {
                let (token, owner) = q.io.owner_of_fd(fd)?;
                if owner.object_ptr() != who {
                    return None;
                }
                q.io.deregister(registry.as_ref(), token)
            })
        });
        drop(old);
    }

    /// Forgets the listener of `fd` (`_stop_serving`), giving it back.
    pub(crate) fn release_listener(slf: &Bound<'_, Self>, fd: RawFd) -> Option<Py<Listener>> {
        let this = slf.get();
        let old = this.registry.with(|registry| {
            this.queues.with(|q| match q.io.owner_of_fd(fd)? {
                (token, Owner::Listener(_)) => q.io.deregister(registry.as_ref(), token),
                _ => None,
            })
        });
        match old {
            Some(Owner::Listener(l)) => Some(l),
            other => {
                drop(other);
                None
            }
        }
    }

    /// Registers `fd` for `interest` on behalf of `owner` (a watched child's pidfd, which
    /// nobody else can know of, so no watch is there to take over).
    pub(crate) fn register_owner(
        slf: &Bound<'_, Self>,
        fd: RawFd,
        interest: Interest,
        owner: Owner,
    ) -> PyResult<()> {
        let this = slf.get();
        let res = this.registry.with(|registry| {
            this.queues.with(|q| match registry.as_ref() {
                None => Err((std::io::Error::from_raw_os_error(libc::EBADF), Some(owner))),
                Some(registry) => match q.io.register(registry, fd, interest, owner) {
                    Ok(_) => Ok(()),
                    Err((e, owner)) => Err((e.into(), Some(owner))),
                },
            })
        });
        res.map_err(|(e, owner)| {
            drop(owner);
            os_error(e)
        })
    }

    /// Appends a datagram transport's job to the ready queue.
    pub(crate) fn push_datagram_job(&self, job: DatagramJob) {
        self.queues.with(|q| q.ready.push_back(Job::Datagram(job)));
        self.wake_if_polling();
    }

    /// Appends a transport's job to the ready queue.
    pub(crate) fn push_stream_job(&self, job: StreamJob) {
        self.queues.with(|q| q.ready.push_back(Job::Stream(job)));
        self.wake_if_polling();
    }
}
