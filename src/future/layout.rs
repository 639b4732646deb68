//! The `ferroloop.Future` type object and its slot and method tables (built by
//! [`crate::pyo::native_type`]), and the hand-written slots of `FutureIter`.

use std::ffi::{c_int, c_void};
use std::sync::OnceLock;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyType;

use super::FutureState;
use crate::pyo::native_type::methods::{
    class_getitem_def, fast, fast_def, getset, init_slot, noargs, noargs_def, o_def, onearg,
    unary_slot,
};
use crate::pyo::native_type::{
    create_type, is_exact, native, native_type, Native, TypeData, TypeSpec,
};
use crate::pyo::Ref;

static TYPE: OnceLock<TypeData> = OnceLock::new();

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

/// Our Future type object, if it was created.
pub fn future_type(py: Python<'_>) -> Option<Bound<'_, PyType>> {
    native_type::<FutureState>(py)
}

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
fast!(m_exception_clinic, FutureState, super::exception_clinic);
fast!(m_get_loop_clinic, FutureState, super::get_loop_clinic);
fast!(m_set_result_clinic, FutureState, super::set_result_clinic);
fast!(
    m_set_exception_clinic,
    FutureState,
    super::set_exception_clinic
);
fast!(
    m_remove_done_callback_clinic,
    FutureState,
    super::remove_done_callback_clinic
);
fast!(m_cancel, FutureState, super::cancel);

unary_slot!(tp_repr, FutureState, super::repr);
// `__iter__` / `__await__` of futures and tasks.
unary_slot!(pub tp_iter, FutureState, super::iter);
init_slot!(tp_init, FutureState, super::init);

/// Whether the C Future's methods that need its module state parse their arguments with
/// Argument Clinic (3.12+): then ours do too, for the same error messages.
fn clinic_methods(py: Python<'_>) -> bool {
    py.version_info() >= (3, 12)
}

/// The Future methods shared by `ferroloop.Future` and `ferroloop.Task` (Task adds its
/// own `set_result`, `set_exception`, `cancel` and `__del__`).
pub fn shared_future_methods(py: Python<'_>) -> Vec<ffi::PyMethodDef> {
    let clinic = clinic_methods(py);
    vec![
        noargs_def(c"result", m_result, c"Return the result this future represents."),
        if clinic {
            fast_def(c"exception", m_exception_clinic, c"Return the exception that was set on this future.")
        } else {
            noargs_def(c"exception", m_exception, c"Return the exception that was set on this future.")
        },
        fast_def(
            c"add_done_callback",
            m_add_done_callback,
            c"add_done_callback($self, fn, /, *, context=None)\n--\n\nAdd a callback to be run when the future becomes done.",
        ),
        if clinic {
            fast_def(
                c"remove_done_callback",
                m_remove_done_callback_clinic,
                c"Remove all instances of a callback from the \"call when done\" list.",
            )
        } else {
            o_def(
                c"remove_done_callback",
                m_remove_done_callback,
                c"Remove all instances of a callback from the \"call when done\" list.",
            )
        },
        noargs_def(c"cancelled", m_cancelled, c"Return True if the future was cancelled."),
        noargs_def(c"done", m_done, c"Return True if the future is done."),
        if clinic {
            fast_def(c"get_loop", m_get_loop_clinic, c"Return the event loop the Future is bound to.")
        } else {
            noargs_def(c"get_loop", m_get_loop, c"Return the event loop the Future is bound to.")
        },
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

/// Creates `ferroloop._ferroloop.Future` (once per process). Returns `None` when the C
/// `_asyncio` module is not available.
pub fn create_future_type(py: Python<'_>) -> PyResult<Option<Bound<'_, PyType>>> {
    let mut methods = shared_future_methods(py);
    if clinic_methods(py) {
        methods.extend([
            fast_def(
                c"set_result",
                m_set_result_clinic,
                c"Mark the future done and set its result.",
            ),
            fast_def(
                c"set_exception",
                m_set_exception_clinic,
                c"Mark the future done and set an exception.",
            ),
        ]);
    } else {
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
        ]);
    }
    methods.extend([
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
