//! The buffer protocol, as socket methods use it: a contiguous byte view of any
//! bytes-like object (`y*` / `w*` argument formats), held only for one syscall.

use pyo3::ffi;
use pyo3::prelude::*;

/// A `Py_buffer` export, released on drop.
struct Export(ffi::Py_buffer);

impl Drop for Export {
    fn drop(&mut self) {
        // SAFETY: the buffer was filled in by a successful PyObject_GetBuffer, and the
        // thread is attached (an `Export` lives only inside `with_export`, which holds a
        // `Python` token).
        unsafe { ffi::PyBuffer_Release(&mut self.0) };
    }
}

fn with_export<R>(
    obj: &Bound<'_, PyAny>,
    flags: std::os::raw::c_int,
    f: impl FnOnce(*mut u8, usize) -> R,
) -> PyResult<R> {
    let mut view = std::mem::MaybeUninit::<ffi::Py_buffer>::uninit();
    // SAFETY: attached (`obj` is bound); `view` is writable; on failure an exception is
    // set and the view is left unfilled (not released).
    if unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), view.as_mut_ptr(), flags) } < 0 {
        return Err(PyErr::fetch(obj.py()));
    }
    // SAFETY: filled in by the successful call above.
    let export = Export(unsafe { view.assume_init() });
    let len = export.0.len.max(0) as usize;
    Ok(f(export.0.buf.cast(), len))
}

/// Runs `f` on the bytes of bytes-like `obj` (a C-contiguous export, as `y*` asks for).
/// `f` must not call into Python.
pub fn with_bytes<R>(obj: &Bound<'_, PyAny>, f: impl FnOnce(&[u8]) -> R) -> PyResult<R> {
    with_export(obj, ffi::PyBUF_SIMPLE, |ptr, len| {
        if len == 0 {
            return f(&[]);
        }
        // SAFETY: the export keeps `len` bytes at `ptr` alive and unmoved while `f` runs,
        // and `f` runs no Python code that could write to them.
        f(unsafe { std::slice::from_raw_parts(ptr, len) })
    })
}

/// Runs `f` on the bytes of writable bytes-like `obj` (as `w*` asks for). `f` must not
/// call into Python.
pub fn with_bytes_mut<R>(obj: &Bound<'_, PyAny>, f: impl FnOnce(&mut [u8]) -> R) -> PyResult<R> {
    with_export(obj, ffi::PyBUF_WRITABLE, |ptr, len| {
        if len == 0 {
            return f(&mut []);
        }
        // SAFETY: the writable export gives exclusive use of `len` bytes at `ptr` while
        // `f` runs no Python code.
        f(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
    })
}
