//! `bytes` objects filled in place: a read lands straight in the object it is delivered
//! in, with no copy from a scratch buffer.

use std::io;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

extern "C" {
    /// CPython's `_PyBytes_Resize` (not in pyo3-ffi: a private but long-standing API,
    /// exported on every version ferroloop supports): resizes a bytes object that has
    /// a single reference, in place when the allocator can.
    fn _PyBytes_Resize(bytes: *mut *mut ffi::PyObject, newsize: ffi::Py_ssize_t)
        -> std::ffi::c_int;
}

/// Makes a `bytes` object of `cap` bytes, lets `fill` write into it (a `read`/`recv`),
/// and shrinks it to what `fill` wrote. `Ok(Err(..))` is `fill`'s error; `Ok(Ok(None))`
/// means `fill` wrote nothing (EOF), and no object is kept.
pub fn read_into_new_bytes<'py>(
    py: Python<'py>,
    cap: usize,
    fill: impl FnOnce(&mut [u8]) -> io::Result<usize>,
) -> PyResult<io::Result<Option<Bound<'py, PyBytes>>>> {
    let size = ffi::Py_ssize_t::try_from(cap)
        .map_err(|_| pyo3::exceptions::PyOverflowError::new_err("read size too large"))?;
    // SAFETY: a NULL source asks for an uninitialized object of `size` bytes, which is
    // ours alone until returned; the result is a new reference or NULL with an exception.
    let mut obj = unsafe { ffi::PyBytes_FromStringAndSize(std::ptr::null(), size) };
    if obj.is_null() {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: `obj` is a fresh bytes object of `cap` bytes (plus its terminating NUL);
    // nothing else sees it while `fill` writes into it, and `fill` runs no Python code.
    let got = fill(unsafe {
        std::slice::from_raw_parts_mut(ffi::PyBytes_AsString(obj).cast::<u8>(), cap)
    });
    let n = match got {
        Ok(n) if n > 0 => n.min(cap),
        other => {
            // SAFETY: our reference to the object made above.
            unsafe { ffi::Py_DECREF(obj) };
            return Ok(other.map(|_| None));
        }
    };
    if n < cap {
        // SAFETY: `obj` is a bytes object only we reference (refcount 1), as
        // _PyBytes_Resize requires; on failure it is freed, set to NULL and an exception
        // is set.
        if unsafe { _PyBytes_Resize(&mut obj, n as ffi::Py_ssize_t) } < 0 {
            return Err(PyErr::fetch(py));
        }
    }
    // SAFETY: `obj` is a new reference to a bytes object.
    Ok(Ok(Some(unsafe {
        Bound::from_owned_ptr(py, obj).cast_into_unchecked()
    })))
}
