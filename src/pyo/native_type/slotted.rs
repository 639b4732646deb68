//! Native subtypes of pure-Python classes with `__slots__`: `ferroloop.Handle` (a subtype of
//! `asyncio.Handle`) and `ferroloop.TimerHandle` (of `asyncio.TimerHandle`), so that
//! `isinstance(loop.call_soon(f), asyncio.Handle)` holds as on asyncio.
//!
//! The types of one *family* share one Rust state type `S` at one offset:
//!
//! ```text
//! | PyObject | base's slot members (and, on 3.11, its inline __weakref__) | zero pad | Slot<S> |
//! ```
//!
//! The offset is the largest base `__basicsize__`, aligned, so the state of any member of the
//! family is one addition away (no type dispatch on the hot path). The bases' `__slots__`
//! members stay NULL: every attribute they define is shadowed by a getter of ours (declared
//! by the caller), and they are only reachable through an explicit
//! `asyncio.Handle._callback.__set__(h, v)`. Whatever is stored there anyway is visited,
//! cleared and released like `subtype_dealloc` would: the offsets of all the bases' object
//! members are collected when the family is created (a plain Handle's zero padding covers
//! the offsets of `asyncio.TimerHandle`'s extra members, so one list serves the family).
//!
//! The bases' `tp_dealloc`/`tp_traverse`/`tp_clear` are `subtype_dealloc`/`subtype_traverse`/
//! `subtype_clear`, which walk `tp_base` from `Py_TYPE(self)` while the slot is theirs:
//! calling them from ours would recurse into ours forever. So ours do the whole job:
//! untrack, clear weak references, drop the state and the base members, `tp_free`, and
//! decref the (heap) type, as every heap type's dealloc does; traverse visits the type.
//! A Python subclass of a family type goes through `subtype_dealloc`, which handles its
//! own `__dict__`/slots and then calls ours, exactly as for a subclass of a C type.
//!
//! Weak references use the base's slot as it is: inline at `tp_weaklistoffset` on 3.11,
//! "managed" in the pre-header on 3.12+ (a negative offset, the same formula).
//!
//! Objects are only created from Rust ([`new_object`]), with their state: the types have no
//! `tp_new` ("cannot create '...' instances", as for the `#[pyclass]` these types replace).

use std::ffi::{c_int, c_void, CStr};
use std::ptr;
use std::sync::OnceLock;

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyType;

use super::{from_spec, Slot, SpecParts};

/// The Rust state of a family of slotted native types.
pub trait Slotted: Sized + 'static {
    /// Where the family's layout data lives (one per state type).
    fn family() -> &'static OnceLock<Family>;
    /// Visits every strong reference for the GC; returns the first non-zero result. Must
    /// never block or run Python code.
    fn visit<F: FnMut(&Py<PyAny>) -> c_int>(&self, visit: &mut F) -> c_int;
    /// Drops the references that can form cycles (tp_clear).
    fn clear(&self);
}

/// Layout data of a family, written once when it is created.
pub struct Family {
    /// The family's types (strong references, kept for the life of the process).
    types: Vec<*mut ffi::PyTypeObject>,
    /// Offset of the `Slot<S>` in every instance.
    offset: isize,
    /// Offsets of the bases' object members (`__slots__` entries), which stay NULL unless
    /// set through the base's own descriptors.
    base_members: Vec<isize>,
    /// The bases, kept alive (strong references) while their layout is used.
    _bases: Vec<*mut ffi::PyTypeObject>,
}

// SAFETY: the pointers are immutable after initialization and refer to type objects that
// are never freed (we hold strong references); they are only dereferenced while attached.
unsafe impl Send for Family {}
// SAFETY: as above.
unsafe impl Sync for Family {}

fn family<S: Slotted>() -> &'static Family {
    // The slots are only reachable through the types, which exist only once this is set.
    S::family()
        .get()
        .expect("ferroloop slotted type initialized")
}

/// # Safety
/// `obj` must be an instance of one of the family's types (or of a subclass).
unsafe fn slot_ptr<S>(fam: &Family, obj: *mut ffi::PyObject) -> *mut Slot<S> {
    // SAFETY: by the caller; every type's basicsize is `offset + size_of::<Slot<S>>()`.
    unsafe { obj.cast::<u8>().offset(fam.offset).cast::<Slot<S>>() }
}

/// Index in the family of the type `obj` is an instance of (exactly, or of a subclass).
fn member_index<S: Slotted>(obj: &Bound<'_, PyAny>) -> Option<usize> {
    let fam = S::family().get()?;
    // SAFETY: `obj` is live; reading its type and checking subtypes has no side effects.
    unsafe {
        let tp = ffi::Py_TYPE(obj.as_ptr());
        if let Some(i) = fam.types.iter().position(|&t| t == tp) {
            return Some(i);
        }
        fam.types
            .iter()
            .position(|&t| ffi::PyType_IsSubtype(tp, t) != 0)
    }
}

/// The state of `obj` if it is an instance of one of `S`'s types (or of a subclass).
pub fn state<'a, S: Slotted>(obj: &'a Bound<'_, PyAny>) -> Option<&'a S> {
    member_index::<S>(obj)?;
    let fam = family::<S>();
    // SAFETY: `obj` is an instance of the family (checked above); its `Slot` was written
    // by `new_object` before the object was handed out (or `init` is false: a subclass
    // instance cannot be created, but stay defensive) and is dropped only by `tp_dealloc`,
    // when no borrow of `obj` can exist.
    unsafe { Slot::get(slot_ptr::<S>(fam, obj.as_ptr())) }
}

/// `obj` as a typed `Bound<S>` if it is an instance of the family's type number `index`
/// (or of a subclass of it).
pub fn cast<'a, 'py, S: Slotted>(
    obj: &'a Bound<'py, PyAny>,
    index: usize,
) -> Option<&'a Bound<'py, S>> {
    let fam = S::family().get()?;
    let ty = *fam.types.get(index)?;
    state::<S>(obj)?;
    // SAFETY: `obj` is live and `ty` a live type; `Bound<S>` only promises an initialized
    // instance of the family, checked above.
    unsafe {
        if ffi::PyObject_TypeCheck(obj.as_ptr(), ty) == 0 {
            return None;
        }
        Some(obj.cast_unchecked::<S>())
    }
}

/// Access to the state behind a typed reference to a family member. A `Py<S>`/`Bound<S>`
/// for a [`Slotted`] `S` is only ever made by [`new_object`] and [`cast`] (here), so it
/// always points to an initialized instance; its state lives as long as the object.
pub trait SlottedRef<S> {
    fn state(&self) -> &S;
}

/// The family of `S`, given a member of it in hand (so the family exists).
///
/// # Safety
/// The caller holds a live instance of one of the family's types.
#[inline]
unsafe fn family_of_member<S: Slotted>() -> &'static Family {
    // SAFETY: by the caller: instances exist only once their types do, and the family is
    // set right after the types are created, before any instance is. Knowing it is set
    // lets the compiler drop the check (this is on the path of every scheduled callback).
    unsafe { S::family().get().unwrap_unchecked() }
}

impl<S: Slotted> SlottedRef<S> for Py<S> {
    #[inline]
    fn state(&self) -> &S {
        // SAFETY: see the trait: the object is an initialized family member, kept alive by
        // the strong reference `self` for as long as the returned borrow.
        unsafe {
            let fam = family_of_member::<S>();
            (*slot_ptr::<S>(fam, self.as_ptr())).value.assume_init_ref()
        }
    }
}

impl<S: Slotted> SlottedRef<S> for Bound<'_, S> {
    #[inline]
    fn state(&self) -> &S {
        // SAFETY: as for `Py<S>`.
        unsafe {
            let fam = family_of_member::<S>();
            (*slot_ptr::<S>(fam, self.as_ptr())).value.assume_init_ref()
        }
    }
}

/// A new instance of the family's type number `index`, holding `state`.
pub fn new_object<S: Slotted>(py: Python<'_>, index: usize, state: S) -> PyResult<Bound<'_, S>> {
    let fam = family::<S>();
    let ty = fam.types[index];
    // SAFETY: `ty` is a live type of the family, whose instances have room for the `Slot`
    // at `fam.offset`. tp_alloc zero-fills and returns a new reference (tracked by the GC
    // when, as here, the type is a GC type) or NULL with an exception set. Nothing runs
    // between the allocation and the write of the state (no allocation, so no collection
    // can visit the object before `init` is set).
    unsafe {
        let alloc = (*ty).tp_alloc.unwrap_or(ffi::PyType_GenericAlloc);
        let obj = alloc(ty, 0);
        if obj.is_null() {
            drop(state);
            return Err(PyErr::fetch(py));
        }
        Slot::write(slot_ptr::<S>(fam, obj), state);
        Ok(Bound::from_owned_ptr(py, obj).cast_into_unchecked::<S>())
    }
}

/// The family's type number `index`.
pub fn family_type<S: Slotted>(py: Python<'_>, index: usize) -> Option<Bound<'_, PyType>> {
    let ty = *S::family().get()?.types.get(index)?;
    // SAFETY: `ty` is a live type object (we hold a strong reference forever).
    Some(unsafe { Bound::from_borrowed_ptr(py, ty.cast::<ffi::PyObject>()).cast_into_unchecked() })
}

// ---------------------------------------------------------------------------------------
// Lifecycle slots
// ---------------------------------------------------------------------------------------

/// The object member at `offset` bytes into `obj`.
///
/// # Safety
/// `offset` must be one of the family's `base_members` and `obj` a family instance.
unsafe fn member(obj: *mut ffi::PyObject, offset: isize) -> *mut *mut ffi::PyObject {
    // SAFETY: by the caller.
    unsafe { obj.cast::<u8>().offset(offset).cast::<*mut ffi::PyObject>() }
}

unsafe extern "C" fn tp_dealloc<S: Slotted>(slf: *mut ffi::PyObject) {
    let fam = family::<S>();
    // SAFETY: CPython calls tp_dealloc with refcount zero and the thread attached. What
    // `subtype_dealloc` would do, in its order: untrack, clear weak references (none can
    // then observe a half-dead object), drop the Rust state (may run arbitrary `__del__`s;
    // nothing can reach `slf` any more), release the bases' members, free the memory with
    // the type's tp_free, and decref the type (every instance of a heap type holds a
    // reference to it; a Python subclass's `subtype_dealloc` leaves that to us, its base).
    unsafe {
        let tp = ffi::Py_TYPE(slf);
        ffi::PyObject_GC_UnTrack(slf.cast());
        let weaklist_offset = (*tp).tp_weaklistoffset;
        if weaklist_offset != 0 && !(*member(slf, weaklist_offset)).is_null() {
            ffi::PyObject_ClearWeakRefs(slf);
        }
        Slot::<S>::drop_state(slot_ptr(fam, slf));
        for &off in &fam.base_members {
            let m = member(slf, off);
            let v = *m;
            if !v.is_null() {
                *m = ptr::null_mut();
                ffi::Py_DECREF(v);
            }
        }
        let free = (*tp).tp_free.unwrap_or(ffi::PyObject_GC_Del);
        free(slf.cast());
        ffi::Py_DECREF(tp.cast());
    }
}

unsafe extern "C" fn tp_traverse<S: Slotted>(
    slf: *mut ffi::PyObject,
    visit: ffi::visitproc,
    arg: *mut c_void,
) -> c_int {
    let fam = family::<S>();
    // SAFETY: called by the GC with `slf` alive; `visit`/`arg` are the GC's. Visiting
    // never runs Python code; the state's visit never blocks.
    unsafe {
        if let Some(st) = Slot::<S>::get(slot_ptr(fam, slf)) {
            let r = st.visit(&mut |o| visit(o.as_ptr(), arg));
            if r != 0 {
                return r;
            }
        }
        for &off in &fam.base_members {
            let v = *member(slf, off);
            if !v.is_null() {
                let r = visit(v, arg);
                if r != 0 {
                    return r;
                }
            }
        }
        // Instances of a heap type reference it.
        visit(ffi::Py_TYPE(slf).cast(), arg)
    }
}

unsafe extern "C" fn tp_clear<S: Slotted>(slf: *mut ffi::PyObject) -> c_int {
    let fam = family::<S>();
    // SAFETY: called by the GC (or a subclass's clear) with `slf` alive and attached.
    unsafe {
        Slot::<S>::clear_state(slot_ptr(fam, slf), S::clear);
        for &off in &fam.base_members {
            let m = member(slf, off);
            let v = *m;
            if !v.is_null() {
                *m = ptr::null_mut();
                ffi::Py_DECREF(v);
            }
        }
    }
    0
}

/// One type of a family.
pub struct SlottedSpec<'py> {
    /// The pure-Python base (a heap type with `__slots__`, no `__dict__`).
    pub base: Bound<'py, PyType>,
    /// Fully qualified name (static storage: some versions keep the pointer).
    pub name: &'static CStr,
    pub doc: &'static CStr,
    pub methods: Vec<ffi::PyMethodDef>,
    pub getsets: Vec<ffi::PyGetSetDef>,
    /// Further slots: `tp_repr`, `tp_hash`, `tp_richcompare`...
    pub slots: Vec<ffi::PyType_Slot>,
    /// Whether Python code may subclass it.
    pub subclassable: bool,
}

/// The offsets of the object members (`__slots__` entries) of `base` and of its heap-type
/// bases, checking that the chain ends at `object` (no C layout in between).
fn object_members(base: &Bound<'_, PyType>) -> PyResult<Vec<isize>> {
    let mut out = Vec::new();
    let mut tp = base.as_type_ptr();
    // SAFETY: `tp` walks `tp_base` from a live, ready type; bases are kept alive by their
    // subtypes. Member tables end with a NULL name.
    unsafe {
        while (*tp).tp_flags & ffi::Py_TPFLAGS_HEAPTYPE != 0 {
            let mut m = (*tp).tp_members;
            while !m.is_null() && !(*m).name.is_null() {
                if (*m).type_code == ffi::Py_T_OBJECT_EX && !out.contains(&(*m).offset) {
                    out.push((*m).offset);
                }
                m = m.add(1);
            }
            tp = (*tp).tp_base;
            if tp.is_null() {
                break;
            }
        }
        let object = ptr::addr_of_mut!(ffi::PyBaseObject_Type);
        if tp != object {
            return Err(PyTypeError::new_err(format!(
                "{} does not derive from object through Python classes only",
                base.name()?
            )));
        }
    }
    Ok(out)
}

/// Creates the family of `S` (once per process): one native type per spec, each a subtype
/// of its spec's base. Returns the types in the order of `specs`.
pub fn create_family<'py, S: Slotted>(
    py: Python<'py>,
    specs: Vec<SlottedSpec<'py>>,
) -> PyResult<Vec<Bound<'py, PyType>>> {
    if let Some(fam) = S::family().get() {
        return Ok((0..fam.types.len())
            .filter_map(|i| family_type::<S>(py, i))
            .collect());
    }
    let mut base_members = Vec::new();
    let mut max_size = 0isize;
    for spec in &specs {
        let b = spec.base.as_type_ptr();
        // SAFETY: `b` is a live, ready type object; we only read its fields.
        let (size, itemsize, flags, dictoffset) = unsafe {
            (
                (*b).tp_basicsize,
                (*b).tp_itemsize,
                (*b).tp_flags,
                (*b).tp_dictoffset,
            )
        };
        if itemsize != 0
            || flags & ffi::Py_TPFLAGS_HAVE_GC == 0
            || flags & ffi::Py_TPFLAGS_HEAPTYPE == 0
            || dictoffset != 0
            || flags & ffi::Py_TPFLAGS_MANAGED_DICT != 0
        {
            return Err(PyTypeError::new_err(format!(
                "{} has an unexpected layout",
                spec.base.name()?
            )));
        }
        for off in object_members(&spec.base)? {
            if !base_members.contains(&off) {
                base_members.push(off);
            }
        }
        max_size = max_size.max(size);
    }
    let (offset, basicsize) = Slot::<S>::layout(max_size);

    let mut types = Vec::new();
    let mut bases = Vec::new();
    for spec in specs {
        // No `tp_new`: "cannot create 'ferroloop._ferroloop.Handle' instances".
        let mut flags = ffi::Py_TPFLAGS_DEFAULT
            | ffi::Py_TPFLAGS_HAVE_GC
            | ffi::Py_TPFLAGS_DISALLOW_INSTANTIATION;
        if spec.subclassable {
            flags |= ffi::Py_TPFLAGS_BASETYPE;
        }
        let slot = |slot: c_int, pfunc: *mut c_void| ffi::PyType_Slot { slot, pfunc };
        let ty = from_spec(
            &spec.base,
            SpecParts {
                name: spec.name,
                doc: spec.doc,
                basicsize,
                flags,
                lifecycle: vec![
                    slot(ffi::Py_tp_dealloc, tp_dealloc::<S> as *mut c_void),
                    slot(ffi::Py_tp_traverse, tp_traverse::<S> as *mut c_void),
                    slot(ffi::Py_tp_clear, tp_clear::<S> as *mut c_void),
                ],
                methods: spec.methods,
                getsets: spec.getsets,
                slots: spec.slots,
            },
        )?;
        types.push(ty);
        bases.push(spec.base);
    }
    let fam = Family {
        types: types.iter().map(|t| t.clone().into_ptr().cast()).collect(),
        offset,
        base_members,
        _bases: bases.iter().map(|b| b.clone().into_ptr().cast()).collect(),
    };
    if S::family().set(fam).is_err() {
        // Lost a race with another initialization: keep the first family (leak ours).
        return Ok((0..types.len())
            .filter_map(|i| family_type::<S>(py, i))
            .collect());
    }
    Ok(types)
}
