//! `FutureIter`: the iterator `__await__` / `__iter__` return, with a one-element free list.

use pyo3::exceptions::{PyDeprecationWarning, PyRuntimeError, PyStopIteration, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyTuple, PyType};
use pyo3::{PyTraverseError, PyVisit};

use super::*;
use crate::names::names;
use crate::pyo::iter::{IterStep, NativeIter};
use crate::pyo::object::refcnt;
use crate::pyo::GilCell;

/// An exhausted iterator kept for reuse (a one-element free list, like the C FutureIter's):
/// [`offer_spare_iter`] puts an iterator here when it returns its result — it then
/// references nothing — and [`iter`] takes it once the `await` that used it let it go.
#[cfg(not(Py_GIL_DISABLED))]
static SPARE_ITER: GilCell<Option<Py<FutureIter>>> = GilCell::new(None);

/// Offers `it`, which just returned its future's result, for reuse by [`iter`].
pub(crate) fn offer_spare_iter(it: &Bound<'_, FutureIter>) {
    #[cfg(not(Py_GIL_DISABLED))]
    {
        let old = SPARE_ITER.with(|s| s.replace(it.clone().unbind()));
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
        let spare = SPARE_ITER.with(|g| {
            // With the GIL held, a reference count of one means nothing else can reach it
            // (no weakrefs).
            match g.as_ref() {
                Some(it) if refcnt(it.bind(py).as_any()) == 1 => g.take(),
                _ => None,
            }
        });
        if let Some(it) = spare {
            let it = it.into_bound(py);
            let filled = it.get().fut.with(|f| {
                if f.is_some() {
                    return false;
                }
                *f = Some(slf.clone().unbind());
                true
            });
            if filled {
                return Ok(it.into_any());
            }
        }
    }
    let it = FutureIter {
        fut: GilCell::new(Some(slf.clone().unbind())),
    };
    Ok(Bound::new(py, it)?.into_any())
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

/// The hand-written `tp_iternext` / `am_send` slots (see [`crate::pyo::iter`]) run this.
impl NativeIter for FutureIter {
    #[inline]
    fn advance<'py>(it: &Bound<'py, Self>) -> PyResult<IterStep<'py>> {
        let step = it.get().advance(it.py());
        if let Ok(IterStep::Return(_)) = step {
            offer_spare_iter(it);
        }
        step
    }

    fn send(it: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        it.get().send_value(it.py())
    }

    fn throw(it: &Bound<'_, Self>, args: &[Bound<'_, PyAny>]) -> PyResult<Py<PyAny>> {
        it.get().throw_args(it.py(), args)
    }
}

impl FutureIter {
    /// One step, with every exception created eagerly and every reference dropped as a
    /// `Bound` (this also runs from the hand-written `tp_iternext`/`am_send` slots).
    pub(crate) fn advance<'py>(&self, py: Python<'py>) -> PyResult<IterStep<'py>> {
        let Some(fut) = self.fut.with(|s| s.as_ref().map(|f| f.bind(py).clone())) else {
            return Ok(IterStep::Exhausted);
        };
        let st = layout::state(&fut)
            .ok_or_else(|| eager::<PyTypeError>(py, "FutureIter over an uninitialized future"))?;
        // `Some(first time)` while pending: the first `yield` sets `_asyncio_future_blocking`.
        let pending = st.inner.with(|g| {
            (g.status == Status::Pending).then(|| !std::mem::replace(&mut g.blocking, true))
        });
        match pending {
            Some(true) => return Ok(IterStep::Yield(fut)),
            Some(false) => {
                return Err(eager::<PyRuntimeError>(py, "await wasn't used with future"))
            }
            None => {}
        }
        let old = self.fut.with(|s| s.take());
        drop(old.map(|o| o.into_bound(py)));
        match result_outcome(&fut, st)? {
            Ok(v) => Ok(IterStep::Return(v)),
            Err(e) => Err(PyErr::from_value(e)),
        }
    }

    /// `send(value)` (METH_O, installed by [`crate::pyo::iter::install_iter_slots`]): the value is
    /// ignored, as by the C FutureIter.
    pub(crate) fn send_value(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match self.advance(py)? {
            IterStep::Yield(v) => Ok(v.unbind()),
            IterStep::Return(v) => Err(PyErr::from_value(
                py.get_type::<PyStopIteration>().call1((v,))?,
            )),
            IterStep::Exhausted => Err(eager::<PyStopIteration>(py, ())),
        }
    }

    /// `throw(type[, value[, traceback]])` (METH_FASTCALL, installed by
    /// [`crate::pyo::iter::install_iter_slots`]).
    pub(crate) fn throw_args(
        &self,
        py: Python<'_>,
        args: &[Bound<'_, PyAny>],
    ) -> PyResult<Py<PyAny>> {
        let n = args.len();
        args::check_positional(py, "throw", n, 1, 3)?;
        if n > 1 && names(py)?.throw_deprecated {
            PyErr::warn(
                py,
                &py.get_type::<PyDeprecationWarning>(),
                c"the (type, exc, tb) signature of throw() is deprecated, use the single-arg signature instead.",
                1,
            )?;
        }
        let typ = args[0].clone();
        let val = if n > 1 { Some(args[1].clone()) } else { None }.filter(|v| !v.is_none());
        let tb = if n > 2 { Some(args[2].clone()) } else { None }.filter(|v| !v.is_none());
        if let Some(tb) = &tb {
            if !tb.is_instance_of::<pyo3::types::PyTraceback>() {
                return Err(eager::<PyTypeError>(
                    py,
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
                return Err(eager::<PyTypeError>(
                    py,
                    "instance exception may not have a separate value",
                ));
            }
            typ
        } else {
            return Err(eager::<PyTypeError>(
                py,
                "exceptions must be classes deriving BaseException or instances of such a class",
            ));
        };
        if let Some(tb) = tb {
            exc.setattr(intern!(py, "__traceback__"), tb)?;
        }
        let old = self.fut.with(|s| s.take());
        drop(old);
        Err(PyErr::from_value(exc))
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

    fn close(&self) {
        let old = self.fut.with(|s| s.take());
        drop(old);
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.fut.try_with(|g| visit.call(&*g)).transpose()?;
        Ok(())
    }

    fn __clear__(&self) {
        let old = self.fut.try_with(|g| g.take()).flatten();
        drop(old);
    }
}
