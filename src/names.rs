//! The one table of Python objects ferroloop uses: asyncio's functions, classes and
//! constants, imported once per interpreter (the loop, futures and tasks share it).
//!
//! Only objects that tests and libraries never patch are cached here. Things that are
//! commonly patched (asyncio's logger, `events._get_running_loop`, ...) are looked up at
//! the time of use, through [`events_attr`] and [`logger`].
//!
//! Attributes looked up per loop or per operation should be looked up by interned names
//! (`intern!`), not by `&str`, which PyO3 turns into a new str per call: CPython's type
//! attribute cache keeps a reference to the name of every lookup it caches and, from 3.12,
//! files it by the name's address, so each new str can take a cache entry of its own and
//! live on there (up to 4096 of them). Loops made and closed in a row left tens of such
//! strings per loop, scattered over fresh allocator pools, and each arena they pinned
//! stayed resident.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyModule, PyString, PyTuple};

/// asyncio and standard library objects, imported once.
pub struct Names {
    // ----- modules ------------------------------------------------------------------
    pub events: Py<PyModule>,
    pub signal: Py<PyModule>,
    pub base_events: Py<PyModule>,

    // ----- the loop -----------------------------------------------------------------
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
    pub audit: Py<PyAny>,
    pub is_finalizing: Py<PyAny>,
    pub weakset: Py<PyAny>,
    pub warn: Py<PyAny>,
    pub resource_warning: Py<PyAny>,
    pub runtime_warning: Py<PyAny>,
    pub thread_cls: Py<PyAny>,
    /// `socket.socket`, `asyncio.BufferedProtocol`, `asyncio.trsock.TransportSocket`: for
    /// the transports (`net/`) and the `sock_*` methods.
    pub socket_cls: Py<PyAny>,
    pub buffered_protocol: Py<PyAny>,
    pub transport_socket: Py<PyAny>,
    pub format_list: Py<PyAny>,

    // ----- futures ------------------------------------------------------------------
    pub cancelled_error: Py<PyAny>,
    pub invalid_state_error: Py<PyAny>,
    pub future_repr: Py<PyAny>,
    /// `base_futures._PENDING`, `_CANCELLED`, `_FINISHED`: the values of `Future._state`.
    pub state_pending: Py<PyAny>,
    pub state_cancelled: Py<PyAny>,
    pub state_finished: Py<PyAny>,
    /// 3.13+: `set_exception(StopIteration)` raises a RuntimeError chained to it.
    pub stop_iteration_is_runtime_error: bool,
    /// 3.12+: the `(type, exc, tb)` signature of `throw()` is deprecated.
    pub throw_deprecated: bool,

    // ----- tasks --------------------------------------------------------------------
    pub register_task: Py<PyAny>,
    /// `_asyncio._current_tasks`, the `{loop: task}` dict behind `current_task()`.
    pub current_tasks: Py<PyDict>,
    pub swap_current_task: Option<Py<PyAny>>,
    pub register_eager_task: Option<Py<PyAny>>,
    pub unregister_eager_task: Option<Py<PyAny>>,
    pub task_repr: Py<PyAny>,
    pub task_get_stack: Py<PyAny>,
    pub task_print_stack: Py<PyAny>,
    /// 3.12+: `eager_start` and `get_context`.
    pub eager_tasks: bool,
    /// 3.13+: `uncancel()` down to zero clears `_must_cancel`.
    pub uncancel_resets: bool,
    /// `Server._attach(transport)` / `_detach(transport)` (3.13) rather than
    /// `_attach()` / `_detach()`: read off the signature.
    pub server_attach_takes_transport: bool,

    // ----- interned attribute names (for the vectorcall helpers of `pyo::call`) --------
    pub str_call_soon: Py<PyString>,
    pub str_add_done_callback: Py<PyString>,
    pub str_throw: Py<PyString>,
    pub str_result: Py<PyString>,
    pub str_get_loop: Py<PyString>,
    pub str_asyncio_future_blocking: Py<PyString>,
    /// `("context",)`: the keyword names of `call_soon(cb, arg, context=...)`.
    pub kwnames_context: Py<PyTuple>,
}

static NAMES: PyOnceLock<Names> = PyOnceLock::new();

fn attr(module: &Bound<'_, PyModule>, name: &str) -> PyResult<Py<PyAny>> {
    Ok(module.getattr(name)?.unbind())
}

/// The interpreter-wide table, imported on first use.
#[inline]
pub fn names(py: Python<'_>) -> PyResult<&'static Names> {
    Names::get(py)
}

impl Names {
    /// The interpreter-wide table, imported on first use.
    pub fn get(py: Python<'_>) -> PyResult<&'static Names> {
        NAMES.get_or_try_init(py, || {
            let events = py.import("asyncio.events")?;
            let native = py.import("ferroloop._ferroloop")?;
            let asyncio = py.import("asyncio")?;
            let futures = py.import("asyncio.futures")?;
            let coroutines = py.import("asyncio.coroutines")?;
            let format_helpers = py.import("asyncio.format_helpers")?;
            let exceptions = py.import("asyncio.exceptions")?;
            let base_futures = py.import("asyncio.base_futures")?;
            let base_tasks = py.import("asyncio.base_tasks")?;
            let c_asyncio = py.import("_asyncio")?;
            let cf = py.import("concurrent.futures")?;
            let sys = py.import("sys")?;
            let weakref = py.import("weakref")?;
            let warnings = py.import("warnings")?;
            let builtins = py.import("builtins")?;
            let threading = py.import("threading")?;
            let traceback = py.import("traceback")?;
            let eager_tasks = py.version_info() >= (3, 12);
            let eager_attr = |n: &str| -> PyResult<Option<Py<PyAny>>> {
                if eager_tasks {
                    Ok(Some(attr(&c_asyncio, n)?))
                } else {
                    Ok(None)
                }
            };
            Ok(Names {
                events: events.clone().unbind(),
                signal: py.import("signal")?.unbind(),
                base_events: py.import("asyncio.base_events")?.unbind(),

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
                    .getattr(intern!(py, "_format_callback_source"))?
                    .getattr(intern!(py, "__code__"))?
                    .getattr(intern!(py, "co_kwonlyargcount"))?
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
                audit: attr(&sys, "audit")?,
                is_finalizing: attr(&sys, "is_finalizing")?,
                weakset: attr(&weakref, "WeakSet")?,
                warn: attr(&warnings, "warn")?,
                resource_warning: attr(&builtins, "ResourceWarning")?,
                runtime_warning: attr(&builtins, "RuntimeWarning")?,
                thread_cls: attr(&threading, "Thread")?,
                socket_cls: attr(&py.import("socket")?, "socket")?,
                buffered_protocol: attr(&asyncio, "BufferedProtocol")?,
                transport_socket: attr(&py.import("asyncio.trsock")?, "TransportSocket")?,
                format_list: attr(&traceback, "format_list")?,

                cancelled_error: attr(&exceptions, "CancelledError")?,
                invalid_state_error: attr(&exceptions, "InvalidStateError")?,
                future_repr: attr(&base_futures, "_future_repr")?,
                state_pending: attr(&base_futures, "_PENDING")?,
                state_cancelled: attr(&base_futures, "_CANCELLED")?,
                state_finished: attr(&base_futures, "_FINISHED")?,
                stop_iteration_is_runtime_error: py.version_info() >= (3, 13),
                throw_deprecated: py.version_info() >= (3, 12),

                register_task: attr(&c_asyncio, "_register_task")?,
                current_tasks: c_asyncio
                    .getattr(intern!(py, "_current_tasks"))?
                    .cast_into::<PyDict>()?
                    .unbind(),
                swap_current_task: eager_attr("_swap_current_task")?,
                register_eager_task: eager_attr("_register_eager_task")?,
                unregister_eager_task: eager_attr("_unregister_eager_task")?,
                task_repr: attr(&base_tasks, "_task_repr")?,
                task_get_stack: attr(&base_tasks, "_task_get_stack")?,
                task_print_stack: attr(&base_tasks, "_task_print_stack")?,
                eager_tasks,
                uncancel_resets: py.version_info() >= (3, 13),
                server_attach_takes_transport: py
                    .import("asyncio.base_events")?
                    .getattr(intern!(py, "Server"))?
                    .getattr(intern!(py, "_attach"))?
                    .getattr(intern!(py, "__code__"))?
                    .getattr(intern!(py, "co_argcount"))?
                    .extract::<u32>()?
                    >= 2,

                str_call_soon: PyString::intern(py, "call_soon").unbind(),
                str_add_done_callback: PyString::intern(py, "add_done_callback").unbind(),
                str_throw: PyString::intern(py, "throw").unbind(),
                str_result: PyString::intern(py, "result").unbind(),
                str_get_loop: PyString::intern(py, "get_loop").unbind(),
                str_asyncio_future_blocking: PyString::intern(py, "_asyncio_future_blocking")
                    .unbind(),
                kwnames_context: PyTuple::new(py, ["context"])?.unbind(),
            })
        })
    }
}

/// `asyncio.events._set_running_loop` / `_get_running_loop`, looked up at call time (once
/// per `run_forever`): tests swap in the pure-Python versions, and asyncio's own loop
/// reads them through the module too. `name` is interned (see the module's doc).
pub fn events_attr<'py>(
    py: Python<'py>,
    name: &Bound<'py, PyString>,
) -> PyResult<Bound<'py, PyAny>> {
    Names::get(py)?.events.bind(py).getattr(name)
}

/// asyncio's logger as `asyncio.base_events.logger`, looked up at call time so that
/// `unittest.mock.patch('asyncio.base_events.logger')` sees ferroloop's messages.
pub fn logger<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
    Names::get(py)?
        .base_events
        .bind(py)
        .getattr(intern!(py, "logger"))
}
