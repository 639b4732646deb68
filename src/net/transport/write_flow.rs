//! Write flow control of a transport core: its watermarks, and the protocol's
//! `pause_writing()` / `resume_writing()` when its buffer crosses them.

use pyo3::prelude::*;

use super::TransportCore;
use crate::net::flow;

/// `_FlowControlMixin.set_write_buffer_limits(high, low)`: the watermarks, then
/// `_maybe_pause_protocol`.
pub(crate) fn set_write_buffer_limits<C: TransportCore>(
    slf: &Bound<'_, C>,
    high: Option<&Bound<'_, PyAny>>,
    low: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let limits = flow::limits(high, low, 64)?;
    // Both are >= 0 (limits() checked); a watermark above usize::MAX cannot be reached.
    let old = slf.get().state().with(|s| {
        s.high_water = usize::try_from(limits.high).unwrap_or(usize::MAX);
        s.low_water = usize::try_from(limits.low).unwrap_or(usize::MAX);
        std::mem::replace(&mut s.given_limits, limits.given)
    });
    drop(old);
    maybe_pause_protocol(slf)
}

/// asyncio's `_maybe_pause_protocol`: `pause_writing()` once the buffer exceeds the high
/// watermark.
pub(crate) fn maybe_pause_protocol<C: TransportCore>(slf: &Bound<'_, C>) -> PyResult<()> {
    let py = slf.py();
    let proto = slf.get().state().with(|s| {
        if C::buffer_size(s) <= s.high_water || s.protocol_paused {
            return None;
        }
        s.protocol_paused = true;
        s.protocol.as_ref().map(|p| p.clone_ref(py))
    });
    match proto {
        Some(proto) => call_flow(slf, proto.bind(py), pyo3::intern!(py, "pause_writing")),
        None => Ok(()),
    }
}

/// asyncio's `_maybe_resume_protocol`: `resume_writing()` once the buffer is down to the
/// low watermark.
pub(crate) fn maybe_resume_protocol<C: TransportCore>(slf: &Bound<'_, C>) -> PyResult<()> {
    let py = slf.py();
    let proto = slf.get().state().with(|s| {
        if !(s.protocol_paused && C::buffer_size(s) <= s.low_water) {
            return None;
        }
        s.protocol_paused = false;
        s.protocol.as_ref().map(|p| p.clone_ref(py))
    });
    match proto {
        Some(proto) => call_flow(slf, proto.bind(py), pyo3::intern!(py, "resume_writing")),
        None => Ok(()),
    }
}

/// `protocol.pause_writing()` / `resume_writing()` (see [`flow::call_protocol`]).
fn call_flow<C: TransportCore>(
    slf: &Bound<'_, C>,
    proto: &Bound<'_, PyAny>,
    method: &Bound<'_, pyo3::types::PyString>,
) -> PyResult<()> {
    let py = slf.py();
    let this = slf.get();
    flow::call_protocol(
        this.event_loop(py),
        proto,
        method,
        &this.transport(py),
        proto,
    )
}
