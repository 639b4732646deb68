//! `bytes` objects filled in place: a read straight into the object a protocol receives
//! (what CPython's `socket.recv` does), instead of into a buffer and then a copy.

use std::mem::MaybeUninit;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

extern "C" {
    // CPython's own resize of a fresh `bytes` (exported by every version ferroloop
    // supports, 3.11 to 3.14 and the free-threaded build; PyO3 leaves private API out).
    fn _PyBytes_Resize(bytes: *mut *mut ffi::PyObject, newsize: ffi::Py_ssize_t) -> i32;
}

/// A new `bytes` object of up to `cap` bytes that `fill` writes: `fill` gets the object's
/// uninitialized storage and returns how many bytes it initialized (from the start); the
/// object is shrunk to that length (`b""` for 0). An error from `fill` drops the object.
/// `fill` must not call into Python: nobody else may see the object before it is filled.
pub fn bytes_filled_by<'py, E>(
    py: Python<'py>,
    cap: usize,
    fill: impl FnOnce(&mut [MaybeUninit<u8>]) -> Result<usize, E>,
) -> PyResult<Result<Bound<'py, PyBytes>, E>> {
    let size = ffi::Py_ssize_t::try_from(cap)
        .map_err(|_| pyo3::exceptions::PyOverflowError::new_err("bytes size too large"))?;
    // SAFETY: attached (`py`); a NULL source asks for an object whose `cap` bytes of
    // storage are left uninitialized for the caller to fill (the documented use).
    let mut obj = unsafe { ffi::PyBytes_FromStringAndSize(std::ptr::null(), size) };
    if obj.is_null() {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: `obj` is a new, exactly-`bytes` object we alone own; its storage holds
    // `cap` bytes (plus the terminating NUL CPython keeps), valid while we hold it, and
    // `MaybeUninit<u8>` may view uninitialized memory.
    let storage = unsafe {
        std::slice::from_raw_parts_mut(ffi::PyBytes_AsString(obj).cast::<MaybeUninit<u8>>(), cap)
    };
    let got = match fill(storage) {
        Ok(n) => n.min(cap),
        Err(e) => {
            // SAFETY: we own the only reference.
            unsafe { ffi::Py_DECREF(obj) };
            return Ok(Err(e));
        }
    };
    if got < cap {
        // SAFETY: `obj` is a `bytes` object with a reference count of 1 that nobody else
        // has seen, as _PyBytes_Resize requires; on failure it releases the object, sets
        // NULL and an exception. The first `got` bytes are initialized (`fill`'s contract),
        // and resizing keeps them and writes the terminating NUL.
        if unsafe { _PyBytes_Resize(&mut obj, got as ffi::Py_ssize_t) } < 0 {
            return Err(PyErr::fetch(py));
        }
    }
    // SAFETY: `obj` is a new reference to a `bytes` object, all of whose bytes are now
    // initialized.
    Ok(Ok(unsafe {
        Bound::from_owned_ptr(py, obj).cast_into_unchecked()
    }))
}

/// Reads of fewer bytes than this get a new object: CPython's small-object allocator
/// serves it about as cheaply as a reuse would (a `bytes` of 512 bytes and less).
const REUSE_MIN: usize = 512;

/// Reads of more bytes than this get a new object (bounds what a thread keeps aside).
const REUSE_MAX: usize = 64 * 1024;

/// A `bytes` object [`bytes_from_read`] handed out that nothing else referred to once
/// the protocol was done with it: its storage holds `cap` bytes, so a later read of
/// more than half that is copied into it instead of into a new object.
struct Spare {
    obj: Py<PyBytes>,
    cap: usize,
}

thread_local! {
    /// The thread's [`Spare`], if any (one: a loop reads on one thread).
    static SPARE: std::cell::Cell<Option<Spare>> = const { std::cell::Cell::new(None) };
}

/// A `bytes` object holding a copy of `src` (what was just read), and the capacity to
/// give [`recycle`] once the protocol is done with it (0: not to be recycled).
///
/// Reads of 512 bytes to 64 KiB go through the thread's spare object when it holds at
/// least `src.len()` bytes and at most twice that: the copy then costs no allocation
/// (glibc's `malloc` + `free` of a 1 KiB `bytes` is ~450 instructions, a sixth of a
/// whole 1 KiB echo). A reused object that a protocol keeps wastes less than half of its
/// storage; a new one is exactly sized, as CPython's `socket.recv` leaves it.
pub fn bytes_from_read<'py>(py: Python<'py>, src: &[u8]) -> (Bound<'py, PyBytes>, usize) {
    let n = src.len();
    if !(REUSE_MIN..=REUSE_MAX).contains(&n) || cfg!(Py_GIL_DISABLED) {
        return (PyBytes::new(py, src), 0);
    }
    if let Some(spare) = SPARE.take() {
        if n <= spare.cap && n * 2 > spare.cap {
            let obj = spare.obj.into_bound(py);
            refill(&obj, src);
            return (obj, spare.cap);
        }
        SPARE.set(Some(spare));
    }
    (PyBytes::new(py, src), n)
}

/// Gives back an object [`bytes_from_read`] made (`cap` as it returned): it becomes the
/// thread's spare when `data` is the only reference left to it, so that nobody can see
/// it change. (CPython's own in-place `bytes` resize and `zip`'s reused result tuple
/// rest on the same rule.)
pub fn recycle(data: Bound<'_, PyBytes>, cap: usize) {
    // On the free-threaded build the reference count does not tell whether another
    // thread can see the object; nothing is recycled there (`cap` is always 0).
    // SAFETY: `data` is a live object; reading its reference count has no effect.
    if cap == 0 || unsafe { ffi::Py_REFCNT(data.as_ptr()) } != 1 {
        return;
    }
    // The spare it replaces (if any) is freed here: a `bytes` object runs no code then.
    SPARE.set(Some(Spare {
        obj: data.unbind(),
        cap,
    }));
}

/// Writes `src` into `obj`, the thread's spare (`src.len()` <= its capacity), as a
/// fresh `bytes` of that length.
fn refill(obj: &Bound<'_, PyBytes>, src: &[u8]) {
    let p = obj.as_ptr().cast::<ffi::PyBytesObject>();
    // SAFETY: `obj` is a `bytes` object made by `bytes_from_read` with storage for at
    // least `src.len()` bytes plus the terminating NUL (its capacity, checked by the
    // caller), referred to by nothing but the spare slot (`recycle`'s check) and now by
    // `obj` alone, so no one sees it change. Its hash is forgotten (CPython caches it in
    // `ob_shash`, -1 = not computed), its size set, its bytes and NUL written.
    unsafe {
        (*p).ob_base.ob_size = src.len() as ffi::Py_ssize_t;
        #[allow(deprecated)]
        {
            (*p).ob_shash = -1;
        }
        let dst = std::ptr::addr_of_mut!((*p).ob_sval).cast::<u8>();
        std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len());
        *dst.add(src.len()) = 0;
    }
}
