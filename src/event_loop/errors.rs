//! The exception handler API (`set_exception_handler`, `call_exception_handler`) and
//! asyncio's formatting of the default handler's report.

use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;

use crate::pyo::exc::with_exception_set;
use pyo3::types::{PyDict, PyString, PyTuple};

use super::LoopCore;
use crate::names::{logger, Names};

impl LoopCore {
    pub(super) fn get_exception_handler(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.pystate
            .with(|s| s.exception_handler.as_ref().map(|h| h.clone_ref(py)))
    }

    pub(super) fn set_exception_handler(&self, handler: &Bound<'_, PyAny>) -> PyResult<()> {
        if !handler.is_none() && !handler.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "A callable object or None is expected, got {}",
                handler.repr()?
            )));
        }
        let new = (!handler.is_none()).then(|| handler.clone().unbind());
        let old = self
            .pystate
            .with(|s| std::mem::replace(&mut s.exception_handler, new));
        drop(old);
        Ok(())
    }

    /// Logs `context` through asyncio's logger, in asyncio's format.
    pub(super) fn default_exception_handler(
        slf: &Bound<'_, Self>,
        context: &Bound<'_, PyDict>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let imports = Names::get(py)?;
        let message = match context.get_item("message")? {
            Some(m) if m.is_truthy()? => m.str()?.to_string(),
            _ => "Unhandled exception in event loop".to_string(),
        };
        let exc_info: Bound<'_, PyAny> = match context.get_item("exception")? {
            Some(e) if !e.is_none() => PyTuple::new(
                py,
                [
                    e.get_type().into_any(),
                    e.clone(),
                    e.getattr(intern!(py, "__traceback__"))?,
                ],
            )?
            .into_any(),
            _ => pyo3::types::PyBool::new(py, false).to_owned().into_any(),
        };
        if !context.contains("source_traceback")? {
            let current = this
                .pystate
                .with(|s| s.current_handle.as_ref().map(|h| h.clone_ref(py)));
            if let Some(h) = current {
                let tb = h
                    .bind(py)
                    .as_any()
                    .getattr(intern!(py, "_source_traceback"))?;
                if tb.is_truthy()? {
                    context.set_item("handle_traceback", tb)?;
                }
            }
        }
        let mut lines = vec![message];
        let keys = context.keys();
        keys.sort()?;
        for key in keys.iter() {
            let k = key.str()?.to_string();
            if k == "message" || k == "exception" {
                continue;
            }
            let value = context
                .get_item(&key)?
                .unwrap_or_else(|| py.None().into_bound(py));
            let text = match k.as_str() {
                "source_traceback" | "handle_traceback" => {
                    let tb: String = PyString::new(py, "")
                        .call_method1(
                            intern!(py, "join"),
                            (imports.format_list.bind(py).call1((&value,))?,),
                        )?
                        .extract()?;
                    let what = if k == "source_traceback" {
                        "Object"
                    } else {
                        "Handle"
                    };
                    format!(
                        "{what} created at (most recent call last):\n{}",
                        tb.trim_end()
                    )
                }
                _ => value.repr()?.to_string(),
            };
            lines.push(format!("{k}: {text}"));
        }
        let kw = PyDict::new(py);
        kw.set_item("exc_info", exc_info)?;
        logger(py)?.call_method(intern!(py, "error"), (lines.join("\n"),), Some(&kw))?;
        Ok(())
    }

    /// Reports `context` to the custom exception handler, or the default one.
    pub(super) fn call_exception_handler(
        slf: &Bound<'_, Self>,
        context: &Bound<'_, PyDict>,
    ) -> PyResult<()> {
        let py = slf.py();
        let handler = slf
            .get()
            .pystate
            .with(|s| s.exception_handler.as_ref().map(|h| h.clone_ref(py)));
        let fatal = |e: &PyErr| {
            e.is_instance_of::<PySystemExit>(py) || e.is_instance_of::<PyKeyboardInterrupt>(py)
        };
        let log_error = |msg: &str| -> PyResult<()> {
            let kw = PyDict::new(py);
            kw.set_item("exc_info", true)?;
            logger(py)?.call_method(intern!(py, "error"), (msg,), Some(&kw))?;
            Ok(())
        };
        match handler {
            None => {
                if let Err(e) =
                    slf.call_method1(intern!(py, "default_exception_handler"), (context,))
                {
                    if fatal(&e) {
                        return Err(e);
                    }
                    e.restore(py);
                    // logging's exc_info=True reads the exception being handled.
                    let res = with_exception_set(py, || {
                        log_error("Exception in default exception handler")
                    });
                    res?;
                }
            }
            Some(h) => {
                let run = || -> PyResult<()> {
                    let mut thing = None;
                    for key in ["task", "future", "handle"] {
                        if let Some(v) = context.get_item(key)? {
                            if !v.is_none() {
                                thing = Some(v);
                                break;
                            }
                        }
                    }
                    let ctx = match thing {
                        Some(t) if t.hasattr(intern!(py, "get_context"))? => {
                            Some(t.call_method0(intern!(py, "get_context"))?)
                        }
                        _ => None,
                    };
                    match ctx {
                        Some(c) if !c.is_none() && c.hasattr(intern!(py, "run"))? => {
                            c.call_method1(intern!(py, "run"), (h.bind(py), slf, context))?;
                        }
                        _ => {
                            h.bind(py).call1((slf, context))?;
                        }
                    }
                    Ok(())
                };
                if let Err(exc) = run() {
                    if fatal(&exc) {
                        return Err(exc);
                    }
                    let inner = PyDict::new(py);
                    inner.set_item("message", "Unhandled error in exception handler")?;
                    let exc_obj = crate::pyo::exc::exc_value(py, &exc);
                    inner.set_item("exception", &exc_obj)?;
                    inner.set_item("context", context)?;
                    // Inside asyncio's `except BaseException as exc:`.
                    let res = crate::pyo::exc::while_handling(&exc_obj, || {
                        slf.call_method1(intern!(py, "default_exception_handler"), (inner,))
                    });
                    if let Err(e2) = res {
                        if fatal(&e2) {
                            return Err(e2);
                        }
                        e2.restore(py);
                        let res = with_exception_set(py, || {
                            log_error(
                                "Exception in default exception handler while handling an \
                                 unexpected error in custom exception handler",
                            )
                        });
                        res?;
                    }
                }
            }
        }
        Ok(())
    }
}
