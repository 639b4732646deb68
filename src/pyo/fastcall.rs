//! Hand-written `METH_FASTCALL | METH_KEYWORDS` methods of `#[pyclass]` types: the
//! trampoline (receiver check by the method descriptor, panic guard) and a safe view of the
//! argument vector. The parsing itself is the caller's safe code (see
//! `event_loop::fastcall`).

use std::ffi::{c_int, CStr};
use std::marker::PhantomData;

use pyo3::exceptions::PyBaseException;
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyTuple, PyType};
use pyo3::PyClass;

use super::panic::guard_obj;

/// The arguments of one vectorcall: `nargs` positionals, then one value per keyword name.
/// Only `vector_method` makes one, for the duration of the call.
pub struct VectorArgs<'a, 'py> {
    py: Python<'py>,
    args: *const *mut ffi::PyObject,
    nargs: usize,
    /// NULL or a tuple of str.
    kwnames: *mut ffi::PyObject,
    _call: PhantomData<&'a ()>,
}

impl<'py> VectorArgs<'_, 'py> {
    #[inline]
    pub fn py(&self) -> Python<'py> {
        self.py
    }

    /// The number of positional arguments.
    #[inline]
    pub fn nargs(&self) -> usize {
        self.nargs
    }

    /// Positional argument `i` (`i < nargs()`).
    #[inline]
    pub fn arg(&self, i: usize) -> Bound<'py, PyAny> {
        assert!(i < self.nargs);
        // SAFETY: `args[..nargs]` are live borrowed references for the call.
        unsafe { Bound::from_borrowed_ptr(self.py, *self.args.add(i)) }
    }

    /// The number of keyword arguments.
    #[inline]
    pub fn nkw(&self) -> usize {
        if self.kwnames.is_null() {
            return 0;
        }
        // SAFETY: `kwnames` is a live tuple.
        unsafe { ffi::PyTuple_GET_SIZE(self.kwnames) as usize }
    }

    /// Whether keyword `i` (`i < nkw()`) is `interned` (a pointer test: CPython interns
    /// keyword names) or else equal to `ascii`.
    #[inline]
    pub fn kw_name_is(&self, i: usize, interned: &Bound<'py, PyString>, ascii: &CStr) -> bool {
        assert!(i < self.nkw());
        // SAFETY: `kwnames` is a live tuple of str with more than `i` items.
        unsafe {
            let key = ffi::PyTuple_GET_ITEM(self.kwnames, i as ffi::Py_ssize_t);
            key == interned.as_ptr()
                || ffi::PyUnicode_CompareWithASCIIString(key, ascii.as_ptr()) == 0
        }
    }

    /// Whether keyword `i` (`i < nkw()`) equals `ascii` (a string comparison, for the
    /// argument-error paths).
    pub fn kw_name_eq(&self, i: usize, ascii: &CStr) -> bool {
        assert!(i < self.nkw());
        // SAFETY: `kwnames` is a live tuple of str with more than `i` items.
        unsafe {
            let key = ffi::PyTuple_GET_ITEM(self.kwnames, i as ffi::Py_ssize_t);
            ffi::PyUnicode_CompareWithASCIIString(key, ascii.as_ptr()) == 0
        }
    }

    /// The name of keyword `i` (`i < nkw()`).
    #[inline]
    pub fn kw_name(&self, i: usize) -> Bound<'py, PyAny> {
        assert!(i < self.nkw());
        // SAFETY: as in `kw_name_is`.
        unsafe {
            Bound::from_borrowed_ptr(
                self.py,
                ffi::PyTuple_GET_ITEM(self.kwnames, i as ffi::Py_ssize_t),
            )
        }
    }

    /// The value of keyword `i` (`i < nkw()`).
    #[inline]
    pub fn kw_value(&self, i: usize) -> Bound<'py, PyAny> {
        assert!(i < self.nkw());
        // SAFETY: the value of keyword `i` follows the positionals; a live borrowed
        // reference for the call.
        unsafe { Bound::from_borrowed_ptr(self.py, *self.args.add(self.nargs + i)) }
    }

    /// The positionals from `from` on, as a new tuple (the empty tuple singleton if none).
    #[inline]
    pub fn rest(&self, from: usize) -> PyResult<Bound<'py, PyTuple>> {
        let n_rest = self.nargs.saturating_sub(from);
        if n_rest == 0 {
            return Ok(PyTuple::empty(self.py));
        }
        // SAFETY: PyTuple_New returns a new tuple or NULL with an exception set; each item
        // is a live borrowed reference, incref'd before SET_ITEM steals it into the fresh
        // tuple at an index in range.
        unsafe {
            let tuple = Bound::from_owned_ptr_or_err(self.py, ffi::PyTuple_New(n_rest as isize))?;
            for j in 0..n_rest {
                let item = *self.args.add(from + j);
                ffi::Py_INCREF(item);
                ffi::PyTuple_SET_ITEM(tuple.as_ptr(), j as isize, item);
            }
            Ok(tuple.cast_into_unchecked::<PyTuple>())
        }
    }
}

impl VectorArgs<'_, '_> {
    /// `callable(*args, **kwargs)` with this call's arguments.
    pub fn call(&self, callable: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        // SAFETY: `args[..nargs + nkw]` are live borrowed references for the call and
        // `kwnames` is NULL or the tuple naming the last `nkw` of them; PyObject_Vectorcall
        // returns a new reference or NULL with an exception set.
        unsafe {
            Bound::from_owned_ptr_or_err(
                self.py,
                ffi::PyObject_Vectorcall(callable.as_ptr(), self.args, self.nargs, self.kwnames),
            )
        }
        .map(Bound::unbind)
    }

    /// `callable(recv, *args, **kwargs)` with this call's arguments: how a hand-written
    /// method hands the calls it does not take to the method it replaced.
    pub fn forward(
        &self,
        callable: &Bound<'_, PyAny>,
        recv: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let n = self.nargs + self.nkw();
        let mut vector: Vec<*mut ffi::PyObject> = Vec::with_capacity(n + 1);
        vector.push(recv.as_ptr());
        // SAFETY: `args[..nargs + nkw]` are live borrowed references for the call.
        vector.extend((0..n).map(|i| unsafe { *self.args.add(i) }));
        // SAFETY: every item is a live reference for the duration of the call, `kwnames` is
        // NULL or the tuple naming the last `nkw` of them; PyObject_Vectorcall returns a new
        // reference or NULL with an exception set.
        unsafe {
            Bound::from_owned_ptr_or_err(
                self.py,
                ffi::PyObject_Vectorcall(
                    callable.as_ptr(),
                    vector.as_ptr(),
                    self.nargs + 1,
                    self.kwnames,
                ),
            )
        }
        .map(Bound::unbind)
    }
}

/// A hand-written method of `Recv`, installed with [`install`].
pub trait VectorMethod {
    type Recv: PyClass;
    /// The method body: the receiver (checked by the method descriptor) and its arguments.
    fn call<'py>(slf: &Bound<'py, Self::Recv>, args: VectorArgs<'_, 'py>) -> PyResult<Py<PyAny>>;
}

/// The C function of `M`: a panic becomes `PanicException`, never an unwind into C.
///
/// # Safety
/// `METH_FASTCALL | METH_KEYWORDS` calling convention, through a method descriptor of
/// `M::Recv`'s type (which checks the receiver's type).
unsafe extern "C" fn vector_method<M: VectorMethod>(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    let body = |slf: Bound<'_, PyAny>, args: VectorArgs<'_, '_>| {
        // SAFETY: the method descriptor checked that `slf` is an `M::Recv` (see `install`).
        M::call(&unsafe { slf.cast_into_unchecked::<M::Recv>() }, args)
    };
    // SAFETY: the caller's contract, passed on.
    unsafe { enter(slf, args, nargs, kwnames, body) }
}

/// What every hand-written method's C function does around its body: attach (CPython
/// calls methods attached), a safe view of the receiver and the arguments, the panic guard.
///
/// # Safety
/// `METH_FASTCALL | METH_KEYWORDS` calling convention: `slf` and `args[..nargs +
/// len(kwnames)]` are live borrowed references for the call, `kwnames` NULL or a tuple of
/// str.
#[inline(always)]
unsafe fn enter<'py>(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
    body: impl FnOnce(Bound<'py, PyAny>, VectorArgs<'_, 'py>) -> PyResult<Py<PyAny>>,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls methods with the thread attached.
    let py = unsafe { Python::assume_attached() };
    guard_obj(py, || {
        // SAFETY: `slf` is a live borrowed reference for the call (the contract).
        let slf = unsafe { Bound::from_borrowed_ptr(py, slf) };
        let args = VectorArgs {
            py,
            args,
            nargs: nargs as usize,
            kwnames,
            _call: PhantomData,
        };
        body(slf, args)
    })
}

/// Installs `M` as the method `name` of `M::Recv`'s type, replacing what was there.
pub fn install<M: VectorMethod>(
    py: Python<'_>,
    name: &'static CStr,
    doc: &'static CStr,
) -> PyResult<()> {
    install_c_method(&py.get_type::<M::Recv>(), name, doc, vector_method::<M>)
}

/// A hand-written method of a Python class (one that wraps a native object, as
/// `ferroloop._SocketTransport` wraps its `StreamCore`), installed with [`install_on`].
pub trait WrapperMethod {
    /// The method body: the receiver (an instance of the class, checked by the method
    /// descriptor) and its arguments.
    fn call<'py>(slf: &Bound<'py, PyAny>, args: VectorArgs<'_, 'py>) -> PyResult<Py<PyAny>>;
}

/// The C function of `M`: as [`vector_method`], for a receiver of a Python class.
///
/// # Safety
/// `METH_FASTCALL | METH_KEYWORDS` calling convention.
unsafe extern "C" fn wrapper_method<M: WrapperMethod>(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: the caller's contract, passed on.
    unsafe { enter(slf, args, nargs, kwnames, |slf, args| M::call(&slf, args)) }
}

/// Installs `M` as the method `name` of the Python class `cls`: a method descriptor, as
/// a C type's methods are, so CPython's specializing interpreter turns `obj.name(...)`
/// into a direct call of `M` (a bound method stored in each instance instead costs a
/// generic attribute lookup per call: the instance's own dict shadows the class).
pub fn install_on<M: WrapperMethod>(
    cls: &Bound<'_, PyType>,
    name: &'static CStr,
    doc: &'static CStr,
) -> PyResult<()> {
    install_c_method(cls, name, doc, wrapper_method::<M>)
}

/// Sets a method descriptor of `func` (`METH_FASTCALL | METH_KEYWORDS`) as `ty.<name>`.
fn install_c_method(
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
    // a new reference or NULL with an exception set. The descriptor checks that the
    // receiver is an instance of `ty`, which `vector_method` relies on.
    let descr =
        unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(ty.as_type_ptr(), def)) }?;
    ty.setattr(
        name.to_str()
            .map_err(|e| PyBaseException::new_err(e.to_string()))?,
        descr,
    )
}

/// [`install`], first keeping the method it replaces (PyO3's, with its argument
/// extraction and errors) in `replaced`, for the calls `M` hands on with
/// [`VectorArgs::forward`].
pub fn install_over<M: VectorMethod>(
    py: Python<'_>,
    name: &'static CStr,
    doc: &'static CStr,
    replaced: &'static PyOnceLock<Py<PyAny>>,
) -> PyResult<()> {
    let ty = py.get_type::<M::Recv>();
    let key = name
        .to_str()
        .map_err(|e| PyBaseException::new_err(e.to_string()))?;
    let old = ty.getattr(intern!(py, "__dict__"))?.get_item(key)?;
    let _ = replaced.set(py, old.unbind());
    install::<M>(py, name, doc)
}

/// The method [`install_over`] kept in `replaced`, called with `args` on `recv`.
pub fn forward_to_replaced(
    replaced: &'static PyOnceLock<Py<PyAny>>,
    recv: &Bound<'_, PyAny>,
    args: &VectorArgs<'_, '_>,
) -> PyResult<Py<PyAny>> {
    let py = recv.py();
    match replaced.get(py) {
        Some(m) => args.forward(m.bind(py), recv),
        None => Err(PyBaseException::new_err("a replaced method is missing")),
    }
}
