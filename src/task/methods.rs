//! The Task's own methods and attributes (the Future's are shared), and its type object.

use std::ffi::{c_int, CStr};

use pyo3::exceptions::{PyAttributeError, PyRuntimeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyModule, PyString, PyType};

use super::*;
use crate::future::layout;
use crate::future::{self, eager, opt, or_none, py_bool, Status};
use crate::names::names;
use crate::pyo::native_type::methods::{
    fast, fast_def, getset, init_slot, noargs, noargs_def, o_def, onearg, unary_slot, FastArgs,
};
use crate::pyo::native_type::{self, TypeSpec};
use crate::pyo::recursion::enter_recursive_call;
use crate::pyo::Ref;

unary_slot!(tp_repr, TaskState, repr);
init_slot!(tp_init, TaskState, init);

// ---------------------------------------------------------------------------------------
// Methods
// ---------------------------------------------------------------------------------------

pub(super) fn none(py: Python<'_>) -> Bound<'_, PyAny> {
    py.None().into_bound(py)
}

pub(super) fn set_result<'py>(
    slf: &Bound<'py, PyAny>,
    _ts: &TaskState,
    _v: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    Err(eager::<PyRuntimeError>(
        slf.py(),
        "Task does not support set_result operation",
    ))
}

pub(super) fn set_exception<'py>(
    slf: &Bound<'py, PyAny>,
    _ts: &TaskState,
    _v: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    Err(eager::<PyRuntimeError>(
        slf.py(),
        "Task does not support set_exception operation",
    ))
}

/// Parses `(msg=None)`.
pub(super) fn cancel<'py>(
    slf: &Bound<'py, PyAny>,
    ts: &TaskState,
    args: FastArgs<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    let msg = or_none(future::parse_cancel_args(py, args)?, py);
    Ok(py_bool(py, cancel_impl(ts, &msg)?))
}

/// `Task.cancel(msg)` after argument parsing (`task_cancel_impl` in C).
///
/// Cancelling a task cancels the future it awaits, which may be a task awaiting another
/// one: a chain of tasks (or a cycle of tasks awaiting each other) recurses here once per
/// link. Our own Task and Future are cancelled by a direct call, under the depth guard the
/// C Task gets from calling `fut_waiter.cancel(msg)` through a method descriptor
/// (`Py_EnterRecursiveCall`): a deep chain raises `RecursionError` at the same depth as
/// asyncio's, never overflows the stack. Keep this function's frame small: 3.13 allows
/// about 10,000 levels of C recursion on the main thread's 8 MiB stack.
fn cancel_impl(ts: &TaskState, msg: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = msg.py();
    let pending = ts.fut.inner.with(|g| {
        g.log_tb = false;
        g.status == Status::Pending
    });
    if !pending {
        return Ok(false);
    }
    let waiter = ts.inner.with(|g| {
        g.num_cancels_requested += 1;
        opt(&g.fut_waiter, py)
    });
    if let Some(w) = waiter {
        if cancel_waiter(&w, msg)? {
            // Leave `_fut_waiter`: it may be a task that ignores the cancellation.
            return Ok(true);
        }
    }
    ts.inner.with(|s| s.must_cancel = true);
    let old = if msg.is_none() {
        ts.fut.inner.with(|s| s.cancel_msg.take())
    } else {
        ts.fut
            .inner
            .with(|s| s.cancel_msg.replace(Ref::new(msg.clone())))
    };
    drop(old);
    Ok(true)
}

/// `waiter.cancel(msg)`, truthiness of the result; see [`cancel_impl`].
fn cancel_waiter(w: &Bound<'_, PyAny>, msg: &Bound<'_, PyAny>) -> PyResult<bool> {
    let task = native_type::is_exact::<TaskState>(w);
    if !task && !native_type::is_exact::<FutureState>(w) {
        return cancel_method(w, msg);
    }
    enter_recursive_call(w.py(), || match (task, layout::state(w)) {
        (true, _) => match native_type::native::<TaskState>(w) {
            Some(wts) => cancel_impl(wts, msg),
            None => cancel_method(w, msg),
        },
        (false, Some(fst)) => future::cancel_impl(w, fst, (!msg.is_none()).then(|| msg.clone())),
        (false, None) => cancel_method(w, msg),
    })
}

/// `w.cancel(msg)` through Python (any other awaitable: its own method, which a Python
/// subclass may override).
#[inline(never)]
fn cancel_method(w: &Bound<'_, PyAny>, msg: &Bound<'_, PyAny>) -> PyResult<bool> {
    w.call_method1(pyo3::intern!(w.py(), "cancel"), (msg,))?
        .is_truthy()
}

pub(super) fn cancelling<'py>(
    slf: &Bound<'py, PyAny>,
    ts: &TaskState,
) -> PyResult<Bound<'py, PyAny>> {
    let n = ts.inner.with(|s| s.num_cancels_requested);
    Ok(n.into_pyobject(slf.py())?.into_any())
}

pub(super) fn uncancel<'py>(
    slf: &Bound<'py, PyAny>,
    ts: &TaskState,
) -> PyResult<Bound<'py, PyAny>> {
    let resets = names(slf.py())?.uncancel_resets;
    let n = ts.inner.with(|g| {
        if g.num_cancels_requested > 0 {
            g.num_cancels_requested -= 1;
            if resets && g.num_cancels_requested == 0 {
                g.must_cancel = false;
            }
        }
        g.num_cancels_requested
    });
    Ok(n.into_pyobject(slf.py())?.into_any())
}

pub(super) fn get_coro<'py>(
    slf: &Bound<'py, PyAny>,
    ts: &TaskState,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    Ok(or_none(ts.inner.with(|s| opt(&s.coro, py)), py))
}

pub(super) fn get_context<'py>(
    slf: &Bound<'py, PyAny>,
    ts: &TaskState,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(ts.context(slf.py()))
}

pub(super) fn get_name<'py>(
    slf: &Bound<'py, PyAny>,
    ts: &TaskState,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    let (name, counter) = ts.inner.with(|g| (opt(&g.name, py), g.counter));
    if let Some(name) = name {
        return Ok(name);
    }
    if counter == 0 {
        // Not initialized.
        return Ok(none(py));
    }
    let name = PyString::new(py, &format!("Task-{counter}")).into_any();
    let old = ts.inner.with(|s| s.name.replace(Ref::new(name.clone())));
    drop(old);
    Ok(name)
}

pub(super) fn set_name<'py>(
    slf: &Bound<'py, PyAny>,
    ts: &TaskState,
    value: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let value = if value.is_exact_instance_of::<PyString>() {
        value.clone()
    } else {
        value.str()?.into_any()
    };
    let old = ts.inner.with(|s| s.name.replace(Ref::new(value)));
    drop(old);
    Ok(none(slf.py()))
}

pub(super) fn get_stack<'py>(
    slf: &Bound<'py, PyAny>,
    _ts: &TaskState,
    args: FastArgs<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    static SIG: future::args::Signature = future::args::Signature {
        fname: "get_stack",
        posonly: 0,
        keywords: &["limit"],
        minpos: 0,
        maxpos: 0,
    };
    let bound = future::args::unpack(py, &SIG, &args.pos, &future::args::from_kwnames(args.kw))?;
    let limit = or_none(bound.into_iter().next().flatten(), py);
    names(py)?.task_get_stack.bind(py).call1((slf, limit))
}

pub(super) fn print_stack<'py>(
    slf: &Bound<'py, PyAny>,
    _ts: &TaskState,
    args: FastArgs<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    static SIG: future::args::Signature = future::args::Signature {
        fname: "print_stack",
        posonly: 0,
        keywords: &["limit", "file"],
        minpos: 0,
        maxpos: 0,
    };
    let bound = future::args::unpack(py, &SIG, &args.pos, &future::args::from_kwnames(args.kw))?;
    let mut bound = bound.into_iter();
    let limit = or_none(bound.next().flatten(), py);
    let file = or_none(bound.next().flatten(), py);
    names(py)?
        .task_print_stack
        .bind(py)
        .call1((slf, limit, file))
}

pub(super) fn del_method<'py>(
    slf: &Bound<'py, PyAny>,
    ts: &TaskState,
) -> PyResult<Bound<'py, PyAny>> {
    finalize(slf, ts);
    Ok(none(slf.py()))
}

// Attributes.

pub(super) fn get_log_destroy_pending<'py>(
    slf: &Bound<'py, PyAny>,
    ts: &TaskState,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(py_bool(slf.py(), ts.inner.with(|s| s.log_destroy_pending)))
}

pub(super) fn set_log_destroy_pending(
    slf: &Bound<'_, PyAny>,
    ts: &TaskState,
    value: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let Some(v) = value else {
        return Err(eager::<PyAttributeError>(
            slf.py(),
            "cannot delete attribute",
        ));
    };
    let b = v.is_truthy()?;
    ts.inner.with(|s| s.log_destroy_pending = b);
    Ok(())
}

pub(super) fn get_must_cancel<'py>(
    slf: &Bound<'py, PyAny>,
    ts: &TaskState,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(py_bool(slf.py(), ts.inner.with(|s| s.must_cancel)))
}

pub(super) fn get_fut_waiter<'py>(
    slf: &Bound<'py, PyAny>,
    ts: &TaskState,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    Ok(or_none(ts.inner.with(|s| opt(&s.fut_waiter, py)), py))
}

noargs!(m_cancelling, TaskState, cancelling);
noargs!(m_uncancel, TaskState, uncancel);
noargs!(m_get_coro, TaskState, get_coro);
noargs!(m_get_context, TaskState, get_context);
noargs!(m_get_name, TaskState, get_name);
noargs!(m_del, TaskState, del_method);
onearg!(m_set_name, TaskState, set_name);
onearg!(m_set_result, TaskState, set_result);
onearg!(m_set_exception, TaskState, set_exception);
fast!(m_cancel, TaskState, cancel);
fast!(m_get_stack, TaskState, get_stack);
fast!(m_print_stack, TaskState, print_stack);

pub(super) fn doc(s: &'static CStr) -> &'static CStr {
    s
}

/// Creates `ferroloop._ferroloop.Task` and adds it to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    if layout::future_type(py).is_none() {
        return Ok(()); // no C `_asyncio`
    }
    let mut methods = layout::shared_future_methods(py);
    methods.extend([
        o_def(c"set_result", m_set_result, doc(c"Not supported by tasks.")),
        o_def(c"set_exception", m_set_exception, doc(c"Not supported by tasks.")),
        fast_def(
            c"cancel",
            m_cancel,
            c"cancel($self, /, msg=None)\n--\n\nRequest that this task cancel itself.",
        ),
        noargs_def(c"cancelling", m_cancelling, c"Return the count of the task's cancellation requests."),
        noargs_def(c"uncancel", m_uncancel, c"Decrement the task's count of cancellation requests."),
        noargs_def(c"get_coro", m_get_coro, c"Return the coroutine object wrapped by the task."),
        noargs_def(c"get_name", m_get_name, c"Return the task's name."),
        o_def(c"set_name", m_set_name, c"Set the task's name."),
        fast_def(
            c"get_stack",
            m_get_stack,
            c"get_stack($self, /, *, limit=None)\n--\n\nReturn the list of stack frames for this task's coroutine.",
        ),
        fast_def(
            c"print_stack",
            m_print_stack,
            c"print_stack($self, /, *, limit=None, file=None)\n--\n\nPrint the stack or traceback for this task's coroutine.",
        ),
        noargs_def(c"__del__", m_del, c"Report a pending task or an unretrieved exception."),
    ]);
    if py.version_info() >= (3, 12) {
        methods.push(noargs_def(
            c"get_context",
            m_get_context,
            c"Return the contextvars.Context the task runs in.",
        ));
    }
    let mut getsets = layout::shared_future_getsets();
    getsets.extend([
        getset::<TaskState>(
            c"_log_destroy_pending",
            get_log_destroy_pending,
            Some(set_log_destroy_pending),
        ),
        getset::<TaskState>(c"_must_cancel", get_must_cancel, None),
        getset::<TaskState>(c"_coro", get_coro, None),
        getset::<TaskState>(c"_fut_waiter", get_fut_waiter, None),
    ]);
    let slot = |slot: c_int, pfunc: *mut std::ffi::c_void| ffi::PyType_Slot { slot, pfunc };
    let ty: Option<Bound<'_, PyType>> = native_type::create_type::<TaskState>(
        py,
        TypeSpec {
            base: "Task",
            name: c"ferroloop._ferroloop.Task",
            doc: c"Task(coro, *, loop=None, name=None, context=None, eager_start=False)\n--\n\nasyncio.Task implemented in Rust (a subclass of _asyncio.Task).",
            methods,
            getsets,
            slots: vec![
                slot(ffi::Py_tp_init, tp_init as *mut _),
                slot(ffi::Py_tp_repr, tp_repr as *mut _),
                slot(ffi::Py_tp_iter, layout::tp_iter as *mut _),
                slot(ffi::Py_am_await, layout::tp_iter as *mut _),
            ],
        },
    )?;
    if let Some(ty) = ty {
        m.add("Task", ty)?;
    }
    Ok(())
}
