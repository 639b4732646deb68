//! When the Rust fast paths may bypass a loop method.
//!
//! Futures and tasks bound to ferroloop's loop skip two Python-level calls that asyncio
//! makes: `loop.call_soon(...)` (a task step or done-callback becomes a native job) and
//! `loop.get_debug()` (read from the loop's flag). That is only unobservable while those
//! attributes still resolve to ferroloop's own methods: a subclass may override them, a
//! test may patch the class (`mock.patch.object(Loop, "call_soon")`) or the instance
//! (`loop.call_soon = Mock()`).
//!
//! The check runs once per completion or step, so it must be cheap: the class attribute is
//! looked up through CPython's method cache (`_PyType_Lookup`, the lookup behind every
//! `obj.attr`, invalidated by any change to the class or its bases), and an instance
//! attribute of one of these names is noticed when it is set (`LoopCore.__setattr__`)
//! instead of searching the instance `__dict__` every time.

use std::sync::atomic::Ordering;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyType};

use super::LoopCore;
use crate::clock::monotonic;
use crate::pyo::object::{generic_setattr, ClassAttrCache};

/// The methods whose Python-level call the fast paths skip.
pub(crate) struct OwnMethods {
    pub call_soon: Py<PyAny>,
    pub get_debug: Py<PyAny>,
    pub time: Py<PyAny>,
}

static OWN: PyOnceLock<OwnMethods> = PyOnceLock::new();

/// Records `LoopCore`'s own `call_soon`, `get_debug` and `time` descriptors (after the fast
/// `call_soon` entry point was installed).
pub(crate) fn record_own_methods(ty: &Bound<'_, PyType>) -> PyResult<()> {
    let py = ty.py();
    let dict = ty.getattr(intern!(py, "__dict__"))?;
    let own = OwnMethods {
        call_soon: dict.get_item("call_soon")?.unbind(),
        get_debug: dict.get_item("get_debug")?.unbind(),
        time: dict.get_item("time")?.unbind(),
    };
    let _ = OWN.set(py, own);
    Ok(())
}

/// The methods whose Python-level call the fast paths skip, by name.
#[derive(Clone, Copy)]
pub(crate) enum Own {
    CallSoon,
    GetDebug,
    Time,
}

impl Own {
    fn method(self, own: &OwnMethods) -> &Py<PyAny> {
        match self {
            Own::CallSoon => &own.call_soon,
            Own::GetDebug => &own.get_debug,
            Own::Time => &own.time,
        }
    }

    fn cache(self, core: &LoopCore) -> &ClassAttrCache {
        match self {
            Own::CallSoon => &core.own_call_soon,
            Own::GetDebug => &core.own_get_debug,
            Own::Time => &core.own_time,
        }
    }
}

/// Whether `type(core).<name>` is still ferroloop's own `which` (not replaced on the class
/// or by a subclass). The answer is cached by the class's version tag: a future's
/// completion, a task's step and a timer each ask.
#[inline]
fn class_has_own(core: &Bound<'_, LoopCore>, name: &Bound<'_, PyString>, which: Own) -> bool {
    OWN.get(core.py()).is_some_and(|own| {
        which
            .cache(core.get())
            .class_attr_is(core.as_any(), name, which.method(own))
    })
}

/// `loop_` as ferroloop's loop if `loop_.<name>` still resolves to ferroloop's own method
/// `which`: not shadowed on the instance, not replaced on the class or by a subclass.
/// Otherwise the caller must make the Python-level call.
pub(crate) fn unpatched<'a, 'py>(
    loop_: &'a Bound<'py, PyAny>,
    name: &Bound<'py, PyString>,
    which: Own,
) -> Option<&'a Bound<'py, LoopCore>> {
    let core = loop_.cast::<LoopCore>().ok()?;
    if core.get().shadowed.load(Ordering::Relaxed) {
        return None;
    }
    class_has_own(core, name, which).then_some(core)
}

/// Whether an instance attribute called `name` would shadow a method the fast paths skip.
pub(crate) fn shadows_fast_path(name: &Bound<'_, PyString>) -> bool {
    matches!(name.to_str(), Ok("call_soon" | "get_debug"))
}

impl LoopCore {
    /// asyncio's loop reads its clock through `self.time()` (`call_later`, and `_run_once`
    /// deciding which timers are due and how long to poll), so a `time` set on the instance
    /// (`mock.patch.object(loop, "time")`, as aiohttp's tests do) or overridden by a
    /// subclass or on the class drives its timers. The native clock is read instead only
    /// while `loop.time` is still ferroloop's own; otherwise this is `Some(loop.time())`.
    /// Called with no state guard held: the override is Python code.
    #[inline]
    pub(super) fn python_time<'py>(slf: &Bound<'py, Self>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let py = slf.py();
        let own = !slf.get().time_shadowed.load(Ordering::Relaxed)
            && class_has_own(slf, intern!(py, "time"), Own::Time);
        if own {
            return Ok(None);
        }
        slf.call_method0(intern!(py, "time")).map(Some)
    }

    /// [`python_time`](Self::python_time) as a float.
    #[inline]
    pub(super) fn python_time_f64(slf: &Bound<'_, Self>) -> PyResult<Option<f64>> {
        Self::python_time(slf)?.map(|t| t.extract()).transpose()
    }

    /// [`python_time`](Self::python_time) as a float, or the native clock.
    #[inline]
    pub(super) fn loop_time(slf: &Bound<'_, Self>) -> PyResult<f64> {
        Ok(Self::python_time_f64(slf)?.unwrap_or_else(monotonic))
    }

    /// `object.__setattr__` / `object.__delattr__` (`value` `None`), noting when an
    /// instance attribute shadows a method the fast paths skip.
    pub(super) fn generic_setattr(
        slf: &Bound<'_, Self>,
        name: &Bound<'_, PyString>,
        value: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        if shadows_fast_path(name) {
            slf.get().shadowed.store(true, Ordering::Relaxed);
        } else if name.to_str().is_ok_and(|n| n == "time") {
            slf.get().time_shadowed.store(true, Ordering::Relaxed);
        }
        generic_setattr(slf.as_any(), name, value)
    }
}
