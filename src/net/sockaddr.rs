//! Socket addresses as Python sees them (the `socket` module's `makesockaddr`), for the
//! addresses whose conversion is plain; the others are left to the socket module.

use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::sys::SockAddr;

/// `addr` as the socket module would return it, or `None` where its formatting is not
/// plain (a scoped or IPv4-compatible IPv6 address, a named Unix address: let the socket
/// module do those).
pub(crate) fn to_python<'py>(
    py: Python<'py>,
    addr: &SockAddr,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    if let Some(a) = addr.v4() {
        return Ok(Some(
            (a.ip().to_string(), a.port()).into_pyobject(py)?.into_any(),
        ));
    }
    if let Some(a) = addr.v6() {
        // getnameinfo() adds the interface to a scoped address, and prints the deprecated
        // IPv4-compatible ones its own way.
        if a.scope_id() == 0 && a.ip().segments()[..6] != [0; 6] {
            return Ok(Some(
                (a.ip().to_string(), a.port(), a.flowinfo(), a.scope_id())
                    .into_pyobject(py)?
                    .into_any(),
            ));
        }
        return Ok(None);
    }
    // An unnamed Unix socket (a client's end, usually): the socket module gives ''.
    if addr.family() == libc::AF_UNIX
        && addr.len as usize <= std::mem::size_of::<libc::sa_family_t>()
    {
        return Ok(Some(PyString::new(py, "").into_any()));
    }
    Ok(None)
}
