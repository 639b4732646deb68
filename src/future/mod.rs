//! `ferroloop._ferroloop.Future`: asyncio's `Future` implemented in Rust, whose type is a
//! subclass of CPython's C `_asyncio.Future` (so `isinstance(f, asyncio.Future)` holds and
//! libraries that check for it accept it).
//!
//! The semantics follow `Lib/asyncio/futures.py` (and the C `_asyncio` module where the two
//! differ in observable ways, e.g. the iterator's `_asyncio_future_blocking` protocol).
//! The type object is built by [`crate::pyo::native_type`] ([`layout`] holds its tables);
//! the rest is safe Rust on `Bound` references:
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | the state ([`FutureState`]), `__init__`, `__repr__`, the finalizer |
//! | `outcome.rs` | `result`, `exception`, `set_result`, `set_exception`, `cancel`, `done`... |
//! | `callbacks.rs` | done-callbacks: registration, removal, scheduling them on the loop |
//! | `attrs.rs` | the private attributes (`_state`, `_result`, `_callbacks`...) |
//! | `iter.rs` | `FutureIter`, the iterator behind `await` |
//!
//! Invariant: the state is in a [`GilCell`]; no access is open while Python code can run
//! (calls, and decrefs: [`Ref`]s taken out of the state are dropped after the access ends;
//! see [`crate::pyo::gil_cell`]).

pub(crate) mod args;
mod attrs;
mod callbacks;
mod iter;
pub mod layout;
mod outcome;

pub(crate) use crate::pyo::panic::eager;

pub(crate) use attrs::*;
pub(crate) use callbacks::*;
pub use iter::FutureIter;
pub(crate) use iter::*;
pub(crate) use outcome::*;

use std::ffi::c_int;
use std::mem;

use pyo3::exceptions::PyRuntimeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyModule, PyTuple};

use crate::names::names;
use crate::pyo::native_type;
use crate::pyo::GilCell;
use crate::pyo::Ref;

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
        self.inner
            .try_with(|g| {
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
            })
            .unwrap_or(0)
    }

    /// Drops every reference (tp_clear); the future becomes "not initialized".
    pub(crate) fn clear(&self) {
        let old = self.inner.try_with(mem::take);
        drop(old);
    }

    pub(crate) fn loop_obj<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.inner
            .with(|s| opt(&s.loop_, py))
            .ok_or_else(|| eager::<PyRuntimeError>(py, "Future object is not initialized."))
    }

    pub(crate) fn status(&self) -> Status {
        self.inner.with(|s| s.status)
    }
}

pub(crate) fn invalid_state(py: Python<'_>, msg: String) -> PyResult<PyErr> {
    let exc = names(py)?.invalid_state_error.bind(py).call1((msg,))?;
    Ok(PyErr::from_value(exc))
}

pub(crate) fn make_cancelled_error<'py>(
    py: Python<'py>,
    st: &FutureState,
) -> PyResult<Bound<'py, PyAny>> {
    let (msg, exc) = st
        .inner
        .with(|g| (opt(&g.cancel_msg, py), g.cancelled_exc.take()));
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
    let running = events.getattr(intern!(py, "_get_running_loop"))?.call0()?;
    if !running.is_none() {
        return Ok(running);
    }
    events
        .getattr(intern!(py, "get_event_loop_policy"))?
        .call0()?
        .call_method0(intern!(py, "get_event_loop"))
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
    static SIG: args::Signature = args::Signature {
        fname: "Future",
        posonly: 0,
        keywords: &["loop"],
        minpos: 0,
        maxpos: 0,
    };
    let mut bound = args::unpack(py, &SIG, &args::positional(args), &args::from_dict(kwargs))?;
    let loop_ = bound.pop().flatten();
    init_loop(slf, st, loop_)
}

/// `ferroloop.Future(loop=loop_)` without a Python-level call; `None` when the Future
/// type does not exist (then the caller calls the class).
pub(crate) fn new_for_loop<'py>(loop_: &Bound<'py, PyAny>) -> Option<PyResult<Bound<'py, PyAny>>> {
    let py = loop_.py();
    layout::future_type(py)?;
    Some((|| {
        let fut = native_type::new_exact::<FutureState>(py)?;
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
    let old = st.inner.take();
    drop(old);
    let loop_ = match loop_ {
        Some(l) if !l.is_none() => l,
        _ => default_loop(py)?,
    };
    let old = st.inner.with(|s| s.loop_.replace(Ref::new(loop_.clone())));
    drop(old);
    if crate::event_loop::debug_of(&loop_)? {
        let n = names(py)?;
        if !n.is_finalizing.bind(py).call0()?.is_truthy()? {
            let tb = n.extract_stack.bind(py).call0()?;
            let old = st.inner.with(|s| s.source_tb.replace(Ref::new(tb)));
            drop(old);
        }
    }
    Ok(())
}

pub(crate) fn repr<'py>(slf: &Bound<'py, PyAny>, _st: &FutureState) -> PyResult<Bound<'py, PyAny>> {
    names(slf.py())?.future_repr.bind(slf.py()).call1((slf,))
}

/// tp_finalize: report an exception that was never retrieved.
pub(crate) fn finalize(slf: &Bound<'_, PyAny>, st: &FutureState) {
    let py = slf.py();
    let to_report = st.inner.with(|g| {
        if !g.log_tb {
            return None;
        }
        g.log_tb = false;
        Some((
            opt(&g.loop_, py),
            opt(&g.exception, py),
            opt(&g.source_tb, py),
        ))
    });
    let Some((loop_, exc, source_tb)) = to_report else {
        return;
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
            ctx.set_item("source_traceback", tb)?;
        }
        loop_.call_method1(intern!(py, "call_exception_handler"), (ctx,))?;
        Ok(())
    };
    if let Err(e) = report() {
        e.write_unraisable(py, Some(slf));
    }
    if let Some(saved) = saved {
        saved.restore(py);
    }
}

pub(crate) fn py_bool(py: Python<'_>, b: bool) -> Bound<'_, PyAny> {
    b.into_pyobject(py)
        .map(|b| b.to_owned().into_any())
        .unwrap_or_else(|e| match e {})
}

/// Adds `Future` (when the C `_asyncio` module is available) and `FutureIter` to the
/// native module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<FutureIter>()?;
    crate::pyo::iter::install_iter_slots::<FutureIter>(m.py())?;
    if let Some(ty) = layout::create_future_type(m.py())? {
        m.add("Future", ty)?;
    }
    Ok(())
}
