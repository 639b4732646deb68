//! [`Ref`]: a strong reference held by state that CPython's own slots drop.
//!
//! Ownership rule: a `Ref` owns exactly one strong reference and releases it with a direct
//! `Py_DECREF` when dropped, never through PyO3's deferred-decref pool. It is neither `Send`
//! nor `Sync`: it lives only in the state of a native object (a future, a task, a task
//! registration) or in locals of code that CPython called with the thread attached, so it
//! is only ever dropped attached. Taking a `Ref` out of a state cell and dropping it after
//! the cell's access ends is how that state avoids running Python code (a decref may run
//! `__del__`) during an access (see [`super::gil_cell`]).

use std::ptr::NonNull;

use pyo3::ffi;
use pyo3::prelude::*;

/// A strong reference held by a future's Rust state. Dropping it decrefs at once (PyO3's
/// `Py` would defer the decref to its pool: CPython calls our slots without PyO3's
/// bookkeeping of attached threads). Deliberately neither `Send` nor `Sync`.
pub struct Ref(NonNull<ffi::PyObject>);

impl Ref {
    pub fn new(obj: Bound<'_, PyAny>) -> Ref {
        // SAFETY: `into_ptr` hands over a strong reference to a live object: never NULL.
        Ref(unsafe { NonNull::new_unchecked(obj.into_ptr()) })
    }

    /// A new strong reference, as a `Bound`.
    pub fn get<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        // SAFETY: we own a strong reference, so the object is alive; `py` proves the thread
        // is attached.
        unsafe { Bound::from_borrowed_ptr(py, self.0.as_ptr()) }
    }

    pub fn as_ptr(&self) -> *mut ffi::PyObject {
        self.0.as_ptr()
    }

    /// The strong reference, handed over as a `Bound` (no reference count change).
    pub fn into_bound(self, py: Python<'_>) -> Bound<'_, PyAny> {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        // SAFETY: we owned a strong reference to a live object; it now belongs to the
        // `Bound`. `py` proves the thread is attached.
        unsafe { Bound::from_owned_ptr(py, p) }
    }
}

impl Drop for Ref {
    fn drop(&mut self) {
        super::gil_cell::assert_no_access_open("a Ref dropped");
        // SAFETY: a `Ref` is neither `Send` nor `Sync` and only lives inside a future's
        // state (or a local of code that CPython called with the thread attached), which is
        // only touched and dropped by slot functions and methods CPython calls while
        // attached. We own one strong reference.
        unsafe { ffi::Py_DECREF(self.0.as_ptr()) }
    }
}
