//! The type objects of `ferroloop._ferroloop.Future` and `ferroloop._ferroloop.Task`, built by
//! hand as subtypes of CPython's C `_asyncio.Future` / `_asyncio.Task`, and every `unsafe`
//! operation the native future and task need.
//!
//! Everything here is generic over the Rust state stored in the object ([`Native`]):
//! `FutureState` for the Future, `crate::task::TaskState` (a `FutureState` plus the task's
//! fields) for the Task; each type has its own [`TypeData`] (offset of the state, base
//! slots). [`state`] finds the `FutureState` of either, so every Future method is shared.
//!
//! PyO3 cannot `extends=` a C type whose layout it does not know, so the type is created
//! with `PyType_FromSpecWithBases`:
//!
//! ```text
//! | _asyncio.Future's fields (base.__basicsize__, all zero) | pad | Slot { init, FutureState } |
//! ```
//!
//! The base's fields stay zero because the base `__init__` is never called: that is exactly
//! the state of a C future created by `_asyncio.Future.__new__` without `__init__`, which
//! the C module supports (its dealloc, traverse, clear and finalizer tolerate it; every other
//! access is through methods and getters that ours shadow, or behind `Future_CheckExact`).
//! The base's `__dict__` / weak-reference slots (inline on 3.11 and 3.12, "managed" in the
//! pre-header on 3.13) are used as they are: the subtype inherits the offsets and flags.
//!
//! Deallocation, traversal and clearing handle the Rust state, then chain to the base's
//! slot, following the rule `subtype_dealloc`/`subtype_traverse` use for the type reference
//! every instance of a heap type holds: when the base is a heap type (3.12+) its dealloc
//! decrefs `Py_TYPE(self)` and its traverse visits it; when it is static (3.11) we do both.

use std::ffi::{c_int, c_void, CStr};
use std::mem::{align_of, size_of, MaybeUninit};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::{self, NonNull};
use std::sync::OnceLock;

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple, PyType};

use super::{FastArgs, FutureIter, FutureState, IterStep};

/// A strong reference held by a future's Rust state. Dropping it decrefs at once (PyO3's
/// `Py` would defer the decref to its pool: CPython calls our slots without PyO3's
/// bookkeeping of attached threads). Deliberately neither `Send` nor `Sync`.
pub struct Ref(NonNull<ffi::PyObject>);

impl Ref {
    pub fn new(obj: Bound<'_, PyAny>) -> Ref {
        // SAFETY: `into_ptr` hands over a strong reference to a live object: never NULL.
        Ref(unsafe { NonNull::new_unchecked(obj.into_ptr()) })
    }

    /// A new strong reference, as a `Bound`.
    pub fn get<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        // SAFETY: we own a strong reference, so the object is alive; `py` proves the thread
        // is attached.
        unsafe { Bound::from_borrowed_ptr(py, self.0.as_ptr()) }
    }

    pub fn as_ptr(&self) -> *mut ffi::PyObject {
        self.0.as_ptr()
    }

    /// The strong reference, handed over as a `Bound` (no reference count change).
    pub fn into_bound(self, py: Python<'_>) -> Bound<'_, PyAny> {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        // SAFETY: we owned a strong reference to a live object; it now belongs to the
        // `Bound`. `py` proves the thread is attached.
        unsafe { Bound::from_owned_ptr(py, p) }
    }
}

impl Drop for Ref {
    fn drop(&mut self) {
        // SAFETY: a `Ref` is neither `Send` nor `Sync` and only lives inside a future's
        // state (or a local of code that CPython called with the thread attached), which is
        // only touched and dropped by slot functions and methods CPython calls while
        // attached. We own one strong reference.
        unsafe { ffi::Py_DECREF(self.0.as_ptr()) }
    }
}

/// The Rust part of each instance, at `TypeData::offset` bytes into the object.
#[repr(C)]
struct Slot<S> {
    /// Set by `tp_new` once `value` is written, cleared by `tp_dealloc` before dropping it.
    init: bool,
    value: MaybeUninit<S>,
}

/// The Rust state of a native type built by [`create_type`]: `FutureState` for
/// `ferroloop.Future`, `TaskState` (which embeds a `FutureState`) for `ferroloop.Task`.
pub trait Native: Sized + 'static {
    /// The state of a fresh (not yet `__init__`ed) object.
    fn new_state() -> Self;
    /// Where the type's [`TypeData`] lives (one per native type).
    fn type_data() -> &'static OnceLock<TypeData>;
    /// Visits every strong reference for the GC; returns the first non-zero result.
    fn visit<F: FnMut(&Ref) -> c_int>(&self, visit: &mut F) -> c_int;
    /// Drops every reference (tp_clear).
    fn clear(&self);
    /// tp_finalize.
    fn finalize(slf: &Bound<'_, PyAny>, st: &Self);
    /// The state the methods of this state type receive for `obj` (the Future methods are
    /// shared by futures and tasks).
    fn lookup<'a>(obj: &'a Bound<'_, PyAny>) -> Option<&'a Self> {
        native::<Self>(obj)
    }
}

/// Per-type layout data, written once when the type is created.
pub struct TypeData {
    /// `ferroloop._ferroloop.Future` (a strong reference, kept for the life of the process).
    ty: *mut ffi::PyTypeObject,
    /// `_asyncio.Future`, kept alive (a strong reference) while its slots are used.
    _base: *mut ffi::PyTypeObject,
    offset: isize,
    base_is_heap: bool,
    base_dealloc: ffi::destructor,
    base_traverse: Option<ffi::traverseproc>,
    base_clear: Option<ffi::inquiry>,
}

// SAFETY: the pointers are immutable after initialization and refer to type objects that
// are never freed; they are only dereferenced while attached to the interpreter.
unsafe impl Send for TypeData {}
// SAFETY: as above.
unsafe impl Sync for TypeData {}

static TYPE: OnceLock<TypeData> = OnceLock::new();

fn data<S: Native>() -> &'static TypeData {
    // Slots are only reachable through the type, which exists only after the data is set.
    S::type_data()
        .get()
        .expect("ferroloop native type initialized")
}

impl Native for FutureState {
    fn new_state() -> Self {
        FutureState::new()
    }
    fn type_data() -> &'static OnceLock<TypeData> {
        &TYPE
    }
    fn visit<F: FnMut(&Ref) -> c_int>(&self, visit: &mut F) -> c_int {
        FutureState::visit(self, visit)
    }
    fn clear(&self) {
        FutureState::clear(self)
    }
    fn finalize(slf: &Bound<'_, PyAny>, st: &Self) {
        super::finalize(slf, st)
    }
    fn lookup<'a>(obj: &'a Bound<'_, PyAny>) -> Option<&'a Self> {
        state(obj)
    }
}

/// The Future state of `obj`, if it is an initialized `ferroloop.Future` or
/// `ferroloop.Task` (or an instance of a subclass). The state lives as long as the
/// object, so as long as the borrow of `obj`.
pub fn state<'a>(obj: &'a Bound<'_, PyAny>) -> Option<&'a FutureState> {
    use crate::task::TaskState;
    if is_exact::<TaskState>(obj) {
        // Saves the failed subtype walk of the Future check on the hot path of tasks.
        return native::<TaskState>(obj).map(|t| t.future());
    }
    native::<FutureState>(obj).or_else(|| native::<TaskState>(obj).map(|t| t.future()))
}

/// Whether `obj`'s type is exactly the native type of `S` (not a subclass).
pub fn is_exact<S: Native>(obj: &Bound<'_, PyAny>) -> bool {
    match S::type_data().get() {
        // SAFETY: `obj` is alive; reading its type pointer is always valid.
        Some(td) => unsafe { ffi::Py_TYPE(obj.as_ptr()) == td.ty },
        None => false,
    }
}

/// The state of `obj` if it is an initialized instance of `S`'s type (or a subclass).
pub fn native<'a, S: Native>(obj: &'a Bound<'_, PyAny>) -> Option<&'a S> {
    let td = S::type_data().get()?;
    // SAFETY: `obj` is alive; instances of `td.ty` have a `Slot` at `td.offset`, written by
    // `tp_new` before `init` is set and dropped only in `tp_dealloc` (refcount zero, so no
    // borrow of `obj` can exist then).
    unsafe {
        if ffi::PyObject_TypeCheck(obj.as_ptr(), td.ty) == 0 {
            return None;
        }
        let slot = slot_ptr::<S>(td, obj.as_ptr());
        if !(*slot).init {
            return None;
        }
        Some((*slot).value.assume_init_ref())
    }
}

/// The type object of `S`, if it was created.
pub fn native_type<S: Native>(py: Python<'_>) -> Option<Bound<'_, PyType>> {
    let td = S::type_data().get()?;
    // SAFETY: `td.ty` is a live type object (we hold a strong reference forever).
    Some(unsafe {
        Bound::from_borrowed_ptr(py, td.ty.cast::<ffi::PyObject>()).cast_into_unchecked()
    })
}

/// A new, uninitialized instance of `S`'s own type (what `S()` would get from `tp_new`,
/// before `__init__`): lets the loop build its futures and tasks without a Python call.
pub fn new_exact<S: Native>(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    let td = S::type_data().get().ok_or_else(|| {
        eager_err(
            py.get_type::<pyo3::exceptions::PyRuntimeError>(),
            "type not created",
        )
    })?;
    // SAFETY: `td.ty` is `S`'s type (live forever); tp_new ignores its arguments and
    // returns a new reference or NULL with an exception set.
    unsafe {
        let obj = tp_new::<S>(td.ty, ptr::null_mut(), ptr::null_mut());
        Bound::from_owned_ptr_or_err(py, obj)
    }
}

/// Our Future type object, if it was created.
pub fn future_type(py: Python<'_>) -> Option<Bound<'_, PyType>> {
    native_type::<FutureState>(py)
}

/// # Safety
/// `obj` must be an instance of `td.ty` (or a subtype), `td` the data of `S`'s type.
unsafe fn slot_ptr<S>(td: &TypeData, obj: *mut ffi::PyObject) -> *mut Slot<S> {
    // SAFETY: by the caller; basicsize was computed as `offset + size_of::<Slot<S>>()`.
    unsafe { obj.cast::<u8>().offset(td.offset).cast::<Slot<S>>() }
}

// ---------------------------------------------------------------------------------------
// Error/panic guards
// ---------------------------------------------------------------------------------------

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic in ferroloop".to_string())
}

/// Runs `body` as a CPython slot or method implementation: errors become the pending
/// exception and a panic becomes `PanicException`, never an unwind into C. Shared by every
/// hand-written entry point (the Future/Task slots and the loop's fast methods).
pub fn guard_obj<F>(py: Python<'_>, body: F) -> *mut ffi::PyObject
where
    F: FnOnce() -> PyResult<Py<PyAny>>,
{
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(obj)) => obj.into_ptr(),
        Ok(Err(err)) => {
            err.restore(py);
            ptr::null_mut()
        }
        Err(payload) => {
            PanicException::new_err(panic_message(payload)).restore(py);
            ptr::null_mut()
        }
    }
}

pub fn guard_int<F>(py: Python<'_>, body: F) -> c_int
where
    F: FnOnce() -> PyResult<()>,
{
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => 0,
        Ok(Err(err)) => {
            err.restore(py);
            -1
        }
        Err(payload) => {
            PanicException::new_err(panic_message(payload)).restore(py);
            -1
        }
    }
}

/// Created eagerly: a lazy `PyErr` restored outside PyO3's trampolines would leave its
/// type and arguments in PyO3's deferred-decref pool.
pub fn eager_err(ty: Bound<'_, PyType>, msg: &str) -> PyErr {
    match ty.call1((msg,)) {
        Ok(exc) => PyErr::from_value(exc),
        Err(e) => e,
    }
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

pub type NoArgs<S = FutureState> =
    for<'py> fn(&Bound<'py, PyAny>, &S) -> PyResult<Bound<'py, PyAny>>;
pub type OneArg<S = FutureState> =
    for<'py> fn(&Bound<'py, PyAny>, &S, &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>>;
pub type Fast<S = FutureState> =
    for<'py> fn(&Bound<'py, PyAny>, &S, FastArgs<'py>) -> PyResult<Bound<'py, PyAny>>;
pub type Setter<S = FutureState> =
    for<'py> fn(&Bound<'py, PyAny>, &S, Option<&Bound<'py, PyAny>>) -> PyResult<()>;
pub type Init<S = FutureState> = for<'py> fn(
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
            unsafe { $crate::future::layout::call_noargs::<$S>(slf, $f) }
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
            unsafe { $crate::future::layout::call_onearg::<$S>(slf, arg, $f) }
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
            unsafe { $crate::future::layout::call_fast::<$S>(slf, args, nargs, kwnames, $f) }
        }
    };
}

pub(crate) use {fast, noargs, onearg};

noargs!(m_result, FutureState, super::result);
noargs!(m_exception, FutureState, super::exception);
noargs!(m_done, FutureState, super::done);
noargs!(m_cancelled, FutureState, super::cancelled);
noargs!(m_get_loop, FutureState, super::get_loop);
noargs!(
    m_make_cancelled_error,
    FutureState,
    super::make_cancelled_error_method
);
noargs!(m_del, FutureState, super::del_method);
onearg!(m_set_result, FutureState, super::set_result);
onearg!(m_set_exception, FutureState, super::set_exception);
onearg!(
    m_remove_done_callback,
    FutureState,
    super::remove_done_callback
);
fast!(m_add_done_callback, FutureState, super::add_done_callback);
fast!(m_cancel, FutureState, super::cancel);

// Slots with a `(self) -> object` shape.
unsafe extern "C" fn tp_repr(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: reprfunc convention.
    unsafe { call_noargs::<FutureState>(slf, super::repr) }
}

/// `__iter__` / `__await__` of futures and tasks.
///
/// # Safety
/// getiterfunc convention: `slf` live, thread attached.
pub unsafe extern "C" fn tp_iter(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: getiterfunc / am_await convention.
    unsafe { call_noargs::<FutureState>(slf, super::iter) }
}

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

// ---------------------------------------------------------------------------------------
// Lifecycle slots
// ---------------------------------------------------------------------------------------

unsafe extern "C" fn tp_new<S: Native>(
    subtype: *mut ffi::PyTypeObject,
    _args: *mut ffi::PyObject,
    _kwds: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    let td = data::<S>();
    // SAFETY: `subtype` is our type or a subtype (tp_new is only reachable through them,
    // and `tp_new_wrapper` rejects `_asyncio.Future.__new__(ferroloop.Future)`), so the
    // allocation has room for the `Slot` at `td.offset`. tp_alloc zero-fills and returns a
    // new reference or NULL with an exception set.
    unsafe {
        let alloc = (*subtype).tp_alloc.unwrap_or(ffi::PyType_GenericAlloc);
        let obj = alloc(subtype, 0);
        if obj.is_null() {
            return obj;
        }
        let slot = slot_ptr::<S>(td, obj);
        ptr::addr_of_mut!((*slot).value).write(MaybeUninit::new(S::new_state()));
        (*slot).init = true;
        obj
    }
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

unsafe extern "C" fn tp_init(
    slf: *mut ffi::PyObject,
    args: *mut ffi::PyObject,
    kwds: *mut ffi::PyObject,
) -> c_int {
    // SAFETY: initproc convention, forwarded verbatim.
    unsafe { call_init::<FutureState>(slf, args, kwds, super::init) }
}

unsafe extern "C" fn tp_finalize<S: Native>(slf: *mut ffi::PyObject) {
    // SAFETY: CPython calls tp_finalize with the thread attached and `slf` alive (its
    // refcount temporarily raised); the callee saves and restores the current exception.
    let py = unsafe { Python::assume_attached() };
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: as above.
        let slf = unsafe { enter(py, slf) };
        if let Some(st) = native::<S>(&slf) {
            S::finalize(&slf, st);
        }
    }));
}

unsafe extern "C" fn tp_dealloc<S: Native>(slf: *mut ffi::PyObject) {
    let td = data::<S>();
    // SAFETY: CPython calls tp_dealloc with refcount zero and the thread attached. Steps:
    // 1. run tp_finalize once (no-op if it already ran, e.g. from a Python subclass's
    //    subtype_dealloc or the GC); it may resurrect the object;
    // 2. untrack, clear weak references (so no callback can observe a half-dead object;
    //    the base's dealloc finds the list empty);
    // 3. drop the Rust state (may run arbitrary `__del__`s, as FutureObj_clear does);
    // 4. the base's dealloc clears its (zero) fields and the `__dict__`, frees the memory
    //    with our tp_free, and on 3.12+ (heap base) decrefs `Py_TYPE(self)`;
    // 5. on 3.11 (static base) we decref the type ourselves.
    unsafe {
        if ffi::PyObject_CallFinalizerFromDealloc(slf) < 0 {
            return; // resurrected
        }
        let tp = ffi::Py_TYPE(slf);
        ffi::PyObject_GC_UnTrack(slf.cast());
        ffi::PyObject_ClearWeakRefs(slf);
        let slot = slot_ptr::<S>(td, slf);
        if (*slot).init {
            (*slot).init = false;
            let value = (*slot).value.as_mut_ptr();
            if catch_unwind(AssertUnwindSafe(|| ptr::drop_in_place(value))).is_err() {
                // A panic while dropping leaks what was left; never unwind into C.
            }
        }
        (td.base_dealloc)(slf);
        if !td.base_is_heap {
            ffi::Py_DECREF(tp.cast());
        }
    }
}

unsafe extern "C" fn tp_traverse<S: Native>(
    slf: *mut ffi::PyObject,
    visit: ffi::visitproc,
    arg: *mut c_void,
) -> c_int {
    let td = data::<S>();
    // SAFETY: called by the GC with `slf` alive; `visit`/`arg` are the GC's. Visiting
    // never runs Python code; the state is borrowed with try_lock (never blocks/panics).
    unsafe {
        let slot = slot_ptr::<S>(td, slf);
        if (*slot).init {
            let st = (*slot).value.assume_init_ref();
            let r = st.visit(&mut |r| visit(r.as_ptr(), arg));
            if r != 0 {
                return r;
            }
        }
        if let Some(bt) = td.base_traverse {
            let r = bt(slf, visit, arg);
            if r != 0 {
                return r;
            }
        }
        if !td.base_is_heap {
            // Instances of a heap type reference it; the static base does not visit it.
            return visit(ffi::Py_TYPE(slf).cast(), arg);
        }
        0
    }
}

unsafe extern "C" fn tp_clear<S: Native>(slf: *mut ffi::PyObject) -> c_int {
    let td = data::<S>();
    // SAFETY: called by the GC (or a subtype's clear) with `slf` alive and attached.
    unsafe {
        let slot = slot_ptr::<S>(td, slf);
        if (*slot).init {
            let st = (*slot).value.assume_init_ref();
            let _ = catch_unwind(AssertUnwindSafe(|| st.clear()));
        }
        match td.base_clear {
            Some(bc) => bc(slf),
            None => 0,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Type creation
// ---------------------------------------------------------------------------------------

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

/// The Future methods shared by `ferroloop.Future` and `ferroloop.Task` (Task adds its
/// own `set_result`, `set_exception`, `cancel` and `__del__`).
pub fn shared_future_methods() -> Vec<ffi::PyMethodDef> {
    vec![
        noargs_def(c"result", m_result, c"Return the result this future represents."),
        noargs_def(c"exception", m_exception, c"Return the exception that was set on this future."),
        fast_def(
            c"add_done_callback",
            m_add_done_callback,
            c"add_done_callback($self, fn, /, *, context=None)\n--\n\nAdd a callback to be run when the future becomes done.",
        ),
        o_def(
            c"remove_done_callback",
            m_remove_done_callback,
            c"Remove all instances of a callback from the \"call when done\" list.",
        ),
        noargs_def(c"cancelled", m_cancelled, c"Return True if the future was cancelled."),
        noargs_def(c"done", m_done, c"Return True if the future is done."),
        noargs_def(c"get_loop", m_get_loop, c"Return the event loop the Future is bound to."),
        noargs_def(
            c"_make_cancelled_error",
            m_make_cancelled_error,
            c"Create the CancelledError to raise if the Future is cancelled.",
        ),
        class_getitem_def(),
    ]
}

/// The Future attributes shared by `ferroloop.Future` and `ferroloop.Task`.
pub fn shared_future_getsets() -> Vec<ffi::PyGetSetDef> {
    vec![
        getset::<FutureState>(c"_state", super::get_state, None),
        getset::<FutureState>(
            c"_asyncio_future_blocking",
            super::get_blocking,
            Some(super::set_blocking),
        ),
        getset::<FutureState>(c"_loop", super::get_loop_attr, None),
        getset::<FutureState>(c"_callbacks", super::get_callbacks, None),
        getset::<FutureState>(c"_result", super::get_result, None),
        getset::<FutureState>(c"_exception", super::get_exception, None),
        getset::<FutureState>(
            c"_log_traceback",
            super::get_log_traceback,
            Some(super::set_log_traceback),
        ),
        getset::<FutureState>(c"_source_traceback", super::get_source_traceback, None),
        getset::<FutureState>(
            c"_cancel_message",
            super::get_cancel_message,
            Some(super::set_cancel_message),
        ),
    ]
}

/// What distinguishes one native type from another in [`create_type`].
pub struct TypeSpec {
    /// Attribute of `_asyncio` to subclass (`"Future"` or `"Task"`).
    pub base: &'static str,
    /// Fully qualified name (referenced, not copied, by some versions: static storage).
    pub name: &'static CStr,
    pub doc: &'static CStr,
    pub methods: Vec<ffi::PyMethodDef>,
    pub getsets: Vec<ffi::PyGetSetDef>,
    /// Further slots: `tp_init`, `tp_repr`, `tp_iter`, `am_await`...
    pub slots: Vec<ffi::PyType_Slot>,
}

/// Creates the native type whose state is `S` (once per process), as a subtype of the C
/// `_asyncio.<spec.base>`. Returns `None` when the C `_asyncio` module is not available.
pub fn create_type<S: Native>(
    py: Python<'_>,
    spec: TypeSpec,
) -> PyResult<Option<Bound<'_, PyType>>> {
    if let Some(ty) = native_type::<S>(py) {
        return Ok(Some(ty));
    }
    let Ok(asyncio_c) = py.import("_asyncio") else {
        return Ok(None);
    };
    let base = asyncio_c.getattr(spec.base)?.cast_into::<PyType>()?;
    let base_ptr = base.as_type_ptr();
    // SAFETY: `base_ptr` is a live, ready type object; we only read its slots.
    let (base_size, itemsize, flags, base_dealloc, base_traverse, base_clear) = unsafe {
        (
            (*base_ptr).tp_basicsize,
            (*base_ptr).tp_itemsize,
            (*base_ptr).tp_flags,
            (*base_ptr).tp_dealloc,
            (*base_ptr).tp_traverse,
            (*base_ptr).tp_clear,
        )
    };
    let Some(base_dealloc) = base_dealloc else {
        return Err(PyTypeError::new_err(format!(
            "_asyncio.{} has no tp_dealloc",
            spec.base
        )));
    };
    if itemsize != 0 || flags & ffi::Py_TPFLAGS_HAVE_GC == 0 {
        return Err(PyTypeError::new_err(format!(
            "_asyncio.{} has an unexpected layout",
            spec.base
        )));
    }
    let align = align_of::<Slot<S>>() as isize;
    let offset = (base_size + align - 1) / align * align;
    let basicsize = offset as usize + size_of::<Slot<S>>();

    let mut methods = spec.methods;
    methods.push(ffi::PyMethodDef::zeroed());
    let methods: &'static mut [ffi::PyMethodDef] = Box::leak(methods.into_boxed_slice());
    let mut getsets = spec.getsets;
    getsets.push(ffi::PyGetSetDef::default());
    let getsets: &'static mut [ffi::PyGetSetDef] = Box::leak(getsets.into_boxed_slice());

    let slot = |slot: c_int, pfunc: *mut c_void| ffi::PyType_Slot { slot, pfunc };
    let mut slots = vec![
        slot(ffi::Py_tp_new, tp_new::<S> as *mut c_void),
        slot(ffi::Py_tp_dealloc, tp_dealloc::<S> as *mut c_void),
        slot(ffi::Py_tp_traverse, tp_traverse::<S> as *mut c_void),
        slot(ffi::Py_tp_clear, tp_clear::<S> as *mut c_void),
        slot(ffi::Py_tp_finalize, tp_finalize::<S> as *mut c_void),
        slot(ffi::Py_tp_methods, methods.as_mut_ptr().cast()),
        slot(ffi::Py_tp_getset, getsets.as_mut_ptr().cast()),
        slot(ffi::Py_tp_doc, spec.doc.as_ptr().cast_mut().cast()),
    ];
    slots.extend(spec.slots);
    slots.push(slot(0, ptr::null_mut()));
    let mut tspec = ffi::PyType_Spec {
        name: spec.name.as_ptr(),
        basicsize: basicsize as c_int,
        itemsize: 0,
        flags: (ffi::Py_TPFLAGS_DEFAULT | ffi::Py_TPFLAGS_HAVE_GC | ffi::Py_TPFLAGS_BASETYPE) as _,
        slots: slots.as_mut_ptr(),
    };
    let bases = PyTuple::new(py, [&base])?;
    // SAFETY: `tspec` and `slots` are valid for the call (CPython copies the slot table;
    // the method/getset tables and name it keeps pointing to are leaked/static). Returns
    // a new reference or NULL with an exception set.
    let ty = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyType_FromSpecWithBases(&mut tspec, bases.as_ptr()),
        )?
        .cast_into_unchecked::<PyType>()
    };
    let td = TypeData {
        ty: ty.clone().into_ptr().cast(),
        _base: base.clone().into_ptr().cast(),
        offset,
        base_is_heap: flags & ffi::Py_TPFLAGS_HEAPTYPE != 0,
        base_dealloc,
        base_traverse,
        base_clear,
    };
    if S::type_data().set(td).is_err() {
        // Lost a race with another initialization: keep the first type (leak ours).
        return Ok(native_type::<S>(py));
    }
    Ok(Some(ty))
}

/// Creates `ferroloop._ferroloop.Future` (once per process). Returns `None` when the C
/// `_asyncio` module is not available.
pub fn create_future_type(py: Python<'_>) -> PyResult<Option<Bound<'_, PyType>>> {
    let mut methods = shared_future_methods();
    methods.extend([
        o_def(
            c"set_result",
            m_set_result,
            c"Mark the future done and set its result.",
        ),
        o_def(
            c"set_exception",
            m_set_exception,
            c"Mark the future done and set an exception.",
        ),
        fast_def(
            c"cancel",
            m_cancel,
            c"cancel($self, /, msg=None)\n--\n\nCancel the future and schedule callbacks.",
        ),
        noargs_def(
            c"__del__",
            m_del,
            c"Report an exception that was never retrieved (tp_finalize).",
        ),
    ]);
    let slot = |slot: c_int, pfunc: *mut c_void| ffi::PyType_Slot { slot, pfunc };
    create_type::<FutureState>(
        py,
        TypeSpec {
            base: "Future",
            name: c"ferroloop._ferroloop.Future",
            doc: c"Future(*, loop=None)\n--\n\nasyncio.Future implemented in Rust (a subclass of _asyncio.Future).",
            methods,
            getsets: shared_future_getsets(),
            slots: vec![
                slot(ffi::Py_tp_init, tp_init as *mut c_void),
                slot(ffi::Py_tp_repr, tp_repr as *mut c_void),
                slot(ffi::Py_tp_iter, tp_iter as *mut c_void),
                slot(ffi::Py_am_await, tp_iter as *mut c_void),
            ],
        },
    )
}

// ---------------------------------------------------------------------------------------
// FutureIter's hot slots
// ---------------------------------------------------------------------------------------

/// `tp_iternext` of `FutureIter`, replacing PyO3's: no trampoline, and the
/// `StopIteration(result)` is raised directly (as the C FutureIter does).
unsafe extern "C" fn iter_next(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: iternextfunc convention: `slf` is a live FutureIter, attached.
    let py = unsafe { Python::assume_attached() };
    let step = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: as above; the slot is only installed on the FutureIter type.
        let it = unsafe { enter(py, slf).cast_into_unchecked::<FutureIter>() };
        let step = it.get().advance(py);
        if let Ok(IterStep::Return(_)) = step {
            super::offer_spare_iter(&it);
        }
        step
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

/// `am_send` of `FutureIter` (used by `PyIter_Send`, e.g. by tasks and on 3.11 by `await`):
/// returns the result without raising StopIteration at all.
unsafe extern "C" fn iter_send(
    slf: *mut ffi::PyObject,
    _arg: *mut ffi::PyObject,
    result: *mut *mut ffi::PyObject,
) -> ffi::PySendResult {
    // SAFETY: sendfunc convention: `slf` is a live FutureIter, `result` writable, attached.
    let py = unsafe { Python::assume_attached() };
    let step = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: as above.
        let it = unsafe { enter(py, slf).cast_into_unchecked::<FutureIter>() };
        let step = it.get().advance(py);
        if let Ok(IterStep::Return(_)) = step {
            super::offer_spare_iter(&it);
        }
        step
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

/// Installs the hand-written `tp_iternext` and `am_send` on the `FutureIter` type PyO3 created.
pub fn install_iter_slots(ty: &Bound<'_, PyType>) {
    let tp = ty.as_type_ptr();
    // SAFETY: `tp` is the live heap type PyO3 created for FutureIter (not subclassable);
    // a heap type's `tp_as_async` points at its own `PyAsyncMethods`. Slots are replaced
    // before any instance exists, and the type's caches are invalidated.
    unsafe {
        (*tp).tp_iternext = Some(iter_next);
        if !(*tp).tp_as_async.is_null() {
            (*(*tp).tp_as_async).am_send = Some(iter_send);
        }
        ffi::PyType_Modified(tp);
    }
}
