//! Object-level operations below PyO3's API: reference counts, the GC's tracking, type
//! checks, attribute access without materializing an `AttributeError`.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyType};

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

/// Remembers that a class attribute was found to be the expected object (see
/// [`class_attr_is`]), keyed by the class's version tag: CPython gives a class a new tag
/// (0 until the next lookup assigns one) whenever it or one of its bases changes, which is
/// also what invalidates its method cache, so a class whose tag still matches would give
/// the same answer. Saves the lookup on paths that check an override on every call.
#[derive(Debug, Default)]
pub struct ClassAttrCache(std::sync::atomic::AtomicU32);

impl ClassAttrCache {
    pub const fn new() -> Self {
        ClassAttrCache(std::sync::atomic::AtomicU32::new(0))
    }

    /// [`class_attr_is`], answered from the cache while `type(obj)` keeps the version tag
    /// it had when the attribute was last found to be `own`.
    #[inline]
    pub fn class_attr_is(
        &self,
        obj: &Bound<'_, PyAny>,
        name: &Bound<'_, PyString>,
        own: &Py<PyAny>,
    ) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let tag = version_tag(obj);
        if tag != 0 && self.0.load(Relaxed) == tag {
            return true;
        }
        let found = class_attr_is(obj, name, own);
        if found {
            // Read again: the lookup assigns a tag to a class that had none.
            self.0.store(version_tag(obj), Relaxed);
        }
        found
    }
}

/// The version tag of `type(obj)`, or 0 (none, or a free-threaded build, whose tags are
/// not read here: there the cache always looks the attribute up).
#[inline]
fn version_tag(obj: &Bound<'_, PyAny>) -> u32 {
    #[cfg(not(Py_GIL_DISABLED))]
    {
        // SAFETY: `obj` is live, so is its type; attached (GIL held), so the tag is not
        // being changed while it is read. Only the integer is read.
        unsafe { (*ffi::Py_TYPE(obj.as_ptr())).tp_version_tag }
    }
    #[cfg(Py_GIL_DISABLED)]
    {
        let _ = obj;
        0
    }
}

/// Whether `obj.<name>` is the function `own` bound to `obj`: neither the instance nor
/// its class (nor a base) put something else under that name.
pub fn method_is(
    obj: &Bound<'_, PyAny>,
    name: &Bound<'_, PyString>,
    own: &Py<PyAny>,
) -> PyResult<bool> {
    let py = obj.py();
    if let Some(get_method) = get_method_fn(py) {
        let mut found = std::ptr::null_mut();
        // SAFETY: CPython's `_PyObject_GetMethod` (see `get_method_fn`) with live `obj`
        // and `name` (a str); it stores a new reference or NULL (with an exception set) in
        // `found`, taken over below. It returns 1 when `found` is the function as the
        // class has it (the instance overrides nothing), 0 for any other attribute.
        unsafe {
            let unbound = get_method(obj.as_ptr(), name.as_ptr(), &mut found);
            let found = Bound::from_owned_ptr_or_err(py, found)?;
            return Ok(unbound == 1 && found.as_ptr() == own.as_ptr());
        }
    }
    let found = obj.getattr(name)?;
    // SAFETY: `found` is live and exactly a method object (checked first, only the
    // static type's address taken); its function and self are borrowed and only
    // compared, never dereferenced.
    Ok(unsafe {
        let m = found.as_ptr();
        ffi::Py_TYPE(m) == std::ptr::addr_of_mut!(PyMethod_Type)
            && PyMethod_Function(m) == own.as_ptr()
            && PyMethod_Self(m) == obj.as_ptr()
    })
}

/// `int _PyObject_GetMethod(PyObject *obj, PyObject *name, PyObject **method)`.
type GetMethodFn =
    unsafe extern "C" fn(*mut ffi::PyObject, *mut ffi::PyObject, *mut *mut ffi::PyObject) -> i32;

/// CPython's `_PyObject_GetMethod` (what `LOAD_METHOD` and `PyObject_VectorcallMethod` use:
/// the attribute without binding a method object) on the versions whose signature and
/// meaning were checked, 3.11 to 3.13; found at run time, so that a CPython without it
/// still loads this module (attribute access and a method comparison stand in).
fn get_method_fn(py: Python<'_>) -> Option<GetMethodFn> {
    static GET_METHOD: PyOnceLock<Option<usize>> = PyOnceLock::new();
    let addr = *GET_METHOD.get_or_init(py, || {
        let v = py.version_info();
        if !((3, 11) <= (v.major, v.minor) && (v.major, v.minor) <= (3, 13)) {
            return None;
        }
        // SAFETY: dlsym with the default handle and a NUL-terminated name only looks up a
        // symbol of the running process.
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"_PyObject_GetMethod".as_ptr()) };
        (!p.is_null()).then_some(p as usize)
    });
    // SAFETY: a non-NULL address of `_PyObject_GetMethod`, whose C signature on these
    // versions is `GetMethodFn`.
    addr.map(|a| unsafe { std::mem::transmute::<usize, GetMethodFn>(a) })
}

extern "C" {
    // The bound-method type of `classobject.h` (public C API; PyO3 leaves it out).
    static mut PyMethod_Type: ffi::PyTypeObject;
    fn PyMethod_Function(method: *mut ffi::PyObject) -> *mut ffi::PyObject;
    fn PyMethod_Self(method: *mut ffi::PyObject) -> *mut ffi::PyObject;
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

/// A `__slots__` member of a Python class (e.g. `_SocketTransport._core`), read straight
/// from its place in the object: what the member descriptor's `__get__` does, without the
/// attribute lookup that finds the descriptor.
pub struct SlotMember {
    cls: Py<PyType>,
    #[cfg_attr(not(Py_GIL_DISABLED), allow(dead_code))]
    name: Py<PyString>,
    /// Where the member's reference sits in an instance of `cls` (or of a subclass:
    /// subclasses extend the layout).
    #[cfg_attr(Py_GIL_DISABLED, allow(dead_code))]
    offset: isize,
}

impl SlotMember {
    /// The member `name` of `cls`, which must be one of its `__slots__` (an object slot).
    pub fn of(cls: &Bound<'_, PyType>, name: &str) -> PyResult<Self> {
        let py = cls.py();
        let descr = cls.getattr(pyo3::intern!(py, "__dict__"))?.get_item(name)?;
        // Only the static type object's address is taken.
        let member_type = std::ptr::addr_of_mut!(ffi::PyMemberDescr_Type);
        if descr.get_type().as_type_ptr() != member_type {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "{name} is not a __slots__ member"
            )));
        }
        // SAFETY: `descr` is exactly a member descriptor (checked above), whose `d_member`
        // points to its definition for as long as the descriptor lives (it is in `cls`'s
        // dict, which we hold a reference to through `cls`).
        let (type_code, offset) = unsafe {
            let member = (*descr.as_ptr().cast::<ffi::PyMemberDescrObject>()).d_member;
            ((*member).type_code, (*member).offset)
        };
        if type_code != ffi::Py_T_OBJECT_EX {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "{name} is not an object slot"
            )));
        }
        Ok(SlotMember {
            cls: cls.clone().unbind(),
            name: PyString::intern(py, name).unbind(),
            offset,
        })
    }

    /// `obj.<member>` when `obj` is an instance of the class and the member is set;
    /// `None` otherwise.
    #[inline]
    pub fn get<'py>(&self, obj: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
        let py = obj.py();
        // SAFETY: both are live objects; PyObject_TypeCheck only reads their types.
        if unsafe { ffi::PyObject_TypeCheck(obj.as_ptr(), self.cls.as_ptr().cast()) } == 0 {
            return None;
        }
        #[cfg(not(Py_GIL_DISABLED))]
        {
            // SAFETY: `obj` is an instance of `cls` (checked above), whose layout has the
            // member's object pointer (NULL when unset) at `offset`; with the GIL held
            // nobody changes it while we take our reference.
            unsafe {
                let slot = obj
                    .as_ptr()
                    .cast::<u8>()
                    .offset(self.offset)
                    .cast::<*mut ffi::PyObject>();
                let value = *slot;
                (!value.is_null()).then(|| Bound::from_borrowed_ptr(py, value))
            }
        }
        #[cfg(Py_GIL_DISABLED)]
        {
            // Another thread may replace the member: the descriptor's own, atomic read.
            let _ = py;
            obj.getattr(self.name.bind(py)).ok()
        }
    }
}
