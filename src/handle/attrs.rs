//! The attributes of asyncio's `Handle` and `TimerHandle` `__slots__`, as getters over the
//! native state (and setters for `_callback` and `_args`).

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};

use super::{m_cancelled, m_when, opt, py_bool, Callback, Handle, PyRes};
use crate::pyo::native_type::methods::getset;

fn g_callback<'py>(slf: &Bound<'py, PyAny>, h: &Handle) -> PyRes<'py> {
    let py = slf.py();
    Ok(opt(
        py,
        h.refs
            .with(|refs| refs.callback.as_ref().map(|c| c.func.bind(py).clone())),
    ))
}

fn g_args<'py>(slf: &Bound<'py, PyAny>, h: &Handle) -> PyRes<'py> {
    let py = slf.py();
    Ok(opt(
        py,
        h.refs.with(|refs| {
            refs.callback
                .as_ref()
                .map(|c| c.args.bind(py).clone().into_any())
        }),
    ))
}

fn g_loop<'py>(slf: &Bound<'py, PyAny>, h: &Handle) -> PyRes<'py> {
    Ok(opt(slf.py(), h.loop_obj(slf.py())))
}

fn g_context<'py>(slf: &Bound<'py, PyAny>, h: &Handle) -> PyRes<'py> {
    Ok(opt(slf.py(), h.context(slf.py())))
}

fn g_source_traceback<'py>(slf: &Bound<'py, PyAny>, h: &Handle) -> PyRes<'py> {
    let py = slf.py();
    Ok(opt(
        py,
        h.source_traceback.as_ref().map(|t| t.bind(py).clone()),
    ))
}

/// asyncio's `_repr`: the repr kept at cancel time in debug mode, else None.
fn g_repr<'py>(slf: &Bound<'py, PyAny>, h: &Handle) -> PyRes<'py> {
    let py = slf.py();
    let r = h.repr_at_cancel.with(|r| r.clone());
    Ok(opt(py, r.map(|r| PyString::new(py, &r).into_any())))
}

fn g_scheduled<'py>(slf: &Bound<'py, PyAny>, h: &Handle) -> PyRes<'py> {
    Ok(py_bool(slf.py(), h.is_scheduled()))
}

fn g_cancelled<'py>(slf: &Bound<'py, PyAny>, h: &Handle) -> PyRes<'py> {
    m_cancelled(slf, h)
}

/// `handle._callback = func`: what the handle calls from now on (instrumentation wraps it
/// so). On a cancelled handle, which dropped its callback as asyncio's does, `None` changes
/// nothing (`handle._args = handle._callback = None` after `cancel()` is a common idiom
/// to free references) and another callable is kept with no arguments.
fn s_callback(
    slf: &Bound<'_, PyAny>,
    h: &Handle,
    value: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let py = slf.py();
    let value = value.ok_or_else(|| cannot_delete("_callback"))?;
    let old = h.refs.with(|refs| match refs.callback.as_mut() {
        Some(cb) => Some(std::mem::replace(&mut cb.func, value.clone().unbind())),
        None if value.is_none() => None,
        None => {
            refs.callback = Some(Callback {
                func: value.clone().unbind(),
                args: PyTuple::empty(py).unbind(),
            });
            None
        }
    });
    // Released once the access is over: a decref may run a finalizer.
    if let Some(old) = old {
        old.drop_ref(py);
    }
    Ok(())
}

/// `handle._args = args`: the arguments the callback gets from now on. A tuple is kept as
/// it is, another iterable as a tuple of its items; `None` on a cancelled handle changes
/// nothing. (asyncio's slot takes anything and fails when the handle runs; here an
/// argument that is not iterable, such as `None` on a live handle, is refused at once with
/// the `TypeError` that unpacking it would raise.)
fn s_args(slf: &Bound<'_, PyAny>, h: &Handle, value: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
    let py = slf.py();
    let value = value.ok_or_else(|| cannot_delete("_args"))?;
    let live = h.refs.with(|refs| refs.callback.is_some());
    if value.is_none() && !live {
        return Ok(());
    }
    // Made before the access: iterating runs Python code.
    let args = match value.cast::<PyTuple>() {
        Ok(t) => t.clone(),
        Err(_) => PyTuple::new(py, value.try_iter()?.collect::<PyResult<Vec<_>>>()?)?,
    };
    let old = h.refs.with(|refs| match refs.callback.as_mut() {
        Some(cb) => Some(std::mem::replace(&mut cb.args, args.unbind())),
        None => {
            refs.callback = Some(Callback {
                func: py.None(),
                args: args.unbind(),
            });
            None
        }
    });
    if let Some(old) = old {
        old.drop_ref(py);
    }
    Ok(())
}

fn cannot_delete(name: &str) -> PyErr {
    pyo3::exceptions::PyAttributeError::new_err(format!("cannot delete attribute '{name}'"))
}

/// Getters shadowing every `__slots__` member of `asyncio.Handle` (and `TimerHandle`): the
/// base's slots stay empty. `_callback` and `_args` can be set (see [`s_callback`]); the
/// rest are read-only, as the loop's bookkeeping depends on them (`_cancelled`, `_when`,
/// `_scheduled`) or nothing sets them but the loop.
pub(super) fn getsets(timer: bool) -> Vec<ffi::PyGetSetDef> {
    let mut v = vec![
        getset::<Handle>(c"_callback", g_callback, Some(s_callback)),
        getset::<Handle>(c"_args", g_args, Some(s_args)),
        getset::<Handle>(c"_cancelled", g_cancelled, None),
        getset::<Handle>(c"_loop", g_loop, None),
        getset::<Handle>(c"_context", g_context, None),
        getset::<Handle>(c"_source_traceback", g_source_traceback, None),
        getset::<Handle>(c"_repr", g_repr, None),
    ];
    if timer {
        v.push(getset::<Handle>(c"_when", m_when, None));
        v.push(getset::<Handle>(c"_scheduled", g_scheduled, None));
    }
    v
}
