//! The Python token for code that CPython runs attached but where PyO3 hands none.

use pyo3::prelude::*;
use pyo3::PyVisit;

/// The token inside a `__traverse__` implementation: a [`PyVisit`] only exists while the
/// garbage collector runs `tp_traverse`, which it does attached. Use it to read state, never
/// to run Python code (the collector forbids it).
#[inline]
pub fn in_traverse<'a>(_visit: &'a PyVisit<'_>) -> Python<'a> {
    // SAFETY: see above: the existence of `_visit` proves the GC is running tp_traverse on
    // this thread, attached.
    unsafe { Python::assume_attached() }
}

/// The token inside the `Drop` of state owned by a Python object (a `#[pyclass]`'s fields,
/// a native type's state): that state is dropped by the object's `tp_dealloc` or
/// `tp_clear`, or by code holding `py` that replaces it, all attached.
///
/// Contract (the one [`super::Ref`] relies on too): call it only from such a `Drop`, for
/// state that never leaves its object. It lets those drops decref directly instead of
/// going through PyO3's check for an attached thread on every reference.
#[inline]
pub fn in_owner_drop<'py>() -> Python<'py> {
    // SAFETY: by the contract above.
    unsafe { Python::assume_attached() }
}
