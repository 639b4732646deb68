//! Method, getter/setter and slot entry points of native types: safe Rust functions on
//! `(&Bound<PyAny>, &S)` wrapped in the C calling conventions, under the panic guard.

use std::ffi::{c_int, c_void, CStr};
use std::ptr;

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use super::Lookup;
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
pub unsafe fn call_noargs<S: Lookup>(slf: *mut ffi::PyObject, f: NoArgs<S>) -> *mut ffi::PyObject {
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
pub unsafe fn call_onearg<S: Lookup>(
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
pub unsafe fn call_fast<S: Lookup>(
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

// The C functions of a method table are generic trampolines, monomorphized per Rust
// function: the function is an associated const of a marker type the macros below define
// (a direct call, no function pointer read at run time), and every `unsafe` stays here.

/// A `METH_NOARGS` method (or a unary slot: `tp_repr`, `tp_iter`, `am_await`).
pub trait NoArgsFn<S> {
    const F: NoArgs<S>;
}
/// A `METH_O` method.
pub trait OneArgFn<S> {
    const F: OneArg<S>;
}
/// A `METH_FASTCALL | METH_KEYWORDS` method.
pub trait FastFn<S> {
    const F: Fast<S>;
}
/// A `tp_init` slot.
pub trait InitFn<S> {
    const F: Init<S>;
}

/// The `METH_NOARGS` function of `M`.
///
/// # Safety
/// METH_NOARGS calling convention.
pub unsafe extern "C" fn noargs_tramp<S: Lookup, M: NoArgsFn<S>>(
    slf: *mut ffi::PyObject,
    _unused: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: METH_NOARGS convention, forwarded verbatim.
    unsafe { call_noargs::<S>(slf, M::F) }
}

/// The unary slot function (`reprfunc`, `getiterfunc`) of `M`.
///
/// # Safety
/// Unary slot calling convention.
pub unsafe extern "C" fn unary_tramp<S: Lookup, M: NoArgsFn<S>>(
    slf: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: unary slot convention, forwarded verbatim.
    unsafe { call_noargs::<S>(slf, M::F) }
}

/// The `METH_O` function of `M`.
///
/// # Safety
/// METH_O calling convention.
pub unsafe extern "C" fn onearg_tramp<S: Lookup, M: OneArgFn<S>>(
    slf: *mut ffi::PyObject,
    arg: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: METH_O convention, forwarded verbatim.
    unsafe { call_onearg::<S>(slf, arg, M::F) }
}

/// The `METH_FASTCALL | METH_KEYWORDS` function of `M`.
///
/// # Safety
/// METH_FASTCALL | METH_KEYWORDS calling convention.
pub unsafe extern "C" fn fast_tramp<S: Lookup, M: FastFn<S>>(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: METH_FASTCALL | METH_KEYWORDS convention, forwarded verbatim.
    unsafe { call_fast::<S>(slf, args, nargs, kwnames, M::F) }
}

/// The `tp_init` function of `M`.
///
/// # Safety
/// initproc calling convention.
pub unsafe extern "C" fn init_tramp<S: Lookup, M: InitFn<S>>(
    slf: *mut ffi::PyObject,
    args: *mut ffi::PyObject,
    kwds: *mut ffi::PyObject,
) -> c_int {
    // SAFETY: initproc convention, forwarded verbatim.
    unsafe { call_init::<S>(slf, args, kwds, M::F) }
}

pub type Hash<S> = for<'py> fn(&Bound<'py, PyAny>, &S) -> PyResult<isize>;
pub type RichCmp<S> = for<'py> fn(
    &Bound<'py, PyAny>,
    &S,
    &Bound<'py, PyAny>,
    pyo3::pyclass::CompareOp,
) -> PyResult<Bound<'py, PyAny>>;

/// A `tp_hash` slot.
pub trait HashFn<S> {
    const F: Hash<S>;
}
/// A `tp_richcompare` slot.
pub trait RichCmpFn<S> {
    const F: RichCmp<S>;
}

/// The `tp_hash` function of `M`.
///
/// # Safety
/// hashfunc calling convention.
pub unsafe extern "C" fn hash_tramp<S: Lookup, M: HashFn<S>>(
    slf: *mut ffi::PyObject,
) -> ffi::Py_hash_t {
    // SAFETY: CPython calls slots with the thread attached.
    let py = unsafe { Python::assume_attached() };
    let mut out: ffi::Py_hash_t = -1;
    let r = guard_int(py, || {
        // SAFETY: `slf` is the live receiver.
        let slf = unsafe { enter(py, slf) };
        let st = S::lookup(&slf).ok_or_else(|| not_a_future(py))?;
        // -1 is the error value: CPython maps a hash of -1 to -2.
        out = match M::F(&slf, st)? {
            -1 => -2,
            h => h,
        };
        Ok(())
    });
    if r < 0 {
        -1
    } else {
        out
    }
}

/// The `tp_richcompare` function of `M`.
///
/// # Safety
/// richcmpfunc calling convention.
pub unsafe extern "C" fn richcmp_tramp<S: Lookup, M: RichCmpFn<S>>(
    slf: *mut ffi::PyObject,
    other: *mut ffi::PyObject,
    op: c_int,
) -> *mut ffi::PyObject {
    use pyo3::pyclass::CompareOp;
    // SAFETY: CPython calls slots with the thread attached.
    let py = unsafe { Python::assume_attached() };
    guard_obj(py, || {
        // SAFETY: `slf` and `other` are live borrowed references for the call.
        let (slf, other) = unsafe { (enter(py, slf), Bound::from_borrowed_ptr(py, other)) };
        let op = match op {
            ffi::Py_LT => CompareOp::Lt,
            ffi::Py_LE => CompareOp::Le,
            ffi::Py_EQ => CompareOp::Eq,
            ffi::Py_NE => CompareOp::Ne,
            ffi::Py_GT => CompareOp::Gt,
            ffi::Py_GE => CompareOp::Ge,
            _ => return Ok(py.NotImplemented()),
        };
        let Some(st) = S::lookup(&slf) else {
            return Ok(py.NotImplemented());
        };
        M::F(&slf, st, &other, op).map(Bound::unbind)
    })
}

/// Defines `const $name: ffi::hashfunc`, a `tp_hash` calling `$f(&self, &$S)`.
macro_rules! hash_slot {
    ($vis:vis $name:ident, $S:ty, $f:path) => {
        #[allow(non_upper_case_globals)]
        $vis const $name: pyo3::ffi::hashfunc = {
            struct M;
            impl $crate::pyo::native_type::methods::HashFn<$S> for M {
                const F: $crate::pyo::native_type::methods::Hash<$S> = $f;
            }
            $crate::pyo::native_type::methods::hash_tramp::<$S, M>
        };
    };
}

/// Defines `const $name: ffi::richcmpfunc`, a `tp_richcompare` calling
/// `$f(&self, &$S, other, op)`.
macro_rules! richcmp_slot {
    ($vis:vis $name:ident, $S:ty, $f:path) => {
        #[allow(non_upper_case_globals)]
        $vis const $name: pyo3::ffi::richcmpfunc = {
            struct M;
            impl $crate::pyo::native_type::methods::RichCmpFn<$S> for M {
                const F: $crate::pyo::native_type::methods::RichCmp<$S> = $f;
            }
            $crate::pyo::native_type::methods::richcmp_tramp::<$S, M>
        };
    };
}

/// Defines `const $name: ffi::PyCFunction`, a `METH_NOARGS` function calling
/// `$f(&self, &$S)`.
macro_rules! noargs {
    ($vis:vis $name:ident, $S:ty, $f:path) => {
        #[allow(non_upper_case_globals)]
        $vis const $name: pyo3::ffi::PyCFunction = {
            struct M;
            impl $crate::pyo::native_type::methods::NoArgsFn<$S> for M {
                const F: $crate::pyo::native_type::methods::NoArgs<$S> = $f;
            }
            $crate::pyo::native_type::methods::noargs_tramp::<$S, M>
        };
    };
}

/// Defines `const $name: ffi::reprfunc`, a unary slot (`tp_repr`, `tp_iter`, `am_await`)
/// calling `$f(&self, &$S)`.
macro_rules! unary_slot {
    ($vis:vis $name:ident, $S:ty, $f:path) => {
        #[allow(non_upper_case_globals)]
        $vis const $name: pyo3::ffi::reprfunc = {
            struct M;
            impl $crate::pyo::native_type::methods::NoArgsFn<$S> for M {
                const F: $crate::pyo::native_type::methods::NoArgs<$S> = $f;
            }
            $crate::pyo::native_type::methods::unary_tramp::<$S, M>
        };
    };
}

/// Defines `const $name: ffi::PyCFunction`, a `METH_O` function calling
/// `$f(&self, &$S, arg)`.
macro_rules! onearg {
    ($vis:vis $name:ident, $S:ty, $f:path) => {
        #[allow(non_upper_case_globals)]
        $vis const $name: pyo3::ffi::PyCFunction = {
            struct M;
            impl $crate::pyo::native_type::methods::OneArgFn<$S> for M {
                const F: $crate::pyo::native_type::methods::OneArg<$S> = $f;
            }
            $crate::pyo::native_type::methods::onearg_tramp::<$S, M>
        };
    };
}

/// Defines `const $name: ffi::PyCFunctionFastWithKeywords`, a
/// `METH_FASTCALL | METH_KEYWORDS` function calling `$f(&self, &$S, args)`.
macro_rules! fast {
    ($vis:vis $name:ident, $S:ty, $f:path) => {
        #[allow(non_upper_case_globals)]
        $vis const $name: pyo3::ffi::PyCFunctionFastWithKeywords = {
            struct M;
            impl $crate::pyo::native_type::methods::FastFn<$S> for M {
                const F: $crate::pyo::native_type::methods::Fast<$S> = $f;
            }
            $crate::pyo::native_type::methods::fast_tramp::<$S, M>
        };
    };
}

/// Defines `const $name: ffi::initproc`, a `tp_init` calling
/// `$f(&self, &$S, args, kwargs)`.
macro_rules! init_slot {
    ($vis:vis $name:ident, $S:ty, $f:path) => {
        #[allow(non_upper_case_globals)]
        $vis const $name: pyo3::ffi::initproc = {
            struct M;
            impl $crate::pyo::native_type::methods::InitFn<$S> for M {
                const F: $crate::pyo::native_type::methods::Init<$S> = $f;
            }
            $crate::pyo::native_type::methods::init_tramp::<$S, M>
        };
    };
}

pub(crate) use {fast, hash_slot, init_slot, noargs, onearg, richcmp_slot, unary_slot};

/// A method definition leaked for the life of the process, from which builtins bound to
/// an object are made (as a C method's bound builtin).
pub struct LeakedDef(ptr::NonNull<ffi::PyMethodDef>);

// SAFETY: the definition is leaked, immutable after creation, and only read by CPython
// while attached.
unsafe impl Send for LeakedDef {}
// SAFETY: as above.
unsafe impl Sync for LeakedDef {}

impl LeakedDef {
    pub fn new(def: ffi::PyMethodDef) -> LeakedDef {
        LeakedDef(ptr::NonNull::from(Box::leak(Box::new(def))))
    }

    /// A builtin function bound to `obj` (`obj` is its `__self__`).
    pub fn bind<'py>(&self, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        // SAFETY: the definition is leaked (static); `obj` is live. Returns a new reference
        // or NULL with an exception set.
        unsafe {
            Bound::from_owned_ptr_or_err(
                obj.py(),
                ffi::PyCFunction_NewEx(self.0.as_ptr(), obj.as_ptr(), ptr::null_mut()),
            )
        }
    }
}

/// A getter/setter pair, passed to the getset trampolines as the `closure` pointer.
struct Accessor<S> {
    get: NoArgs<S>,
    set: Option<Setter<S>>,
}

unsafe extern "C" fn getset_get<S: Lookup>(
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

unsafe extern "C" fn getset_set<S: Lookup>(
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
pub unsafe fn call_init<S: Lookup>(
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

pub fn getset<S: Lookup>(
    name: &'static CStr,
    get: NoArgs<S>,
    set: Option<Setter<S>>,
) -> ffi::PyGetSetDef {
    let has_setter = set.is_some();
    let acc: &'static Accessor<S> = Box::leak(Box::new(Accessor { get, set }));
    ffi::PyGetSetDef {
        name: name.as_ptr(),
        get: Some(getset_get::<S>),
        // No setter for a read-only attribute: CPython then raises its own
        // "attribute '...' of '...' objects is not writable", as for the C types.
        set: if has_setter {
            Some(getset_set::<S>)
        } else {
            None
        },
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
