//! Exceptions as objects, taken out of the error indicator without materializing a
//! `PyErr` (code that CPython calls outside PyO3's bookkeeping of attached threads would
//! otherwise defer the decrefs of a dropped `PyErr` to PyO3's pool).

use pyo3::exceptions::PyBaseException;
use pyo3::ffi;
use pyo3::prelude::*;

use super::panic::eager;

/// Takes the raised exception out of the error indicator, as an object with its
/// `__traceback__` set. Must only be called with an exception set.
pub fn fetch_exc(py: Python<'_>) -> Bound<'_, PyAny> {
    #[cfg(Py_3_12)]
    // SAFETY: attached; returns a new reference (NULL only if no exception is set).
    let p = unsafe { ffi::PyErr_GetRaisedException() };
    #[cfg(not(Py_3_12))]
    // SAFETY: attached; Fetch hands over three (possibly NULL) new references, Normalize
    // makes `v` an instance, and the traceback is attached to it before `t`/`tb` are
    // released.
    let p = unsafe {
        let (mut t, mut v, mut tb) = (
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        ffi::PyErr_Fetch(&mut t, &mut v, &mut tb);
        ffi::PyErr_NormalizeException(&mut t, &mut v, &mut tb);
        if !tb.is_null() && !v.is_null() {
            ffi::PyException_SetTraceback(v, tb);
        }
        ffi::Py_XDECREF(t);
        ffi::Py_XDECREF(tb);
        v
    };
    if p.is_null() {
        return eager::<pyo3::exceptions::PySystemError>(py, "error return without exception set")
            .into_value(py)
            .into_bound(py)
            .into_any();
    }
    // SAFETY: `p` is a new reference to a live exception object.
    unsafe { Bound::from_owned_ptr(py, p) }
}

/// A new reference returned by a C API call, or the exception it raised (as an object).
///
/// # Safety
/// `p` must be a new reference or NULL with an exception set; attached.
pub unsafe fn take<'py>(
    py: Python<'py>,
    p: *mut ffi::PyObject,
) -> Result<Bound<'py, PyAny>, Bound<'py, PyAny>> {
    if p.is_null() {
        Err(fetch_exc(py))
    } else {
        // SAFETY: by the caller.
        Ok(unsafe { Bound::from_owned_ptr(py, p) })
    }
}

/// The exception of `err` as Python code sees it in `except BaseException as exc:`, its
/// `__traceback__` set. Before 3.12 PyO3 keeps a fetched error's traceback beside the
/// exception (`PyErr::value` has `__traceback__` None there), so an exception handed to
/// Python from a `PyErr` (an exception handler's context, a future, a log record) would
/// lose the frames it was raised through; from 3.12 the exception object holds them.
pub fn exc_value<'py>(py: Python<'py>, err: &PyErr) -> Bound<'py, PyBaseException> {
    let value = err.value(py);
    #[cfg(not(Py_3_12))]
    if let Some(tb) = err.traceback(py) {
        // SAFETY: both are live; PyException_SetTraceback takes its own reference to `tb`
        // (and can fail only for a `tb` that is neither a traceback nor None).
        unsafe {
            ffi::PyException_SetTraceback(value.as_ptr(), tb.as_ptr());
        }
    }
    value.clone()
}

/// `SystemExit` or `KeyboardInterrupt`: what asyncio's callbacks let propagate
/// (`except (SystemExit, KeyboardInterrupt): raise`).
pub fn is_fatal(py: Python<'_>, e: &PyErr) -> bool {
    e.is_instance_of::<pyo3::exceptions::PySystemExit>(py)
        || e.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py)
}

pub fn is_instance_of_exc(exc: &Bound<'_, PyAny>, ty: &Bound<'_, PyAny>) -> bool {
    // SAFETY: both are live; PyErr_GivenExceptionMatches never raises.
    unsafe { ffi::PyErr_GivenExceptionMatches(exc.as_ptr(), ty.as_ptr()) != 0 }
}

/// Runs `f` while the error fetched from `py` is the exception "being handled", so that
/// `logging`'s `exc_info=True` reports it and an exception raised in `f` gets it as its
/// `__context__`, as inside an `except` block in Python.
pub fn with_exception_set<R>(py: Python<'_>, f: impl FnOnce() -> R) -> R {
    match PyErr::take(py) {
        None => f(),
        Some(err) => while_handling(&exc_value(py, &err), f),
    }
}

/// Runs `f` with `exc` as the exception being handled (`sys.exception()`), as Python code
/// inside `except BaseException as exc:` runs: an exception raised in `f` gets `exc` as
/// its `__context__`, and `logging`'s `exc_info=True` reports `exc`. The exception handled
/// before is restored afterwards, also when `f` panics.
pub fn while_handling<R>(exc: &Bound<'_, PyAny>, f: impl FnOnce() -> R) -> R {
    struct Restore(*mut ffi::PyObject);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: the thread is still attached (this guard lives inside a call that
            // holds `exc`); PyErr_SetHandledException takes a borrowed reference (or NULL
            // for "none"), and `self.0` is the new reference PyErr_GetHandledException
            // returned, released here.
            unsafe {
                ffi::PyErr_SetHandledException(self.0);
                ffi::Py_XDECREF(self.0);
            }
        }
    }
    // SAFETY: the thread is attached (`exc` is bound); GetHandledException returns a new
    // reference or NULL, SetHandledException borrows its argument.
    let _restore = unsafe {
        let previous = Restore(ffi::PyErr_GetHandledException());
        ffi::PyErr_SetHandledException(exc.as_ptr());
        previous
    };
    f()
}
