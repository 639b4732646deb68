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

/// Runs `f` with a read-only `memoryview` over `data` (no copy), for a consumer that
/// copies the bytes during the call and keeps no export (`ssl.MemoryBIO.write`). After
/// `f` the view is released (`memoryview.release()`) if anything still holds it, so it
/// can never read `data` once `f` returned.
pub fn with_memoryview<'py, R>(
    py: Python<'py>,
    data: &[u8],
    f: impl FnOnce(&Bound<'py, PyAny>) -> PyResult<R>,
) -> PyResult<R> {
    // SAFETY: attached (`py`); the memoryview points at `data`, which outlives this call,
    // is read-only (PyBUF_READ), and is released below before `data` can go away. Returns
    // a new reference or NULL with an exception set.
    let view = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyMemoryView_FromMemory(
                data.as_ptr() as *mut std::os::raw::c_char,
                data.len() as ffi::Py_ssize_t,
                ffi::PyBUF_READ,
            ),
        )?
    };
    let res = f(&view);
    // SAFETY: `view` is a live object; reading its refcount has no side effect.
    if unsafe { ffi::Py_REFCNT(view.as_ptr()) } > 1 {
        // Someone kept the view: cut it from `data`. This fails only while a buffer export
        // of it is alive, which the consumers this is used with never leave.
        view.call_method0(pyo3::intern!(py, "release"))?;
    }
    res
}
