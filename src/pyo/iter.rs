//! Hand-written `tp_iternext` and `am_send` for a `#[pyclass]` iterator (the iterator
//! behind `await` on a future): no PyO3 trampoline, and a result is returned without
//! creating a `StopIteration` when the caller allows (`am_send`).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use pyo3::ffi;
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::PyClass;

use super::native_type::methods::{method, o_def};
use super::panic::{guard_obj, panic_message};

/// What one `__next__` / `send(None)` of a [`NativeIter`] does.
pub enum IterStep<'py> {
    /// `yield value`.
    Yield(Bound<'py, PyAny>),
    /// `return value` (`StopIteration(value)`).
    Return(Bound<'py, PyAny>),
    /// Already exhausted.
    Exhausted,
}

/// An iterator class whose `tp_iternext` / `am_send`, `send` and `throw` are
/// [`install_iter_slots`]'.
pub trait NativeIter: PyClass {
    /// One step.
    fn advance<'py>(it: &Bound<'py, Self>) -> PyResult<IterStep<'py>>;
    /// `send(value)`, a `METH_O` method (as the C FutureIter's).
    fn send(it: &Bound<'_, Self>) -> PyResult<Py<PyAny>>;
    /// `throw(*args)`, a `METH_FASTCALL` method without keywords (as the C FutureIter's).
    fn throw(it: &Bound<'_, Self>, args: &[Bound<'_, PyAny>]) -> PyResult<Py<PyAny>>;
}

/// `tp_iternext` of `T`, replacing PyO3's: no trampoline, and the
/// `StopIteration(result)` is raised directly (as the C FutureIter does).
unsafe extern "C" fn iter_next<T: NativeIter>(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: iternextfunc convention: `slf` is a live `T`, attached.
    let py = unsafe { Python::assume_attached() };
    let step = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: as above; the slot is only installed on `T`'s type.
        let it = unsafe { Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<T>() };
        T::advance(&it)
    }));
    match step {
        Ok(Ok(IterStep::Yield(v))) => v.into_ptr(),
        Ok(Ok(IterStep::Return(v))) => {
            // SAFETY: attached; `StopIteration(v)` is created and set (a `None` result is
            // a bare StopIteration, a tuple result stays one argument).
            unsafe {
                if v.is_none() {
                    ffi::PyErr_SetNone(ffi::PyExc_StopIteration);
                } else {
                    let exc = ffi::PyObject_CallOneArg(ffi::PyExc_StopIteration, v.as_ptr());
                    if !exc.is_null() {
                        ffi::PyErr_SetObject(ffi::PyExc_StopIteration, exc);
                        ffi::Py_DECREF(exc);
                    }
                }
            }
            ptr::null_mut()
        }
        Ok(Ok(IterStep::Exhausted)) => ptr::null_mut(),
        Ok(Err(e)) => {
            e.restore(py);
            ptr::null_mut()
        }
        Err(payload) => {
            PanicException::new_err(panic_message(payload)).restore(py);
            ptr::null_mut()
        }
    }
}

/// `am_send` of `T` (used by `PyIter_Send`, e.g. by tasks and on 3.11 by `await`):
/// returns the result without raising StopIteration at all.
unsafe extern "C" fn iter_send<T: NativeIter>(
    slf: *mut ffi::PyObject,
    _arg: *mut ffi::PyObject,
    result: *mut *mut ffi::PyObject,
) -> ffi::PySendResult {
    // SAFETY: sendfunc convention: `slf` is a live `T`, `result` writable, attached.
    let py = unsafe { Python::assume_attached() };
    let step = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: as above.
        let it = unsafe { Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<T>() };
        T::advance(&it)
    }));
    let (status, value) = match step {
        Ok(Ok(IterStep::Yield(v))) => (ffi::PySendResult::PYGEN_NEXT, v.into_ptr()),
        Ok(Ok(IterStep::Return(v))) => (ffi::PySendResult::PYGEN_RETURN, v.into_ptr()),
        Ok(Ok(IterStep::Exhausted)) => (ffi::PySendResult::PYGEN_RETURN, py.None().into_ptr()),
        Ok(Err(e)) => {
            e.restore(py);
            (ffi::PySendResult::PYGEN_ERROR, ptr::null_mut())
        }
        Err(payload) => {
            PanicException::new_err(panic_message(payload)).restore(py);
            (ffi::PySendResult::PYGEN_ERROR, ptr::null_mut())
        }
    };
    // SAFETY: `result` is writable per the convention.
    unsafe { *result = value };
    status
}

/// `send(value)` of `T`: `METH_O`.
unsafe extern "C" fn send_meth<T: NativeIter>(
    slf: *mut ffi::PyObject,
    _value: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: METH_O convention: `slf` is a live `T` (the method is only installed on
    // `T`'s type), attached.
    let py = unsafe { Python::assume_attached() };
    guard_obj(py, || {
        // SAFETY: as above.
        let it = unsafe { Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<T>() };
        T::send(&it)
    })
}

/// `throw(*args)` of `T`: `METH_FASTCALL`.
unsafe extern "C" fn throw_meth<T: NativeIter>(
    slf: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: METH_FASTCALL convention: `slf` is a live `T`, `args[..nargs]` live borrowed
    // references, attached.
    let py = unsafe { Python::assume_attached() };
    guard_obj(py, || {
        // SAFETY: as above.
        let (it, args) = unsafe {
            let args: Vec<Bound<'_, PyAny>> = (0..nargs)
                .map(|i| Bound::from_borrowed_ptr(py, *args.offset(i)))
                .collect();
            (
                Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<T>(),
                args,
            )
        };
        T::throw(&it, &args)
    })
}

/// Installs the hand-written `tp_iternext` and `am_send` on the type PyO3 created for `T`,
/// and its `send` / `throw` methods with the C FutureIter's calling conventions (so that a
/// misuse raises the same `TypeError`).
pub fn install_iter_slots<T: NativeIter>(py: Python<'_>) -> PyResult<()> {
    let ty = py.get_type::<T>();
    let defs: &'static mut [ffi::PyMethodDef; 2] = Box::leak(Box::new([
        o_def(c"send", send_meth::<T>, c"send(value)"),
        method(
            c"throw",
            ffi::PyMethodDefPointer {
                PyCFunctionFast: throw_meth::<T>,
            },
            ffi::METH_FASTCALL,
            c"throw(typ[,val[,tb]])",
        ),
    ]));
    for def in defs.iter_mut() {
        // SAFETY: `def` is leaked (static) and the type is live; returns a new reference
        // or NULL with an exception set.
        let descr = unsafe {
            Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(ty.as_type_ptr(), def))?
        };
        // SAFETY: `def.ml_name` is a static C string.
        let name = unsafe { std::ffi::CStr::from_ptr(def.ml_name) };
        let name = name
            .to_str()
            .map_err(|e| pyo3::exceptions::PyTypeError::new_err(e.to_string()))?;
        // The type dict directly: PyO3's types may refuse attribute assignment.
        // SAFETY: a heap type's `tp_dict` is its live attribute dict.
        let dict = unsafe {
            Bound::from_borrowed_ptr(py, (*ty.as_type_ptr()).tp_dict.cast::<ffi::PyObject>())
        };
        dict.set_item(name, descr)?;
    }
    let tp = ty.as_type_ptr();
    // SAFETY: `tp` is the live heap type PyO3 created for `T` (not subclassable);
    // a heap type's `tp_as_async` points at its own `PyAsyncMethods`. Slots are replaced
    // before any instance exists, and the type's caches are invalidated.
    unsafe {
        (*tp).tp_iternext = Some(iter_next::<T>);
        if !(*tp).tp_as_async.is_null() {
            (*(*tp).tp_as_async).am_send = Some(iter_send::<T>);
        }
        ffi::PyType_Modified(tp);
    }
    Ok(())
}
