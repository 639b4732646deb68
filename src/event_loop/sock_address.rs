//! The addresses `sock_connect` takes, read as asyncio's `_ensure_resolved` and
//! `_ipaddr_info` read them: the numeric `(host, port)` forms natively, the others through
//! asyncio's own function (a host name is then resolved by `loop.getaddrinfo`, in
//! `sock.rs`).

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyInt, PyString, PyTuple};

use super::LoopCore;
use crate::names::Names;

/// The IP socket address `address` names, if it is a numeric `(host, port)` (or
/// `(host, port, flowinfo, scope_id)`) of `family`; `None` leaves it to the socket module.
pub(super) fn numeric_address(
    family: i32,
    address: &Bound<'_, PyAny>,
) -> Option<std::net::SocketAddr> {
    let t = address.cast::<PyTuple>().ok()?;
    let host = t.get_item(0).ok()?;
    let host = host.cast::<PyString>().ok()?.to_str().ok()?;
    let port: u16 = t.get_item(1).ok()?.cast::<PyInt>().ok()?.extract().ok()?;
    match (family, t.len()) {
        (libc::AF_INET, 2) => Some(std::net::SocketAddr::new(
            host.parse::<std::net::Ipv4Addr>().ok()?.into(),
            port,
        )),
        (libc::AF_INET6, 2..=4) => {
            let flowinfo: u32 = match t.get_item(2) {
                Ok(v) => v.cast::<PyInt>().ok()?.extract().ok()?,
                Err(_) => 0,
            };
            let scope_id: u32 = match t.get_item(3) {
                Ok(v) => v.cast::<PyInt>().ok()?.extract().ok()?,
                Err(_) => 0,
            };
            let ip = host.parse::<std::net::Ipv6Addr>().ok()?;
            Some(std::net::SocketAddrV6::new(ip, port, flowinfo, scope_id).into())
        }
        _ => None,
    }
}

/// `a, b = seq` as Python unpacks it: any iterable of two items (asyncio's
/// `host, port = address[:2]` takes a list as well as a tuple), else its `ValueError`.
fn unpack_pair<'py>(seq: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let mut items = seq.try_iter()?;
    let first = items.next().transpose()?;
    let second = items.next().transpose()?;
    match (first, second) {
        (Some(a), Some(b)) => match items.next().transpose()? {
            None => Ok((a, b)),
            Some(_) => Err(PyValueError::new_err(
                "too many values to unpack (expected 2)",
            )),
        },
        (first, _) => Err(PyValueError::new_err(format!(
            "not enough values to unpack (expected 2, got {})",
            usize::from(first.is_some())
        ))),
    }
}

impl LoopCore {
    /// asyncio's `_ipaddr_info` for `address` on a socket of `family`: the address to
    /// connect to if its host is numeric, natively for the usual `(str, int)` form.
    pub(super) fn resolve_numeric<'py>(
        slf: &Bound<'py, Self>,
        sock: &Bound<'py, PyAny>,
        family: i32,
        address: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let py = slf.py();
        let ty: i32 = sock.getattr(intern!(py, "type"))?.extract()?;
        let proto: i32 = sock.getattr(intern!(py, "proto"))?.extract()?;
        let plain = matches!(ty, libc::SOCK_STREAM | libc::SOCK_DGRAM)
            && matches!(proto, 0 | libc::IPPROTO_TCP | libc::IPPROTO_UDP);
        if plain {
            if let Some(addr) = numeric_address(family, address) {
                let host = address.get_item(0)?;
                return Ok(Some(match addr {
                    std::net::SocketAddr::V4(a) => (host, a.port()).into_pyobject(py)?.into_any(),
                    std::net::SocketAddr::V6(a) => (host, a.port(), a.flowinfo(), a.scope_id())
                        .into_pyobject(py)?
                        .into_any(),
                }));
            }
        }
        // The other forms (bytes hosts, str ports, None): asyncio's own function.
        let head = address.get_item(pyo3::types::PySlice::new(py, 0, 2, 1))?;
        let (host, port) = unpack_pair(&head)?;
        let mut args = vec![host, port, family.into_pyobject(py)?.into_any()];
        args.push(ty.into_pyobject(py)?.into_any());
        args.push(proto.into_pyobject(py)?.into_any());
        for i in 2..address.len()? {
            args.push(address.get_item(i)?);
        }
        let info = Names::get(py)?
            .base_events
            .bind(py)
            .getattr(intern!(py, "_ipaddr_info"))?
            .call1(PyTuple::new(py, args)?)?;
        if info.is_none() {
            return Ok(None);
        }
        Ok(Some(info.get_item(4)?))
    }
}
