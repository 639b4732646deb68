//! Dict operations CPython does not offer through PyO3 in one lookup.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyDict;

#[cfg(not(Py_3_13))]
extern "C" {
    /// `dict.pop(key, default)` (exported by CPython 3.11 and 3.12; 3.13 made it public
    /// as `PyDict_Pop`): a new reference, `default` when absent, NULL with an exception set.
    fn _PyDict_Pop(
        dict: *mut ffi::PyObject,
        key: *mut ffi::PyObject,
        default: *mut ffi::PyObject,
    ) -> *mut ffi::PyObject;
}

/// Removes `key` from `dict` with a single lookup, returning its value if it was there.
pub fn dict_pop<'py>(
    dict: &Bound<'py, PyDict>,
    key: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = dict.py();
    #[cfg(Py_3_13)]
    {
        let mut out = std::ptr::null_mut();
        // SAFETY: `dict` is a dict and `key` live; PyDict_Pop stores a new reference (or
        // NULL when absent) in `out` and returns 1 / 0, or -1 with an exception set.
        match unsafe { ffi::PyDict_Pop(dict.as_ptr(), key.as_ptr(), &mut out) } {
            -1 => Err(PyErr::fetch(py)),
            // SAFETY: a new reference when the key was present.
            1 => Ok(Some(unsafe { Bound::from_owned_ptr(py, out) })),
            _ => Ok(None),
        }
    }
    #[cfg(not(Py_3_13))]
    {
        // A private sentinel: nothing else can be stored under the loop.
        let absent = py.NotImplemented();
        // SAFETY: `dict` is a dict, `key` and `absent` live; a new reference or NULL with
        // an exception set.
        let v = unsafe {
            Bound::from_owned_ptr_or_err(
                py,
                _PyDict_Pop(dict.as_ptr(), key.as_ptr(), absent.as_ptr()),
            )?
        };
        Ok((!v.is(&absent)).then_some(v))
    }
}

/// `dict.setdefault(key, value)` in one lookup: `None` when `value` is what `dict[key]`
/// now holds (it was absent, or already `value`), else the other value stored there.
#[inline]
pub fn setdefault_other<'py>(
    dict: &Bound<'py, PyDict>,
    key: &Bound<'py, PyAny>,
    value: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = dict.py();
    #[cfg(not(Py_GIL_DISABLED))]
    // SAFETY: all three are live and `dict` is a dict; PyDict_SetDefault returns a
    // borrowed reference (the value now stored) or NULL with an exception set. It is
    // compared, then turned into a strong reference before any Python code runs.
    unsafe {
        let now = ffi::PyDict_SetDefault(dict.as_ptr(), key.as_ptr(), value.as_ptr());
        if now.is_null() {
            return Err(PyErr::fetch(py));
        }
        if now == value.as_ptr() {
            return Ok(None);
        }
        Ok(Some(Bound::from_borrowed_ptr(py, now)))
    }
    #[cfg(Py_GIL_DISABLED)]
    // SAFETY: as above, but PyDict_SetDefaultRef stores a new reference in `now`.
    unsafe {
        let mut now = std::ptr::null_mut();
        if ffi::PyDict_SetDefaultRef(dict.as_ptr(), key.as_ptr(), value.as_ptr(), &mut now) < 0 {
            return Err(PyErr::fetch(py));
        }
        let now = Bound::from_owned_ptr(py, now);
        if now.is(value) {
            return Ok(None);
        }
        Ok(Some(now))
    }
}
