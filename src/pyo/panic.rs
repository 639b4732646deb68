//! The panic guard of every hand-written CPython entry point: errors become the pending
//! exception, a Rust panic becomes `pyo3_runtime.PanicException`, never an unwind into C.

use std::ffi::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use pyo3::ffi;
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::types::PyType;
use pyo3::PyTypeInfo;

pub fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic in ferroloop".to_string())
}

/// Runs `body` as a CPython slot or method implementation: errors become the pending
/// exception and a panic becomes `PanicException`, never an unwind into C. Shared by every
/// hand-written entry point (the Future/Task slots and the loop's fast methods).
pub fn guard_obj<F>(py: Python<'_>, body: F) -> *mut ffi::PyObject
where
    F: FnOnce() -> PyResult<Py<PyAny>>,
{
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(obj)) => obj.into_ptr(),
        Ok(Err(err)) => {
            err.restore(py);
            ptr::null_mut()
        }
        Err(payload) => {
            PanicException::new_err(panic_message(payload)).restore(py);
            ptr::null_mut()
        }
    }
}

pub fn guard_int<F>(py: Python<'_>, body: F) -> c_int
where
    F: FnOnce() -> PyResult<()>,
{
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => 0,
        Ok(Err(err)) => {
            err.restore(py);
            -1
        }
        Err(payload) => {
            PanicException::new_err(panic_message(payload)).restore(py);
            -1
        }
    }
}

/// Created eagerly: a lazy `PyErr` restored outside PyO3's trampolines would leave its
/// type and arguments in PyO3's deferred-decref pool.
pub fn eager_err(ty: Bound<'_, PyType>, msg: &str) -> PyErr {
    match ty.call1((msg,)) {
        Ok(exc) => PyErr::from_value(exc),
        Err(e) => e,
    }
}

/// An exception instance created now (not lazily): a lazy `PyErr` restored outside PyO3's
/// trampolines would leave its type and arguments in PyO3's deferred-decref pool.
pub fn eager<T: PyTypeInfo>(py: Python<'_>, msg: impl for<'a> IntoPyObject<'a>) -> PyErr {
    match T::type_object(py).call1((msg,)) {
        Ok(exc) => PyErr::from_value(exc),
        Err(e) => e,
    }
}
