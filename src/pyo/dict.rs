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
        let mut out = ptr::null_mut();
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
