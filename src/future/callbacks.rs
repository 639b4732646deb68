//! Done-callbacks: `add_done_callback`, `remove_done_callback`, and scheduling them on the
//! loop when the future completes (a native job on ferroloop's own loop).

use std::mem;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use super::*;
use crate::event_loop::{NativeLoop, TaskCall};
use crate::pyo::call::call_method_kw;
use crate::pyo::context::copy_current;
use crate::pyo::native_type::methods::FastArgs;
use crate::pyo::Ref;

pub(super) fn schedule_callbacks(slf: &Bound<'_, PyAny>, st: &FutureState) -> PyResult<()> {
    let py = slf.py();
    let taken = st.inner.with(|g| {
        if g.callbacks.is_empty() {
            return None;
        }
        Some((opt(&g.loop_, py), mem::take(&mut g.callbacks)))
    });
    let Some((loop_, callbacks)) = taken else {
        return Ok(());
    };
    let loop_ =
        loop_.ok_or_else(|| eager::<PyRuntimeError>(py, "Future object is not initialized."))?;
    let native = NativeLoop::of(&loop_);
    for cb in callbacks {
        match (cb, native) {
            (Callback::Py(f, c), Some(native)) => {
                native.call_soon(&f.get(py), Some(slf), &c.get(py))?
            }
            (Callback::Py(f, c), None) => call_soon(&loop_, &f.get(py), Some(slf), &c.get(py))?,
            (Callback::Wakeup(t, c), _) => {
                schedule_wakeup(&loop_, native, slf, t.into_bound(py), c.into_bound(py))?
            }
        }
    }
    Ok(())
}

/// Schedules `task`'s wake-up for the done future `fut`: a native job on ferroloop's own
/// loop (`native`), else `loop.call_soon(task_wakeup, fut, context=context)`.
pub(super) fn schedule_wakeup<'py>(
    loop_: &Bound<'py, PyAny>,
    native: Option<NativeLoop<'_, 'py>>,
    fut: &Bound<'py, PyAny>,
    task: Bound<'py, PyAny>,
    context: Bound<'py, PyAny>,
) -> PyResult<()> {
    match native {
        Some(native) => native.call_task_soon(TaskCall {
            task: task.unbind(),
            arg: Some(fut.clone().unbind()),
            context: context.unbind(),
            wakeup: true,
        }),
        None => call_soon(
            loop_,
            &crate::task::wakeup_callable(&task)?,
            Some(fut),
            &context,
        ),
    }
}

/// Registers the wake-up of the ferroloop Task `task` (run in `context`) as a done-callback
/// of `slf`, as `slf.add_done_callback(task_wakeup, context=context)` would.
pub(crate) fn add_wakeup<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
    task: &Bound<'py, PyAny>,
    context: Bound<'py, PyAny>,
) -> PyResult<()> {
    let py = slf.py();
    let loop_ = st.loop_obj(py)?;
    if st.status() != Status::Pending {
        let native = NativeLoop::of(&loop_);
        return schedule_wakeup(&loop_, native, slf, task.clone(), context);
    }
    st.inner.with(|s| {
        s.callbacks
            .push(Callback::Wakeup(Ref::new(task.clone()), Ref::new(context)))
    });
    Ok(())
}

/// `loop.call_soon(callback[, arg], context=context)` through vectorcall (no argument
/// tuple or keyword dict built).
pub(crate) fn call_soon<'py>(
    loop_: &Bound<'py, PyAny>,
    callback: &Bound<'py, PyAny>,
    arg: Option<&Bound<'py, PyAny>>,
    context: &Bound<'py, PyAny>,
) -> PyResult<()> {
    // On ferroloop's own loop (with its own call_soon) the callback goes straight into the
    // ready queue, without a Handle nobody would see.
    if let Some(native) = NativeLoop::of(loop_) {
        return native.call_soon(callback, arg, context);
    }
    let py = loop_.py();
    let n = names(py)?;
    let (name, kwnames) = (n.str_call_soon.bind(py), n.kwnames_context.bind(py));
    match arg {
        Some(a) => call_method_kw(loop_, name, &[callback, a], kwnames, &[context]),
        None => call_method_kw(loop_, name, &[callback], kwnames, &[context]),
    }
    .map(drop)
}

/// Parses `(fn, /, *, context=None)`.
pub(crate) fn add_done_callback<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
    args: FastArgs<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    if args.kw.is_empty() && args.pos.len() == 1 {
        // The common call, without building the clinic's argument vector.
        let func = args.pos.into_iter().next();
        add_done_callback_impl(
            slf,
            st,
            func.unwrap_or_else(|| py.None().into_bound(py)),
            None,
        )?;
        return Ok(py.None().into_bound(py));
    }
    static SIG: super::args::Signature = super::args::Signature {
        fname: "add_done_callback",
        posonly: 1,
        keywords: &["context"],
        minpos: 1,
        maxpos: 1,
    };
    let mut bound = super::args::unpack(py, &SIG, &args.pos, &super::args::from_kwnames(args.kw))?;
    let context = bound.pop().flatten();
    let func = bound
        .pop()
        .flatten()
        .unwrap_or_else(|| py.None().into_bound(py));
    add_done_callback_impl(slf, st, func, context)?;
    Ok(py.None().into_bound(py))
}

/// `add_done_callback(func, context=context)` after argument parsing.
pub(crate) fn add_done_callback_impl<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
    func: Bound<'py, PyAny>,
    context: Option<Bound<'py, PyAny>>,
) -> PyResult<()> {
    let py = slf.py();
    let loop_ = st
        .inner
        .with(|s| opt(&s.loop_, py))
        .ok_or_else(|| eager::<PyRuntimeError>(py, "uninitialized Future object"))?;
    if st.status() != Status::Pending {
        call_soon(&loop_, &func, Some(slf), &or_none(context, py))?;
    } else {
        let ctx = match context {
            Some(c) if !c.is_none() => c,
            _ => copy_current(py)?,
        };
        st.inner.with(|s| {
            s.callbacks
                .push(Callback::Py(Ref::new(func), Ref::new(ctx)))
        });
    }
    Ok(())
}

pub(crate) fn remove_done_callback<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
    func: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    st.loop_obj(py)?;
    let snapshot: Vec<Callback> = st
        .inner
        .with(|s| s.callbacks.iter().map(|cb| cb.clone_ref(py)).collect());
    let total = snapshot.len();
    let mut kept = Vec::with_capacity(total);
    for cb in snapshot {
        let f = cb.func(py)?;
        // PyObject_RichCompareBool semantics: identity implies equality.
        if !(f.is(func) || f.eq(func)?) {
            kept.push(cb);
        }
    }
    let removed = total - kept.len();
    if removed > 0 {
        let old = st
            .inner
            .with(|g| mem::replace(&mut g.callbacks, Callbacks::from_vec(kept)));
        drop(old);
    }
    Ok(removed.into_pyobject(py)?.into_any())
}
