//! The generic builder of native subtypes of C types that PyO3 cannot `extends=`: used for
//! `ferroloop.Future` (a subtype of `_asyncio.Future`) and `ferroloop.Task` (of
//! `_asyncio.Task`). Its sibling [`slotted`] builds native subtypes of pure-Python classes
//! with `__slots__` (`ferroloop.Handle` of `asyncio.Handle`, `ferroloop.TimerHandle` of
//! `asyncio.TimerHandle`); both share the method trampolines of [`methods`] ([`Lookup`]).
//!
//! Everything here is generic over the Rust state stored in the object ([`Native`]):
//! `FutureState` for the Future, `TaskState` (a `FutureState` plus the task's fields) for
//! the Task; each type has its own [`TypeData`] (offset of the state, base slots).
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
//!
//! [`methods`] turns safe Rust functions on `(&Bound, &S)` into the C functions of method,
//! getter/setter and slot tables.

pub mod methods;
pub mod slotted;

use std::ffi::{c_int, c_void, CStr};
use std::mem::{align_of, size_of, MaybeUninit};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::OnceLock;

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyTuple, PyType};

use super::panic::eager_err;
use super::refs::Ref;
use methods::enter;

/// The Rust part of each instance, at `TypeData::offset` bytes into the object (at
/// `Family::offset` for the types of [`slotted`]).
#[repr(C)]
struct Slot<S> {
    /// Set once `value` is written (by `tp_new`, or `slotted::new_object`), cleared by
    /// `tp_dealloc` before dropping it.
    init: bool,
    value: MaybeUninit<S>,
}

impl<S> Slot<S> {
    /// `(offset, basicsize)` of a type whose instances hold a `Slot<S>` after `base_size`
    /// bytes, at the slot's alignment.
    fn layout(base_size: isize) -> (isize, usize) {
        let align = align_of::<Self>() as isize;
        let offset = (base_size + align - 1) / align * align;
        (offset, offset as usize + size_of::<Self>())
    }

    /// Writes the state of a new object.
    ///
    /// # Safety
    /// `slot` is the zero-filled slot of an object just allocated, not yet initialized.
    unsafe fn write(slot: *mut Self, value: S) {
        // SAFETY: by the caller; writing through `addr_of_mut!` neither reads nor drops the
        // uninitialized value, and `init` is set only once it is written.
        unsafe {
            ptr::addr_of_mut!((*slot).value).write(MaybeUninit::new(value));
            (*slot).init = true;
        }
    }

    /// The state, if it was written and not dropped.
    ///
    /// # Safety
    /// `slot` is the slot of a live instance that outlives `'a` (the state is dropped only
    /// by `tp_dealloc`, when no borrow of the object can exist).
    unsafe fn get<'a>(slot: *mut Self) -> Option<&'a S> {
        // SAFETY: by the caller; `init` says that `value` is initialized.
        unsafe {
            if !(*slot).init {
                return None;
            }
            Some((*slot).value.assume_init_ref())
        }
    }

    /// Drops the state, once (`tp_dealloc`). A panic while dropping leaks what was left;
    /// it never unwinds into C.
    ///
    /// # Safety
    /// `slot` is the slot of an instance being deallocated: nothing borrows its state.
    unsafe fn drop_state(slot: *mut Self) {
        // SAFETY: by the caller; `init` is cleared first, so the value is dropped once.
        unsafe {
            if (*slot).init {
                (*slot).init = false;
                let value = (*slot).value.as_mut_ptr();
                let _ = catch_unwind(AssertUnwindSafe(|| ptr::drop_in_place(value)));
            }
        }
    }

    /// `tp_clear`'s part: `clear` on the state, if any (a panic is caught).
    ///
    /// # Safety
    /// As for [`Self::get`], for the duration of the call.
    unsafe fn clear_state(slot: *mut Self, clear: impl FnOnce(&S)) {
        // SAFETY: by the caller.
        if let Some(st) = unsafe { Self::get(slot) } {
            let _ = catch_unwind(AssertUnwindSafe(|| clear(st)));
        }
    }
}

/// How the methods of a native type find their state in `self` (see [`methods`]).
pub trait Lookup: Sized + 'static {
    fn lookup<'a>(obj: &'a Bound<'_, PyAny>) -> Option<&'a Self>;
}

impl<S: Native> Lookup for S {
    #[inline]
    fn lookup<'a>(obj: &'a Bound<'_, PyAny>) -> Option<&'a Self> {
        <S as Native>::lookup(obj)
    }
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

fn data<S: Native>() -> &'static TypeData {
    // Slots are only reachable through the type, which exists only after the data is set.
    S::type_data()
        .get()
        .expect("ferroloop native type initialized")
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
        Slot::get(slot_ptr::<S>(td, obj.as_ptr()))
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

/// # Safety
/// `obj` must be an instance of `td.ty` (or a subtype), `td` the data of `S`'s type.
unsafe fn slot_ptr<S>(td: &TypeData, obj: *mut ffi::PyObject) -> *mut Slot<S> {
    // SAFETY: by the caller; basicsize was computed as `offset + size_of::<Slot<S>>()`.
    unsafe { obj.cast::<u8>().offset(td.offset).cast::<Slot<S>>() }
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
        Slot::write(slot_ptr::<S>(td, obj), S::new_state());
        obj
    }
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
        Slot::<S>::drop_state(slot_ptr(td, slf));
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
    // never runs Python code; the state is borrowed with try_with (never blocks/panics).
    unsafe {
        if let Some(st) = Slot::<S>::get(slot_ptr(td, slf)) {
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
        Slot::<S>::clear_state(slot_ptr(td, slf), S::clear);
        match td.base_clear {
            Some(bc) => bc(slf),
            None => 0,
        }
    }
}

/// What [`from_spec`] makes a type of.
struct SpecParts {
    /// Fully qualified name (referenced, not copied, by some versions: static storage).
    name: &'static CStr,
    doc: &'static CStr,
    basicsize: usize,
    flags: std::ffi::c_ulong,
    /// `tp_new`, `tp_dealloc`, ...: the slots of the kind of native type.
    lifecycle: Vec<ffi::PyType_Slot>,
    methods: Vec<ffi::PyMethodDef>,
    getsets: Vec<ffi::PyGetSetDef>,
    /// The type's further slots.
    slots: Vec<ffi::PyType_Slot>,
}

/// A new heap type, subtype of `base`, made of `parts` (`PyType_FromSpecWithBases`). The
/// method and getter/setter tables are leaked: the type keeps pointing to them.
fn from_spec<'py>(base: &Bound<'py, PyType>, parts: SpecParts) -> PyResult<Bound<'py, PyType>> {
    let py = base.py();
    let mut methods = parts.methods;
    methods.push(ffi::PyMethodDef::zeroed());
    let methods: &'static mut [ffi::PyMethodDef] = Box::leak(methods.into_boxed_slice());
    let mut getsets = parts.getsets;
    getsets.push(ffi::PyGetSetDef::default());
    let getsets: &'static mut [ffi::PyGetSetDef] = Box::leak(getsets.into_boxed_slice());
    let slot = |slot: c_int, pfunc: *mut c_void| ffi::PyType_Slot { slot, pfunc };
    let mut slots = parts.lifecycle;
    slots.push(slot(ffi::Py_tp_methods, methods.as_mut_ptr().cast()));
    slots.push(slot(ffi::Py_tp_getset, getsets.as_mut_ptr().cast()));
    slots.push(slot(ffi::Py_tp_doc, parts.doc.as_ptr().cast_mut().cast()));
    slots.extend(parts.slots);
    slots.push(slot(0, ptr::null_mut()));
    let mut tspec = ffi::PyType_Spec {
        name: parts.name.as_ptr(),
        basicsize: parts.basicsize as c_int,
        itemsize: 0,
        flags: parts.flags as _,
        slots: slots.as_mut_ptr(),
    };
    let bases = PyTuple::new(py, [base])?;
    // SAFETY: `tspec` and `slots` are valid for the call (CPython copies the slot table;
    // the method/getset tables and the name it keeps pointing to are leaked or static).
    // Returns a new reference or NULL with an exception set.
    Ok(unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyType_FromSpecWithBases(&mut tspec, bases.as_ptr()),
        )?
        .cast_into_unchecked::<PyType>()
    })
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
    let (offset, basicsize) = Slot::<S>::layout(base_size);

    let slot = |slot: c_int, pfunc: *mut c_void| ffi::PyType_Slot { slot, pfunc };
    let ty = from_spec(
        &base,
        SpecParts {
            name: spec.name,
            doc: spec.doc,
            basicsize,
            flags: ffi::Py_TPFLAGS_DEFAULT | ffi::Py_TPFLAGS_HAVE_GC | ffi::Py_TPFLAGS_BASETYPE,
            lifecycle: vec![
                slot(ffi::Py_tp_new, tp_new::<S> as *mut c_void),
                slot(ffi::Py_tp_dealloc, tp_dealloc::<S> as *mut c_void),
                slot(ffi::Py_tp_traverse, tp_traverse::<S> as *mut c_void),
                slot(ffi::Py_tp_clear, tp_clear::<S> as *mut c_void),
                slot(ffi::Py_tp_finalize, tp_finalize::<S> as *mut c_void),
            ],
            methods: spec.methods,
            getsets: spec.getsets,
            slots: spec.slots,
        },
    )?;
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
