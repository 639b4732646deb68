//! `OSError`s built from an errno exactly as CPython builds them (`PyErr_SetFromErrno`):
//! the errno's subclass and Python's message, never Rust's `io::Error` text.

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;

/// The `OSError` CPython's `PyErr_SetFromErrno` raises for `errno`:
/// `OSError(errno, strerror(errno))`, which `OSError`'s constructor turns into the subclass
/// for that errno (`BlockingIOError`, `ConnectionResetError`, `FileNotFoundError`, ...) and
/// whose message is Python's (`[Errno 9] Bad file descriptor`, without the
/// ` (os error 9)` suffix of Rust's `io::Error`).
pub fn os_error_from_errno(errno: i32) -> PyErr {
    PyOSError::new_err((errno, strerror(errno)))
}

/// Every `std::io::Error` that reaches Python goes through here: an error from the OS
/// becomes the `OSError` Python would raise for its errno (see [`os_error_from_errno`]);
/// one that carries no errno keeps PyO3's mapping of its kind.
pub fn os_error(e: std::io::Error) -> PyErr {
    match e.raw_os_error() {
        Some(errno) => os_error_from_errno(errno),
        None => PyErr::from(e),
    }
}

/// `strerror(errno)`, thread-safe.
fn strerror(errno: i32) -> String {
    let mut buf = [0 as libc::c_char; 256];
    // SAFETY: `buf` is writable for its length; the XSI strerror_r (what the libc crate
    // binds) writes a NUL-terminated message into it or returns an error number.
    let rc = unsafe { libc::strerror_r(errno, buf.as_mut_ptr(), buf.len()) };
    if rc != 0 {
        return format!("Unknown error {errno}");
    }
    // SAFETY: on success the buffer holds a NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::strerror;

    #[test]
    fn strerror_is_the_bare_message() {
        assert_eq!(strerror(libc::EBADF), "Bad file descriptor");
        assert!(!strerror(libc::EAGAIN).contains("os error"));
    }
}
