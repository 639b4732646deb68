//! `ferroloop._ferroloop.TaskRef`: a weak-reference look-alike for asyncio's task registry
//! (see `task::registry`). Calling it returns the task, or `None` once the task is finished
//! or gone; it hashes as the task and compares like a weak reference.
//!
//! A hand-built type rather than a `#[pyclass]`: PyO3's classes always take part in the
//! cyclic GC, and not adding a GC-tracked object per task is the point. It holds no
//! reference the GC would need to see (its task pointer is borrowed). Used on GIL builds
//! only (see `task::registry`).

use std::ffi::{c_int, c_void};
use std::ptr;
use std::sync::OnceLock;

use pyo3::ffi;
use pyo3::prelude::*;

#[repr(C)]
struct TaskRefObject {
    ob_base: ffi::PyObject,
    /// The task, borrowed: the task owns this object through its `Registration`, which
    /// nulls the pointer before the task can go away.
    task: *mut ffi::PyObject,
    /// The task's hash, as `hash(weakref.ref(task))`: weak references hash as their
    /// referent and keep that hash once it is dead.
    hash: ffi::Py_hash_t,
}

struct TypePtr(*mut ffi::PyTypeObject);
// SAFETY: the type object is created once, never freed, and only used while attached.
unsafe impl Send for TypePtr {}
// SAFETY: as above.
unsafe impl Sync for TypePtr {}

static TYPE: OnceLock<TypePtr> = OnceLock::new();

fn task_ref_type(py: Python<'_>) -> PyResult<*mut ffi::PyTypeObject> {
    if let Some(t) = TYPE.get() {
        return Ok(t.0);
    }
    let mut slots = [
        slot(ffi::Py_tp_dealloc, dealloc as *mut c_void),
        slot(ffi::Py_tp_call, call as *mut c_void),
        slot(ffi::Py_tp_hash, hash as *mut c_void),
        slot(ffi::Py_tp_richcompare, richcompare as *mut c_void),
        slot(ffi::Py_tp_repr, repr as *mut c_void),
        ffi::PyType_Slot::default(),
    ];
    let mut spec = ffi::PyType_Spec {
        name: c"ferroloop._ferroloop.TaskRef".as_ptr(),
        basicsize: std::mem::size_of::<TaskRefObject>() as c_int,
        itemsize: 0,
        flags: ffi::Py_TPFLAGS_DEFAULT as _,
        slots: slots.as_mut_ptr(),
    };
    // SAFETY: `spec` and `slots` are valid for the call (CPython copies what it keeps);
    // a new reference to the type or NULL with an exception set.
    let ty = unsafe { ffi::PyType_FromSpec(&mut spec) };
    if ty.is_null() {
        return Err(PyErr::fetch(py));
    }
    // The type is kept forever (the reference is leaked on purpose); with the GIL held,
    // a concurrent initializer cannot exist.
    let _ = TYPE.set(TypePtr(ty.cast()));
    Ok(TYPE.get().map_or(ty.cast(), |t| t.0))
}

fn slot(slot: c_int, pfunc: *mut c_void) -> ffi::PyType_Slot {
    ffi::PyType_Slot { slot, pfunc }
}

/// A new `TaskRef` to `task`.
pub fn new<'py>(task: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = task.py();
    let ty = task_ref_type(py)?;
    // SAFETY: `task` is live; PyObject_Hash returns -1 with an exception set on error
    // (an unhashable task subclass, as with a weak reference).
    let hash = unsafe { ffi::PyObject_Hash(task.as_ptr()) };
    if hash == -1 {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: `ty` is our live type; tp_alloc (PyType_GenericAlloc: not GC, zero-filled,
    // a reference to the heap type taken) returns a new reference or NULL with an
    // exception set; the fields are then written before anyone can see the object.
    unsafe {
        let alloc = (*ty).tp_alloc.unwrap_or(ffi::PyType_GenericAlloc);
        let obj = alloc(ty, 0);
        if obj.is_null() {
            return Err(PyErr::fetch(py));
        }
        let r = obj.cast::<TaskRefObject>();
        (*r).task = task.as_ptr();
        (*r).hash = hash;
        Ok(Bound::from_owned_ptr(py, obj))
    }
}

/// Makes `entry` (a `TaskRef`) dead.
pub fn kill(entry: &Bound<'_, PyAny>) {
    if let Some(r) = as_task_ref(entry.as_ptr()) {
        // SAFETY: `r` points into the live object `entry`; attached.
        unsafe { (*r).task = ptr::null_mut() };
    }
}

fn as_task_ref(obj: *mut ffi::PyObject) -> Option<*mut TaskRefObject> {
    let ty = TYPE.get()?.0;
    // SAFETY: `obj` is live; the type pointer is only compared.
    (unsafe { ffi::Py_TYPE(obj) } == ty).then_some(obj.cast())
}

/// The live task behind `obj` (a `TaskRef` or a weak reference), as a new reference;
/// `None` if dead. `Err(())` if `obj` is neither.
///
/// # Safety
/// `obj` live; attached.
unsafe fn referent(obj: *mut ffi::PyObject) -> Result<Option<*mut ffi::PyObject>, ()> {
    // SAFETY: by the caller; a non-null task pointer is alive (see `task`).
    unsafe {
        if let Some(r) = as_task_ref(obj) {
            let t = (*r).task;
            return Ok((!t.is_null()).then(|| {
                ffi::Py_INCREF(t);
                t
            }));
        }
        if ffi::PyWeakref_Check(obj) != 0 {
            let mut t = ptr::null_mut();
            // Returns 1 with a new reference, 0 (dead) or -1 (not reachable here: `obj`
            // is a weak reference).
            if ffi::compat::PyWeakref_GetRef(obj, &mut t) == 1 {
                return Ok(Some(t));
            }
            return Ok(None);
        }
        Err(())
    }
}

unsafe extern "C" fn dealloc(obj: *mut ffi::PyObject) {
    // SAFETY: refcount zero, attached; the object is not GC-tracked and owns a
    // reference to its heap type, released after the memory is freed.
    unsafe {
        let ty = ffi::Py_TYPE(obj);
        ffi::PyObject_Free(obj.cast());
        ffi::Py_DECREF(ty.cast());
    }
}

unsafe extern "C" fn call(
    obj: *mut ffi::PyObject,
    args: *mut ffi::PyObject,
    kwargs: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: ternaryfunc convention: `obj` a live TaskRef, `args` a tuple, `kwargs`
    // NULL or a dict; attached.
    unsafe {
        if ffi::PyTuple_Size(args) != 0 || (!kwargs.is_null() && ffi::PyDict_Size(kwargs) != 0) {
            ffi::PyErr_SetString(
                ffi::PyExc_TypeError,
                c"TaskRef() takes no arguments".as_ptr(),
            );
            return ptr::null_mut();
        }
        match referent(obj) {
            Ok(Some(t)) => t,
            _ => {
                let none = ffi::Py_None();
                ffi::Py_INCREF(none);
                none
            }
        }
    }
}

unsafe extern "C" fn hash(obj: *mut ffi::PyObject) -> ffi::Py_hash_t {
    // SAFETY: hashfunc convention: `obj` is a live TaskRef.
    unsafe { (*obj.cast::<TaskRefObject>()).hash }
}

/// Equality as between weak references: by referent while both are alive, else by
/// identity.
unsafe extern "C" fn richcompare(
    a: *mut ffi::PyObject,
    b: *mut ffi::PyObject,
    op: c_int,
) -> *mut ffi::PyObject {
    // SAFETY: richcmpfunc convention: `a` a live TaskRef, `b` live; attached. The
    // referents are new references, released before returning.
    unsafe {
        if op != ffi::Py_EQ && op != ffi::Py_NE {
            return not_implemented();
        }
        let (Ok(ra), Ok(rb)) = (referent(a), referent(b)) else {
            for r in [referent(a), referent(b)].into_iter().flatten().flatten() {
                ffi::Py_DECREF(r);
            }
            return not_implemented();
        };
        match (ra, rb) {
            (Some(x), Some(y)) => {
                let res = ffi::PyObject_RichCompare(x, y, op);
                ffi::Py_DECREF(x);
                ffi::Py_DECREF(y);
                res
            }
            (x, y) => {
                for r in [x, y].into_iter().flatten() {
                    ffi::Py_DECREF(r);
                }
                let same = (a == b) == (op == ffi::Py_EQ);
                ffi::PyBool_FromLong(same.into())
            }
        }
    }
}

/// # Safety
/// Attached.
unsafe fn not_implemented() -> *mut ffi::PyObject {
    // SAFETY: by the caller; a new reference to the singleton.
    unsafe {
        let ni = ffi::Py_NotImplemented();
        ffi::Py_INCREF(ni);
        ni
    }
}

unsafe extern "C" fn repr(obj: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: reprfunc convention; attached. The referent is a new reference, released
    // after formatting; the result is a new reference or NULL with an exception set.
    unsafe {
        match referent(obj) {
            Ok(Some(t)) => {
                let s = ffi::PyUnicode_FromFormat(
                    c"<TaskRef at %p; to '%s' at %p>".as_ptr(),
                    obj,
                    (*ffi::Py_TYPE(t)).tp_name,
                    t,
                );
                ffi::Py_DECREF(t);
                s
            }
            _ => ffi::PyUnicode_FromFormat(c"<TaskRef at %p; dead>".as_ptr(), obj),
        }
    }
}
