//! `Handle` and `TimerHandle`: a callback scheduled on the loop, with its arguments and
//! the `contextvars.Context` it runs in.
//!
//! `ferroloop.Handle` and `ferroloop.TimerHandle` are native subtypes of `asyncio.Handle` and
//! `asyncio.TimerHandle` (so `isinstance` holds, as on asyncio), built by
//! [`crate::pyo::native_type::slotted`] around one Rust state, [`Handle`]. They define
//! `cancel()`, `cancelled()`, `get_context()` (3.12+), `when()`, `_run()` and, as getters,
//! every `__slots__` attribute of the asyncio classes (`_callback`, `_args`, `_cancelled`,
//! `_loop`, `_context`, `_source_traceback`, `_repr`, `_when`, `_scheduled`), of which
//! `_callback` and `_args` can be set; asyncio's own `_repr_info()` is inherited and works
//! through those getters.

mod attrs;

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit};
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::pyclass::CompareOp;
use pyo3::types::{PyBool, PyDict, PyFloat, PyString, PyTuple, PyType};
use pyo3::{PyTraverseError, PyVisit};

use crate::event_loop::{own_debug_flag, timer_cancelled};
use crate::names::Names;
use crate::pyo::attached::in_owner_drop;
use crate::pyo::call::call_in_context;
use crate::pyo::gil_cell::assert_no_access_open;
use crate::pyo::native_type::methods::{hash_slot, noargs, noargs_def, richcmp_slot, unary_slot};
use crate::pyo::native_type::slotted::{self, Family, Slotted, SlottedSpec};
use crate::pyo::native_type::Lookup;
use crate::pyo::object::{gc_track, gc_untrack, is_unshared_without_weakrefs};
use crate::pyo::GilCell;

pub use crate::pyo::native_type::slotted::SlottedRef;

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

/// The state of a `ferroloop.Handle` (a callback scheduled by `call_soon`,
/// `call_soon_threadsafe`, `add_reader`, …) or of a `ferroloop.TimerHandle` (by
/// `call_later` / `call_at`).
///
/// The Python types are native subtypes of `asyncio.Handle` and `asyncio.TimerHandle`
/// (see [`crate::pyo::native_type::slotted`]): `ferroloop.TimerHandle` derives from
/// `asyncio.TimerHandle` only, not from `ferroloop.Handle`, so both types share this one
/// state, at the same offset. A `Py<Handle>` is an object of either type.
pub struct Handle {
    refs: GilCell<Refs>,
    cancelled: AtomicBool,
    source_traceback: Option<Py<PyAny>>,
    /// The repr taken at cancel time in debug mode, as asyncio keeps it (its `_repr`).
    repr_at_cancel: GilCell<Option<String>>,
    /// The deadline of a `TimerHandle`; `None` for a plain `Handle` (only those are
    /// recycled).
    timer: Option<TimerPart>,
}

/// What a `TimerHandle` adds.
struct TimerPart {
    when: f64,
    /// True while the handle sits in the loop's timer heap.
    scheduled: AtomicBool,
}

static FAMILY: OnceLock<Family> = OnceLock::new();

/// Index of `ferroloop.Handle` in the family.
const HANDLE_TYPE: usize = 0;
/// Index of `ferroloop.TimerHandle` in the family.
const TIMER_TYPE: usize = 1;

impl Slotted for Handle {
    fn family() -> &'static OnceLock<Family> {
        &FAMILY
    }

    fn visit<F: FnMut(&Py<PyAny>) -> c_int>(&self, visit: &mut F) -> c_int {
        match self.each_ref(|o| match visit(o) {
            0 => Ok(()),
            r => Err(r),
        }) {
            Ok(()) => 0,
            Err(r) => r,
        }
    }

    fn clear(&self) {
        // Released by `Refs`'s drop, once the access is over.
        let refs = self.refs.replace(Refs {
            callback: None,
            context: None,
            loop_: None,
        });
        drop(refs);
    }
}

impl Lookup for Handle {
    #[inline]
    fn lookup<'a>(obj: &'a Bound<'_, PyAny>) -> Option<&'a Self> {
        slotted::state::<Handle>(obj)
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // Dropped by the object's tp_dealloc (attached; see `Refs`'s drop).
        if let Some(tb) = self.source_traceback.take() {
            tb.drop_ref(in_owner_drop());
        }
    }
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
            timer: None,
        }
    }

    /// Makes the handle a `TimerHandle` due at `when` (scheduled in the loop's heap).
    pub fn for_timer(mut self, when: f64) -> Self {
        self.timer = Some(TimerPart {
            when,
            scheduled: AtomicBool::new(true),
        });
        self
    }

    /// The Python object: a `ferroloop.Handle`, or a `ferroloop.TimerHandle` for a timer.
    pub fn into_object(self, py: Python<'_>) -> PyResult<Bound<'_, Handle>> {
        let index = if self.timer.is_some() {
            TIMER_TYPE
        } else {
            HANDLE_TYPE
        };
        slotted::new_object(py, index, self)
    }

    /// Whether the loop may reuse this handle for a later `call_soon`: nothing but the
    /// loop references it (the caller dropped the returned handle), it is a plain
    /// `Handle` (not a timer), no weak reference points to it, and it carries no
    /// debug-mode state.
    pub fn is_recyclable(&self, obj: &Bound<'_, Handle>) -> bool {
        if cfg!(Py_GIL_DISABLED) || self.source_traceback.is_some() || self.is_cancelled() {
            return false;
        }
        // Nothing but the loop references it, and no weak reference points to it.
        self.timer.is_none() && is_unshared_without_weakrefs(obj.as_any())
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

    /// Calls `f` on every reference the handle holds; stops at the first error.
    fn each_ref<E>(&self, mut f: impl FnMut(&Py<PyAny>) -> Result<(), E>) -> Result<(), E> {
        // try_with: the GC must never block; an open access means the handle is in use and
        // its references are reachable from the running frame anyway.
        self.refs
            .try_with(|refs| {
                if let Some(cb) = &refs.callback {
                    f(&cb.func)?;
                    f(cb.args.as_any())?;
                }
                if let Some(c) = &refs.context {
                    f(c)?;
                }
                if let Some(l) = &refs.loop_ {
                    f(l)?;
                }
                Ok(())
            })
            .transpose()?;
        if let Some(tb) = &self.source_traceback {
            f(tb)?;
        }
        Ok(())
    }

    /// Visits every reference the handle holds, for the garbage collector. Used by the
    /// loop for timers it holds untracked (the handle's own tp_traverse uses `visit`).
    pub fn traverse_refs(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.each_ref(|o| visit.call(o))
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

    /// The deadline of a timer (0 for a plain handle, which has none).
    #[inline]
    pub fn when_value(&self) -> f64 {
        self.timer.as_ref().map_or(0.0, |t| t.when)
    }

    /// Called by the loop when a timer leaves the timer heap.
    #[inline]
    pub fn unschedule(&self) {
        if let Some(t) = &self.timer {
            t.scheduled.store(false, Ordering::Release);
        }
    }

    fn is_scheduled(&self) -> bool {
        self.timer
            .as_ref()
            .is_some_and(|t| t.scheduled.load(Ordering::Acquire))
    }

    fn loop_obj<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.refs
            .with(|refs| refs.loop_.as_ref().map(|l| l.bind(py).clone()))
    }

    /// The `contextvars.Context` the callback runs in.
    fn context<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.refs
            .with(|refs| refs.context.as_ref().map(|c| c.bind(py).clone()))
    }

    /// `cancel()`: marks the handle cancelled and drops the callback; a timer still in the
    /// loop's heap is counted for the loop's sweep of cancelled timers.
    fn cancel(&self, slf: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.cancel_inner(slf)? && self.is_scheduled() {
            if let Some(lp) = self.loop_obj(slf.py()) {
                timer_cancelled(&lp);
            }
        }
        Ok(())
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
                None => lp.call_method0(intern!(py, "get_debug"))?.is_truthy()?,
            };
            if debug {
                // As asyncio: keep the repr (cancelled, with its callback) in debug mode,
                // for messages such as "Executing <Handle ...> took 2.5 seconds".
                let r = slf.repr()?.to_string();
                let old = self.repr_at_cancel.replace(Some(r));
                drop(old);
            }
        }
        // Decref'ed directly: the native methods run outside PyO3's trampolines, where
        // dropping a `Py` would only queue the decref in PyO3's pool.
        if let Some(cb) = self.refs.with(|refs| refs.callback.take()) {
            cb.func.drop_ref(py);
            cb.args.drop_ref(py);
        }
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
        let exc = crate::pyo::exc::exc_value(py, &err);
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
        let debug = lp.call_method0(intern!(py, "get_debug"))?.is_truthy()?;
        let source = format_callback(py, func, args, debug)?;
        let context = PyDict::new(py);
        context.set_item("message", format!("Exception in callback {source}"))?;
        context.set_item("exception", crate::pyo::exc::exc_value(py, &err))?;
        context.set_item("handle", slf)?;
        if let Some(tb) = &self.source_traceback {
            if tb.bind(py).is_truthy()? {
                context.set_item("source_traceback", tb)?;
            }
        }
        lp.call_method1(intern!(py, "call_exception_handler"), (context,))?;
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
                .map(|c| (c.func.bind(py).clone(), c.args.bind(py).clone()))
        });
        // asyncio's _repr_info leaves the callback out when it is None.
        if let Some((func, args)) = cb.filter(|(func, _)| !func.is_none()) {
            let debug = match self.loop_obj(py) {
                Some(lp) => lp.call_method0(intern!(py, "get_debug"))?.is_truthy()?,
                None => false,
            };
            info.push(format_callback(py, &func, &args, debug)?);
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

// ---------------------------------------------------------------------------------------
// The Python types
// ---------------------------------------------------------------------------------------

type PyRes<'py> = PyResult<Bound<'py, PyAny>>;

fn none(py: Python<'_>) -> Bound<'_, PyAny> {
    py.None().into_bound(py)
}

fn opt<'py>(py: Python<'py>, v: Option<Bound<'py, PyAny>>) -> Bound<'py, PyAny> {
    v.unwrap_or_else(|| none(py))
}

fn py_bool(py: Python<'_>, v: bool) -> Bound<'_, PyAny> {
    PyBool::new(py, v).to_owned().into_any()
}

/// `cancel()`.
fn m_cancel<'py>(slf: &Bound<'py, PyAny>, h: &Handle) -> PyRes<'py> {
    h.cancel(slf)?;
    Ok(none(slf.py()))
}

/// `cancelled()`: true once `cancel()` was called.
fn m_cancelled<'py>(slf: &Bound<'py, PyAny>, h: &Handle) -> PyRes<'py> {
    Ok(py_bool(slf.py(), h.is_cancelled()))
}

/// `get_context()` (3.12+, as asyncio's: 3.11's `Handle` has no `get_context`).
#[cfg(Py_3_12)]
fn m_get_context<'py>(slf: &Bound<'py, PyAny>, h: &Handle) -> PyRes<'py> {
    Ok(opt(slf.py(), h.context(slf.py())))
}

/// `_run()`: runs the callback now (asyncio's `Handle._run`).
fn m_run<'py>(slf: &Bound<'py, PyAny>, h: &Handle) -> PyRes<'py> {
    h.run(slf)?;
    Ok(none(slf.py()))
}

/// `when()`: the absolute time (in `loop.time()` seconds) at which the callback is due.
fn m_when<'py>(slf: &Bound<'py, PyAny>, h: &Handle) -> PyRes<'py> {
    Ok(PyFloat::new(slf.py(), h.when_value()).into_any())
}

fn t_repr<'py>(slf: &Bound<'py, PyAny>, h: &Handle) -> PyRes<'py> {
    let py = slf.py();
    if let Some(r) = h.repr_at_cancel.with(|r| r.clone()) {
        return Ok(PyString::new(py, &r).into_any());
    }
    let mut info = h.repr_info(slf)?;
    if let Some(t) = &h.timer {
        let pos = if h.is_cancelled() { 2 } else { 1 };
        info.insert(pos, format!("when={}", t.when));
    }
    Ok(PyString::new(py, &format!("<{}>", info.join(" "))).into_any())
}

/// `hash(when)`, as asyncio's TimerHandle.
fn t_hash(slf: &Bound<'_, PyAny>, h: &Handle) -> PyResult<isize> {
    PyFloat::new(slf.py(), h.when_value()).hash()
}

fn t_richcmp<'py>(
    slf: &Bound<'py, PyAny>,
    h: &Handle,
    other: &Bound<'py, PyAny>,
    op: CompareOp,
) -> PyRes<'py> {
    let py = slf.py();
    let Some(other) = slotted::cast::<Handle>(other, TIMER_TYPE) else {
        return Ok(py.NotImplemented().into_bound(py));
    };
    let o = other.state();
    // asyncio's operators, value for value: `__le__` is
    // `self._when < other._when or self.__eq__(other)` (not `<=`: two distinct timers
    // with the same deadline are neither `<=` nor `>=` each other), and `__ne__` is
    // Python's default, `not __eq__`.
    let (a, b) = (h.when_value(), o.when_value());
    Ok(match op {
        CompareOp::Lt => py_bool(py, a < b),
        CompareOp::Gt => py_bool(py, a > b),
        CompareOp::Le if a < b => py_bool(py, true),
        CompareOp::Ge if a > b => py_bool(py, true),
        CompareOp::Le | CompareOp::Ge | CompareOp::Eq => timer_eq(py, h, o)?,
        CompareOp::Ne => py_bool(py, !timer_eq(py, h, o)?.is_truthy()?),
    })
}

/// asyncio's `TimerHandle.__eq__`: `when == other.when and callback == other.callback and
/// args == other.args and cancelled == other.cancelled`, evaluated in that order and
/// returning the value of the `and` chain (a cancelled handle outside debug mode has
/// dropped its callback and args: `None`, as asyncio's).
fn timer_eq<'py>(py: Python<'py>, ha: &Handle, hb: &Handle) -> PyRes<'py> {
    if ha.when_value() != hb.when_value() {
        return Ok(py_bool(py, false));
    }
    let callback = |h: &Handle| {
        h.refs.with(|refs| match refs.callback.as_ref() {
            Some(c) => (c.func.bind(py).clone(), c.args.bind(py).clone().into_any()),
            None => (none(py), none(py)),
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
    Ok(py_bool(py, ha.is_cancelled() == hb.is_cancelled()))
}

noargs!(CANCEL, Handle, m_cancel);
noargs!(CANCELLED, Handle, m_cancelled);
#[cfg(Py_3_12)]
noargs!(GET_CONTEXT, Handle, m_get_context);
noargs!(RUN, Handle, m_run);
noargs!(WHEN, Handle, m_when);
unary_slot!(REPR, Handle, t_repr);
hash_slot!(HASH, Handle, t_hash);
richcmp_slot!(RICHCMP, Handle, t_richcmp);

fn methods(timer: bool) -> Vec<ffi::PyMethodDef> {
    let mut v = vec![
        noargs_def(
            c"cancel",
            CANCEL,
            c"Cancel the callback; a no-op if it already ran or was cancelled.",
        ),
        noargs_def(c"cancelled", CANCELLED, c"True once cancel() was called."),
        noargs_def(c"_run", RUN, c"Run the callback now."),
    ];
    #[cfg(Py_3_12)]
    v.push(noargs_def(
        c"get_context",
        GET_CONTEXT,
        c"The contextvars.Context the callback runs in.",
    ));
    if timer {
        v.push(noargs_def(
            c"when",
            WHEN,
            c"The absolute time (in loop.time() seconds) at which the callback is due.",
        ));
    }
    v
}

/// Creates `ferroloop.Handle` and `ferroloop.TimerHandle` (subtypes of `asyncio.Handle`
/// and `asyncio.TimerHandle`) and adds them to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let events = py.import("asyncio.events")?;
    let slot = |slot: c_int, pfunc: *mut c_void| ffi::PyType_Slot { slot, pfunc };
    let types = slotted::create_family::<Handle>(
        py,
        vec![
            SlottedSpec {
                base: events
                    .getattr(intern!(py, "Handle"))?
                    .cast_into::<PyType>()?,
                name: c"ferroloop._ferroloop.Handle",
                doc:
                    c"A callback scheduled by `call_soon`, `call_soon_threadsafe`, `add_reader`, ….",
                methods: methods(false),
                getsets: attrs::getsets(false),
                slots: vec![slot(ffi::Py_tp_repr, REPR as *mut c_void)],
                subclassable: true,
            },
            SlottedSpec {
                base: events
                    .getattr(intern!(py, "TimerHandle"))?
                    .cast_into::<PyType>()?,
                name: c"ferroloop._ferroloop.TimerHandle",
                doc: c"A callback scheduled for a point in time by `call_later` / `call_at`.",
                methods: methods(true),
                getsets: attrs::getsets(true),
                slots: vec![
                    slot(ffi::Py_tp_repr, REPR as *mut c_void),
                    slot(ffi::Py_tp_hash, HASH as *mut c_void),
                    slot(ffi::Py_tp_richcompare, RICHCMP as *mut c_void),
                ],
                subclassable: false,
            },
        ],
    )?;
    m.add("Handle", &types[HANDLE_TYPE])?;
    m.add("TimerHandle", &types[TIMER_TYPE])?;
    Ok(())
}

/// Timers wait in the loop's heap, often by the hundred thousand, and would otherwise be
/// traversed by every garbage collection that finds them young. While a timer is in the
/// heap the loop owns it: it is untracked, and the loop's own `tp_traverse` reports the
/// references it holds (so a cycle through a pending timer and an abandoned loop is still
/// collected). It is tracked again as it leaves the heap.
///
/// The same goes for the timer's context when it is the copy the loop made for it (nobody
/// else can reach it): contexts are GC objects too, one per timer.
pub fn untrack_scheduled(timer: &Bound<'_, Handle>, own_context: bool) {
    gc_untrack(timer.as_any());
    if own_context {
        // The context was created by the loop for this timer.
        timer.state().refs.with(|refs| {
            if let Some(ctx) = &refs.context {
                gc_untrack(ctx.bind(timer.py()));
            }
        });
    }
}

/// Tracks a timer again as it leaves the loop's heap (see [`untrack_scheduled`]).
pub fn retrack_unscheduled(py: Python<'_>, timer: &Py<Handle>) {
    gc_track(timer.bind(py).as_any());
    timer.state().refs.with(|refs| {
        if let Some(ctx) = &refs.context {
            gc_track(ctx.bind(py));
        }
    });
}
