//! `bytes` objects filled in place: a read straight into the object a protocol receives
//! (what CPython's `socket.recv` does), instead of into a buffer and then a copy.

use std::mem::MaybeUninit;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes};

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
    fill_new(py, cap, cap, fill)
}

/// [`bytes_filled_by`], shrinking the object only when `fill` wrote fewer than
/// `shrink_below` bytes; above that it keeps its storage of `cap` bytes and only its
/// length says how many it holds.
fn fill_new<'py, E>(
    py: Python<'py>,
    cap: usize,
    shrink_below: usize,
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
    if got < shrink_below {
        // SAFETY: `obj` is a `bytes` object with a reference count of 1 that nobody else
        // has seen, as _PyBytes_Resize requires; on failure it releases the object, sets
        // NULL and an exception. The first `got` bytes are initialized (`fill`'s contract),
        // and resizing keeps them and writes the terminating NUL.
        if unsafe { _PyBytes_Resize(&mut obj, got as ffi::Py_ssize_t) } < 0 {
            return Err(PyErr::fetch(py));
        }
    }
    // SAFETY: `obj` is a new reference to a `bytes` object whose first `got` bytes are
    // initialized.
    let obj = unsafe { Bound::from_owned_ptr(py, obj).cast_into_unchecked::<PyBytes>() };
    if got < cap && got >= shrink_below {
        // Not shrunk: its length only (`got` <= `cap`, nobody else has seen it).
        set_length(&obj, got);
    }
    Ok(Ok(obj))
}

/// Reads of fewer bytes than this get a new object: CPython's small-object allocator
/// serves it about as cheaply as a reuse would (a `bytes` of 512 bytes and less).
const REUSE_MIN: usize = 512;

/// Reads of more bytes than this get a new object (bounds what a thread keeps aside).
const REUSE_MAX: usize = 64 * 1024;

/// Whether a read of `n` bytes goes through a reused object (see [`bytes_from_read`]). On
/// the free-threaded build the reference count does not tell whether another thread can
/// see an object: nothing is reused there.
fn reusable(n: usize) -> bool {
    (REUSE_MIN..=REUSE_MAX).contains(&n) && !cfg!(Py_GIL_DISABLED)
}

/// Whether `n` bytes in an object of `cap` fill at least half of it: a protocol that
/// keeps it then wastes at most half its storage.
fn holds_half(n: usize, cap: usize) -> bool {
    n <= cap && n * 2 >= cap
}

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
/// least `src.len()` bytes and at most twice that ([`holds_half`]): the copy then costs no allocation
/// (glibc's `malloc` + `free` of a 1 KiB `bytes` is ~450 instructions, a sixth of a
/// whole 1 KiB echo). A reused object that a protocol keeps wastes at most half of its
/// storage; a new one is exactly sized, as CPython's `socket.recv` leaves it.
pub fn bytes_from_read<'py>(py: Python<'py>, src: &[u8]) -> (Bound<'py, PyBytes>, usize) {
    let n = src.len();
    if !reusable(n) {
        return (PyBytes::new(py, src), 0);
    }
    if let Some(spare) = SPARE.take() {
        if holds_half(n, spare.cap) {
            let obj = spare.obj.into_bound(py);
            refill(&obj, src);
            return (obj, spare.cap);
        }
        SPARE.set(Some(spare));
    }
    (PyBytes::new(py, src), n)
}

/// A `bytes` object that a read of up to `cap` bytes fills in place, and the capacity to
/// give [`recycle`] once the protocol is done with it (0: not to be recycled). `fill`
/// gets the object's uninitialized storage (at least `cap` bytes) and returns how many
/// bytes it wrote from the start; an error from it is returned as is.
///
/// The object is the thread's spare when that holds `cap` to 1.5 times `cap` bytes, else
/// a new one of `cap`. It is handed out as it is, filled to `n` bytes, when `n` is at
/// least half of its storage (a protocol that keeps it wastes at most half); a shorter
/// read is copied out of the spare into an exact new object (the spare stays), or
/// shrinks a new one (CPython's `socket.recv` way). `b""` when nothing was read.
pub fn bytes_read_in_place<'py, E>(
    py: Python<'py>,
    cap: usize,
    fill: impl FnOnce(&mut [MaybeUninit<u8>]) -> Result<usize, E>,
) -> PyResult<Result<(Bound<'py, PyBytes>, usize), E>> {
    let reusable = reusable(cap);
    let spare = if reusable { SPARE.take() } else { None };
    let spare = match spare {
        Some(spare) if spare.cap >= cap && spare.cap <= cap + cap / 2 => spare,
        other => {
            SPARE.set(other);
            // Kept whole (and recyclable) when at least half full, else shrunk.
            let shrink_below = if reusable { cap.div_ceil(2) } else { cap };
            let made = fill_new(py, cap, shrink_below, fill)?;
            return Ok(made.map(|data| {
                let kept = reusable && data.as_bytes().len() >= shrink_below;
                (data, if kept { cap } else { 0 })
            }));
        }
    };
    let obj = spare.obj.into_bound(py);
    // SAFETY: the spare is a `bytes` object with storage for `spare.cap` bytes (plus the
    // NUL) that nothing but `obj` refers to (`recycle`'s check), so nobody sees it while
    // `fill` writes; `MaybeUninit<u8>` may view any memory.
    let storage = unsafe {
        let p = obj.as_ptr().cast::<ffi::PyBytesObject>();
        let start = std::ptr::addr_of_mut!((*p).ob_sval).cast::<MaybeUninit<u8>>();
        std::slice::from_raw_parts_mut(start, spare.cap)
    };
    let n = match fill(storage) {
        Ok(n) => n.min(spare.cap),
        Err(e) => {
            SPARE.set(Some(Spare {
                obj: obj.unbind(),
                cap: spare.cap,
            }));
            return Ok(Err(e));
        }
    };
    if holds_half(n, spare.cap) {
        set_length(&obj, n);
        return Ok(Ok((obj, spare.cap)));
    }
    // SAFETY: `fill` initialized the first `n` bytes of the storage.
    let read = unsafe { std::slice::from_raw_parts(storage.as_ptr().cast::<u8>(), n) };
    let copy = PyBytes::new(py, read);
    SPARE.set(Some(Spare {
        obj: obj.unbind(),
        cap: spare.cap,
    }));
    Ok(Ok((copy, 0)))
}

/// Gives back an object [`bytes_from_read`] made (`cap` as it returned): it becomes the
/// thread's spare when `data` is the only reference left to it, so that nobody can see
/// it change. (CPython's own in-place `bytes` resize and `zip`'s reused result tuple
/// rest on the same rule.)
pub fn recycle(data: Bound<'_, PyBytes>, cap: usize) {
    // (`cap` is always 0 where nothing is reusable.)
    if cap == 0 || super::object::refcnt(&data) != 1 {
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
    // SAFETY: `obj` is a `bytes` object made here with storage for at least `src.len()`
    // bytes (its capacity, checked by the caller), referred to by nothing but the spare
    // slot (`recycle`'s check) and now by `obj` alone, so no one sees it change.
    unsafe {
        let dst = std::ptr::addr_of_mut!((*p).ob_sval).cast::<u8>();
        std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len());
    }
    set_length(obj, src.len());
}

/// Makes `obj` a fresh `bytes` of its first `n` bytes (`n` <= its storage's capacity):
/// its size set, the terminating NUL written, its hash forgotten (CPython caches it in
/// `ob_shash`, -1 = not computed).
fn set_length(obj: &Bound<'_, PyBytes>, n: usize) {
    let p = obj.as_ptr().cast::<ffi::PyBytesObject>();
    // SAFETY: `obj` is a `bytes` object made here, with storage for its capacity (>= `n`)
    // plus the NUL, that nobody else refers to (the callers' contract) and whose first `n`
    // bytes are initialized.
    unsafe {
        (*p).ob_base.ob_size = n as ffi::Py_ssize_t;
        #[allow(deprecated)]
        {
            (*p).ob_shash = -1;
        }
        *std::ptr::addr_of_mut!((*p).ob_sval).cast::<u8>().add(n) = 0;
    }
}

/// `buf.extend(src)` for a `bytearray`: one resize (over-allocated, as `extend` does) and
/// one copy. A `BufferError` while something holds a view of `buf`, as `extend` raises.
/// Runs no Python code.
#[cfg(not(Py_GIL_DISABLED))]
pub fn bytearray_extend(buf: &Bound<'_, PyByteArray>, src: &[u8]) -> PyResult<()> {
    let old = buf.len();
    buf.resize(old + src.len())?;
    // SAFETY: attached, so no other thread touches `buf`, and no Python code runs between
    // the resize and the copy, so its storage (now `old + src.len()` bytes) is neither
    // moved nor viewed; `src` is not part of it (it is Rust memory, and a bytearray's
    // storage is only reachable through the object).
    unsafe {
        buf.as_bytes_mut()[old..].copy_from_slice(src);
    }
    Ok(())
}

/// `buf.extend(src)` on the free-threaded build, where another thread may use `buf`
/// meanwhile: the method itself, which locks it.
#[cfg(Py_GIL_DISABLED)]
pub fn bytearray_extend(buf: &Bound<'_, PyByteArray>, src: &[u8]) -> PyResult<()> {
    let py = buf.py();
    buf.call_method1(pyo3::intern!(py, "extend"), (PyBytes::new(py, src),))
        .map(drop)
}
