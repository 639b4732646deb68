//! `Handle` and `TimerHandle`: a callback scheduled on the loop, with its arguments and
//! the `contextvars.Context` it runs in.
//!
//! These mirror `asyncio.Handle` / `asyncio.TimerHandle`: `cancel()`, `cancelled()`,
//! `get_context()`, `when()`, and the private attributes (`_callback`, `_args`,
//! `_cancelled`, `_source_traceback`) that tests and libraries read.

use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit};
use pyo3::prelude::*;
use pyo3::pyclass::CompareOp;
use pyo3::types::{PyDict, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use crate::event_loop::{own_debug_flag, timer_cancelled};
use crate::names::Names;
use crate::pyo::attached::in_owner_drop;
use crate::pyo::call::call_in_context;
use crate::pyo::gil_cell::assert_no_access_open;
use crate::pyo::object::{gc_track, gc_untrack, is_unshared_without_weakrefs};
use crate::pyo::GilCell;

/// A callable with its positional arguments.
pub struct Callback {
    pub func: Py<PyAny>,
    pub args: Py<PyTuple>,
}

/// The references a handle holds, in one cell.
struct Refs {
    /// `None` once cancelled: like asyncio, cancelling drops the references.
    callback: Option<Callback>,
    context: Option<Py<PyAny>>,
    loop_: Option<Py<PyAny>>,
}

impl Drop for Refs {
    fn drop(&mut self) {
        // A Handle's references are only dropped while attached to the interpreter: in its
        // tp_dealloc / tp_clear, or by loop code holding `py`. Decref'ing directly skips
        // PyO3's deferred-decref check on every handle.
        let py = in_owner_drop();
        assert_no_access_open("a Handle's references dropped");
        if let Some(cb) = self.callback.take() {
            cb.func.drop_ref(py);
            cb.args.drop_ref(py);
        }
        if let Some(c) = self.context.take() {
            c.drop_ref(py);
        }
        if let Some(l) = self.loop_.take() {
            l.drop_ref(py);
        }
    }
}

/// A callback scheduled by `call_soon`, `call_soon_threadsafe`, `add_reader`, ….
#[pyclass(module = "ferroloop._ferroloop", subclass, frozen, weakref)]
pub struct Handle {
    refs: GilCell<Refs>,
    cancelled: AtomicBool,
    source_traceback: Option<Py<PyAny>>,
    /// The repr taken at cancel time in debug mode, as asyncio keeps it.
    repr_at_cancel: GilCell<Option<String>>,
    /// A plain `Handle`, not the base part of a `TimerHandle` (only those are recycled).
    plain: bool,
}

impl Handle {
    /// A new handle; `context` is the context to run in (already copied by the caller).
    pub fn new(
        func: Py<PyAny>,
        args: Py<PyTuple>,
        context: Py<PyAny>,
        loop_: Py<PyAny>,
        source_traceback: Option<Py<PyAny>>,
    ) -> Self {
        Handle {
            refs: GilCell::new(Refs {
                callback: Some(Callback { func, args }),
                context: Some(context),
                loop_: Some(loop_),
            }),
            cancelled: AtomicBool::new(false),
            source_traceback,
            repr_at_cancel: GilCell::new(None),
            plain: true,
        }
    }

    /// Whether the loop may reuse this handle for a later `call_soon`: nothing but the
    /// loop references it (the caller dropped the returned handle), it is a plain
    /// `Handle` (not a subclass), no weak reference points to it, and it carries no
    /// debug-mode state.
    pub fn is_recyclable(&self, obj: &Bound<'_, Handle>) -> bool {
        if cfg!(Py_GIL_DISABLED) || self.source_traceback.is_some() || self.is_cancelled() {
            return false;
        }
        // Nothing but the loop references it, and no weak reference points to it.
        self.plain && is_unshared_without_weakrefs(obj.as_any())
    }

    /// Drops the references of a handle about to be recycled (may run `__del__`s, so the
    /// caller holds no lock).
    pub fn clear_for_reuse(&self) {
        let refs = self.refs.replace(Refs {
            callback: None,
            context: None,
            loop_: None,
        });
        drop(refs);
    }

    /// Visits every reference the handle holds, for the garbage collector. Used by the
    /// handle's own `tp_traverse` and by the loop for timers it holds untracked.
    pub fn traverse_refs(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        // try_with: the GC must never block; an open access means the handle is in use and
        // its references are reachable from the running frame anyway.
        self.refs
            .try_with(|refs| {
                if let Some(cb) = &refs.callback {
                    visit.call(&cb.func)?;
                    visit.call(&cb.args)?;
                }
                visit.call(&refs.context)?;
                visit.call(&refs.loop_)
            })
            .transpose()?;
        if let Some(tb) = &self.source_traceback {
            visit.call(tb)?;
        }
        Ok(())
    }

    /// Marks the handle as the base of a `TimerHandle`.
    pub fn for_timer(mut self) -> Self {
        self.plain = false;
        self
    }

    /// Refills a recycled handle for a new `call_soon`.
    pub fn refill(&self, func: Py<PyAny>, args: Py<PyTuple>, context: Py<PyAny>, loop_: Py<PyAny>) {
        // The handle was emptied by `clear_for_reuse`: nothing is dropped here.
        self.refs.with(|refs| {
            refs.callback = Some(Callback { func, args });
            refs.context = Some(context);
            refs.loop_ = Some(loop_);
        });
    }

    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    fn loop_obj<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.refs
            .with(|refs| refs.loop_.as_ref().map(|l| l.bind(py).clone()))
    }

    /// Marks the handle cancelled and drops the callback; returns true on the first call.
    fn cancel_inner(&self, slf: &Bound<'_, PyAny>) -> PyResult<bool> {
        if self.cancelled.swap(true, Ordering::AcqRel) {
            return Ok(false);
        }
        let py = slf.py();
        if let Some(lp) = self.loop_obj(py) {
            let debug = match own_debug_flag(&lp) {
                Some(flag) => flag,
                None => lp.call_method0("get_debug")?.is_truthy()?,
            };
            if debug {
                // As asyncio: keep the repr (cancelled, with its callback) in debug mode,
                // for messages such as "Executing <Handle ...> took 2.5 seconds".
                let r = slf.repr()?.to_string();
                let old = self.repr_at_cancel.replace(Some(r));
                drop(old);
            }
        }
        let dropped = self.refs.with(|refs| refs.callback.take());
        drop(dropped);
        Ok(true)
    }

    /// Runs the callback in its context. Exceptions go to the loop's exception handler;
    /// only `SystemExit` and `KeyboardInterrupt` are returned, as asyncio lets them escape.
    pub fn run(&self, slf: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        if self.is_cancelled() {
            return Ok(());
        }
        // Bound (not Py) clones: dropping a Bound decrefs directly, without PyO3's
        // thread-local check for an attached thread.
        let refs = self
            .refs
            .with(|refs| match (&refs.callback, &refs.context) {
                (Some(cb), Some(ctx)) => Some((
                    cb.func.bind(py).clone(),
                    cb.args.bind(py).clone(),
                    ctx.bind(py).clone(),
                )),
                _ => None,
            });
        let Some((func, args, ctx)) = refs else {
            return Ok(());
        };
        if let Err(err) = call_in_context(py, &ctx, &func, &args) {
            return self.report_error(slf, err, &func, &args);
        }
        Ok(())
    }

    pub(crate) fn report_error(
        &self,
        slf: &Bound<'_, PyAny>,
        err: PyErr,
        func: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        let py = slf.py();
        if err.is_instance_of::<PySystemExit>(py) || err.is_instance_of::<PyKeyboardInterrupt>(py) {
            return Err(err);
        }
        let Some(lp) = self.loop_obj(py) else {
            return Ok(());
        };
        // asyncio reports from inside `except BaseException as exc:`: an exception raised
        // by the exception handler gets the callback's exception as its __context__.
        let exc = err.value(py).clone();
        crate::pyo::exc::while_handling(exc.as_any(), || self.report(slf, &lp, err, func, args))
    }

    fn report(
        &self,
        slf: &Bound<'_, PyAny>,
        lp: &Bound<'_, PyAny>,
        err: PyErr,
        func: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        let py = slf.py();
        let debug = lp.call_method0("get_debug")?.is_truthy()?;
        let source = format_callback(py, func, args, debug)?;
        let context = PyDict::new(py);
        context.set_item("message", format!("Exception in callback {source}"))?;
        context.set_item("exception", err.value(py))?;
        context.set_item("handle", slf)?;
        if let Some(tb) = &self.source_traceback {
            if tb.bind(py).is_truthy()? {
                context.set_item("source_traceback", tb)?;
            }
        }
        lp.call_method1("call_exception_handler", (context,))?;
        Ok(())
    }

    fn repr_info(&self, slf: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
        let py = slf.py();
        let mut info = vec![slf.get_type().name()?.to_string()];
        if self.is_cancelled() {
            info.push("cancelled".into());
        }
        let cb = self.refs.with(|refs| {
            refs.callback
                .as_ref()
                .map(|c| (c.func.clone_ref(py), c.args.clone_ref(py)))
        });
        // asyncio's _repr_info leaves the callback out when it is None.
        if let Some((func, args)) = cb.filter(|(func, _)| !func.is_none(py)) {
            let debug = match self.loop_obj(py) {
                Some(lp) => lp.call_method0("get_debug")?.is_truthy()?,
                None => false,
            };
            info.push(format_callback(py, func.bind(py), args.bind(py), debug)?);
        }
        if let Some(tb) = &self.source_traceback {
            let tb = tb.bind(py);
            if tb.is_truthy()? {
                let frame = tb.get_item(-1)?;
                info.push(format!(
                    "created at {}:{}",
                    frame.get_item(0)?.str()?,
                    frame.get_item(1)?.str()?
                ));
            }
        }
        Ok(info)
    }
}

/// `asyncio.format_helpers._format_callback_source`, whose signature grew a `debug`
/// keyword during 3.12's lifetime (absent in 3.12.1, present in 3.13).
pub fn format_callback(
    py: Python<'_>,
    func: &Bound<'_, PyAny>,
    args: &Bound<'_, PyTuple>,
    debug: bool,
) -> PyResult<String> {
    let imports = Names::get(py)?;
    let f = imports.format_callback_source.bind(py);
    let res = if imports.format_callback_source_takes_debug {
        let kw = PyDict::new(py);
        kw.set_item("debug", debug)?;
        f.call((func, args), Some(&kw))?
    } else {
        f.call1((func, args))?
    };
    Ok(res.str()?.to_string())
}

impl Handle {
    /// The `contextvars.Context` the callback runs in.
    fn context(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.refs
            .with(|refs| refs.context.as_ref().map(|c| c.clone_ref(py)))
    }
}

#[pymethods]
impl Handle {
    /// Cancels the callback; a no-op if it already ran or was cancelled.
    fn cancel(slf: &Bound<'_, Self>) -> PyResult<()> {
        slf.get().cancel_inner(slf.as_any())?;
        Ok(())
    }

    /// True once `cancel()` was called.
    fn cancelled(&self) -> bool {
        self.is_cancelled()
    }

    /// The `contextvars.Context` the callback runs in (3.12+, as asyncio's: 3.11's
    /// `Handle` has no `get_context`).
    #[cfg(Py_3_12)]
    fn get_context(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.context(py)
    }

    /// Runs the callback now (asyncio's `Handle._run`).
    fn _run(slf: &Bound<'_, Self>) -> PyResult<()> {
        slf.get().run(slf.as_any())
    }

    #[getter]
    fn _callback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.refs
            .with(|refs| refs.callback.as_ref().map(|c| c.func.clone_ref(py)))
    }

    #[getter]
    fn _args(&self, py: Python<'_>) -> Option<Py<PyTuple>> {
        self.refs
            .with(|refs| refs.callback.as_ref().map(|c| c.args.clone_ref(py)))
    }

    #[getter]
    fn _cancelled(&self) -> bool {
        self.is_cancelled()
    }

    #[getter]
    fn _loop(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.loop_obj(py).map(|l| l.unbind())
    }

    #[getter]
    fn _context(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.context(py)
    }

    #[getter]
    fn _source_traceback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.source_traceback.as_ref().map(|t| t.clone_ref(py))
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        if let Some(r) = slf.get().repr_at_cancel.with(|r| r.clone()) {
            return Ok(r);
        }
        let info = slf.get().repr_info(slf.as_any())?;
        Ok(format!("<{}>", info.join(" ")))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.traverse_refs(&visit)
    }

    fn __clear__(&self) {
        let refs = self
            .refs
            .with(|refs| (refs.callback.take(), refs.context.take(), refs.loop_.take()));
        drop(refs);
    }
}

/// A callback scheduled for a point in time by `call_later` / `call_at`.
#[pyclass(module = "ferroloop._ferroloop", extends = Handle, frozen)]
pub struct TimerHandle {
    when: f64,
    /// True while the handle sits in the loop's timer heap.
    scheduled: AtomicBool,
}

impl TimerHandle {
    pub fn new(when: f64) -> Self {
        TimerHandle {
            when,
            scheduled: AtomicBool::new(true),
        }
    }

    #[inline]
    pub fn when_value(&self) -> f64 {
        self.when
    }

    /// Called by the loop when the handle leaves the timer heap.
    #[inline]
    pub fn unschedule(&self) {
        self.scheduled.store(false, Ordering::Release);
    }
}

/// Timers wait in the loop's heap, often by the hundred thousand, and would otherwise be
/// traversed by every garbage collection that finds them young. While a timer is in the
/// heap the loop owns it: it is untracked, and the loop's own `tp_traverse` reports the
/// references it holds (so a cycle through a pending timer and an abandoned loop is still
/// collected). It is tracked again as it leaves the heap.
///
/// The same goes for the timer's context when it is the copy the loop made for it (nobody
/// else can reach it): contexts are GC objects too, one per timer.
pub fn untrack_scheduled(timer: &Bound<'_, TimerHandle>, own_context: bool) {
    gc_untrack(timer.as_any());
    if own_context {
        // The context was created by the loop for this timer.
        timer.as_super().get().refs.with(|refs| {
            if let Some(ctx) = &refs.context {
                gc_untrack(ctx.bind(timer.py()));
            }
        });
    }
}

/// Tracks a timer again as it leaves the loop's heap (see [`untrack_scheduled`]).
pub fn retrack_unscheduled(py: Python<'_>, timer: &Py<TimerHandle>) {
    gc_track(timer.bind(py).as_any());
    timer.bind(py).as_super().get().refs.with(|refs| {
        if let Some(ctx) = &refs.context {
            gc_track(ctx.bind(py));
        }
    });
}

#[pymethods]
impl TimerHandle {
    /// The absolute time (in `loop.time()` seconds) at which the callback is due.
    fn when(&self) -> f64 {
        self.when
    }

    #[getter]
    fn _when(&self) -> f64 {
        self.when
    }

    #[getter]
    fn _scheduled(&self) -> bool {
        self.scheduled.load(Ordering::Acquire)
    }

    /// Cancels the timer; the loop drops cancelled timers from its heap lazily.
    fn cancel(slf: &Bound<'_, Self>) -> PyResult<()> {
        let base = slf.as_super();
        if base.get().cancel_inner(slf.as_any())? && slf.get().scheduled.load(Ordering::Acquire) {
            if let Some(lp) = base.get().loop_obj(slf.py()) {
                timer_cancelled(&lp);
            }
        }
        Ok(())
    }

    /// `hash(when)`, as asyncio's TimerHandle.
    fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
        pyo3::types::PyFloat::new(py, self.when).hash()
    }

    fn __richcmp__(
        slf: &Bound<'_, Self>,
        other: &Bound<'_, PyAny>,
        op: CompareOp,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let Ok(other) = other.cast::<TimerHandle>() else {
            return Ok(py.NotImplemented());
        };
        // asyncio's operators, value for value: `__le__` is
        // `self._when < other._when or self.__eq__(other)` (not `<=`: two distinct timers
        // with the same deadline are neither `<=` nor `>=` each other), and `__ne__` is
        // Python's default, `not __eq__`.
        let (a, b) = (slf.get().when, other.get().when);
        let truth = |v: bool| {
            pyo3::types::PyBool::new(py, v)
                .to_owned()
                .into_any()
                .unbind()
        };
        Ok(match op {
            CompareOp::Lt => truth(a < b),
            CompareOp::Gt => truth(a > b),
            CompareOp::Le if a < b => truth(true),
            CompareOp::Ge if a > b => truth(true),
            CompareOp::Le | CompareOp::Ge | CompareOp::Eq => timer_eq(slf, other)?.unbind(),
            CompareOp::Ne => truth(!timer_eq(slf, other)?.is_truthy()?),
        })
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let base = slf.as_super().get();
        if let Some(r) = base.repr_at_cancel.with(|r| r.clone()) {
            return Ok(r);
        }
        let mut info = base.repr_info(slf.as_any())?;
        let pos = if base.is_cancelled() { 2 } else { 1 };
        info.insert(pos, format!("when={}", slf.get().when));
        Ok(format!("<{}>", info.join(" ")))
    }
}

/// asyncio's `TimerHandle.__eq__`: `when == other.when and callback == other.callback and
/// args == other.args and cancelled == other.cancelled`, evaluated in that order and
/// returning the value of the `and` chain (a cancelled handle outside debug mode has
/// dropped its callback and args: `None`, as asyncio's).
fn timer_eq<'py>(
    a: &Bound<'py, TimerHandle>,
    b: &Bound<'py, TimerHandle>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = a.py();
    let falsy = || pyo3::types::PyBool::new(py, false).to_owned().into_any();
    if a.get().when != b.get().when {
        return Ok(falsy());
    }
    let (ha, hb) = (a.as_super().get(), b.as_super().get());
    let callback = |h: &Handle| {
        h.refs.with(|refs| match refs.callback.as_ref() {
            Some(c) => (
                c.func.clone_ref(py).into_bound(py),
                c.args.clone_ref(py).into_bound(py).into_any(),
            ),
            None => (py.None().into_bound(py), py.None().into_bound(py)),
        })
    };
    // Cloned out first: comparing runs Python code, which must not see a borrowed state.
    let ((fa, aa), (fb, ab)) = (callback(ha), callback(hb));
    let res = fa.rich_compare(&fb, CompareOp::Eq)?;
    if !res.is_truthy()? {
        return Ok(res);
    }
    let res = aa.rich_compare(&ab, CompareOp::Eq)?;
    if !res.is_truthy()? {
        return Ok(res);
    }
    Ok(
        pyo3::types::PyBool::new(py, ha.is_cancelled() == hb.is_cancelled())
            .to_owned()
            .into_any(),
    )
}
