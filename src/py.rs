//! Python objects the loop needs, imported once per interpreter.
//!
//! Only objects that tests and libraries never patch are cached here. Things that are
//! commonly patched (asyncio's logger, for instance) are looked up at the time of use.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule;

/// asyncio and standard library callables used by the loop.
pub struct Imports {
    pub events: Py<PyModule>,
    /// `ferroloop.Future`: what `loop.create_future()` returns.
    pub future_cls: Py<PyAny>,
    /// `ferroloop.Task`: what `loop.create_task()` makes without a task factory.
    pub task_cls: Py<PyAny>,
    pub isfuture: Py<PyAny>,
    pub ensure_future: Py<PyAny>,
    pub wrap_future: Py<PyAny>,
    pub gather: Py<PyAny>,
    pub iscoroutine: Py<PyAny>,
    pub iscoroutinefunction: Py<PyAny>,
    pub extract_stack: Py<PyAny>,
    pub format_callback_source: Py<PyAny>,
    /// Whether `_format_callback_source` takes `debug=` (3.13+; not 3.12.1).
    pub format_callback_source_takes_debug: bool,
    pub set_result_unless_cancelled: Py<PyAny>,
    pub thread_pool_executor: Py<PyAny>,
    pub get_asyncgen_hooks: Py<PyAny>,
    pub set_asyncgen_hooks: Py<PyAny>,
    pub set_coroutine_origin_tracking_depth: Py<PyAny>,
    pub get_coroutine_origin_tracking_depth: Py<PyAny>,
    pub getframe: Py<PyAny>,
    pub is_finalizing: Py<PyAny>,
    pub weakset: Py<PyAny>,
    pub warn: Py<PyAny>,
    pub resource_warning: Py<PyAny>,
    pub runtime_warning: Py<PyAny>,
    pub thread_cls: Py<PyAny>,
    pub format_list: Py<PyAny>,
    pub signal: Py<PyModule>,
    pub base_events: Py<PyModule>,
}

static IMPORTS: PyOnceLock<Imports> = PyOnceLock::new();

fn attr(module: &Bound<'_, PyModule>, name: &str) -> PyResult<Py<PyAny>> {
    Ok(module.getattr(name)?.unbind())
}

impl Imports {
    /// The interpreter-wide table, imported on first use.
    pub fn get(py: Python<'_>) -> PyResult<&'static Imports> {
        IMPORTS.get_or_try_init(py, || {
            let events = py.import("asyncio.events")?;
            let native = py.import("ferroloop._ferroloop")?;
            let asyncio = py.import("asyncio")?;
            let futures = py.import("asyncio.futures")?;
            let coroutines = py.import("asyncio.coroutines")?;
            let format_helpers = py.import("asyncio.format_helpers")?;
            let cf = py.import("concurrent.futures")?;
            let sys = py.import("sys")?;
            let weakref = py.import("weakref")?;
            let warnings = py.import("warnings")?;
            let builtins = py.import("builtins")?;
            let threading = py.import("threading")?;
            let traceback = py.import("traceback")?;
            Ok(Imports {
                events: events.clone().unbind(),
                future_cls: attr(&native, "Future")?,
                task_cls: attr(&native, "Task")?,
                isfuture: attr(&futures, "isfuture")?,
                ensure_future: attr(&asyncio, "ensure_future")?,
                wrap_future: attr(&futures, "wrap_future")?,
                gather: attr(&asyncio, "gather")?,
                iscoroutine: attr(&coroutines, "iscoroutine")?,
                iscoroutinefunction: attr(&coroutines, "iscoroutinefunction")?,
                extract_stack: attr(&format_helpers, "extract_stack")?,
                format_callback_source: attr(&format_helpers, "_format_callback_source")?,
                format_callback_source_takes_debug: format_helpers
                    .getattr("_format_callback_source")?
                    .getattr("__code__")?
                    .getattr("co_kwonlyargcount")?
                    .extract::<usize>()?
                    > 0,
                set_result_unless_cancelled: attr(&futures, "_set_result_unless_cancelled")?,
                thread_pool_executor: attr(&cf, "ThreadPoolExecutor")?,
                get_asyncgen_hooks: attr(&sys, "get_asyncgen_hooks")?,
                set_asyncgen_hooks: attr(&sys, "set_asyncgen_hooks")?,
                set_coroutine_origin_tracking_depth: attr(
                    &sys,
                    "set_coroutine_origin_tracking_depth",
                )?,
                get_coroutine_origin_tracking_depth: attr(
                    &sys,
                    "get_coroutine_origin_tracking_depth",
                )?,
                getframe: attr(&sys, "_getframe")?,
                is_finalizing: attr(&sys, "is_finalizing")?,
                weakset: attr(&weakref, "WeakSet")?,
                warn: attr(&warnings, "warn")?,
                resource_warning: attr(&builtins, "ResourceWarning")?,
                runtime_warning: attr(&builtins, "RuntimeWarning")?,
                thread_cls: attr(&threading, "Thread")?,
                format_list: attr(&traceback, "format_list")?,
                signal: py.import("signal")?.unbind(),
                base_events: py.import("asyncio.base_events")?.unbind(),
            })
        })
    }
}

/// `asyncio.events._set_running_loop` / `_get_running_loop`, looked up at call time (once
/// per `run_forever`): tests swap in the pure-Python versions, and asyncio's own loop
/// reads them through the module too.
pub fn events_attr<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    Imports::get(py)?.events.bind(py).getattr(name)
}

/// asyncio's logger as `asyncio.base_events.logger`, looked up at call time so that
/// `unittest.mock.patch('asyncio.base_events.logger')` sees ferroloop's messages.
pub fn logger<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
    Imports::get(py)?.base_events.bind(py).getattr("logger")
}
