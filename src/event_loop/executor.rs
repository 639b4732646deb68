//! Executors: `run_in_executor`, the default executor and its shutdown.

use std::sync::atomic::Ordering;

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyCFunction, PyDict, PyTuple};

use super::LoopCore;
use crate::names::Names;

impl LoopCore {
    /// Runs `func(*args)` in `executor` (the default thread pool when None) and returns
    /// an asyncio future for the result.
    pub(super) fn run_in_executor(
        slf: &Bound<'_, Self>,
        executor: &Bound<'_, PyAny>,
        func: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed()?;
        this.check_callback(py, func, "run_in_executor")?;
        let imports = Names::get(py)?;
        let executor = if executor.is_none() {
            if this.executor_shutdown_called.load(Ordering::Acquire) {
                return Err(PyRuntimeError::new_err("Executor shutdown has been called"));
            }
            let existing = this
                .pystate
                .with(|s| s.default_executor.as_ref().map(|e| e.clone_ref(py)));
            match existing {
                Some(e) => e.into_bound(py),
                None => {
                    let kw = PyDict::new(py);
                    kw.set_item("thread_name_prefix", "asyncio")?;
                    let e = imports.thread_pool_executor.bind(py).call((), Some(&kw))?;
                    let old = this
                        .pystate
                        .with(|s| s.default_executor.replace(e.clone().unbind()));
                    drop(old);
                    e
                }
            }
        } else {
            executor.clone()
        };
        let mut call_args = vec![func.clone()];
        call_args.extend(args.iter());
        let cf = executor.call_method1(intern!(py, "submit"), PyTuple::new(py, call_args)?)?;
        let kw = PyDict::new(py);
        kw.set_item("loop", slf)?;
        Ok(imports
            .wrap_future
            .bind(py)
            .call((cf,), Some(&kw))?
            .unbind())
    }

    /// Whether `shutdown_default_executor()` was called (then `run_in_executor(None, ...)`
    /// raises, and so do the lookups asyncio would run there).
    pub(crate) fn executor_shut_down(&self) -> bool {
        self.executor_shutdown_called.load(Ordering::Acquire)
    }

    /// Sets the executor used by `run_in_executor(None, ...)`.
    pub(super) fn set_default_executor(&self, executor: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = executor.py();
        if !executor.is_instance(Names::get(py)?.thread_pool_executor.bind(py))? {
            return Err(PyTypeError::new_err(
                "executor must be ThreadPoolExecutor instance",
            ));
        }
        let old = self
            .pystate
            .with(|s| s.default_executor.replace(executor.clone().unbind()));
        drop(old);
        Ok(())
    }

    pub(super) fn default_executor(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.pystate
            .with(|s| s.default_executor.as_ref().map(|e| e.clone_ref(py)))
    }

    /// Starts shutting the default executor down in a helper thread; returns a future
    /// resolved when its threads are joined (asyncio's `shutdown_default_executor`).
    pub(super) fn shutdown_default_executor(
        slf: &Bound<'_, Self>,
        timeout: Option<f64>,
    ) -> PyResult<Option<Py<PyAny>>> {
        let py = slf.py();
        let this = slf.get();
        this.executor_shutdown_called.store(true, Ordering::Release);
        let Some(executor) = this
            .pystate
            .with(|s| s.default_executor.as_ref().map(|e| e.clone_ref(py)))
        else {
            return Ok(None);
        };
        let future = Self::create_future(slf)?;
        let loop_ref = slf.clone().unbind();
        let fut_ref = future.clone_ref(py);
        let exec_ref = executor.clone_ref(py);
        let target = PyCFunction::new_closure(py, None, None, move |args, _kw| -> PyResult<()> {
            let py = args.py();
            let lp = loop_ref.bind(py);
            let fut = fut_ref.bind(py);
            let kw = PyDict::new(py);
            kw.set_item("wait", true)?;
            match exec_ref
                .bind(py)
                .call_method(intern!(py, "shutdown"), (), Some(&kw))
            {
                Ok(_) => {
                    if !lp.get().closed.load(Ordering::Acquire) {
                        Self::resolve_soon_threadsafe(lp, fut)?;
                    }
                }
                Err(e) if e.is_instance_of::<pyo3::exceptions::PyException>(py) => {
                    if !lp.get().closed.load(Ordering::Acquire)
                        && !fut.call_method0(intern!(py, "cancelled"))?.is_truthy()?
                    {
                        let setter = fut.getattr(intern!(py, "set_exception"))?;
                        lp.call_method1(
                            intern!(py, "call_soon_threadsafe"),
                            (setter, crate::pyo::exc::exc_value(py, &e)),
                        )?;
                    }
                }
                Err(e) => return Err(e),
            }
            Ok(())
        })?;
        let kw = PyDict::new(py);
        kw.set_item("target", target)?;
        let thread = Names::get(py)?.thread_cls.bind(py).call((), Some(&kw))?;
        thread.call_method0(intern!(py, "start"))?;
        let result = PyTuple::new(
            py,
            [
                future.into_any(),
                thread.unbind(),
                timeout.into_pyobject(py)?.into_any().unbind(),
            ],
        )?;
        Ok(Some(result.into_any().unbind()))
    }

    /// `future.set_result(None)` unless it was cancelled, via asyncio's helper.
    pub(super) fn resolve_soon_threadsafe(
        slf: &Bound<'_, Self>,
        future: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        let f = Names::get(py)?.set_result_unless_cancelled.bind(py);
        slf.call_method1(intern!(py, "call_soon_threadsafe"), (f, future, py.None()))?;
        Ok(())
    }
}
