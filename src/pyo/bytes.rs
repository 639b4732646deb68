//! `bytes` objects filled in place: a read straight into the object a protocol receives
//! (what CPython's `socket.recv` does), instead of into a buffer and then a copy.

use std::mem::MaybeUninit;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

extern "C" {
    // CPython's own resize of a fresh `bytes` (exported by every version ferroloop
    // supports, 3.11 to 3.14 and the free-threaded build; PyO3 leaves private API out).
    fn _PyBytes_Resize(bytes: *mut *mut ffi::PyObject, newsize: ffi::Py_ssize_t) -> i32;
}

/// A new `bytes` object of up to `cap` bytes that `fill` writes: `fill` gets the object's
/// uninitialized storage and returns how many bytes it initialized (from the start); the
/// object is shrunk to that length (`b""` for 0). An error from `fill` drops the object.
/// `fill` must not call into Python: nobody else may see the object before it is filled.
pub fn bytes_filled_by<'py, E>(
    py: Python<'py>,
    cap: usize,
    fill: impl FnOnce(&mut [MaybeUninit<u8>]) -> Result<usize, E>,
) -> PyResult<Result<Bound<'py, PyBytes>, E>> {
    let size = ffi::Py_ssize_t::try_from(cap)
        .map_err(|_| pyo3::exceptions::PyOverflowError::new_err("bytes size too large"))?;
    // SAFETY: attached (`py`); a NULL source asks for an object whose `cap` bytes of
    // storage are left uninitialized for the caller to fill (the documented use).
    let mut obj = unsafe { ffi::PyBytes_FromStringAndSize(std::ptr::null(), size) };
    if obj.is_null() {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: `obj` is a new, exactly-`bytes` object we alone own; its storage holds
    // `cap` bytes (plus the terminating NUL CPython keeps), valid while we hold it, and
    // `MaybeUninit<u8>` may view uninitialized memory.
    let storage = unsafe {
        std::slice::from_raw_parts_mut(ffi::PyBytes_AsString(obj).cast::<MaybeUninit<u8>>(), cap)
    };
    let got = match fill(storage) {
        Ok(n) => n.min(cap),
        Err(e) => {
            // SAFETY: we own the only reference.
            unsafe { ffi::Py_DECREF(obj) };
            return Ok(Err(e));
        }
    };
    if got < cap {
        // SAFETY: `obj` is a `bytes` object with a reference count of 1 that nobody else
        // has seen, as _PyBytes_Resize requires; on failure it releases the object, sets
        // NULL and an exception. The first `got` bytes are initialized (`fill`'s contract),
        // and resizing keeps them and writes the terminating NUL.
        if unsafe { _PyBytes_Resize(&mut obj, got as ffi::Py_ssize_t) } < 0 {
            return Err(PyErr::fetch(py));
        }
    }
    // SAFETY: `obj` is a new reference to a `bytes` object, all of whose bytes are now
    // initialized.
    Ok(Ok(unsafe {
        Bound::from_owned_ptr(py, obj).cast_into_unchecked()
    }))
}
