//! Debug mode: `set_debug`, coroutine origin tracking, source tracebacks of handles and
//! slow-callback reports.

use std::sync::atomic::Ordering;

use pyo3::intern;
use pyo3::prelude::*;

use super::LoopCore;
use crate::handle::{Handle, SlottedRef};
use crate::names::{logger, Names};

/// asyncio's `constants.DEBUG_STACK_DEPTH`.
pub(super) const DEBUG_STACK_DEPTH: i64 = 10;

impl LoopCore {
    pub(super) fn set_debug(slf: &Bound<'_, Self>, enabled: &Bound<'_, PyAny>) -> PyResult<()> {
        let this = slf.get();
        let enabled = enabled.is_truthy()?;
        this.debug.store(enabled, Ordering::Relaxed);
        if this.is_running_inner() {
            let py = slf.py();
            let f = slf.getattr(intern!(py, "_set_coroutine_origin_tracking"))?;
            slf.call_method1(intern!(py, "call_soon_threadsafe"), (f, enabled))?;
        }
        Ok(())
    }

    pub(super) fn set_coroutine_origin_tracking(
        &self,
        py: Python<'_>,
        enabled: bool,
    ) -> PyResult<()> {
        let imports = Names::get(py)?;
        let saved = self.pystate.with(|s| s.origin_tracking_saved_depth);
        if enabled == saved.is_some() {
            return Ok(());
        }
        if enabled {
            let depth: i64 = imports
                .get_coroutine_origin_tracking_depth
                .bind(py)
                .call0()?
                .extract()?;
            imports
                .set_coroutine_origin_tracking_depth
                .bind(py)
                .call1((DEBUG_STACK_DEPTH,))?;
            self.pystate
                .with(|s| s.origin_tracking_saved_depth = Some(depth));
        } else {
            imports
                .set_coroutine_origin_tracking_depth
                .bind(py)
                .call1((saved.unwrap_or(0),))?;
            self.pystate.with(|s| s.origin_tracking_saved_depth = None);
        }
        Ok(())
    }

    /// In debug mode, the stack that scheduled a handle (for error reports).
    pub(super) fn source_traceback(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        if !self.debug_on() {
            return Ok(None);
        }
        let imports = Names::get(py)?;
        // The caller's frame, as asyncio's Python `Handle.__init__` takes it with
        // `sys._getframe(1)` (whose audit event is raised here too). None on a native
        // thread (the DNS resolver pool hands its outcome over with
        // `call_soon_threadsafe`): nothing to show, and the call must not fail.
        let Some(frame) = crate::pyo::frame::current_frame(py) else {
            return Ok(None);
        };
        imports
            .audit
            .bind(py)
            .call1((intern!(py, "sys._getframe"), &frame))?;
        Ok(Some(
            imports.extract_stack.bind(py).call1((frame,))?.unbind(),
        ))
    }

    /// Runs a handle in debug mode: tracks the current handle and reports slow callbacks.
    pub(super) fn run_handle_debug(slf: &Bound<'_, Self>, h: &Py<Handle>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let previous = this
            .pystate
            .with(|s| s.current_handle.replace(h.clone_ref(py)));
        drop(previous);
        // asyncio times the callback with `self.time()`.
        let t0 = Self::loop_time(slf)?;
        let res = h.state().run(h.bind(py).as_any());
        let current = this.pystate.with(|s| s.current_handle.take());
        drop(current);
        res?;
        let dt = Self::loop_time(slf)? - t0;
        if dt >= f64::from_bits(this.slow_callback_duration.load(Ordering::Relaxed)) {
            // asyncio's `_format_handle`: a task's step (ferroloop's bound builtin, or the
            // C Task's `TaskStepMethWrapper`) is named by the task. `tasks.Task` is looked
            // up now, as asyncio does (tests patch it).
            let cb = h.bind(py).as_any().getattr(intern!(py, "_callback"))?;
            let task_cls = py.import("asyncio.tasks")?.getattr(intern!(py, "Task"))?;
            let owner = cb.getattr(intern!(py, "__self__")).ok();
            let desc = match owner {
                Some(o) if o.is_instance(&task_cls)? => o.repr()?.unbind(),
                _ => h.bind(py).as_any().str()?.unbind(),
            };
            logger(py)?.call_method1(
                intern!(py, "warning"),
                ("Executing %s took %.3f seconds", desc, dt),
            )?;
        }
        Ok(())
    }
}
