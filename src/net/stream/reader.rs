//! Feeding asyncio's own `StreamReader` from the transport: what
//! `StreamReaderProtocol.data_received` → `StreamReader.feed_data` → `_wakeup_waiter` do
//! with a read, done here without their Python frames.
//!
//! The streams API (`asyncio.open_connection`, `start_server` and the Unix variants)
//! puts a `StreamReaderProtocol` on the transport around a `StreamReader`. Each read went
//! through `data_received`, the `_stream_reader` property (a weak reference),
//! `feed_data`, `_wakeup_waiter`, and the waiter's `cancelled()` and `set_result()`. That
//! is about 2,800 instructions on 3.11, an eighth of a 1 KiB streams echo. Here the bytes
//! are copied from the read buffer into the reader's `_buffer` and its waiter is woken
//! natively, with the same effects in the same order (and no `bytes` object).
//!
//! This runs only when nobody could tell the difference:
//! - the protocol and its reader are exactly asyncio's classes, and those classes still
//!   have asyncio's methods (a patched `StreamReader.feed_data` is called);
//! - neither instance overrides them (`reader.feed_data = f` and
//!   `protocol.data_received = f` are both done by public code, and are called);
//! - the reader is in its usual state: not at EOF (`feed_data` asserts that), its buffer a
//!   `bytearray`, its limit an `int`, its waiter ferroloop's own `Future` or `None`.
//!
//! Anything else goes through `data_received` as before.
//!
//! The stream core's socket and pipe reads (`read.rs`, `pipe.rs`: `connect_read_pipe` of a
//! `StreamReaderProtocol` is the usual way to read stdin) and the native TLS protocol's
//! decrypted bytes (`net/tls/read.rs`, for `open_connection(..., ssl=...)`) come here.
//!
//! The attributes are read with ordinary attribute access, never through `__dict__`: on
//! 3.11 and 3.12 asking for an instance's dictionary turns its inline values into a
//! dictionary that the interpreter's specialized attribute access no longer handles, which
//! cost the streams code more than this saves.

use pyo3::exceptions::PyNotImplementedError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyByteArray, PyInt, PyType, PyWeakrefMethods, PyWeakrefReference};

use crate::pyo::object::{class_attr_is, method_is};

/// asyncio's stream classes and the methods of theirs that [`StockReader`] stands in for.
struct StockStreams {
    protocol_cls: Py<PyType>,
    reader_cls: Py<PyType>,
    data_received: Py<PyAny>,
    stream_reader: Py<PyAny>,
    feed_data: Py<PyAny>,
    wakeup_waiter: Py<PyAny>,
}

static STOCK: PyOnceLock<Option<StockStreams>> = PyOnceLock::new();

/// asyncio's stream classes, or `None` where the transport does not feed readers itself:
/// the free-threaded build (another thread may use the reader meanwhile), or an asyncio
/// without these names.
fn stock(py: Python<'_>) -> Option<&StockStreams> {
    STOCK
        .get_or_init(py, || {
            if cfg!(Py_GIL_DISABLED) {
                return None;
            }
            let load = || -> PyResult<StockStreams> {
                let streams = py.import(intern!(py, "asyncio.streams"))?;
                let protocol_cls = streams
                    .getattr(intern!(py, "StreamReaderProtocol"))?
                    .cast_into::<PyType>()?;
                let reader_cls = streams
                    .getattr(intern!(py, "StreamReader"))?
                    .cast_into::<PyType>()?;
                let own = |cls: &Bound<'_, PyType>, name: &str| -> PyResult<Py<PyAny>> {
                    Ok(cls
                        .getattr(intern!(py, "__dict__"))?
                        .get_item(name)?
                        .unbind())
                };
                Ok(StockStreams {
                    data_received: own(&protocol_cls, "data_received")?,
                    stream_reader: own(&protocol_cls, "_stream_reader")?,
                    feed_data: own(&reader_cls, "feed_data")?,
                    wakeup_waiter: own(&reader_cls, "_wakeup_waiter")?,
                    protocol_cls: protocol_cls.unbind(),
                    reader_cls: reader_cls.unbind(),
                })
            };
            load().ok()
        })
        .as_ref()
}

/// Whether `protocol` is exactly asyncio's `StreamReaderProtocol` (the transport then
/// tries [`StockReader::of`] on each read).
pub(super) fn is_stock_protocol(protocol: &Bound<'_, PyAny>) -> bool {
    stock(protocol.py()).is_some_and(|s| protocol.get_type().is(s.protocol_cls.bind(protocol.py())))
}

/// A stock `StreamReader` that the next read can be fed to directly (see the module docs).
pub(crate) struct StockReader<'py> {
    reader: Bound<'py, PyAny>,
    buffer: Bound<'py, PyByteArray>,
    limit: i64,
    waiter: Bound<'py, PyAny>,
}

impl<'py> StockReader<'py> {
    /// The reader behind `protocol`, when the read can skip `data_received`.
    pub(crate) fn of(protocol: &Bound<'py, PyAny>) -> PyResult<Option<Self>> {
        let py = protocol.py();
        let Some(stock) = stock(py) else {
            return Ok(None);
        };
        if !protocol.get_type().is(stock.protocol_cls.bind(py))
            // A data descriptor: no instance can override it.
            || !class_attr_is(protocol, intern!(py, "_stream_reader"), &stock.stream_reader)
            || !method_is(protocol, intern!(py, "data_received"), &stock.data_received)?
        {
            return Ok(None);
        }
        // `self._stream_reader`: the referent of `_stream_reader_wr`.
        let Some(reader) = protocol
            .getattr(intern!(py, "_stream_reader_wr"))?
            .cast_into_exact::<PyWeakrefReference>()
            .ok()
            .and_then(|wr| wr.upgrade())
        else {
            return Ok(None);
        };
        if !reader.get_type().is(stock.reader_cls.bind(py))
            || !method_is(&reader, intern!(py, "feed_data"), &stock.feed_data)?
            || !method_is(&reader, intern!(py, "_wakeup_waiter"), &stock.wakeup_waiter)?
            || !reader
                .getattr(intern!(py, "_eof"))?
                .is(PyBool::new(py, false))
        {
            return Ok(None);
        }
        let Ok(buffer) = reader
            .getattr(intern!(py, "_buffer"))?
            .cast_into_exact::<PyByteArray>()
        else {
            return Ok(None);
        };
        let Some(limit) = Some(reader.getattr(intern!(py, "_limit"))?)
            .filter(|l| l.is_exact_instance_of::<PyInt>())
            .and_then(|l| l.extract::<i64>().ok())
        else {
            return Ok(None);
        };
        let waiter = reader.getattr(intern!(py, "_waiter"))?;
        let native_future = crate::future::layout::future_type(py);
        if !waiter.is_none() && !native_future.is_some_and(|t| waiter.get_type().is(&t)) {
            return Ok(None);
        }
        Ok(Some(StockReader {
            reader,
            buffer,
            limit,
            waiter,
        }))
    }

    /// `buffer.extend(data)`, the first step of `feed_data` (`data` is never empty). Runs
    /// no Python code, so `data` may be the thread's read buffer.
    pub(crate) fn extend(&self, data: &[u8]) -> PyResult<()> {
        crate::pyo::bytes::bytearray_extend(&self.buffer, data)
    }

    /// The rest of `feed_data` after the buffer grew: `_wakeup_waiter()`, then pausing the
    /// transport once more than twice the limit is buffered.
    pub(crate) fn wake(self) -> PyResult<()> {
        let py = self.buffer.py();
        let reader = &self.reader;
        if !self.waiter.is_none() {
            reader.setattr(intern!(py, "_waiter"), py.None())?;
            // Exactly our Future ([`StockReader::of`]), so its own `cancelled()` and
            // `set_result()` are these.
            if let Some(st) = crate::future::layout::state(&self.waiter) {
                if st.status() != crate::future::Status::Cancelled {
                    crate::future::set_result(&self.waiter, st, &py.None().into_bound(py))?;
                }
            }
        }
        if (self.buffer.len() as i128) <= 2 * i128::from(self.limit) {
            return Ok(());
        }
        let transport = reader.getattr(intern!(py, "_transport"))?;
        if transport.is_none() || reader.getattr(intern!(py, "_paused"))?.is_truthy()? {
            return Ok(());
        }
        match transport.call_method0(intern!(py, "pause_reading")) {
            Ok(_) => reader.setattr(intern!(py, "_paused"), true),
            Err(e) if e.is_instance_of::<PyNotImplementedError>(py) => {
                reader.setattr(intern!(py, "_transport"), py.None())
            }
            Err(e) => Err(e),
        }
    }
}
