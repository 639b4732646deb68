//! Method, getter/setter and slot entry points of native types: safe Rust functions on
//! `(&Bound<PyAny>, &S)` wrapped in the C calling conventions, under the panic guard.

use std::ffi::{c_int, c_void, CStr};
use std::ptr;

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use super::Native;
use crate::pyo::panic::{eager_err, guard_int, guard_obj};

/// Arguments of a `METH_FASTCALL | METH_KEYWORDS` call.
pub struct FastArgs<'py> {
    pub pos: Vec<Bound<'py, PyAny>>,
    pub kw: Vec<(Bound<'py, PyString>, Bound<'py, PyAny>)>,
}

fn not_a_future(py: Python<'_>) -> PyErr {
    eager_err(
        py.get_type::<PyTypeError>(),
        "expected an initialized ferroloop Future or Task",
    )
}

/// Borrowed `self` of a slot or method, with its state.
///
/// # Safety
/// `slf` must be a live object and the thread attached.
pub unsafe fn enter<'py>(py: Python<'py>, slf: *mut ffi::PyObject) -> Bound<'py, PyAny> {
    // SAFETY: by the caller.
    unsafe { Bound::from_borrowed_ptr(py, slf) }
}

pub type NoArgs<S> = for<'py> fn(&Bound<'py, PyAny>, &S) -> PyResult<Bound<'py, PyAny>>;
pub type OneArg<S> =
    for<'py> fn(&Bound<'py, PyAny>, &S, &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>>;
pub type Fast<S> =
    for<'py> fn(&Bound<'py, PyAny>, &S, FastArgs<'py>) -> PyResult<Bound<'py, PyAny>>;
pub type Setter<S> =
    for<'py> fn(&Bound<'py, PyAny>, &S, Option<&Bound<'py, PyAny>>) -> PyResult<()>;
pub type Init<S> = for<'py> fn(
    &Bound<'py, PyAny>,
    &S,
    &Bound<'py, PyTuple>,
    Option<&Bound<'py, PyDict>>,
) -> PyResult<()>;

/// # Safety
/// CPython slot/method calling convention: `slf` live, thread attached.
pub unsafe fn call_noargs<S: Native>(slf: *mut ffi::PyObject, f: NoArgs<S>) -> *mut ffi::PyObject {
    // SAFETY: CPython calls slots and methods with the thread attached.
    let py = unsafe { Python::assume_attached() };
    guard_obj(py, || {
        // SAFETY: `slf` is the live receiver.
        let slf = unsafe { enter(py, slf) };
        let st = S::lookup(&slf).ok_or_else(|| not_a_future(py))?;
        f(&slf, st).map(Bound::unbind)
    })
}

/// # Safety
/// As [`call_noargs`]; `arg` a live borrowed reference.
pub unsafe fn call_onearg<S: Native>(
    slf: *mut ffi::PyObject,
    arg: *mut ffi::PyObject,
    f: OneArg<S>,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls methods with the thread attached.
    let py = unsafe { Python::assume_attached() };
    guard_obj(py, || {
        // SAFETY: `slf` and `arg` are live borrowed references for the call.
        let (slf, arg) = unsafe { (enter(py, slf), Bound::from_borrowed_ptr(py, arg)) };
        let st = S::lookup(&slf).ok_or_else(|| not_a_future(py))?;
        f(&slf, st, &arg).map(Bound::unbind)
    })
}

/// # Safety
/// `METH_FASTCALL | METH_KEYWORDS` calling convention.
pub unsafe fn call_fast<S: Native>(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
    f: Fast<S>,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls methods with the thread attached.
    let py = unsafe { Python::assume_attached() };
    guard_obj(py, || {
        // SAFETY: `args[..nargs + len(kwnames)]` are live borrowed references and kwnames
        // is NULL or a tuple of str, per the vectorcall protocol.
        let (slf, fa) = unsafe {
            let slf = enter(py, slf);
            let nargs = ffi::PyVectorcall_NARGS(nargs as usize);
            let mut fa = FastArgs {
                pos: Vec::with_capacity(nargs as usize),
                kw: Vec::new(),
            };
            for i in 0..nargs {
                fa.pos.push(Bound::from_borrowed_ptr(py, *args.offset(i)));
            }
            if !kwnames.is_null() {
                let names = Bound::from_borrowed_ptr(py, kwnames).cast_into::<PyTuple>()?;
                for (i, name) in names.iter().enumerate() {
                    let value = Bound::from_borrowed_ptr(py, *args.offset(nargs + i as isize));
                    fa.kw.push((name.cast_into::<PyString>()?, value));
                }
            }
            (slf, fa)
        };
        let st = S::lookup(&slf).ok_or_else(|| not_a_future(py))?;
        f(&slf, st, fa).map(Bound::unbind)
    })
}

/// Defines a `METH_NOARGS` C function calling `$f(&self, &$S)`.
macro_rules! noargs {
    ($name:ident, $S:ty, $f:path) => {
        unsafe extern "C" fn $name(
            slf: *mut pyo3::ffi::PyObject,
            _unused: *mut pyo3::ffi::PyObject,
        ) -> *mut pyo3::ffi::PyObject {
            // SAFETY: METH_NOARGS convention, forwarded verbatim.
            unsafe { $crate::pyo::native_type::methods::call_noargs::<$S>(slf, $f) }
        }
    };
}

/// Defines a `METH_O` C function calling `$f(&self, &$S, arg)`.
macro_rules! onearg {
    ($name:ident, $S:ty, $f:path) => {
        unsafe extern "C" fn $name(
            slf: *mut pyo3::ffi::PyObject,
            arg: *mut pyo3::ffi::PyObject,
        ) -> *mut pyo3::ffi::PyObject {
            // SAFETY: METH_O convention, forwarded verbatim.
            unsafe { $crate::pyo::native_type::methods::call_onearg::<$S>(slf, arg, $f) }
        }
    };
}

/// Defines a `METH_FASTCALL | METH_KEYWORDS` C function calling `$f(&self, &$S, args)`.
macro_rules! fast {
    ($name:ident, $S:ty, $f:path) => {
        unsafe extern "C" fn $name(
            slf: *mut pyo3::ffi::PyObject,
            args: *const *mut pyo3::ffi::PyObject,
            nargs: pyo3::ffi::Py_ssize_t,
            kwnames: *mut pyo3::ffi::PyObject,
        ) -> *mut pyo3::ffi::PyObject {
            // SAFETY: METH_FASTCALL | METH_KEYWORDS convention, forwarded verbatim.
            unsafe {
                $crate::pyo::native_type::methods::call_fast::<$S>(slf, args, nargs, kwnames, $f)
            }
        }
    };
}

pub(crate) use {fast, noargs, onearg};

/// A getter/setter pair, passed to the getset trampolines as the `closure` pointer.
struct Accessor<S> {
    get: NoArgs<S>,
    set: Option<Setter<S>>,
}

unsafe extern "C" fn getset_get<S: Native>(
    slf: *mut ffi::PyObject,
    closure: *mut c_void,
) -> *mut ffi::PyObject {
    // SAFETY: `closure` is the leaked `Accessor<S>` installed with this getter; getter
    // convention otherwise.
    unsafe {
        let acc = &*(closure as *const Accessor<S>);
        call_noargs::<S>(slf, acc.get)
    }
}

unsafe extern "C" fn getset_set<S: Native>(
    slf: *mut ffi::PyObject,
    value: *mut ffi::PyObject,
    closure: *mut c_void,
) -> c_int {
    // SAFETY: setter convention; `closure` as in `getset_get`.
    let py = unsafe { Python::assume_attached() };
    guard_int(py, || {
        // SAFETY: as above; `value` is NULL (delete) or a live borrowed reference.
        let (acc, slf, value) = unsafe {
            let acc = &*(closure as *const Accessor<S>);
            let value = if value.is_null() {
                None
            } else {
                Some(Bound::from_borrowed_ptr(py, value))
            };
            (acc, enter(py, slf), value)
        };
        let st = S::lookup(&slf).ok_or_else(|| not_a_future(py))?;
        match acc.set {
            Some(set) => set(&slf, st, value.as_ref()),
            None => Err(eager_err(
                py.get_type::<pyo3::exceptions::PyAttributeError>(),
                "readonly attribute",
            )),
        }
    })
}

/// Calls an `__init__` implementation with CPython's `initproc` arguments.
///
/// # Safety
/// initproc convention: live `slf`, `args` a tuple, `kwds` NULL or a dict, attached.
pub unsafe fn call_init<S: Native>(
    slf: *mut ffi::PyObject,
    args: *mut ffi::PyObject,
    kwds: *mut ffi::PyObject,
    f: Init<S>,
) -> c_int {
    // SAFETY: by the caller.
    let py = unsafe { Python::assume_attached() };
    guard_int(py, || {
        // SAFETY: as above.
        let (slf, args, kwds) = unsafe {
            let kwds = if kwds.is_null() {
                None
            } else {
                Some(Bound::from_borrowed_ptr(py, kwds).cast_into::<PyDict>()?)
            };
            (
                enter(py, slf),
                Bound::from_borrowed_ptr(py, args).cast_into::<PyTuple>()?,
                kwds,
            )
        };
        let st = S::lookup(&slf).ok_or_else(|| not_a_future(py))?;
        f(&slf, st, &args, kwds.as_ref())
    })
}

pub fn method(
    name: &'static CStr,
    meth: ffi::PyMethodDefPointer,
    flags: c_int,
    doc: &'static CStr,
) -> ffi::PyMethodDef {
    ffi::PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: meth,
        ml_flags: flags,
        ml_doc: doc.as_ptr(),
    }
}

pub fn noargs_def(
    name: &'static CStr,
    f: ffi::PyCFunction,
    doc: &'static CStr,
) -> ffi::PyMethodDef {
    method(
        name,
        ffi::PyMethodDefPointer { PyCFunction: f },
        ffi::METH_NOARGS,
        doc,
    )
}

pub fn o_def(name: &'static CStr, f: ffi::PyCFunction, doc: &'static CStr) -> ffi::PyMethodDef {
    method(
        name,
        ffi::PyMethodDefPointer { PyCFunction: f },
        ffi::METH_O,
        doc,
    )
}

pub fn fast_def(
    name: &'static CStr,
    f: ffi::PyCFunctionFastWithKeywords,
    doc: &'static CStr,
) -> ffi::PyMethodDef {
    method(
        name,
        ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: f,
        },
        ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        doc,
    )
}

pub fn getset<S: Native>(
    name: &'static CStr,
    get: NoArgs<S>,
    set: Option<Setter<S>>,
) -> ffi::PyGetSetDef {
    let acc: &'static Accessor<S> = Box::leak(Box::new(Accessor { get, set }));
    ffi::PyGetSetDef {
        name: name.as_ptr(),
        get: Some(getset_get::<S>),
        set: Some(getset_set::<S>),
        doc: ptr::null(),
        closure: (acc as *const Accessor<S>).cast_mut().cast(),
    }
}

/// `__class_getitem__` (PEP 585), as the C types have.
pub fn class_getitem_def() -> ffi::PyMethodDef {
    method(
        c"__class_getitem__",
        ffi::PyMethodDefPointer {
            PyCFunction: ffi::Py_GenericAlias,
        },
        ffi::METH_O | ffi::METH_CLASS,
        c"See PEP 585",
    )
}
