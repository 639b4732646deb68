//! The incoming flow: encrypted bytes into the incoming BIO, decryption, and delivery
//! to the app protocol (`data_received`, or `get_buffer`/`buffer_updated` for a
//! `BufferedProtocol`), and `eof_received`.

use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt, PyMemoryView};

use super::{
    is_again, is_exception, max_read_int, names, read_buf, AppState, SSLProtocolCore, State,
};
use crate::net::stream::reader::StockReader;
use crate::pyo::call::vcall;

impl SSLProtocolCore {
    // Incoming flow

    /// Encrypted bytes from the transport below (a native transport's read, or
    /// `buffer_updated` / `data_received`).
    pub(crate) fn feed(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        Self::bio_write(slf, data)?;
        Self::advance(slf)
    }

    /// `self._incoming.write(data)`: runs no Python code (`ssl.MemoryBIO.write`).
    pub(crate) fn bio_write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let w = slf.get().st.with(|s| s.m.incoming_write.clone_ref(py));
        vcall(w.bind(py), &[data.as_ptr()]).map(drop)
    }

    /// What `buffer_updated` does after the BIO write: the state's next step.
    pub(crate) fn advance(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        match this.state() {
            State::DoHandshake => Self::do_handshake(slf),
            State::Wrapped => Self::do_read(slf),
            State::Flushing => Self::do_flush(slf),
            State::Shutdown => Self::do_shutdown(slf),
            State::Unwrapped => Ok(()),
        }
    }

    pub(super) fn do_read(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if !matches!(this.state(), State::Wrapped | State::Flushing) {
            return Ok(());
        }
        let res = (|| {
            let (paused, buffered) = this.st.with(|s| (s.app_reading_paused, s.app_is_buffer));
            // The incoming BIO's size when the read found it empty (only the transport
            // below adds to it, never during the read).
            let mut incoming = None;
            if !paused {
                if buffered {
                    Self::do_read_buffered(slf)?;
                } else if Self::do_read_copied(slf)? {
                    incoming = Some(0);
                }
                if this.st.with(|s| !s.write_backlog.is_empty()) {
                    Self::do_write(slf)?;
                } else {
                    Self::process_outgoing(slf)?;
                }
            }
            Self::control_ssl_reading_sized(slf, incoming)
        })();
        match res {
            Err(e) if is_exception(py, &e) => {
                let exc = e.into_value(py).into_bound(py).into_any();
                Self::fatal_error(slf, &exc, "Fatal error on SSL protocol")
            }
            other => other,
        }
    }

    /// Whether the SSL object has nothing more to read now, after a read of up to
    /// `MAX_READ` bytes: the incoming BIO is empty (then `read()` could only raise
    /// `SSLWantReadError`: a read of `MAX_READ`, more than a record's 16 KiB, leaves
    /// nothing of its record pending, and without read-ahead the SSL object takes no more
    /// from the BIO than the records it reads).
    fn drained(&self, py: Python<'_>) -> PyResult<bool> {
        let incoming = self.st.with(|s| s.incoming.clone_ref(py));
        Ok(incoming
            .bind(py)
            .getattr(intern!(py, "pending"))?
            .extract::<usize>()?
            == 0)
    }

    /// Whether `read()` could only raise `SSLWantReadError`: the incoming BIO is empty and
    /// the SSL object holds no decrypted bytes (a `BufferedProtocol`'s read into a small
    /// buffer can leave some, and the app protocol may have changed since).
    pub(super) fn nothing_to_read(&self, py: Python<'_>) -> PyResult<bool> {
        if !self.drained(py)? {
            return Ok(false);
        }
        let pending = self.st.with(|s| s.m.pending.clone_ref(py));
        Ok(vcall(pending.bind(py), &[])?.extract::<usize>()? == 0)
    }

    /// `_do_read__copied()`; true if it found the incoming BIO empty.
    fn do_read_copied(slf: &Bound<'_, Self>) -> PyResult<bool> {
        let py = slf.py();
        let this = slf.get();
        // Nothing received and nothing decrypted left over: `read()` could only raise
        // `SSLWantReadError`, an exception object for nothing (the read after a handshake
        // completes, a flush or a write with no reply yet).
        if this.nothing_to_read(py)? {
            return Ok(true);
        }
        let n = names(py)?;
        let read = this.st.with(|s| s.m.read.clone_ref(py)).into_bound(py);
        let buf = read_buf(py).into_bound(py);
        let size = max_read_int(py);
        let mut chunks: Vec<Bound<'_, PyBytes>> = Vec::new();
        let mut eof = false;
        let mut drained = false;
        loop {
            let got = match vcall(&read, &[size.as_ptr(), buf.as_ptr()]) {
                Ok(c) => c.extract::<usize>()?,
                Err(e) if is_again(py, &e, n) => break,
                Err(e) => return Err(e),
            };
            if got == 0 {
                eof = true;
                break;
            }
            let chunk =
                crate::pyo::buffer::with_bytes(buf.as_any(), |b| PyBytes::new(py, &b[..got]))?;
            chunks.push(chunk);
            if this.drained(py)? {
                drained = true;
                break;
            }
        }
        drop(buf);
        if !chunks.is_empty() {
            let app = this.app_protocol_obj(py);
            // asyncio's own stream protocol: the chunks go into its reader directly.
            if let Some(reader) = StockReader::of(&app)? {
                for chunk in &chunks {
                    reader.extend(chunk.as_bytes())?;
                }
                reader.wake()?;
                chunks.clear();
            }
        }
        if !chunks.is_empty() {
            let data = if chunks.len() == 1 {
                chunks.pop().map(Bound::into_any)
            } else {
                let empty = PyBytes::new(py, b"");
                Some(empty.call_method1(intern!(py, "join"), (chunks,))?)
            };
            let app = this.app_protocol_obj(py);
            app.call_method1(intern!(py, "data_received"), (data,))?;
        }
        if eof {
            Self::call_eof_received(slf)?;
            Self::start_shutdown(slf)?;
            return Ok(false);
        }
        Ok(drained)
    }

    fn do_read_buffered(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let n = names(py)?;
        let app = this.app_protocol_obj(py);
        let size = Self::get_read_buffer_size_inner(slf)?;
        let buf = app.call_method1(intern!(py, "get_buffer"), (size,))?;
        let wants = buf.len()?;
        let read = this.st.with(|s| s.m.read.clone_ref(py)).into_bound(py);
        let mut offset = 0usize;
        let mut count = 1usize;
        let mut reschedule = false;
        let res: PyResult<()> = (|| {
            count = vcall(&read, &[PyInt::new(py, wants).as_ptr(), buf.as_ptr()])?.extract()?;
            if count > 0 {
                offset = count;
                let view = PyMemoryView::from(&buf)?;
                loop {
                    if offset >= wants {
                        reschedule = true;
                        break;
                    }
                    let rest = view.get_item(pyo3::types::PySlice::new(
                        py,
                        offset as isize,
                        isize::MAX,
                        1,
                    ))?;
                    count = vcall(
                        &read,
                        &[PyInt::new(py, wants - offset).as_ptr(), rest.as_ptr()],
                    )?
                    .extract()?;
                    if count > 0 {
                        offset += count;
                    } else {
                        break;
                    }
                }
            }
            Ok(())
        })();
        match res {
            Err(e) if is_again(py, &e, n) => {}
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        if reschedule {
            let cb = slf.getattr(intern!(py, "_do_read"))?;
            this.loop_(py)
                .call_method1(intern!(py, "call_soon"), (cb,))?;
        }
        if offset > 0 {
            app.call_method1(intern!(py, "buffer_updated"), (offset,))?;
        }
        if count == 0 {
            Self::call_eof_received(slf)?;
            Self::start_shutdown(slf)?;
        }
        Ok(())
    }

    pub(super) fn call_eof_received(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let go = this.st.with(|s| {
            if s.app_state == AppState::ConMade {
                s.app_state = AppState::Eof;
                true
            } else {
                false
            }
        });
        if !go {
            return Ok(());
        }
        let res = this
            .app_protocol_obj(py)
            .call_method0(intern!(py, "eof_received"))
            .and_then(|k| k.is_truthy());
        match res {
            Ok(true) => names(py)?
                .logger
                .bind(py)
                .call_method1(
                    intern!(py, "warning"),
                    ("returning true from eof_received() has no effect when using ssl",),
                )
                .map(drop),
            Ok(false) => Ok(()),
            Err(e)
                if e.is_instance_of::<PyKeyboardInterrupt>(py)
                    || e.is_instance_of::<PySystemExit>(py) =>
            {
                Err(e)
            }
            Err(e) => {
                let exc = e.into_value(py).into_bound(py).into_any();
                Self::fatal_error(slf, &exc, "Error calling eof_received()")
            }
        }
    }
}
