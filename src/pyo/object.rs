//! Object-level operations below PyO3's API: reference counts, the GC's tracking, type
//! checks, attribute access without materializing an `AttributeError`.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyString;

use super::exc::fetch_exc;

/// `Py_REFCNT(obj)`.
#[inline]
pub fn refcnt(obj: &Bound<'_, PyAny>) -> isize {
    // SAFETY: `obj` is live (we hold a reference); reading its refcount has no side effects.
    unsafe { ffi::Py_REFCNT(obj.as_ptr()) }
}

/// Whether `obj` is referenced only by the caller and no weak reference points to it, in
/// a type that supports weak references (false when it does not).
#[inline]
pub fn is_unshared_without_weakrefs(obj: &Bound<'_, PyAny>) -> bool {
    let ptr = obj.as_ptr();
    // SAFETY: `obj` is a live object (we hold a reference); reading its refcount, type and
    // weak-reference list pointer has no side effects. The weaklist slot lies at
    // `tp_weaklistoffset` bytes from the object: inside it when the offset is positive,
    // in the pre-header when it is negative (3.12+'s managed weak references, e.g. of a
    // subclass of a pure-Python class: CPython's `_PyObject_GET_WEAKREFS_LISTPTR` uses
    // the same formula for both). Zero: no weak reference support.
    unsafe {
        if ffi::Py_REFCNT(ptr) != 1 {
            return false;
        }
        let offset = (*ffi::Py_TYPE(ptr)).tp_weaklistoffset;
        if offset == 0 {
            return false;
        }
        let weaklist = ptr.cast::<u8>().offset(offset).cast::<*mut ffi::PyObject>();
        (*weaklist).is_null()
    }
}

/// Stops the cyclic GC from tracking `obj` (a no-op when it is not tracked, or not of a
/// GC type). The owner then reports what `obj` references from its own `tp_traverse`.
#[inline]
pub fn gc_untrack(obj: &Bound<'_, PyAny>) {
    let ptr = obj.as_ptr();
    // SAFETY: `ptr` is a live object; it has a GC header when its type has the GC flag,
    // and untracking a GC object is always allowed (a no-op when it is not tracked).
    unsafe {
        if ffi::PyType_IS_GC(ffi::Py_TYPE(ptr)) != 0 {
            ffi::PyObject_GC_UnTrack(ptr.cast());
        }
    }
}

/// Lets the cyclic GC track `obj` again, if it is of a GC type and not tracked.
#[inline]
pub fn gc_track(obj: &Bound<'_, PyAny>) {
    let ptr = obj.as_ptr();
    // SAFETY: `ptr` is a live object with a GC header (GC flag checked); it is tracked only
    // if it is not already, as PyObject_GC_Track requires.
    unsafe {
        if ffi::PyType_IS_GC(ffi::Py_TYPE(ptr)) != 0 && ffi::PyObject_GC_IsTracked(ptr) == 0 {
            ffi::PyObject_GC_Track(ptr.cast());
        }
    }
}

/// `type(obj) is types.CoroutineType` (exactly).
#[inline]
pub fn is_exact_coroutine(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: `obj` is live; its type pointer is only compared.
    unsafe { ffi::Py_TYPE(obj.as_ptr()) == std::ptr::addr_of_mut!(ffi::PyCoro_Type) }
}

/// `isinstance(obj, types.GeneratorType)`.
#[inline]
pub fn is_generator(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: `obj` is live.
    unsafe { ffi::PyGen_Check(obj.as_ptr()) != 0 }
}

/// `object.__setattr__(obj, name, value)` (`value` `None`: `object.__delattr__`).
pub fn generic_setattr(
    obj: &Bound<'_, PyAny>,
    name: &Bound<'_, PyString>,
    value: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let value = value.map_or(std::ptr::null_mut(), |v| v.as_ptr());
    // SAFETY: `obj` and `name` are live; `value` is live or NULL (deletion), which is
    // PyObject_GenericSetAttr's contract; it returns -1 with an exception set on error.
    if unsafe { ffi::PyObject_GenericSetAttr(obj.as_ptr(), name.as_ptr(), value) } < 0 {
        return Err(PyErr::fetch(obj.py()));
    }
    Ok(())
}

/// `getattr(obj, name)`, or `None` when that raises `AttributeError` (cleared in place,
/// never materialized). Other errors are taken as objects (see [`fetch_exc`]).
pub fn getattr_opt<'py>(
    obj: &Bound<'py, PyAny>,
    name: &Bound<'py, PyString>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = obj.py();
    // SAFETY: live arguments; a new reference or NULL with an exception set. An
    // AttributeError is cleared in place.
    unsafe {
        let p = ffi::PyObject_GetAttr(obj.as_ptr(), name.as_ptr());
        if p.is_null() {
            if ffi::PyErr_ExceptionMatches(ffi::PyExc_AttributeError) != 0 {
                ffi::PyErr_Clear();
                return Ok(None);
            }
            return Err(PyErr::from_value(fetch_exc(py)));
        }
        Ok(Some(Bound::from_owned_ptr(py, p)))
    }
}

#[cfg(not(Py_GIL_DISABLED))]
extern "C" {
    /// CPython's MRO lookup through the type attribute cache (exported by every CPython
    /// 3.x, not part of the limited API): a borrowed reference or NULL, never raises.
    fn _PyType_Lookup(ty: *mut ffi::PyTypeObject, name: *mut ffi::PyObject) -> *mut ffi::PyObject;
}

/// Whether `type(obj).<name>` is exactly `own`, the way attribute lookup on the class
/// would find it (through CPython's method cache on GIL builds).
#[inline]
pub fn class_attr_is(obj: &Bound<'_, PyAny>, name: &Bound<'_, PyString>, own: &Py<PyAny>) -> bool {
    #[cfg(not(Py_GIL_DISABLED))]
    {
        // SAFETY: `obj` and `name` are live, `name` is a str; attached (GIL held), so the
        // borrowed result is only compared, never dereferenced.
        unsafe { _PyType_Lookup(ffi::Py_TYPE(obj.as_ptr()), name.as_ptr()) == own.as_ptr() }
    }
    #[cfg(Py_GIL_DISABLED)]
    {
        // The borrowed result of _PyType_Lookup is not safe without the GIL.
        obj.get_type()
            .getattr(name)
            .map(|found| found.is(own.bind(obj.py())))
            .unwrap_or(false)
    }
}

/// `weakref.ref(obj, callback)`.
#[cfg(Py_GIL_DISABLED)]
pub fn new_weakref<'py>(
    obj: &Bound<'py, PyAny>,
    callback: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: `obj` (whose type has a weak reference list) and the callback are live; a
    // new reference or NULL with an exception set.
    unsafe {
        Bound::from_owned_ptr_or_err(
            obj.py(),
            ffi::PyWeakref_NewRef(obj.as_ptr(), callback.as_ptr()),
        )
    }
}
