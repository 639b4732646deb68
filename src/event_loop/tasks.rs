//! Futures and tasks made by the loop: `create_future`, `create_task` and the task factory.

use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::LoopCore;
use crate::names::Names;

impl LoopCore {
    /// A new `asyncio.Future` bound to this loop.
    pub(crate) fn create_future(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        if let Some(fut) = crate::future::new_for_loop(slf.as_any()) {
            return Ok(fut?.unbind());
        }
        let kw = PyDict::new(py);
        kw.set_item("loop", slf)?;
        Ok(Names::get(py)?
            .future_cls
            .bind(py)
            .call((), Some(&kw))?
            .unbind())
    }

    /// Wraps a coroutine in a task (through the task factory, if one is set).
    pub(super) fn create_task(
        slf: &Bound<'_, Self>,
        coro: &Bound<'_, PyAny>,
        name: Option<&Bound<'_, PyAny>>,
        context: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed()?;
        let factory = this
            .pystate
            .with(|s| s.task_factory.as_ref().map(|f| f.clone_ref(py)));
        let context = context.filter(|c| !c.is_none());
        let name = name.filter(|n| !n.is_none());
        let task = match factory {
            None => {
                let task = match crate::task::new_for_loop(slf.as_any(), coro, name, context) {
                    Some(task) => task?,
                    None => {
                        let kw = PyDict::new(py);
                        kw.set_item("loop", slf)?;
                        kw.set_item("name", name)?;
                        kw.set_item("context", context)?;
                        Names::get(py)?.task_cls.bind(py).call((coro,), Some(&kw))?
                    }
                };
                // No `del task._source_traceback[-1]` as asyncio's create_task does: that
                // drops asyncio's own `create_task` frame, and this one has none.
                task
            }
            Some(f) => {
                let task = match context {
                    None => f.bind(py).call1((slf, coro))?,
                    Some(ctx) => {
                        let kw = PyDict::new(py);
                        kw.set_item("context", ctx)?;
                        f.bind(py).call((slf, coro), Some(&kw))?
                    }
                };
                if let Some(n) = name {
                    task.call_method1(intern!(py, "set_name"), (n,))?;
                }
                task
            }
        };
        Ok(task.unbind())
    }

    pub(super) fn set_task_factory(&self, factory: &Bound<'_, PyAny>) -> PyResult<()> {
        if !factory.is_none() && !factory.is_callable() {
            return Err(PyTypeError::new_err(
                "task factory must be a callable or None",
            ));
        }
        let new = (!factory.is_none()).then(|| factory.clone().unbind());
        let old = self
            .pystate
            .with(|s| std::mem::replace(&mut s.task_factory, new));
        drop(old);
        Ok(())
    }

    pub(super) fn get_task_factory(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.pystate
            .with(|s| s.task_factory.as_ref().map(|f| f.clone_ref(py)))
    }
}
