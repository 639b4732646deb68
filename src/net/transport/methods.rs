//! A transport core's `__repr__` and `get_extra_info`, and the macros that write the
//! Python-visible methods both cores share into each one's `#[pymethods]` block.

use pyo3::intern;
use pyo3::prelude::*;

use super::TransportCore;

/// What a transport's `__repr__` shows of its state.
pub(crate) struct ReprState {
    /// `connection_lost` ran.
    pub(crate) closed: bool,
    pub(crate) reading: bool,
    pub(crate) writing: bool,
    /// `get_write_buffer_size()`.
    pub(crate) size: usize,
}

/// A transport's `__repr__`, for the wrapper class named `cls_name`: how every asyncio
/// transport's begins (`cls_name`, then `closed` or `closing`, then `fd=N`), then what
/// `tail` adds.
pub(crate) fn repr<C: TransportCore>(
    this: &C,
    cls_name: &str,
    tail: impl FnOnce(&ReprState, &mut Vec<String>),
) -> String {
    let (state, closing) = this.state().with(|s| {
        (
            ReprState {
                closed: !C::is_open(s),
                reading: s.reading,
                writing: s.writing,
                size: C::buffer_size(s),
            },
            s.closing,
        )
    });
    let mut info = vec![cls_name.to_owned()];
    if state.closed {
        info.push("closed".into());
    } else if closing {
        info.push("closing".into());
    }
    info.push(format!("fd={}", this.fd()));
    tail(&state, &mut info);
    format!("<{}>", info.join(" "))
}

/// asyncio's `_SelectorTransport.__repr__` (sockets and datagrams), for the wrapper class
/// named `cls_name`.
pub(crate) fn selector_repr<C: TransportCore>(this: &C, py: Python<'_>, cls_name: &str) -> String {
    repr(this, cls_name, |r, info| {
        if !r.closed && !this.event_loop(py).get().is_closed_now() {
            info.push(format!("read={}", polling(r.reading)));
            info.push(format!(
                "write=<{}, bufsize={}>",
                polling(r.writing),
                r.size
            ));
        }
    })
}

/// How asyncio's `__repr__` says whether an fd is polled.
pub(crate) fn polling(polled: bool) -> &'static str {
    if polled {
        "polling"
    } else {
        "idle"
    }
}

/// `transport.get_extra_info(name, default=None)`.
pub(crate) fn get_extra_info<'py, C: TransportCore>(
    this: &C,
    py: Python<'py>,
    name: &Bound<'py, PyAny>,
    default: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let extra = this
        .state()
        .with(|s| s.extra.as_ref().map(|e| e.clone_ref(py)));
    let default = default.unwrap_or_else(|| py.None().into_bound(py));
    let Some(extra) = extra else {
        return Ok(default);
    };
    let extra = extra.into_bound(py);
    if let Some(v) = extra.get_item(name)? {
        return Ok(v);
    }
    if this.fill_extra(&extra, name)? {
        return Ok(extra.get_item(name)?.unwrap_or(default));
    }
    Ok(default)
}

/// `transport._extra` of a native transport. asyncio's transports keep their extra info in
/// the dict `_extra`, read by `BaseTransport.get_extra_info` (`self._extra.get(name,
/// default)`), which ferroloop's transports inherit too: patching
/// `asyncio.BaseTransport.get_extra_info` (as websockets' tests do) reaches them as it
/// reaches asyncio's. This view answers from the core, which computes the socket's entries
/// on first use (no socket object per connection unless asked for); `get`, `[]` and `in`
/// as on asyncio's dict.
#[pyclass(module = "ferroloop._ferroloop", frozen)]
pub struct ExtraInfo {
    core: Py<PyAny>,
}

impl ExtraInfo {
    pub(crate) fn new(py: Python<'_>, core: &Bound<'_, PyAny>) -> PyResult<Py<ExtraInfo>> {
        Py::new(
            py,
            ExtraInfo {
                core: core.clone().unbind(),
            },
        )
    }

    /// The entry for `name`, or `None` if the transport has none.
    fn entry<'py>(&self, name: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let py = name.py();
        // A default no entry can be: an object of this call's own.
        let missing = pyo3::types::PyList::empty(py);
        let v = self
            .core
            .bind(py)
            .call_method1(intern!(py, "get_extra_info"), (name, &missing))?;
        Ok((!v.is(&missing)).then_some(v))
    }
}

#[pymethods]
impl ExtraInfo {
    #[pyo3(signature = (name, default=None))]
    fn get<'py>(
        &self,
        name: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = name.py();
        self.core
            .bind(py)
            .call_method1(intern!(py, "get_extra_info"), (name, default))
    }

    fn __getitem__<'py>(&self, name: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.entry(name)?
            .ok_or_else(|| pyo3::exceptions::PyKeyError::new_err(name.clone().unbind()))
    }

    fn __contains__(&self, name: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(self.entry(name)?.is_some())
    }

    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        visit.call(&self.core)
    }
}

/// The accessors of [`TransportCore`] for a core whose fields are `fd`, `loop_` and `st`
/// (the names [`transport_pymethods!`] uses too).
macro_rules! transport_core_fields {
    () => {
        #[inline]
        fn fd(&self) -> std::os::fd::RawFd {
            self.fd
        }

        #[inline]
        fn loop_ref(&self) -> &Py<$crate::event_loop::LoopCore> {
            &self.loop_
        }

        #[inline]
        fn state(&self) -> &$crate::pyo::GilCell<Self::State> {
            &self.st
        }
    };
}
pub(crate) use transport_core_fields;

/// The Python-visible methods every transport core has, with the core's own ones
/// (`$($own)*`), as the core's one `#[pymethods]` block.
macro_rules! transport_pymethods {
    ($core:ty { $($own:tt)* }) => {
        #[pyo3::pymethods]
        impl $core {
            fn close(slf: &Bound<'_, Self>) {
                $crate::net::transport::close(slf)
            }

            fn abort(slf: &Bound<'_, Self>) {
                $crate::net::transport::force_close(slf, None)
            }

            /// asyncio's `_force_close(exc)` (called by `SSLProtocol` on a fatal error).
            #[pyo3(signature = (exc=None))]
            fn _force_close(slf: &Bound<'_, Self>, exc: Option<Py<PyAny>>) {
                let exc = exc.filter(|e| !e.is_none(slf.py()));
                $crate::net::transport::force_close(slf, exc)
            }

            fn is_closing(&self) -> bool {
                self.st.with(|s| s.closing)
            }

            /// asyncio's `_read_ready()`: what a readable event does (if reading). The
            /// callback of the `asyncio.Handle` an error escaping it is reported with.
            fn _read_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
                let gen = slf.get().st.with(|s| s.read_gen);
                <Self as $crate::net::transport::TransportCore>::on_readable(slf, gen)
            }

            fn is_reading(&self) -> bool {
                self.st.with(|s| s.is_reading())
            }

            fn pause_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
                $crate::net::transport::pause_reading(slf)
            }

            fn resume_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
                $crate::net::transport::resume_reading(slf)
            }

            /// `(low, high)`; as given when they were not plain integers (asyncio keeps
            /// what `set_write_buffer_limits` was given).
            fn get_write_buffer_limits(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
                let (low, high, given) = self.st.with(|s| {
                    (s.low_water, s.high_water, s.given_limits.as_ref().map(|t| t.clone_ref(py)))
                });
                match given {
                    Some(t) => Ok(t.into_any()),
                    None => Ok((low, high).into_pyobject(py)?.into_any().unbind()),
                }
            }

            fn get_write_buffer_size(&self) -> usize {
                self.st
                    .with(|s| <Self as $crate::net::transport::TransportCore>::buffer_size(s))
            }

            /// The transport's `_extra` (see [`ExtraInfo`]).
            #[getter]
            fn _extra(slf: &Bound<'_, Self>) -> PyResult<Py<$crate::net::transport::ExtraInfo>> {
                $crate::net::transport::ExtraInfo::new(slf.py(), slf.as_any())
            }

            #[pyo3(signature = (name, default=None))]
            fn get_extra_info<'py>(
                &self,
                py: Python<'py>,
                name: &Bound<'py, PyAny>,
                default: Option<Bound<'py, PyAny>>,
            ) -> PyResult<Bound<'py, PyAny>> {
                $crate::net::transport::get_extra_info(self, py, name, default)
            }

            fn get_protocol(&self, py: Python<'_>) -> Py<PyAny> {
                self.st
                    .with(|s| s.protocol.as_ref().map(|p| p.clone_ref(py)))
                    .unwrap_or_else(|| py.None())
            }

            #[getter]
            fn _sock_fd(&self) -> std::os::fd::RawFd {
                self.fd
            }

            /// The loop, until `connection_lost` ran (asyncio's `transport._loop`, read by
            /// `loop.sendfile()`'s fallback).
            #[getter]
            fn _loop(&self, py: Python<'_>) -> Py<PyAny> {
                if !self
                    .st
                    .with(|s| <Self as $crate::net::transport::TransportCore>::is_open(s))
                {
                    return py.None();
                }
                self.loop_.clone_ref(py).into_any()
            }

            /// Whether `pause_writing()` was called and `resume_writing()` not yet.
            #[getter]
            fn _protocol_paused(&self) -> bool {
                self.st.with(|s| s.protocol_paused)
            }

            fn __traverse__(
                &self,
                visit: pyo3::PyVisit<'_>,
            ) -> Result<(), pyo3::PyTraverseError> {
                visit.call(&self.loop_)?;
                self.st
                    .try_with(|s| -> Result<(), pyo3::PyTraverseError> {
                        s.visit(&visit)?;
                        <Self as $crate::net::transport::TransportCore>::visit_own(s, &visit)
                    })
                    .transpose()?;
                Ok(())
            }

            fn __clear__(&self) {
                let taken = self.st.try_with(|s| {
                    (
                        s.take_refs(),
                        <Self as $crate::net::transport::TransportCore>::clear_own(s),
                    )
                });
                drop(taken);
            }

            $($own)*
        }
    };
}
pub(crate) use transport_pymethods;
