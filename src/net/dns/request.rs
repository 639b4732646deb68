//! A lookup as plain Rust data (no Python object): its arguments, already converted as
//! the socket module converts them, what the C library answered, and running it.

use std::ffi::CString;

use crate::sys::{self, AddrInfo, GaiError};

// ----- requests and their outcomes (no Python) -----------------------------------------

/// A lookup, with its arguments converted as the socket module converts them.
pub(super) enum Request {
    AddrInfo {
        host: Option<CString>,
        port: Option<CString>,
        /// `(family, type, proto, flags)`.
        hints: (i32, i32, i32, i32),
    },
    NameInfo(NameInfoRequest),
}

/// `socket.getnameinfo((host, port[, flowinfo[, scope_id]]), flags)`.
pub(super) struct NameInfoRequest {
    pub(super) host: CString,
    pub(super) port: i32,
    pub(super) flowinfo: u32,
    pub(super) scope_id: u32,
    /// The length of the address tuple (an IPv4 address must be a 2-tuple).
    pub(super) tuple_len: usize,
    pub(super) flags: i32,
}

/// Why a lookup failed.
pub(super) enum Failure {
    /// `socket.gaierror`, or the errno's `OSError` for `EAI_SYSTEM`.
    Gai(GaiError),
    /// An `OSError` with this message (the socket module's own checks).
    Message(&'static str),
}

pub(super) enum Outcome {
    AddrInfo(Result<Vec<AddrInfo>, Failure>),
    NameInfo(Result<(Vec<u8>, Vec<u8>), Failure>),
}

/// What `socket.getnameinfo` does in C: the numeric address (`AI_NUMERICHOST`, no name
/// lookup), its flow info and scope id, then `getnameinfo(3)`.
pub(super) fn name_info(r: &NameInfoRequest) -> Result<(Vec<u8>, Vec<u8>), Failure> {
    let port = CString::new(r.port.to_string()).expect("digits have no NUL");
    let infos = sys::getaddrinfo(
        Some(&r.host),
        Some(&port),
        (libc::AF_UNSPEC, libc::SOCK_DGRAM, 0, libc::AI_NUMERICHOST),
    )
    .map_err(Failure::Gai)?;
    if infos.len() > 1 {
        return Err(Failure::Message("sockaddr resolved to multiple addresses"));
    }
    let Some(mut info) = infos.into_iter().next() else {
        return Err(Failure::Gai(GaiError {
            code: libc::EAI_NONAME,
            errno: 0,
        }));
    };
    match info.family {
        libc::AF_INET if r.tuple_len != 2 => {
            return Err(Failure::Message("IPv4 sockaddr must be 2 tuple"))
        }
        libc::AF_INET6 => info.addr.set_v6_flow_scope(r.flowinfo, r.scope_id),
        _ => {}
    }
    sys::getnameinfo(&info.addr, r.flags).map_err(Failure::Gai)
}

pub(super) fn run(req: &Request) -> Outcome {
    match req {
        Request::AddrInfo { host, port, hints } => Outcome::AddrInfo(
            sys::getaddrinfo(host.as_deref(), port.as_deref(), *hints).map_err(Failure::Gai),
        ),
        Request::NameInfo(r) => Outcome::NameInfo(name_info(r)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_lookups_resolve() {
        let req = Request::AddrInfo {
            host: Some(CString::new("127.0.0.1").unwrap()),
            port: Some(CString::new("80").unwrap()),
            hints: (0, 0, 0, 0),
        };
        let Outcome::AddrInfo(Ok(v)) = run(&req) else {
            panic!("127.0.0.1 resolves")
        };
        let kinds: Vec<i32> = v.iter().map(|e| e.socktype).collect();
        assert_eq!(kinds, [libc::SOCK_STREAM, libc::SOCK_DGRAM, libc::SOCK_RAW]);
        let req = NameInfoRequest {
            host: CString::new("127.0.0.1").unwrap(),
            port: 80,
            flowinfo: 0,
            scope_id: 0,
            tuple_len: 4,
            flags: libc::NI_NUMERICHOST | libc::NI_NUMERICSERV,
        };
        assert!(matches!(
            name_info(&req),
            Err(Failure::Message("IPv4 sockaddr must be 2 tuple"))
        ));
    }
}
