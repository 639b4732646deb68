//! The interpreter's recursion guard for native recursion.

use pyo3::ffi;
use pyo3::prelude::*;

use super::exc::fetch_exc;

/// Runs `f` one level deeper in the interpreter's recursion count, as a call through a
/// method descriptor does (`Py_EnterRecursiveCall(" while calling a Python object")`):
/// past the limit, `RecursionError` instead of `f`. For native code that recurses without
/// going through Python calls (e.g. a task cancelling the task it awaits): it then stops
/// at the depth the C implementation stops at, never overflowing the C stack.
#[inline]
pub fn enter_recursive_call<T>(py: Python<'_>, f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    // SAFETY: attached; the message is a static C string. Returns non-zero with a
    // RecursionError set when the limit is reached.
    if unsafe { ffi::Py_EnterRecursiveCall(c" while calling a Python object".as_ptr()) } != 0 {
        return Err(PyErr::from_value(fetch_exc(py)));
    }
    let r = f();
    // SAFETY: paired with the successful Py_EnterRecursiveCall above.
    unsafe { ffi::Py_LeaveRecursiveCall() };
    r
}
