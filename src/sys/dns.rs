//! The resolver's libc calls: `getaddrinfo`, `getnameinfo`, `gai_strerror`, and the
//! IPv6 text form of an address.

use std::io;

use super::SockAddr;

/// A failed `getaddrinfo`/`getnameinfo`: the `EAI_*` code, and `errno` for `EAI_SYSTEM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GaiError {
    pub code: i32,
    pub errno: i32,
}

impl GaiError {
    fn of(code: i32) -> GaiError {
        let errno = if code == libc::EAI_SYSTEM {
            io::Error::last_os_error().raw_os_error().unwrap_or(0)
        } else {
            0
        };
        GaiError { code, errno }
    }
}

/// `gai_strerror(code)`.
pub fn gai_strerror(code: i32) -> String {
    // SAFETY: gai_strerror returns a pointer to a static NUL-terminated string (never NULL
    // on glibc or musl, checked anyway).
    let p = unsafe { libc::gai_strerror(code) };
    if p.is_null() {
        return String::from("Unknown error");
    }
    // SAFETY: `p` is a valid NUL-terminated static string.
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_string_lossy()
        .into_owned()
}

/// One entry of a `getaddrinfo` result, copied out of the C list.
pub struct AddrInfo {
    pub family: i32,
    pub socktype: i32,
    pub protocol: i32,
    pub canonname: Option<Vec<u8>>,
    pub addr: SockAddr,
}

/// `getaddrinfo(host, service, &hints)` with hints `(family, socktype, protocol, flags)`:
/// the entries, in the order of the C list. Blocks (name service lookups): call it off the
/// GIL.
pub fn getaddrinfo(
    host: Option<&std::ffi::CStr>,
    service: Option<&std::ffi::CStr>,
    hints: (i32, i32, i32, i32),
) -> Result<Vec<AddrInfo>, GaiError> {
    // SAFETY: an all-zero addrinfo is a valid hints value (null pointers, zero lengths).
    let mut h: libc::addrinfo = unsafe { std::mem::zeroed() };
    (h.ai_family, h.ai_socktype, h.ai_protocol, h.ai_flags) = hints;
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: `host` and `service` are NUL-terminated or null, `h` is valid, and `res` is a
    // writable pointer that getaddrinfo sets to a list we free below.
    let rc = unsafe {
        libc::getaddrinfo(
            host.map_or(std::ptr::null(), |c| c.as_ptr()),
            service.map_or(std::ptr::null(), |c| c.as_ptr()),
            &h,
            &mut res,
        )
    };
    if rc != 0 {
        return Err(GaiError::of(rc));
    }
    let mut out = Vec::new();
    let mut cur = res;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getaddrinfo returned, not yet freed.
        let ai = unsafe { &*cur };
        // SAFETY: an all-zero sockaddr_storage is valid.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let len = (ai.ai_addrlen as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
        if !ai.ai_addr.is_null() {
            // SAFETY: `ai_addr` points to `ai_addrlen` readable bytes; at most the storage's
            // size is copied into it.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    ai.ai_addr as *const u8,
                    &mut storage as *mut _ as *mut u8,
                    len,
                )
            };
        }
        let canonname = (!ai.ai_canonname.is_null()).then(|| {
            // SAFETY: a non-null `ai_canonname` is a NUL-terminated string.
            unsafe { std::ffi::CStr::from_ptr(ai.ai_canonname) }
                .to_bytes()
                .to_vec()
        });
        out.push(AddrInfo {
            family: ai.ai_family,
            socktype: ai.ai_socktype,
            protocol: ai.ai_protocol,
            canonname,
            addr: SockAddr {
                storage,
                len: len as libc::socklen_t,
            },
        });
        cur = ai.ai_next;
    }
    // SAFETY: `res` is the list getaddrinfo returned, freed once.
    unsafe { libc::freeaddrinfo(res) };
    Ok(out)
}

/// `getnameinfo(addr, host[NI_MAXHOST], serv[NI_MAXSERV], flags)`: the host and service
/// names. Blocks (reverse lookups): call it off the GIL.
pub fn getnameinfo(addr: &SockAddr, flags: i32) -> Result<(Vec<u8>, Vec<u8>), GaiError> {
    let mut host = [0 as libc::c_char; 1025];
    let mut serv = [0 as libc::c_char; 32];
    // SAFETY: `addr.storage` holds a sockaddr of `addr.len` bytes; both buffers are writable
    // for the lengths given, and getnameinfo NUL-terminates what it writes there.
    let rc = unsafe {
        libc::getnameinfo(
            &addr.storage as *const _ as *const libc::sockaddr,
            addr.len,
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            serv.as_mut_ptr(),
            serv.len() as libc::socklen_t,
            flags,
        )
    };
    if rc != 0 {
        return Err(GaiError::of(rc));
    }
    // SAFETY: on success both buffers hold NUL-terminated strings.
    let (h, s) = unsafe {
        (
            std::ffi::CStr::from_ptr(host.as_ptr()),
            std::ffi::CStr::from_ptr(serv.as_ptr()),
        )
    };
    Ok((h.to_bytes().to_vec(), s.to_bytes().to_vec()))
}

extern "C" {
    /// POSIX `inet_ntop` (not bound by the libc crate).
    fn inet_ntop(
        af: libc::c_int,
        src: *const libc::c_void,
        dst: *mut libc::c_char,
        size: libc::socklen_t,
    ) -> *const libc::c_char;
}

/// `inet_ntop(AF_INET6, addr)`: the C library's text of an IPv6 address (which is what
/// the socket module returns, e.g. `::1.2.3.4` where Rust prints `::102:304`).
pub fn inet_ntop6(addr: &[u8; 16]) -> String {
    let mut buf = [0 as libc::c_char; 64];
    // SAFETY: `addr` is a 16-byte in6_addr, `buf` is writable for its length (more than
    // INET6_ADDRSTRLEN), and inet_ntop NUL-terminates on success.
    let p = unsafe {
        inet_ntop(
            libc::AF_INET6,
            addr.as_ptr().cast(),
            buf.as_mut_ptr(),
            buf.len() as libc::socklen_t,
        )
    };
    if p.is_null() {
        return std::net::Ipv6Addr::from(*addr).to_string();
    }
    // SAFETY: on success `buf` holds a NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}
