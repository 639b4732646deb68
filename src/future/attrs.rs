//! The Future's private attributes, as the C Future exposes them (`_state`, `_loop`,
//! `_callbacks`, `_result`, `_exception`, `_log_traceback`, ...).

use pyo3::exceptions::{PyAttributeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use super::*;
use crate::pyo::Ref;

pub(crate) fn get_state<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
) -> PyResult<Bound<'py, PyAny>> {
    st.loop_obj(slf.py())?;
    state_name(slf.py(), st.status())
}

pub(crate) fn get_blocking<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(py_bool(slf.py(), st.inner.with(|s| s.blocking)))
}

pub(super) fn no_delete(py: Python<'_>) -> PyErr {
    eager::<PyAttributeError>(py, "cannot delete attribute")
}

pub(crate) fn set_blocking(
    slf: &Bound<'_, PyAny>,
    st: &FutureState,
    value: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let py = slf.py();
    let b = value.ok_or_else(|| no_delete(py))?.is_truthy()?;
    st.inner.with(|s| s.blocking = b);
    Ok(())
}

pub(crate) fn get_loop_attr<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    Ok(or_none(st.inner.with(|s| opt(&s.loop_, py)), py))
}

pub(crate) fn get_callbacks<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    st.loop_obj(py)?;
    let items: Vec<Callback> = st
        .inner
        .with(|s| s.callbacks.iter().map(|cb| cb.clone_ref(py)).collect());
    let list = PyList::empty(py);
    for cb in items {
        list.append(PyTuple::new(py, [cb.func(py)?, cb.context(py)])?)?;
    }
    Ok(list.into_any())
}

pub(crate) fn get_result<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    st.loop_obj(py)?;
    Ok(or_none(st.inner.with(|s| opt(&s.result, py)), py))
}

pub(crate) fn get_exception<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    st.loop_obj(py)?;
    Ok(or_none(st.inner.with(|s| opt(&s.exception, py)), py))
}

pub(crate) fn get_log_traceback<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
) -> PyResult<Bound<'py, PyAny>> {
    st.loop_obj(slf.py())?;
    Ok(py_bool(slf.py(), st.inner.with(|s| s.log_tb)))
}

pub(crate) fn set_log_traceback(
    slf: &Bound<'_, PyAny>,
    st: &FutureState,
    value: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let py = slf.py();
    if value.ok_or_else(|| no_delete(py))?.is_truthy()? {
        return Err(eager::<PyValueError>(
            py,
            "_log_traceback can only be set to False",
        ));
    }
    st.inner.with(|s| s.log_tb = false);
    Ok(())
}

pub(crate) fn get_source_traceback<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    Ok(or_none(st.inner.with(|s| opt(&s.source_tb, py)), py))
}

pub(crate) fn get_cancel_message<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    Ok(or_none(st.inner.with(|s| opt(&s.cancel_msg, py)), py))
}

pub(crate) fn set_cancel_message(
    slf: &Bound<'_, PyAny>,
    st: &FutureState,
    value: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let py = slf.py();
    let value = value.ok_or_else(|| no_delete(py))?;
    let old = if value.is_none() {
        st.inner.with(|s| s.cancel_msg.take())
    } else {
        st.inner
            .with(|s| s.cancel_msg.replace(Ref::new(value.clone())))
    };
    drop(old);
    Ok(())
}
