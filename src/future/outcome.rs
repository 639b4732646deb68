//! Completing a future and reading its outcome: `result`, `exception`, `set_result`,
//! `set_exception`, `cancel`, `cancelled`, `done`.

use pyo3::exceptions::{PyRuntimeError, PyStopIteration, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyType;

use super::*;
use crate::names::names;
use crate::pyo::native_type::methods::FastArgs;
use crate::pyo::Ref;

pub(crate) fn result<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
) -> PyResult<Bound<'py, PyAny>> {
    result_outcome(slf, st)?.map_err(PyErr::from_value)
}

/// What `result()` returns (`Ok`) or raises (`Err`, the exception object).
pub(crate) fn result_outcome<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
) -> PyResult<Result<Bound<'py, PyAny>, Bound<'py, PyAny>>> {
    let py = slf.py();
    let finished = st.inner.with(|g| {
        if g.status != Status::Finished {
            return Err((g.status, g.loop_.is_some()));
        }
        g.log_tb = false;
        Ok((
            opt(&g.exception, py),
            opt(&g.exception_tb, py),
            opt(&g.result, py),
        ))
    });
    let (exc, tb, res) = match finished {
        Ok(outcome) => outcome,
        Err((Status::Cancelled, _)) => return Ok(Err(make_cancelled_error(py, st)?)),
        Err((_, initialized)) => {
            let msg = if initialized {
                "Result is not set."
            } else {
                "Future object is not initialized."
            };
            return Ok(Err(invalid_state(py, msg.into())?
                .into_value(py)
                .into_bound(py)
                .into_any()));
        }
    };
    if let Some(exc) = exc {
        exc.setattr(intern!(py, "__traceback__"), or_none(tb, py))?;
        return Ok(Err(exc));
    }
    Ok(Ok(or_none(res, py)))
}

pub(crate) fn exception<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    let finished = st.inner.with(|g| {
        if g.status != Status::Finished {
            return Err((g.status, g.loop_.is_some()));
        }
        g.log_tb = false;
        Ok(opt(&g.exception, py))
    });
    let exc = match finished {
        Ok(exc) => exc,
        Err((Status::Cancelled, _)) => {
            return Err(PyErr::from_value(make_cancelled_error(py, st)?))
        }
        Err((_, initialized)) => {
            let msg = if initialized {
                "Exception is not set."
            } else {
                "Future object is not initialized."
            };
            return Err(invalid_state(py, msg.into())?);
        }
    };
    Ok(or_none(exc, py))
}

// 3.12+: the C methods that take their defining class (for the module state) parse their
// arguments with Argument Clinic, whose messages differ from METH_NOARGS / METH_O ones.

/// `exception()` as a clinic method (3.12+).
pub(crate) fn exception_clinic<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
    args: FastArgs<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    super::args::no_arguments(slf.py(), "exception", &args.pos, &args.kw)?;
    exception(slf, st)
}

/// `get_loop()` as a clinic method (3.12+).
pub(crate) fn get_loop_clinic<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
    args: FastArgs<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    super::args::no_arguments(slf.py(), "get_loop", &args.pos, &args.kw)?;
    get_loop(slf, st)
}

/// The one positional-only argument of a clinic method `fname(arg, /)`.
fn one_arg<'py>(
    py: Python<'py>,
    fname: &'static str,
    args: FastArgs<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let sig = super::args::Signature {
        fname,
        posonly: 1,
        keywords: &[],
        minpos: 1,
        maxpos: 1,
    };
    let mut bound = super::args::unpack(py, &sig, &args.pos, &super::args::from_kwnames(args.kw))?;
    Ok(bound
        .pop()
        .flatten()
        .unwrap_or_else(|| py.None().into_bound(py)))
}

/// `set_result(result, /)` as a clinic method (3.12+).
pub(crate) fn set_result_clinic<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
    args: FastArgs<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let v = one_arg(slf.py(), "set_result", args)?;
    set_result(slf, st, &v)
}

/// `set_exception(exception, /)` as a clinic method (3.12+).
pub(crate) fn set_exception_clinic<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
    args: FastArgs<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let v = one_arg(slf.py(), "set_exception", args)?;
    set_exception(slf, st, &v)
}

/// `remove_done_callback(fn, /)` as a clinic method (3.12+).
pub(crate) fn remove_done_callback_clinic<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
    args: FastArgs<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let v = one_arg(slf.py(), "remove_done_callback", args)?;
    remove_done_callback(slf, st, &v)
}

pub(super) fn state_name<'py>(py: Python<'py>, s: Status) -> PyResult<Bound<'py, PyAny>> {
    let n = names(py)?;
    Ok(match s {
        Status::Pending => n.state_pending.bind(py).clone(),
        Status::Cancelled => n.state_cancelled.bind(py).clone(),
        Status::Finished => n.state_finished.bind(py).clone(),
    })
}

pub(super) fn ensure_pending(slf: &Bound<'_, PyAny>, st: &FutureState) -> PyResult<()> {
    let s = st.status();
    if s != Status::Pending {
        // The C Future's message (the Python one names the state and the future).
        return Err(invalid_state(slf.py(), "invalid state".into())?);
    }
    Ok(())
}

pub(crate) fn set_result<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
    value: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    st.loop_obj(py)?;
    ensure_pending(slf, st)?;
    let result = Ref::new(value.clone());
    let old = st.inner.with(|g| {
        g.status = Status::Finished;
        g.result.replace(result)
    });
    drop(old);
    schedule_callbacks(slf, st)?;
    Ok(py.None().into_bound(py))
}

pub(crate) fn set_exception<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
    exc: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    st.loop_obj(py)?;
    ensure_pending(slf, st)?;
    let mut exc = exc.clone();
    if exc.is_instance_of::<PyType>() {
        exc = exc.call0()?;
        ensure_pending(slf, st)?;
    }
    if !exc.is_instance_of::<pyo3::exceptions::PyBaseException>() {
        return Err(eager::<PyTypeError>(py, "invalid exception object"));
    }
    let stop_iteration = py.get_type::<PyStopIteration>();
    if names(py)?.stop_iteration_is_runtime_error {
        if exc.is_instance(&stop_iteration)? {
            let new_exc = py.get_type::<PyRuntimeError>().call1((
                "StopIteration interacts badly with generators and cannot be raised into a Future",
            ))?;
            new_exc.setattr(intern!(py, "__cause__"), &exc)?;
            new_exc.setattr(intern!(py, "__context__"), &exc)?;
            exc = new_exc;
        }
    } else if exc.get_type().is(&stop_iteration) {
        return Err(eager::<PyTypeError>(
            py,
            "StopIteration interacts badly with generators and cannot be raised into a Future",
        ));
    }
    let tb = exc.getattr(intern!(py, "__traceback__"))?;
    let (exc, tb) = (Ref::new(exc), (!tb.is_none()).then_some(tb).map(Ref::new));
    let old = st.inner.with(|g| {
        g.status = Status::Finished;
        (
            g.exception.replace(exc),
            match tb {
                None => g.exception_tb.take(),
                Some(tb) => g.exception_tb.replace(tb),
            },
        )
    });
    drop(old);
    schedule_callbacks(slf, st)?;
    st.inner.with(|s| s.log_tb = true);
    Ok(py.None().into_bound(py))
}

/// Parses `(msg=None)`.
pub(crate) fn cancel<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
    args: FastArgs<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    let msg = parse_cancel_args(py, args)?;
    let cancelled = cancel_impl(slf, st, msg)?;
    Ok(py_bool(py, cancelled))
}

/// The `msg` of `cancel(msg=None)` (Future's and Task's).
pub(crate) fn parse_cancel_args<'py>(
    py: Python<'py>,
    args: FastArgs<'py>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    if args.kw.is_empty() && args.pos.len() <= 1 {
        // The common calls, without building the clinic's argument vector.
        return Ok(args.pos.into_iter().next());
    }
    static SIG: super::args::Signature = super::args::Signature {
        fname: "cancel",
        posonly: 0,
        keywords: &["msg"],
        minpos: 0,
        maxpos: 1,
    };
    let mut bound = super::args::unpack(py, &SIG, &args.pos, &super::args::from_kwnames(args.kw))?;
    Ok(bound.pop().flatten())
}

/// `Future.cancel(msg)` after argument parsing (also `super().cancel()` of a Task).
pub(crate) fn cancel_impl(
    slf: &Bound<'_, PyAny>,
    st: &FutureState,
    msg: Option<Bound<'_, PyAny>>,
) -> PyResult<bool> {
    let py = slf.py();
    st.loop_obj(py)?;
    let msg = msg.filter(|m| !m.is_none()).map(Ref::new);
    let cancelled = st.inner.with(|g| {
        g.log_tb = false;
        if g.status != Status::Pending {
            // Handed back, to be dropped after the access.
            return Err(msg);
        }
        g.status = Status::Cancelled;
        Ok(match msg {
            Some(m) => g.cancel_msg.replace(m),
            None => g.cancel_msg.take(),
        })
    });
    match cancelled {
        Ok(old) => drop(old),
        Err(unused) => {
            drop(unused);
            return Ok(false);
        }
    }
    schedule_callbacks(slf, st)?;
    Ok(true)
}

pub(crate) fn cancelled<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(py_bool(slf.py(), st.status() == Status::Cancelled))
}

pub(crate) fn done<'py>(slf: &Bound<'py, PyAny>, st: &FutureState) -> PyResult<Bound<'py, PyAny>> {
    Ok(py_bool(slf.py(), st.status() != Status::Pending))
}

pub(crate) fn get_loop<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
) -> PyResult<Bound<'py, PyAny>> {
    st.loop_obj(slf.py())
}

pub(crate) fn make_cancelled_error_method<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
) -> PyResult<Bound<'py, PyAny>> {
    make_cancelled_error(slf.py(), st)
}

/// `__del__`, as the C Future has: lets a Python subclass's `__del__` call
/// `super().__del__()` and still get the "exception was never retrieved" report.
pub(crate) fn del_method<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
) -> PyResult<Bound<'py, PyAny>> {
    finalize(slf, st);
    Ok(slf.py().None().into_bound(slf.py()))
}
