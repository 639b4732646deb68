//! Async generator hooks and `shutdown_asyncgens`.

use std::sync::atomic::Ordering;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use super::LoopCore;
use crate::names::Names;

impl LoopCore {
    pub(super) fn asyncgen_firstiter_hook(
        slf: &Bound<'_, Self>,
        agen: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let imports = Names::get(py)?;
        if this.asyncgens_shutdown_called.load(Ordering::Acquire) {
            let kw = PyDict::new(py);
            kw.set_item("source", slf)?;
            imports.warn.bind(py).call(
                (
                    format!(
                        "asynchronous generator {} was scheduled after loop.shutdown_asyncgens() call",
                        agen.repr()?
                    ),
                    imports.resource_warning.bind(py),
                ),
                Some(&kw),
            )?;
        }
        Self::asyncgens(slf)?.call_method1(intern!(py, "add"), (agen,))?;
        Ok(())
    }

    pub(super) fn asyncgen_finalizer_hook(
        slf: &Bound<'_, Self>,
        agen: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        Self::asyncgens(slf)?.call_method1(intern!(py, "discard"), (agen,))?;
        if !slf.get().closed.load(Ordering::Acquire) {
            let create_task = slf.getattr(intern!(py, "create_task"))?;
            let aclose = agen.call_method0(intern!(py, "aclose"))?;
            slf.call_method1(intern!(py, "call_soon_threadsafe"), (create_task, aclose))?;
        }
        Ok(())
    }

    pub(super) fn asyncgens<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        let existing = this
            .pystate
            .with(|s| s.asyncgens.as_ref().map(|a| a.clone_ref(py)));
        if let Some(s) = existing {
            return Ok(s.into_bound(py));
        }
        let set = Names::get(py)?.weakset.bind(py).call0()?.unbind();
        // Making the set ran Python code, which may have made one first: keep that one,
        // and drop ours after the access.
        let (current, unused) = this.pystate.with(|s| match &s.asyncgens {
            Some(current) => (current.clone_ref(py), Some(set)),
            None => (s.asyncgens.insert(set).clone_ref(py), None),
        });
        drop(unused);
        Ok(current.into_bound(py))
    }

    /// Starts closing every live async generator; returns a future done when all are
    /// closed (None if there is none). `ferroloop.Loop.shutdown_asyncgens` awaits it.
    pub(super) fn shutdown_asyncgens(slf: &Bound<'_, Self>) -> PyResult<Option<Py<PyAny>>> {
        let py = slf.py();
        let this = slf.get();
        this.asyncgens_shutdown_called
            .store(true, Ordering::Release);
        let set = Self::asyncgens(slf)?;
        if set.len()? == 0 {
            return Ok(None);
        }
        let agens = PyList::new(py, set.try_iter()?.collect::<PyResult<Vec<_>>>()?)?;
        set.call_method0(intern!(py, "clear"))?;
        let mut tasks = Vec::with_capacity(agens.len());
        for agen in agens.iter() {
            let task =
                Self::create_task(slf, &agen.call_method0(intern!(py, "aclose"))?, None, None)?;
            tasks.push(task);
        }
        let kw = PyDict::new(py);
        kw.set_item("return_exceptions", true)?;
        let gathered = Names::get(py)?
            .gather
            .bind(py)
            .call(PyTuple::new(py, tasks)?, Some(&kw))?;
        Ok(Some(
            PyTuple::new(py, [gathered.into_any(), agens.into_any()])?
                .into_any()
                .unbind(),
        ))
    }
}
