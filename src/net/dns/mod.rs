//! DNS: `loop.getaddrinfo()` and `loop.getnameinfo()`, with `socket.getaddrinfo()`'s and
//! `socket.getnameinfo()`'s exact results and errors.
//!
//! asyncio runs `socket.getaddrinfo` in the default executor (a Python thread per lookup
//! until the pool is full, the GIL taken to start and to finish). Here:
//!
//! * **Fast path**: an IP literal (or no host) with a numeric port (or none) needs no name
//!   service, so the C library's `getaddrinfo` is called at once on the loop thread with
//!   the caller's hints, which gives exactly `socket.getaddrinfo`'s list (type 0 gives the
//!   three SOCK_STREAM/DGRAM/RAW entries, AI_V4MAPPED maps, a family mismatch fails with
//!   the same `gaierror`). Likewise `getnameinfo` with `NI_NUMERICHOST | NI_NUMERICSERV`.
//! * **Resolver pool**: anything else is resolved by up to [`MAX_THREADS`] native threads
//!   shared by the process (started on demand, ending after [`IDLE_EXIT`] without work),
//!   which call the C library without the GIL. The outcome (plain Rust data) is handed to
//!   the loop through `call_soon_threadsafe`, and turned into Python objects there.
//! * **asyncio's path** whenever something observable could differ: when
//!   `socket.getaddrinfo` / `socket.getnameinfo` is not the function it was when ferroloop
//!   was imported (tests and users patch it), when the loop is in debug mode
//!   (`getaddrinfo` then runs asyncio's `_getaddrinfo_debug`, which logs the lookup and
//!   its duration), and for argument types the socket module converts in ways not
//!   mirrored here (its errors, e.g. "Int or String expected", are then its own): the
//!   function runs in the default executor, as asyncio does.
//!
//! The arguments are converted as the socket module converts them (`str` hosts through
//! the `idna` codec, C strings cut at a NUL, an `int` port formatted in decimal, so that
//! 70000 wraps as the C library makes it wrap), and the `socket.getaddrinfo` /
//! `socket.getnameinfo` audit events are raised on the loop thread.

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyInt, PyList, PyString, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use crate::event_loop::LoopCore;
use crate::pyo::errno::os_error_from_errno;
use crate::sys::{self, GaiError, SockAddr};

mod pool;
mod request;

pub(crate) use pool::loop_closed;
use pool::{submit, Job};
use request::{run, Failure, NameInfoRequest, Outcome, Request};

/// The outcome of a lookup in the pool, and the future it resolves; called on the loop
/// thread (through `call_soon_threadsafe`) once the outcome is in. Also the future's
/// done-callback (called with the future), which marks a cancelled lookup abandoned so
/// that a thread that has not started it skips it.
#[pyclass(module = "ferroloop._ferroloop", frozen)]
pub struct Pending {
    fut: Py<PyAny>,
    outcome: Mutex<Option<Outcome>>,
    abandoned: AtomicBool,
}

#[pymethods]
impl Pending {
    #[pyo3(signature = (done_fut=None))]
    fn __call__(&self, py: Python<'_>, done_fut: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        if let Some(f) = done_fut {
            if f.call_method0(intern!(py, "cancelled"))?.is_truthy()? {
                self.abandoned.store(true, Ordering::Release);
            }
            return Ok(());
        }
        let outcome = self
            .outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let fut = self.fut.bind(py);
        // Cancelled meanwhile: the outcome is dropped, as asyncio's wrap_future does.
        let Some(outcome) = outcome else {
            return Ok(());
        };
        if fut.call_method0(intern!(py, "done"))?.is_truthy()? {
            return Ok(());
        }
        settle(fut, to_python(py, outcome))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.fut)
    }
}

fn settle(fut: &Bound<'_, PyAny>, res: PyResult<Bound<'_, PyAny>>) -> PyResult<()> {
    let py = fut.py();
    match res {
        Ok(v) => fut.call_method1(intern!(py, "set_result"), (v,))?,
        Err(e) => fut.call_method1(intern!(py, "set_exception"), (e.into_value(py),))?,
    };
    Ok(())
}

// ----- Python objects ---------------------------------------------------------------------

/// What this module needs from the socket module, taken when ferroloop is imported: the
/// original `getaddrinfo` / `getnameinfo` (a patched one is called instead of the native
/// path) and the result types.
struct SocketNames {
    socket: Py<PyAny>,
    getaddrinfo: Py<PyAny>,
    getnameinfo: Py<PyAny>,
    gaierror: Py<PyAny>,
    address_family: Py<PyAny>,
    socket_kind: Py<PyAny>,
    audit: Py<PyAny>,
    fsdecode: Py<PyAny>,
}

static SOCKET_NAMES: PyOnceLock<SocketNames> = PyOnceLock::new();

fn names(py: Python<'_>) -> PyResult<&SocketNames> {
    SOCKET_NAMES.get_or_try_init(py, || {
        let socket = py.import("socket")?;
        Ok(SocketNames {
            getaddrinfo: socket.getattr(intern!(py, "getaddrinfo"))?.unbind(),
            getnameinfo: socket.getattr(intern!(py, "getnameinfo"))?.unbind(),
            gaierror: socket.getattr(intern!(py, "gaierror"))?.unbind(),
            address_family: socket.getattr(intern!(py, "AddressFamily"))?.unbind(),
            socket_kind: socket.getattr(intern!(py, "SocketKind"))?.unbind(),
            audit: py.import("sys")?.getattr(intern!(py, "audit"))?.unbind(),
            fsdecode: py.import("os")?.getattr(intern!(py, "fsdecode"))?.unbind(),
            socket: socket.into_any().unbind(),
        })
    })
}

/// The error `socket.getaddrinfo` raises for `failure`.
fn failure_error(py: Python<'_>, failure: Failure) -> PyResult<PyErr> {
    Ok(match failure {
        Failure::Gai(GaiError { code, errno }) if code == libc::EAI_SYSTEM => {
            os_error_from_errno(errno)
        }
        Failure::Gai(GaiError { code, .. }) => {
            let exc = names(py)?
                .gaierror
                .bind(py)
                .call1((code, sys::gai_strerror(code)))?;
            PyErr::from_value(exc)
        }
        Failure::Message(m) => PyOSError::new_err(m),
    })
}

/// socket.py's `_intenum_converter`: the enum member for `value`, or the plain int.
fn intenum<'py>(cls: &Bound<'py, PyAny>, value: i32) -> PyResult<Bound<'py, PyAny>> {
    let py = cls.py();
    let members = cls.getattr(intern!(py, "_value2member_map_"))?;
    if let Ok(map) = members.cast::<PyDict>() {
        if let Some(m) = map.get_item(value)? {
            return Ok(m);
        }
    }
    match cls.call1((value,)) {
        Ok(m) => Ok(m),
        Err(e) if e.is_instance_of::<PyValueError>(py) => Ok(value.into_pyobject(py)?.into_any()),
        Err(e) => Err(e),
    }
}

/// The socket module's `makesockaddr` for an address `getaddrinfo` returned.
fn sockaddr_tuple<'py>(py: Python<'py>, addr: &SockAddr) -> PyResult<Bound<'py, PyAny>> {
    if let Some(a) = addr.v4() {
        return Ok((a.ip().to_string(), a.port()).into_pyobject(py)?.into_any());
    }
    if let Some(a) = addr.v6() {
        let ip = sys::inet_ntop6(&a.ip().octets());
        // `SockAddr::v6` gives sin6_flowinfo as stored (network order).
        let flowinfo = u32::from_be(a.flowinfo());
        return Ok((ip, a.port(), flowinfo, a.scope_id())
            .into_pyobject(py)?
            .into_any());
    }
    let data = PyBytes::new(py, &addr.sa_data());
    Ok((addr.family(), data).into_pyobject(py)?.into_any())
}

fn to_python(py: Python<'_>, outcome: Outcome) -> PyResult<Bound<'_, PyAny>> {
    match outcome {
        Outcome::AddrInfo(Ok(entries)) => {
            let n = names(py)?;
            let (af, kind) = (n.address_family.bind(py), n.socket_kind.bind(py));
            let list = PyList::empty(py);
            for e in entries {
                let canon = match &e.canonname {
                    Some(c) => PyString::from_bytes(py, c)?,
                    None => PyString::new(py, ""),
                };
                let item = PyTuple::new(
                    py,
                    [
                        intenum(af, e.family)?,
                        intenum(kind, e.socktype)?,
                        e.protocol.into_pyobject(py)?.into_any(),
                        canon.into_any(),
                        sockaddr_tuple(py, &e.addr)?,
                    ],
                )?;
                list.append(item)?;
            }
            Ok(list.into_any())
        }
        Outcome::NameInfo(Ok((host, serv))) => {
            let host = match std::str::from_utf8(&host) {
                Ok(s) => PyString::new(py, s).into_any(),
                Err(_) => names(py)?
                    .fsdecode
                    .bind(py)
                    .call1((PyBytes::new(py, &host),))?,
            };
            let serv = PyString::from_bytes(py, &serv)?;
            Ok(PyTuple::new(py, [host, serv.into_any()])?.into_any())
        }
        Outcome::AddrInfo(Err(f)) | Outcome::NameInfo(Err(f)) => Err(failure_error(py, f)?),
    }
}

// ----- argument conversion ------------------------------------------------------------

/// A C string as the socket module passes it: cut at the first NUL.
fn c_string(bytes: &[u8]) -> CString {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    CString::new(&bytes[..end]).expect("cut at the first NUL")
}

/// An `int` (or int subclass, such as `socket.AF_INET`) that fits a C int, as the socket
/// module's `i` argument format takes it; `None` for anything else.
fn c_int(o: &Bound<'_, PyAny>) -> Option<i32> {
    o.cast::<PyInt>().ok()?.extract().ok()
}

/// The host as `socket.getaddrinfo` passes it to the C library, whether it is an IP
/// literal; `Ok(None)` for a type the socket module would reject or convert otherwise.
#[allow(clippy::type_complexity)]
fn host_arg(host: &Bound<'_, PyAny>) -> PyResult<Option<(Option<CString>, bool)>> {
    if host.is_none() {
        return Ok(Some((None, true)));
    }
    let bytes: Vec<u8> = if host.is_exact_instance_of::<PyString>() {
        let s = host.cast::<PyString>()?.to_cow()?;
        if is_ip_literal(s.as_bytes()) {
            // The idna codec leaves an ASCII literal as it is.
            s.as_bytes().to_vec()
        } else {
            host.call_method1(intern!(host.py(), "encode"), ("idna",))?
                .cast_into::<PyBytes>()?
                .as_bytes()
                .to_vec()
        }
    } else if host.is_exact_instance_of::<PyBytes>() {
        host.cast::<PyBytes>()?.as_bytes().to_vec()
    } else {
        return Ok(None);
    };
    let c = c_string(&bytes);
    let literal = is_ip_literal(c.as_bytes());
    Ok(Some((Some(c), literal)))
}

/// Whether `host` is an IPv4 dotted quad or an IPv6 address (no scope): the C library
/// resolves those without a name service.
fn is_ip_literal(host: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(host) else {
        return false;
    };
    s.parse::<std::net::Ipv4Addr>().is_ok() || s.parse::<std::net::Ipv6Addr>().is_ok()
}

/// The port as `socket.getaddrinfo` passes it, whether it is numeric (no service lookup);
/// `None` for a type or value the socket module converts in ways not mirrored here.
fn port_arg(port: &Bound<'_, PyAny>) -> Option<(Option<CString>, bool)> {
    let bytes: Vec<u8> = if port.is_none() {
        return Some((None, true));
    } else if port.is_exact_instance_of::<PyInt>() {
        // Formatted in decimal by the socket module (a C long on 3.11, any int on 3.13:
        // both agree on this range).
        let v: i32 = port.extract().ok()?;
        v.to_string().into_bytes()
    } else if port.is_exact_instance_of::<PyString>() {
        port.cast::<PyString>()
            .ok()?
            .to_str()
            .ok()?
            .as_bytes()
            .to_vec()
    } else if port.is_exact_instance_of::<PyBytes>() {
        port.cast::<PyBytes>().ok()?.as_bytes().to_vec()
    } else {
        return None;
    };
    let c = c_string(&bytes);
    let numeric = !c.as_bytes().is_empty() && c.as_bytes().iter().all(u8::is_ascii_digit);
    Some((Some(c), numeric))
}

// ----- the loop's methods -------------------------------------------------------------

/// asyncio's `run_in_executor` checks, which its lookups go through: the loop is open and
/// its default executor not shut down.
fn check_executor(lp: &Bound<'_, LoopCore>) -> PyResult<()> {
    lp.call_method0(intern!(lp.py(), "_check_closed"))?;
    if lp.get().executor_shut_down() {
        return Err(PyRuntimeError::new_err("Executor shutdown has been called"));
    }
    Ok(())
}

/// `loop.run_in_executor(None, func, *args)`: asyncio's way.
fn in_executor<'py>(
    lp: &Bound<'py, LoopCore>,
    func: Bound<'py, PyAny>,
    args: &[&Bound<'py, PyAny>],
) -> PyResult<Py<PyAny>> {
    let py = lp.py();
    let mut all = vec![py.None().into_bound(py), func];
    all.extend(args.iter().map(|a| (*a).clone()));
    Ok(lp
        .call_method1(intern!(py, "run_in_executor"), PyTuple::new(py, all)?)?
        .unbind())
}

fn new_future<'py>(lp: &Bound<'py, LoopCore>) -> PyResult<Bound<'py, PyAny>> {
    match crate::future::new_for_loop(lp.as_any()) {
        Some(f) => f,
        None => lp.call_method0(intern!(lp.py(), "create_future")),
    }
}

/// Resolves `req` at once on this thread (it needs no name service): a done future.
fn resolve_now<'py>(lp: &Bound<'py, LoopCore>, req: &Request) -> PyResult<Py<PyAny>> {
    let py = lp.py();
    let value = to_python(py, run(req))?;
    let fut = new_future(lp)?;
    fut.call_method1(intern!(py, "set_result"), (value,))?;
    Ok(fut.unbind())
}

/// Resolves `req` in the pool: a future resolved on the loop thread when it is done.
fn resolve_in_pool(lp: &Bound<'_, LoopCore>, req: Request) -> PyResult<Py<PyAny>> {
    let py = lp.py();
    let fut = new_future(lp)?;
    let pending = Py::new(
        py,
        Pending {
            fut: fut.clone().unbind(),
            outcome: Mutex::new(None),
            abandoned: AtomicBool::new(false),
        },
    )?;
    fut.call_method1(intern!(py, "add_done_callback"), (pending.clone_ref(py),))?;
    let job = Job {
        req,
        pending,
        loop_: lp.clone().unbind(),
    };
    if let Err(job) = submit(job) {
        // No thread could be started: resolve here rather than never.
        let outcome = py.detach(|| run(&job.req));
        settle(&fut, to_python(py, outcome))?;
    }
    Ok(fut.unbind())
}

/// `loop.getaddrinfo(host, port, family=, type=, proto=, flags=)`'s work: a future for
/// `socket.getaddrinfo(host, port, family, type, proto, flags)`'s list.
pub fn getaddrinfo<'py>(
    lp: &Bound<'py, LoopCore>,
    host: &Bound<'py, PyAny>,
    port: &Bound<'py, PyAny>,
    family: &Bound<'py, PyAny>,
    type_: &Bound<'py, PyAny>,
    proto: &Bound<'py, PyAny>,
    flags: &Bound<'py, PyAny>,
) -> PyResult<Py<PyAny>> {
    let py = lp.py();
    let n = names(py)?;
    let args = [host, port, family, type_, proto, flags];
    // asyncio's run_in_executor checks first that the loop is open (and its executor).
    check_executor(lp)?;
    // asyncio reads `self._debug`, then `socket.getaddrinfo` at call time.
    if crate::event_loop::own_debug_flag(lp.as_any()) == Some(true) {
        let debug = lp.getattr(intern!(py, "_getaddrinfo_debug"))?;
        return in_executor(lp, debug, &args);
    }
    let current = n.socket.bind(py).getattr(intern!(py, "getaddrinfo"))?;
    if !current.is(n.getaddrinfo.bind(py)) {
        return in_executor(lp, current, &args);
    }
    let hints = (c_int(family), c_int(type_), c_int(proto), c_int(flags));
    let (Some(f), Some(t), Some(p), Some(fl)) = hints else {
        return in_executor(lp, current, &args);
    };
    let Some((host_c, literal)) = host_arg(host)? else {
        return in_executor(lp, current, &args);
    };
    let Some((port_c, numeric)) = port_arg(port) else {
        return in_executor(lp, current, &args);
    };
    n.audit
        .bind(py)
        .call1(("socket.getaddrinfo", host, port, f, t, p))?;
    let req = Request::AddrInfo {
        host: host_c,
        port: port_c,
        hints: (f, t, p, fl),
    };
    // AI_CANONNAME may look the literal up (its canonical name): not on the loop thread.
    if literal && numeric && fl & libc::AI_CANONNAME == 0 {
        return resolve_now(lp, &req);
    }
    resolve_in_pool(lp, req)
}

/// An `int` in `0..=u32::MAX`, for the socket module's `I` format (which would wrap
/// larger ones silently: those are left to it).
fn c_uint(o: &Bound<'_, PyAny>) -> Option<u32> {
    if !o.is_exact_instance_of::<PyInt>() {
        return None;
    }
    o.extract().ok()
}

/// The request for `socket.getnameinfo(sockaddr, flags)`, if its arguments are of the
/// usual types and values (else the socket module checks and reports them).
fn name_info_request(
    sockaddr: &Bound<'_, PyAny>,
    flags: &Bound<'_, PyAny>,
) -> Option<NameInfoRequest> {
    let flags = c_int(flags)?;
    if !sockaddr.is_exact_instance_of::<PyTuple>() {
        return None;
    }
    let t = sockaddr.cast::<PyTuple>().ok()?;
    let len = t.len();
    if !(2..=4).contains(&len) {
        return None;
    }
    let host = t.get_item(0).ok()?;
    if !host.is_exact_instance_of::<PyString>() {
        return None;
    }
    let host = CString::new(host.cast::<PyString>().ok()?.to_str().ok()?).ok()?;
    let port = t.get_item(1).ok()?;
    if !port.is_exact_instance_of::<PyInt>() {
        return None;
    }
    let port: i32 = port.extract().ok()?;
    let flowinfo = match t.get_item(2) {
        Ok(v) => c_uint(&v)?,
        Err(_) => 0,
    };
    let scope_id = match t.get_item(3) {
        Ok(v) => c_uint(&v)?,
        Err(_) => 0,
    };
    if flowinfo > 0xfffff {
        return None;
    }
    Some(NameInfoRequest {
        host,
        port,
        flowinfo,
        scope_id,
        tuple_len: len,
        flags,
    })
}

/// `loop.getnameinfo(sockaddr, flags)`'s work: a future for
/// `socket.getnameinfo(sockaddr, flags)`.
pub fn getnameinfo<'py>(
    lp: &Bound<'py, LoopCore>,
    sockaddr: &Bound<'py, PyAny>,
    flags: &Bound<'py, PyAny>,
) -> PyResult<Py<PyAny>> {
    let py = lp.py();
    let n = names(py)?;
    check_executor(lp)?;
    let current = n.socket.bind(py).getattr(intern!(py, "getnameinfo"))?;
    if !current.is(n.getnameinfo.bind(py)) {
        return in_executor(lp, current, &[sockaddr, flags]);
    }
    let Some(req) = name_info_request(sockaddr, flags) else {
        return in_executor(lp, current, &[sockaddr, flags]);
    };
    n.audit.bind(py).call1(("socket.getnameinfo", sockaddr))?;
    let numeric = libc::NI_NUMERICHOST | libc::NI_NUMERICSERV;
    let now = req.flags & numeric == numeric;
    let req = Request::NameInfo(req);
    if now {
        return resolve_now(lp, &req);
    }
    resolve_in_pool(lp, req)
}

/// Registers the module's functions and takes the socket module's originals (before a
/// test or user can patch them).
pub fn register(m: &Bound<'_, pyo3::types::PyModule>) -> PyResult<()> {
    names(m.py())?;
    pool::register(m)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_c_strings() {
        assert!(is_ip_literal(b"127.0.0.1"));
        assert!(is_ip_literal(b"::ffff:1.2.3.4"));
        assert!(!is_ip_literal(b"127.1"));
        assert!(!is_ip_literal(b"fe80::1%lo"));
        assert!(!is_ip_literal(b"localhost"));
        assert_eq!(c_string(b"ab\0cd").as_bytes(), b"ab");
    }
}
