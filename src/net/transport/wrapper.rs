//! What the Python wrapper classes of the transport cores share for their native methods
//! (`ferroloop._SocketTransport`, `ferroloop._DatagramTransport`): finding the core in the
//! wrapper's `_core` slot, and `is_closing`.

use std::marker::PhantomData;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyType};

use super::TransportCore;
use crate::pyo::fastcall::{VectorArgs, WrapperMethod};
use crate::pyo::object::SlotMember;

/// A transport core wrapped by a Python class that keeps it in a `_core` slot.
pub(crate) trait WrappedCore: TransportCore {
    /// Where the wrapper class keeps the core (set by [`remember_core_slot`]).
    fn core_slot() -> &'static PyOnceLock<SlotMember>;
}

/// Records where `cls` (the wrapper class of `C`) keeps its core.
pub(crate) fn remember_core_slot<C: WrappedCore>(cls: &Bound<'_, PyType>) -> PyResult<()> {
    let _ = C::core_slot().set(cls.py(), SlotMember::of(cls, "_core")?);
    Ok(())
}

/// The core of `wrapper`, an instance of `C`'s wrapper class.
#[inline]
pub(crate) fn core_of<'py, C: WrappedCore>(wrapper: &Bound<'py, PyAny>) -> PyResult<Bound<'py, C>> {
    core_in(C::core_slot(), wrapper)
}

/// The core of `wrapper`, kept in the `_core` slot recorded in `slot` (a wrapper class
/// other than `C`'s own, such as the write pipe's over a stream core).
#[inline]
pub(crate) fn core_in<'py, C: WrappedCore>(
    slot: &PyOnceLock<SlotMember>,
    wrapper: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, C>> {
    let py = wrapper.py();
    match slot.get(py).and_then(|slot| slot.get(wrapper)) {
        Some(core) => Ok(core.cast_into::<C>()?),
        // Not set (a subclass that skipped `__init__`): the AttributeError of `self._core`.
        None => Ok(wrapper
            .getattr(pyo3::intern!(py, "_core"))?
            .cast_into::<C>()?),
    }
}

/// A call the native method does not take (keywords, a wrong number of arguments): the
/// core's own method `name`, with its argument errors.
pub(crate) fn forward_to_core<'py, C: WrappedCore>(
    core: &Bound<'py, C>,
    name: &Bound<'py, pyo3::types::PyString>,
    args: VectorArgs<'_, 'py>,
) -> PyResult<Py<PyAny>> {
    let method = core.py().get_type::<C>().getattr(name)?;
    args.forward(&method, core.as_any())
}

/// The wrapper's `is_closing()`: whether `close()`/`abort()` was called.
pub(crate) struct WrapperIsClosing<C>(PhantomData<C>);
impl<C: WrappedCore> WrapperMethod for WrapperIsClosing<C> {
    #[inline]
    fn call<'py>(slf: &Bound<'py, PyAny>, args: VectorArgs<'_, 'py>) -> PyResult<Py<PyAny>> {
        let py = args.py();
        let core = core_of::<C>(slf)?;
        if args.nargs() == 0 && args.nkw() == 0 {
            let closing = core.get().state().with(|s| s.closing);
            return Ok(PyBool::new(py, closing).to_owned().into_any().unbind());
        }
        forward_to_core(&core, pyo3::intern!(py, "is_closing"), args)
    }
}
