//! `ferroloop._ferroloop.Future`: asyncio's `Future` implemented in Rust, whose type is a
//! subclass of CPython's C `_asyncio.Future` (so `isinstance(f, asyncio.Future)` holds and
//! libraries that check for it accept it).
//!
//! The semantics follow `Lib/asyncio/futures.py` (and the C `_asyncio` module where the two
//! differ in observable ways, e.g. the iterator's `_asyncio_future_blocking` protocol).
//! The type machinery and every `unsafe` block live in [`layout`]; this module is safe
//! Rust on `Bound` references.
//!
//! Invariant: the state is in a [`GilCell`]; a guard is never held while Python code can
//! run (calls, and decrefs: [`layout::Ref`]s taken out of the state are dropped after the
//! guard is released).

pub mod layout;

use std::ffi::c_int;
use std::mem;

use pyo3::exceptions::{
    PyAttributeError, PyDeprecationWarning, PyRuntimeError, PyStopIteration, PyTypeError,
    PyValueError,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyModule, PyString, PyTuple, PyType};
use pyo3::PyTypeInfo;
use pyo3::{PyTraverseError, PyVisit};

use crate::sync::GilCell;
use layout::Ref;

#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub(crate) enum Status {
    #[default]
    Pending,
    Cancelled,
    Finished,
}

/// One done-callback of a future.
pub(crate) enum Callback {
    /// `(callback, context)`, as `add_done_callback` registered it.
    Py(Ref, Ref),
    /// `(task, context)`: the wake-up of a ferroloop Task awaiting the future, kept as a
    /// Rust value (the bound `task_wakeup` builtin is only made when Python code looks at
    /// it or the loop is not ferroloop's).
    Wakeup(Ref, Ref),
}

impl Callback {
    /// The callable Python sees (`_callbacks`, `remove_done_callback`).
    fn func<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self {
            Callback::Py(f, _) => Ok(f.get(py)),
            Callback::Wakeup(t, _) => crate::task::wakeup_callable(&t.get(py)),
        }
    }

    fn context<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        match self {
            Callback::Py(_, c) | Callback::Wakeup(_, c) => c.get(py),
        }
    }

    fn clone_ref(&self, py: Python<'_>) -> Callback {
        match self {
            Callback::Py(f, c) => Callback::Py(Ref::new(f.get(py)), Ref::new(c.get(py))),
            Callback::Wakeup(t, c) => Callback::Wakeup(Ref::new(t.get(py)), Ref::new(c.get(py))),
        }
    }
}

/// A future's done-callbacks, in registration order. The first is stored inline (like the
/// C Future's `fut_callback0`): most futures get exactly one, the awaiting task's wake-up,
/// which then costs no allocation. Invariant: `rest` is empty while `first` is `None`.
#[derive(Default)]
pub(crate) struct Callbacks {
    first: Option<Callback>,
    rest: Vec<Callback>,
}

impl Callbacks {
    fn from_vec(v: Vec<Callback>) -> Self {
        let mut it = v.into_iter();
        let first = it.next();
        Callbacks {
            first,
            rest: it.collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    fn push(&mut self, cb: Callback) {
        if self.first.is_none() {
            self.first = Some(cb);
        } else {
            self.rest.push(cb);
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Callback> {
        self.first.iter().chain(self.rest.iter())
    }
}

impl IntoIterator for Callbacks {
    type Item = Callback;
    type IntoIter = std::iter::Chain<std::option::IntoIter<Callback>, std::vec::IntoIter<Callback>>;

    fn into_iter(self) -> Self::IntoIter {
        self.first.into_iter().chain(self.rest)
    }
}

#[derive(Default)]
pub(crate) struct Inner {
    /// `None` until `__init__` ran: the future is "not initialized".
    pub(crate) loop_: Option<Ref>,
    pub(crate) status: Status,
    pub(crate) result: Option<Ref>,
    pub(crate) exception: Option<Ref>,
    pub(crate) exception_tb: Option<Ref>,
    /// The done-callbacks, in registration order.
    pub(crate) callbacks: Callbacks,
    pub(crate) source_tb: Option<Ref>,
    pub(crate) cancel_msg: Option<Ref>,
    /// The `CancelledError` a task's coroutine raised, re-raised (once) by
    /// `_make_cancelled_error` so the chain of the cancellation is kept. Futures never set it.
    pub(crate) cancelled_exc: Option<Ref>,
    pub(crate) log_tb: bool,
    pub(crate) blocking: bool,
}

/// The Rust state stored in each Future object (see [`layout`]), and the Future part of
/// each Task object.
pub struct FutureState {
    pub(crate) inner: GilCell<Inner>,
}

/// Arguments of a `METH_FASTCALL | METH_KEYWORDS` call.
pub struct FastArgs<'py> {
    pub pos: Vec<Bound<'py, PyAny>>,
    pub kw: Vec<(Bound<'py, PyString>, Bound<'py, PyAny>)>,
}

/// An exception instance created now (not lazily): a lazy `PyErr` restored outside PyO3's
/// trampolines would leave its type and arguments in PyO3's deferred-decref pool.
pub(crate) fn eager<T: PyTypeInfo>(py: Python<'_>, msg: impl for<'a> IntoPyObject<'a>) -> PyErr {
    match T::type_object(py).call1((msg,)) {
        Ok(exc) => PyErr::from_value(exc),
        Err(e) => e,
    }
}

pub(crate) fn opt<'py>(r: &Option<Ref>, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
    r.as_ref().map(|r| r.get(py))
}

pub(crate) fn or_none<'py>(r: Option<Bound<'py, PyAny>>, py: Python<'py>) -> Bound<'py, PyAny> {
    r.unwrap_or_else(|| py.None().into_bound(py))
}

impl FutureState {
    pub(crate) fn new() -> Self {
        FutureState {
            inner: GilCell::new(Inner::default()),
        }
    }

    /// Visits every reference for the GC; returns the first non-zero visit result.
    #[inline]
    pub(crate) fn visit(&self, mut visit: impl FnMut(&Ref) -> c_int) -> c_int {
        let Some(g) = self.inner.try_lock() else {
            return 0;
        };
        let singles = [
            &g.loop_,
            &g.result,
            &g.exception,
            &g.exception_tb,
            &g.source_tb,
            &g.cancel_msg,
            &g.cancelled_exc,
        ];
        for r in singles.into_iter().flatten() {
            let v = visit(r);
            if v != 0 {
                return v;
            }
        }
        for cb in g.callbacks.iter() {
            let (Callback::Py(f, c) | Callback::Wakeup(f, c)) = cb;
            for r in [f, c] {
                let v = visit(r);
                if v != 0 {
                    return v;
                }
            }
        }
        0
    }

    /// Drops every reference (tp_clear); the future becomes "not initialized".
    pub(crate) fn clear(&self) {
        let old = match self.inner.try_lock() {
            Some(mut g) => mem::take(&mut *g),
            None => return,
        };
        drop(old);
    }

    pub(crate) fn loop_obj<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        opt(&self.inner.lock().loop_, py)
            .ok_or_else(|| eager::<PyRuntimeError>(py, "Future object is not initialized."))
    }

    pub(crate) fn status(&self) -> Status {
        self.inner.lock().status
    }
}

/// asyncio objects used by the future, imported once.
pub(crate) struct Names {
    pub(crate) cancelled_error: Py<PyAny>,
    pub(crate) invalid_state_error: Py<PyAny>,
    future_repr: Py<PyAny>,
    pending: Py<PyAny>,
    cancelled: Py<PyAny>,
    finished: Py<PyAny>,
    extract_stack: Py<PyAny>,
    events: Py<PyModule>,
    is_finalizing: Py<PyAny>,
    stop_iteration_is_runtime_error: bool,
    throw_deprecated: bool,
}

static NAMES: PyOnceLock<Names> = PyOnceLock::new();

pub(crate) fn names(py: Python<'_>) -> PyResult<&'static Names> {
    NAMES.get_or_try_init(py, || {
        let exceptions = py.import("asyncio.exceptions")?;
        let base_futures = py.import("asyncio.base_futures")?;
        let format_helpers = py.import("asyncio.format_helpers")?;
        let attr = |m: &Bound<'_, PyModule>, n: &str| m.getattr(n).map(Bound::unbind);
        Ok(Names {
            cancelled_error: attr(&exceptions, "CancelledError")?,
            invalid_state_error: attr(&exceptions, "InvalidStateError")?,
            future_repr: attr(&base_futures, "_future_repr")?,
            pending: attr(&base_futures, "_PENDING")?,
            cancelled: attr(&base_futures, "_CANCELLED")?,
            finished: attr(&base_futures, "_FINISHED")?,
            extract_stack: attr(&format_helpers, "extract_stack")?,
            events: py.import("asyncio.events")?.unbind(),
            is_finalizing: attr(&py.import("sys")?, "is_finalizing")?,
            stop_iteration_is_runtime_error: py.version_info() >= (3, 13),
            throw_deprecated: py.version_info() >= (3, 12),
        })
    })
}

pub(crate) fn invalid_state(py: Python<'_>, msg: String) -> PyResult<PyErr> {
    let exc = names(py)?.invalid_state_error.bind(py).call1((msg,))?;
    Ok(PyErr::from_value(exc))
}

pub(crate) fn make_cancelled_error<'py>(
    py: Python<'py>,
    st: &FutureState,
) -> PyResult<Bound<'py, PyAny>> {
    let (msg, exc) = {
        let mut g = st.inner.lock();
        (opt(&g.cancel_msg, py), g.cancelled_exc.take())
    };
    if let Some(exc) = exc {
        return Ok(exc.get(py));
    }
    let cls = names(py)?.cancelled_error.bind(py);
    match msg {
        Some(m) if !m.is_none() => cls.call1((m,)),
        _ => cls.call0(),
    }
}

/// `asyncio.events.get_event_loop()` as futures.py uses it: the running loop, else the
/// policy's loop (looked up at call time: tests patch these).
fn default_loop<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
    let events = names(py)?.events.bind(py);
    let running = events
        .getattr(pyo3::intern!(py, "_get_running_loop"))?
        .call0()?;
    if !running.is_none() {
        return Ok(running);
    }
    events
        .getattr(pyo3::intern!(py, "get_event_loop_policy"))?
        .call0()?
        .call_method0(pyo3::intern!(py, "get_event_loop"))
}

// ---------------------------------------------------------------------------------------
// Slots
// ---------------------------------------------------------------------------------------

pub(crate) fn init(
    slf: &Bound<'_, PyAny>,
    st: &FutureState,
    args: &Bound<'_, PyTuple>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<()> {
    let py = slf.py();
    if !args.is_empty() {
        return Err(eager::<PyTypeError>(
            py,
            format!(
                "Future() takes no positional arguments ({} given)",
                args.len()
            ),
        ));
    }
    let mut loop_ = None;
    if let Some(kw) = kwargs {
        for (k, v) in kw.iter() {
            if k.cast::<PyString>()?.to_str()? == "loop" {
                loop_ = Some(v);
            } else {
                return Err(eager::<PyTypeError>(
                    py,
                    format!("Future() got an unexpected keyword argument '{k}'"),
                ));
            }
        }
    }
    init_loop(slf, st, loop_)
}

/// `ferroloop.Future(loop=loop_)` without a Python-level call; `None` when the Future
/// type does not exist (then the caller calls the class).
pub(crate) fn new_for_loop<'py>(loop_: &Bound<'py, PyAny>) -> Option<PyResult<Bound<'py, PyAny>>> {
    let py = loop_.py();
    layout::future_type(py)?;
    Some((|| {
        let fut = layout::new_exact::<FutureState>(py)?;
        let st = layout::state(&fut)
            .ok_or_else(|| eager::<PyRuntimeError>(py, "ferroloop.Future lost its state"))?;
        init_loop(&fut, st, Some(loop_.clone()))?;
        Ok(fut)
    })())
}

/// `Future.__init__(loop=loop)` after argument parsing (also the Future part of a Task's).
pub(crate) fn init_loop(
    slf: &Bound<'_, PyAny>,
    st: &FutureState,
    loop_: Option<Bound<'_, PyAny>>,
) -> PyResult<()> {
    let py = slf.py();
    // Like the C future_init: re-initializing starts from a clean state.
    let old = mem::take(&mut *st.inner.lock());
    drop(old);
    let loop_ = match loop_ {
        Some(l) if !l.is_none() => l,
        _ => default_loop(py)?,
    };
    st.inner.lock().loop_ = Some(Ref::new(loop_.clone()));
    if crate::event_loop::LoopCore::debug_of(&loop_)? {
        let n = names(py)?;
        if !n.is_finalizing.bind(py).call0()?.is_truthy()? {
            let tb = n.extract_stack.bind(py).call0()?;
            let old = st.inner.lock().source_tb.replace(Ref::new(tb));
            drop(old);
        }
    }
    Ok(())
}

pub(crate) fn repr<'py>(slf: &Bound<'py, PyAny>, _st: &FutureState) -> PyResult<Bound<'py, PyAny>> {
    names(slf.py())?.future_repr.bind(slf.py()).call1((slf,))
}

/// An exhausted iterator kept for reuse (a one-element free list, like the C FutureIter's):
/// [`offer_spare_iter`] puts an iterator here when it returns its result — it then
/// references nothing — and [`iter`] takes it once the `await` that used it let it go.
#[cfg(not(Py_GIL_DISABLED))]
static SPARE_ITER: GilCell<Option<Py<FutureIter>>> = GilCell::new(None);

/// Offers `it`, which just returned its future's result, for reuse by [`iter`].
pub(crate) fn offer_spare_iter(it: &Bound<'_, FutureIter>) {
    #[cfg(not(Py_GIL_DISABLED))]
    {
        let old = SPARE_ITER.lock().replace(it.clone().unbind());
        drop(old.map(|o| o.into_bound(it.py())));
    }
    #[cfg(Py_GIL_DISABLED)]
    let _ = it;
}

pub(crate) fn iter<'py>(slf: &Bound<'py, PyAny>, st: &FutureState) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    st.loop_obj(py)?;
    #[cfg(not(Py_GIL_DISABLED))]
    {
        let spare = {
            let mut g = SPARE_ITER.lock();
            // SAFETY: the object is alive (we hold a reference); with the GIL held, a
            // reference count of one means nothing else can reach it (no weakrefs).
            match g.as_ref() {
                Some(it) if unsafe { pyo3::ffi::Py_REFCNT(it.as_ptr()) } == 1 => g.take(),
                _ => None,
            }
        };
        if let Some(it) = spare {
            let it = it.into_bound(py);
            let mut f = it.get().fut.lock();
            if f.is_none() {
                *f = Some(slf.clone().unbind());
                drop(f);
                return Ok(it.into_any());
            }
        }
    }
    let it = FutureIter {
        fut: GilCell::new(Some(slf.clone().unbind())),
    };
    Ok(Bound::new(py, it)?.into_any())
}

/// tp_finalize: report an exception that was never retrieved.
pub(crate) fn finalize(slf: &Bound<'_, PyAny>, st: &FutureState) {
    let py = slf.py();
    let (loop_, exc, source_tb) = {
        let mut g = st.inner.lock();
        if !g.log_tb {
            return;
        }
        g.log_tb = false;
        (
            opt(&g.loop_, py),
            opt(&g.exception, py),
            opt(&g.source_tb, py),
        )
    };
    let Some(loop_) = loop_ else { return };
    let saved = PyErr::take(py);
    let report = || -> PyResult<()> {
        let ctx = PyDict::new(py);
        let name = slf.get_type().name()?;
        ctx.set_item("message", format!("{name} exception was never retrieved"))?;
        ctx.set_item("exception", or_none(exc, py))?;
        ctx.set_item("future", slf)?;
        if let Some(tb) = source_tb {
            if tb.is_truthy()? {
                ctx.set_item("source_traceback", tb)?;
            }
        }
        loop_.call_method1("call_exception_handler", (ctx,))?;
        Ok(())
    };
    if let Err(e) = report() {
        e.write_unraisable(py, Some(slf));
    }
    if let Some(saved) = saved {
        saved.restore(py);
    }
}

// ---------------------------------------------------------------------------------------
// Methods
// ---------------------------------------------------------------------------------------

fn schedule_callbacks(slf: &Bound<'_, PyAny>, st: &FutureState) -> PyResult<()> {
    let py = slf.py();
    let (loop_, callbacks) = {
        let mut g = st.inner.lock();
        if g.callbacks.is_empty() {
            return Ok(());
        }
        (opt(&g.loop_, py), mem::take(&mut g.callbacks))
    };
    let loop_ =
        loop_.ok_or_else(|| eager::<PyRuntimeError>(py, "Future object is not initialized."))?;
    let native = crate::event_loop::LoopCore::native_target(&loop_);
    for cb in callbacks {
        match (cb, native) {
            (Callback::Py(f, c), Some(core)) => crate::event_loop::LoopCore::call_soon_native(
                core,
                &f.get(py),
                Some(slf),
                &c.get(py),
            )?,
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
fn schedule_wakeup<'py>(
    loop_: &Bound<'py, PyAny>,
    native: Option<&Bound<'py, crate::event_loop::LoopCore>>,
    fut: &Bound<'py, PyAny>,
    task: Bound<'py, PyAny>,
    context: Bound<'py, PyAny>,
) -> PyResult<()> {
    match native {
        Some(core) => crate::event_loop::LoopCore::call_task_soon(
            core,
            crate::event_loop::TaskCall {
                task: task.unbind(),
                arg: Some(fut.clone().unbind()),
                context: context.unbind(),
                wakeup: true,
            },
        ),
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
        let native = crate::event_loop::LoopCore::native_target(&loop_);
        return schedule_wakeup(&loop_, native, slf, task.clone(), context);
    }
    st.inner
        .lock()
        .callbacks
        .push(Callback::Wakeup(Ref::new(task.clone()), Ref::new(context)));
    Ok(())
}

/// `loop.call_soon(callback[, arg], context=context)` through vectorcall (no argument
/// tuple or keyword dict built).
pub(crate) fn call_soon(
    loop_: &Bound<'_, PyAny>,
    callback: &Bound<'_, PyAny>,
    arg: Option<&Bound<'_, PyAny>>,
    context: &Bound<'_, PyAny>,
) -> PyResult<()> {
    // On ferroloop's own loop (with its own call_soon) the callback goes straight into the
    // ready queue, without a Handle nobody would see.
    if let Some(core) = crate::event_loop::LoopCore::native_target(loop_) {
        return crate::event_loop::LoopCore::call_soon_native(core, callback, arg, context);
    }
    static NAMES: PyOnceLock<(Py<PyString>, Py<PyTuple>)> = PyOnceLock::new();
    let py = loop_.py();
    let (name, kwnames) = NAMES.get_or_try_init(py, || -> PyResult<_> {
        Ok((
            PyString::intern(py, "call_soon").unbind(),
            PyTuple::new(py, ["context"])?.unbind(),
        ))
    })?;
    let mut argv = [
        loop_.as_ptr(),
        callback.as_ptr(),
        context.as_ptr(),
        context.as_ptr(),
    ];
    let nargs = if let Some(a) = arg {
        argv[2] = a.as_ptr();
        3
    } else {
        2
    };
    // SAFETY: every pointer in `argv` is a borrowed reference kept alive by the caller for
    // the call; the vector holds `nargs` positionals (self first) then one keyword value
    // named by `kwnames`. Returns a new reference or NULL with an exception set.
    let res = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            pyo3::ffi::PyObject_VectorcallMethod(
                name.as_ptr(),
                argv.as_ptr(),
                nargs,
                kwnames.as_ptr(),
            ),
        )
    };
    res.map(drop)
}

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
    let (exc, tb, res) = {
        let mut g = st.inner.lock();
        match g.status {
            Status::Cancelled => {
                drop(g);
                return Ok(Err(make_cancelled_error(py, st)?));
            }
            Status::Pending => {
                drop(g);
                return Ok(Err(invalid_state(py, "Result is not ready.".into())?
                    .into_value(py)
                    .into_bound(py)
                    .into_any()));
            }
            Status::Finished => {}
        }
        g.log_tb = false;
        (
            opt(&g.exception, py),
            opt(&g.exception_tb, py),
            opt(&g.result, py),
        )
    };
    if let Some(exc) = exc {
        exc.setattr("__traceback__", or_none(tb, py))?;
        return Ok(Err(exc));
    }
    Ok(Ok(or_none(res, py)))
}

pub(crate) fn exception<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    let exc = {
        let mut g = st.inner.lock();
        match g.status {
            Status::Cancelled => {
                drop(g);
                return Err(PyErr::from_value(make_cancelled_error(py, st)?));
            }
            Status::Pending => {
                drop(g);
                return Err(invalid_state(py, "Exception is not set.".into())?);
            }
            Status::Finished => {}
        }
        g.log_tb = false;
        opt(&g.exception, py)
    };
    Ok(or_none(exc, py))
}

fn state_name<'py>(py: Python<'py>, s: Status) -> PyResult<Bound<'py, PyAny>> {
    let n = names(py)?;
    Ok(match s {
        Status::Pending => n.pending.bind(py).clone(),
        Status::Cancelled => n.cancelled.bind(py).clone(),
        Status::Finished => n.finished.bind(py).clone(),
    })
}

fn ensure_pending(slf: &Bound<'_, PyAny>, st: &FutureState) -> PyResult<()> {
    let s = st.status();
    if s != Status::Pending {
        let py = slf.py();
        let msg = format!("{}: {}", state_name(py, s)?, slf.repr()?);
        return Err(invalid_state(py, msg)?);
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
    let old = {
        let mut g = st.inner.lock();
        g.status = Status::Finished;
        g.result.replace(Ref::new(value.clone()))
    };
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
            new_exc.setattr("__cause__", &exc)?;
            new_exc.setattr("__context__", &exc)?;
            exc = new_exc;
        }
    } else if exc.get_type().is(&stop_iteration) {
        return Err(eager::<PyTypeError>(
            py,
            "StopIteration interacts badly with generators and cannot be raised into a Future",
        ));
    }
    let tb = exc.getattr(pyo3::intern!(py, "__traceback__"))?;
    let old = {
        let mut g = st.inner.lock();
        g.status = Status::Finished;
        (
            g.exception.replace(Ref::new(exc)),
            if tb.is_none() {
                g.exception_tb.take()
            } else {
                g.exception_tb.replace(Ref::new(tb))
            },
        )
    };
    drop(old);
    schedule_callbacks(slf, st)?;
    st.inner.lock().log_tb = true;
    Ok(py.None().into_bound(py))
}

/// Parses `(fn, /, *, context=None)`.
pub(crate) fn add_done_callback<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
    args: FastArgs<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    let mut pos = args.pos.into_iter();
    let (Some(func), None) = (pos.next(), pos.next()) else {
        return Err(eager::<PyTypeError>(
            py,
            "add_done_callback() takes exactly one positional argument",
        ));
    };
    let mut context = None;
    for (k, v) in args.kw {
        if k.to_str()? == "context" {
            context = Some(v);
        } else {
            return Err(eager::<PyTypeError>(
                py,
                format!("add_done_callback() got an unexpected keyword argument '{k}'"),
            ));
        }
    }
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
    let loop_ = st.loop_obj(py)?;
    if st.status() != Status::Pending {
        call_soon(&loop_, &func, Some(slf), &or_none(context, py))?;
    } else {
        let ctx = match context {
            Some(c) if !c.is_none() => c,
            // SAFETY: attached; a new reference or NULL with an exception set.
            _ => unsafe { Bound::from_owned_ptr_or_err(py, pyo3::ffi::PyContext_CopyCurrent())? },
        };
        st.inner
            .lock()
            .callbacks
            .push(Callback::Py(Ref::new(func), Ref::new(ctx)));
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
        .lock()
        .callbacks
        .iter()
        .map(|cb| cb.clone_ref(py))
        .collect();
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
        let old = mem::replace(&mut st.inner.lock().callbacks, Callbacks::from_vec(kept));
        drop(old);
    }
    Ok(removed.into_pyobject(py)?.into_any())
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
    if args.pos.len() > 1 {
        return Err(eager::<PyTypeError>(
            py,
            "cancel() takes at most 1 argument",
        ));
    }
    let mut msg = args.pos.into_iter().next();
    for (k, v) in args.kw {
        if k.to_str()? == "msg" && msg.is_none() {
            msg = Some(v);
        } else {
            return Err(eager::<PyTypeError>(
                py,
                format!("cancel() got an unexpected keyword argument '{k}'"),
            ));
        }
    }
    Ok(msg)
}

/// `Future.cancel(msg)` after argument parsing (also `super().cancel()` of a Task).
pub(crate) fn cancel_impl(
    slf: &Bound<'_, PyAny>,
    st: &FutureState,
    msg: Option<Bound<'_, PyAny>>,
) -> PyResult<bool> {
    let py = slf.py();
    st.loop_obj(py)?;
    let old = {
        let mut g = st.inner.lock();
        g.log_tb = false;
        if g.status != Status::Pending {
            return Ok(false);
        }
        g.status = Status::Cancelled;
        match msg {
            Some(m) if !m.is_none() => g.cancel_msg.replace(Ref::new(m)),
            _ => g.cancel_msg.take(),
        }
    };
    drop(old);
    schedule_callbacks(slf, st)?;
    Ok(true)
}

pub(crate) fn py_bool(py: Python<'_>, b: bool) -> Bound<'_, PyAny> {
    b.into_pyobject(py)
        .map(|b| b.to_owned().into_any())
        .unwrap_or_else(|e| match e {})
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

// ---------------------------------------------------------------------------------------
// Attributes
// ---------------------------------------------------------------------------------------

pub(crate) fn get_state<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
) -> PyResult<Bound<'py, PyAny>> {
    state_name(slf.py(), st.status())
}

pub(crate) fn get_blocking<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(py_bool(slf.py(), st.inner.lock().blocking))
}

fn no_delete(py: Python<'_>) -> PyErr {
    eager::<PyAttributeError>(py, "cannot delete attribute")
}

pub(crate) fn set_blocking(
    slf: &Bound<'_, PyAny>,
    st: &FutureState,
    value: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let py = slf.py();
    let b = value.ok_or_else(|| no_delete(py))?.is_truthy()?;
    st.inner.lock().blocking = b;
    Ok(())
}

pub(crate) fn get_loop_attr<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    Ok(or_none(opt(&st.inner.lock().loop_, py), py))
}

pub(crate) fn get_callbacks<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    let items: Vec<Callback> = st
        .inner
        .lock()
        .callbacks
        .iter()
        .map(|cb| cb.clone_ref(py))
        .collect();
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
    Ok(or_none(opt(&st.inner.lock().result, py), py))
}

pub(crate) fn get_exception<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    Ok(or_none(opt(&st.inner.lock().exception, py), py))
}

pub(crate) fn get_log_traceback<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(py_bool(slf.py(), st.inner.lock().log_tb))
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
    st.inner.lock().log_tb = false;
    Ok(())
}

pub(crate) fn get_source_traceback<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    Ok(or_none(opt(&st.inner.lock().source_tb, py), py))
}

pub(crate) fn get_cancel_message<'py>(
    slf: &Bound<'py, PyAny>,
    st: &FutureState,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    Ok(or_none(opt(&st.inner.lock().cancel_msg, py), py))
}

pub(crate) fn set_cancel_message(
    slf: &Bound<'_, PyAny>,
    st: &FutureState,
    value: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let py = slf.py();
    let value = value.ok_or_else(|| no_delete(py))?;
    let old = if value.is_none() {
        st.inner.lock().cancel_msg.take()
    } else {
        st.inner.lock().cancel_msg.replace(Ref::new(value.clone()))
    };
    drop(old);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The iterator returned by __await__ / __iter__
// ---------------------------------------------------------------------------------------

/// `yield self` until the future is done, then `StopIteration(result)`, like the C
/// `_asyncio.FutureIter`.
#[pyclass(module = "ferroloop._ferroloop", frozen)]
pub struct FutureIter {
    fut: GilCell<Option<Py<PyAny>>>,
}

/// What one `__next__` / `send(None)` of a [`FutureIter`] does.
pub(crate) enum IterStep<'py> {
    /// `yield fut` (the future is pending).
    Yield(Bound<'py, PyAny>),
    /// `return fut.result()`.
    Return(Bound<'py, PyAny>),
    /// Already exhausted.
    Exhausted,
}

impl FutureIter {
    /// One step, with every exception created eagerly and every reference dropped as a
    /// `Bound` (this also runs from the hand-written `tp_iternext`/`am_send` slots).
    pub(crate) fn advance<'py>(&self, py: Python<'py>) -> PyResult<IterStep<'py>> {
        let Some(fut) = self.fut.lock().as_ref().map(|f| f.bind(py).clone()) else {
            return Ok(IterStep::Exhausted);
        };
        let st = layout::state(&fut)
            .ok_or_else(|| eager::<PyTypeError>(py, "FutureIter over an uninitialized future"))?;
        {
            let mut g = st.inner.lock();
            if g.status == Status::Pending {
                if !g.blocking {
                    g.blocking = true;
                    drop(g);
                    return Ok(IterStep::Yield(fut));
                }
                drop(g);
                return Err(eager::<PyRuntimeError>(py, "await wasn't used with future"));
            }
        }
        let old = self.fut.lock().take();
        drop(old.map(|o| o.into_bound(py)));
        match result_outcome(&fut, st)? {
            Ok(v) => Ok(IterStep::Return(v)),
            Err(e) => Err(PyErr::from_value(e)),
        }
    }

    fn step(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match self.advance(py)? {
            IterStep::Yield(v) => Ok(Some(v.unbind())),
            IterStep::Return(v) => Err(PyStopIteration::new_err((v.unbind(),))),
            IterStep::Exhausted => Ok(None),
        }
    }
}

#[pymethods]
impl FutureIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.step(py)
    }

    fn send(&self, py: Python<'_>, _value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        match self.step(py)? {
            Some(v) => Ok(v),
            None => Err(PyStopIteration::new_err(())),
        }
    }

    #[pyo3(signature = (*args))]
    fn throw(&self, py: Python<'_>, args: &Bound<'_, PyTuple>) -> PyResult<Py<PyAny>> {
        let n = args.len();
        if !(1..=3).contains(&n) {
            return Err(PyTypeError::new_err(format!(
                "throw expected at least 1 argument and at most 3, got {n}"
            )));
        }
        if n > 1 && names(py)?.throw_deprecated {
            PyErr::warn(
                py,
                &py.get_type::<PyDeprecationWarning>(),
                c"the (type, exc, tb) signature of throw() is deprecated, use the single-arg signature instead.",
                1,
            )?;
        }
        let typ = args.get_item(0)?;
        let val = if n > 1 { Some(args.get_item(1)?) } else { None }.filter(|v| !v.is_none());
        let tb = if n > 2 { Some(args.get_item(2)?) } else { None }.filter(|v| !v.is_none());
        if let Some(tb) = &tb {
            if !tb.is_instance_of::<pyo3::types::PyTraceback>() {
                return Err(PyTypeError::new_err(
                    "throw() third argument must be a traceback",
                ));
            }
        }
        let base_exc = py.get_type::<pyo3::exceptions::PyBaseException>();
        let is_exc_class = typ
            .cast::<PyType>()
            .map(|t| t.is_subclass(&base_exc))
            .unwrap_or(Ok(false))?;
        let exc = if is_exc_class {
            match val {
                Some(v) if v.is_instance(&typ)? => v,
                Some(v) => match v.cast::<PyTuple>() {
                    Ok(t) => typ.call1(t.clone())?,
                    Err(_) => typ.call1((v,))?,
                },
                None => typ.call0()?,
            }
        } else if typ.is_instance(&base_exc)? {
            if val.is_some() {
                return Err(PyTypeError::new_err(
                    "instance exception may not have a separate value",
                ));
            }
            typ
        } else {
            return Err(PyTypeError::new_err(
                "exceptions must be classes deriving BaseException or instances of such a class",
            ));
        };
        if let Some(tb) = tb {
            exc.setattr("__traceback__", tb)?;
        }
        let old = self.fut.lock().take();
        drop(old);
        Err(PyErr::from_value(exc))
    }

    fn close(&self) {
        let old = self.fut.lock().take();
        drop(old);
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(g) = self.fut.try_lock() {
            visit.call(&*g)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        let old = self.fut.try_lock().and_then(|mut g| g.take());
        drop(old);
    }
}

/// Adds `Future` (when the C `_asyncio` module is available) and `FutureIter` to the
/// native module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<FutureIter>()?;
    layout::install_iter_slots(&m.py().get_type::<FutureIter>());
    if let Some(ty) = layout::create_future_type(m.py())? {
        m.add("Future", ty)?;
    }
    Ok(())
}
