//! Hand-written `METH_FASTCALL | METH_KEYWORDS` entry points for the hottest loop methods.
//!
//! `call_soon` runs once per scheduled callback. PyO3's generic argument extraction
//! (a `*args` tuple plus an optional keyword) and its trampoline cost about as much as
//! the rest of the method, so the method descriptor installed on `LoopCore` for it calls
//! this function directly. It parses the vector of arguments itself, never lets a panic
//! unwind into CPython (a panic becomes `pyo3.PanicException`), then delegates to the
//! same Rust code as the PyO3 method.

use std::ffi::{c_int, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::{PyTypeError, PyBaseException};
use pyo3::ffi;
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple, PyType};

use super::LoopCore;
use crate::handle::Handle;

type Method = for<'py> fn(
    &Bound<'py, LoopCore>,
    Bound<'py, PyAny>,
    Bound<'py, PyTuple>,
    Option<Bound<'py, PyAny>>,
) -> PyResult<Py<Handle>>;

/// Parses `(callback, *args, context=None)` from a vectorcall argument array.
///
/// # Safety
/// `slf`, `args[..nargs + len(kwnames)]` and `kwnames` must be the live arguments CPython
/// passes to a `METH_FASTCALL | METH_KEYWORDS` method, and the thread must be attached.
unsafe fn dispatch(
    name: &str,
    method: Method,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls methods with the thread attached.
    let py = unsafe { Python::assume_attached() };
    let result = catch_unwind(AssertUnwindSafe(|| -> PyResult<Py<Handle>> {
        // SAFETY: the method descriptor checked that `slf` is a LoopCore instance; all
        // pointers are borrowed references valid for the duration of the call.
        unsafe {
            let slf = Bound::from_borrowed_ptr(py, slf);
            let slf = slf.cast_unchecked::<LoopCore>();
            if nargs < 1 {
                return Err(PyTypeError::new_err(format!(
                    "{name}() missing 1 required positional argument: 'callback'"
                )));
            }
            let callback = Bound::from_borrowed_ptr(py, *args);
            let mut context = None;
            if !kwnames.is_null() {
                let kwnames = Bound::from_borrowed_ptr(py, kwnames);
                let kwnames = kwnames.cast::<PyTuple>()?;
                for (i, key) in kwnames.iter().enumerate() {
                    let key = key.cast::<PyString>()?;
                    if key.to_str()? != "context" {
                        return Err(PyTypeError::new_err(format!(
                            "{name}() got an unexpected keyword argument '{key}'"
                        )));
                    }
                    context = Some(Bound::from_borrowed_ptr(py, *args.offset(nargs + i as isize)));
                }
            }
            let rest = std::slice::from_raw_parts(args.add(1), (nargs - 1) as usize);
            let tuple = if rest.is_empty() {
                PyTuple::empty(py)
            } else {
                PyTuple::new(py, rest.iter().map(|&p| Bound::from_borrowed_ptr(py, p)))?
            };
            method(slf, callback, tuple, context)
        }
    }));
    match result {
        Ok(Ok(handle)) => handle.into_ptr(),
        Ok(Err(err)) => {
            err.restore(py);
            std::ptr::null_mut()
        }
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic in ferroloop".to_string());
            PanicException::new_err(msg).restore(py);
            std::ptr::null_mut()
        }
    }
}

unsafe extern "C" fn call_soon(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: forwarded verbatim from CPython's METH_FASTCALL|METH_KEYWORDS call.
    unsafe { dispatch("call_soon", LoopCore::call_soon, slf, args, nargs, kwnames) }
}

unsafe extern "C" fn call_soon_threadsafe(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: forwarded verbatim from CPython's METH_FASTCALL|METH_KEYWORDS call.
    unsafe {
        dispatch(
            "call_soon_threadsafe",
            LoopCore::call_soon_threadsafe,
            slf,
            args,
            nargs,
            kwnames,
        )
    }
}

fn install_one(
    ty: &Bound<'_, PyType>,
    name: &'static CStr,
    doc: &'static CStr,
    func: ffi::PyCFunctionFastWithKeywords,
) -> PyResult<()> {
    let py = ty.py();
    // The definition must outlive the type: leak it (a few dozen bytes, once per process
    // and method).
    let def: &'static mut ffi::PyMethodDef = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: func,
        },
        ml_flags: (ffi::METH_FASTCALL | ffi::METH_KEYWORDS) as c_int,
        ml_doc: doc.as_ptr(),
    }));
    // SAFETY: `ty` is a live type object and `def` lives forever; PyDescr_NewMethod returns
    // a new reference or NULL with an exception set.
    let descr = unsafe {
        Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(ty.as_type_ptr(), def))
    }?;
    ty.setattr(name.to_str().map_err(|e| PyBaseException::new_err(e.to_string()))?, descr)
}

/// Replaces the PyO3-generated `call_soon` / `call_soon_threadsafe` of `LoopCore` with
/// the fast entry points.
pub fn install(ty: &Bound<'_, PyType>) -> PyResult<()> {
    install_one(
        ty,
        c"call_soon",
        c"call_soon(callback, *args, context=None)\n--\n\nSchedule callback(*args) for the next loop iteration.",
        call_soon,
    )?;
    install_one(
        ty,
        c"call_soon_threadsafe",
        c"call_soon_threadsafe(callback, *args, context=None)\n--\n\nLike call_soon(), callable from any thread; wakes the loop.",
        call_soon_threadsafe,
    )
}
