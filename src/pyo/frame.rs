//! The Python frame a native call was made from.

use pyo3::prelude::*;

/// The innermost complete Python frame of this thread (what `sys._getframe(0)` gives to
/// Python code), or `None` on a thread that runs no Python code (a native thread).
///
/// `sys._getframe(0)` called from native code is not that on 3.12+: it takes the thread's
/// current frame as it is, which may be an incomplete one, such as the interpreter's entry
/// frame that lives on the C stack (current while C code, e.g. an async generator's
/// finalizer, runs between Python frames). The frame object made for it then points into
/// a C stack frame that is gone when the object is read: garbage or a crash.
/// `PyThreadState_GetFrame` skips incomplete frames, as `frame.f_back` does.
pub fn current_frame(py: Python<'_>) -> Option<Bound<'_, PyAny>> {
    // SAFETY: the thread is attached (`py`), so `PyThreadState_Get` returns its thread
    // state (never NULL while attached). `PyThreadState_GetFrame` returns a new reference to
    // the first complete frame's object, or NULL when there is none (it clears the error if
    // making the object failed), which `from_owned_ptr_or_opt` turns into `None`.
    unsafe {
        let tstate = pyo3::ffi::PyThreadState_Get();
        let frame = pyo3::ffi::PyThreadState_GetFrame(tstate);
        Bound::from_owned_ptr_or_opt(py, frame.cast::<pyo3::ffi::PyObject>())
    }
}
