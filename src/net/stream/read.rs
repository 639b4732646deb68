//! Reading: asyncio's `_read_ready__data_received`, `_read_ready__get_buffer` and
//! `_read_ready__on_eof`, with the syscalls in Rust.

use pyo3::exceptions::PyRuntimeError;
use std::mem::MaybeUninit;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::close::{close, fatal_error};
use super::reader::StockReader;
use super::{Kind, StreamCore};
use crate::net::{with_read_buf, would_block, MAX_READ};
use crate::pyo::buffer::with_bytes_mut;
use crate::pyo::bytes::{bytes_filled_by, bytes_from_read, bytes_read_in_place, recycle};
use crate::pyo::errno::os_error;
use crate::pyo::exc::is_fatal;
use crate::sys;

/// The outcome of one `recv()` (or a pipe's `read()`).
pub(super) enum Received<'py> {
    /// The bytes, and the capacity to hand [`recycle`] once the protocol is done with
    /// them (see [`bytes_from_read`]).
    Data(Bound<'py, PyBytes>, usize),
    Eof,
    WouldBlock,
    Failed(std::io::Error),
}

/// How a transport's next read is made, chosen from the size of its last one (see
/// [`ReadPlan::after`]). Reading into the thread's buffer costs a copy of what was read
/// into a `bytes` of its size; reading straight into a `bytes` costs guessing its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ReadPlan {
    /// Into the thread's read buffer, then copied: small reads, where the copy is cheaper
    /// than anything that avoids it.
    Copy,
    /// Straight into a `bytes` of this capacity (1.5 times the last read, rounded up to
    /// [`DIRECT_READ_STEP`]), kept whole when at least half full (and reused for a later
    /// read once the protocol drops it: see `bytes_read_in_place`), else shrunk to what
    /// arrived (CPython's `socket.recv` way). A read that fills the object takes what
    /// else is readable (`FIONREAD`) through the thread's buffer into one joined `bytes`,
    /// so the protocol gets in one call what asyncio's one `recv(256 KiB)` would have
    /// given it.
    Direct(usize),
    /// Straight into a new `bytes` sized first with `FIONREAD`: bulk reads, where the
    /// syscall (~0.4 µs here) costs less than copying tens of KiB, and where an object of
    /// [`MAX_READ`] shrunk afterwards would be a fresh `mmap` per read with glibc.
    Sized,
}

/// A last read of at least this many bytes makes the next one go straight into a `bytes`
/// object ([`ReadPlan::Direct`]): below it the copy out of the thread's buffer (~70 ns for
/// 4 KiB) is cheaper than the larger allocation and the shrink.
pub(super) const DIRECT_READ_MIN: usize = 4 * 1024;

/// The largest object a [`ReadPlan::Direct`] read allocates.
pub(super) const DIRECT_READ_MAX: usize = 32 * 1024;

/// A [`ReadPlan::Direct`] read's capacity is a multiple of this: a message of about the
/// last one's size fills more than half of it (so its object is reused), and one up to
/// 1.5 times that size still fits.
pub(super) const DIRECT_READ_STEP: usize = 1024;

/// A last read of at least this many bytes makes the next one sized with `FIONREAD`
/// ([`ReadPlan::Sized`]): from here the copy (~300 ns for 16 KiB) costs about the ioctl.
pub(super) const SIZED_READ_MIN: usize = 16 * 1024;

impl ReadPlan {
    /// The plan for the read after one of `last` bytes.
    pub(super) fn after(last: usize) -> Self {
        if last < DIRECT_READ_MIN {
            ReadPlan::Copy
        } else if last < SIZED_READ_MIN {
            ReadPlan::Direct(
                (last + last / 2)
                    .next_multiple_of(DIRECT_READ_STEP)
                    .min(DIRECT_READ_MAX),
            )
        } else {
            ReadPlan::Sized
        }
    }
}

/// The syscall that reads a stream transport's fd.
#[derive(Clone, Copy)]
pub(super) enum ReadCall {
    /// A socket's `recv()`.
    Recv,
    /// A pipe's `read()` (see [`super::pipe`]).
    Read,
}

impl ReadCall {
    fn into_buf(self, fd: i32, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            ReadCall::Recv => sys::recv(fd, buf),
            ReadCall::Read => sys::read(fd, buf),
        }
    }

    fn into_uninit(self, fd: i32, buf: &mut [MaybeUninit<u8>]) -> std::io::Result<usize> {
        match self {
            ReadCall::Recv => sys::recv_uninit(fd, buf),
            ReadCall::Read => sys::read_uninit(fd, buf),
        }
    }
}

/// What one read into the thread's buffer came to, once its bytes were handed on (see
/// [`read_and_take`]).
pub(super) enum Fed<T> {
    /// What `take` made of the bytes.
    Data(T),
    Eof,
    WouldBlock,
    Failed(std::io::Error),
}

/// One read (`call`) of `fd` into the thread's buffer, whose bytes `take` hands on before
/// the buffer is free again: `take` must run no Python code (see [`with_read_buf`]).
pub(super) fn read_and_take<T>(call: ReadCall, fd: i32, take: impl FnOnce(&[u8]) -> T) -> Fed<T> {
    with_read_buf(|buf| match call.into_buf(fd, buf) {
        Ok(0) => Fed::Eof,
        Ok(n) => Fed::Data(take(&buf[..n])),
        Err(e) if would_block(&e) => Fed::WouldBlock,
        Err(e) => Fed::Failed(e),
    })
}

fn received(result: std::io::Result<(Bound<'_, PyBytes>, usize)>) -> Received<'_> {
    match result {
        Ok((data, _)) if data.as_bytes().is_empty() => Received::Eof,
        Ok((data, cap)) => Received::Data(data, cap),
        Err(e) if would_block(&e) => Received::WouldBlock,
        Err(e) => Received::Failed(e),
    }
}

/// One read of up to [`MAX_READ`] bytes into a `bytes` object, for a protocol that takes
/// `bytes`, made as `plan` says (the transport's plan from its last read, which this read
/// updates).
pub(super) fn receive<'py>(
    slf: &Bound<'py, StreamCore>,
    call: ReadCall,
    plan: ReadPlan,
) -> PyResult<Received<'py>> {
    let py = slf.py();
    let fd = slf.get().fd;
    let got = match plan {
        ReadPlan::Copy => with_read_buf(|buf| {
            received(
                call.into_buf(fd, buf)
                    .map(|n| bytes_from_read(py, &buf[..n])),
            )
        }),
        ReadPlan::Direct(cap) => {
            match received(bytes_read_in_place(py, cap, |buf| {
                call.into_uninit(fd, buf)
            })?) {
                // It filled its object: what follows joins it.
                Received::Data(data, storage) if data.as_bytes().len() == storage => {
                    match what_follows(py, call, fd, &data) {
                        Some(joined) => {
                            recycle(data, storage);
                            Received::Data(joined, 0)
                        }
                        None => Received::Data(data, storage),
                    }
                }
                got => got,
            }
        }
        ReadPlan::Sized => match sys::bytes_readable(fd).unwrap_or(0).min(MAX_READ) {
            // Nothing readable (EOF, an error, a spurious wake-up) takes the copying
            // path, which tells them apart.
            0 => with_read_buf(|buf| {
                received(
                    call.into_buf(fd, buf)
                        .map(|n| bytes_from_read(py, &buf[..n])),
                )
            }),
            cap => received(
                bytes_filled_by(py, cap, |buf| call.into_uninit(fd, buf))?.map(|data| (data, 0)),
            ),
        },
    };
    if let Received::Data(data, _) = &got {
        let next = ReadPlan::after(data.as_bytes().len());
        if next != plan {
            slf.get().st.with(|s| s.read_plan = next);
        }
    }
    Ok(got)
}

/// `data`, a direct read that filled its object, joined with what else the fd holds (up to
/// [`MAX_READ`] in all); `None` when nothing follows. Only bytes `FIONREAD` reports are
/// read, so the extra `recv()` cannot take an error or EOF that the next readiness event
/// should report.
fn what_follows<'py>(
    py: Python<'py>,
    call: ReadCall,
    fd: i32,
    data: &Bound<'py, PyBytes>,
) -> Option<Bound<'py, PyBytes>> {
    let first = data.as_bytes();
    let more = sys::bytes_readable(fd)
        .unwrap_or(0)
        .min(MAX_READ.saturating_sub(first.len()));
    if more == 0 {
        return None;
    }
    with_read_buf(|buf| match call.into_buf(fd, &mut buf[..more]) {
        Ok(n) if n > 0 => PyBytes::new_with(py, first.len() + n, |joined| {
            joined[..first.len()].copy_from_slice(first);
            joined[first.len()..].copy_from_slice(&buf[..n]);
            Ok(())
        })
        // No memory for the joined object: the first part now, the rest on the next event.
        .ok(),
        _ => None,
    })
}

/// The fd is readable: receive and hand the bytes to the protocol.
pub(super) fn on_readable(slf: &Bound<'_, StreamCore>, gen: u32) -> PyResult<()> {
    let py = slf.py();
    let this = slf.get();
    let Some((proto, buffered, stock_stream, tls, plan)) = this.st.with(|s| {
        if s.conn_lost > 0 || !s.reading || s.read_gen != gen {
            return None;
        }
        Some((
            s.protocol.as_ref()?.clone_ref(py),
            s.buffered,
            s.stock_stream,
            s.tls.as_ref().map(|t| t.clone_ref(py)),
            s.read_plan,
        ))
    }) else {
        return Ok(());
    };
    let proto = proto.into_bound(py);
    if this.kind != Kind::Socket {
        return super::pipe::on_readable(slf, &proto, plan, stock_stream);
    }
    if let Some(tls) = tls {
        return read_into_tls(slf, &proto, tls.bind(py));
    }
    if buffered {
        return read_into_buffer(slf, &proto);
    }
    if stock_stream {
        match StockReader::of(&proto) {
            Ok(Some(reader)) => return read_into_stock_reader(slf, &proto, reader),
            Ok(None) => {}
            Err(e) => return data_received_failed(slf, e),
        }
    }
    let received = receive(slf, ReadCall::Recv, plan)?;
    match received {
        Received::WouldBlock => Ok(()),
        Received::Failed(e) => {
            fatal_error(slf, os_error(e), "Fatal read error on socket transport")
        }
        Received::Eof => on_eof(slf, &proto),
        Received::Data(data, cap) => {
            let res = proto.call_method1(pyo3::intern!(py, "data_received"), (&data,));
            recycle(data, cap);
            res.map(drop).or_else(|e| data_received_failed(slf, e))
        }
    }
}

/// What asyncio does when `data_received()` raised.
fn data_received_failed(slf: &Bound<'_, StreamCore>, e: PyErr) -> PyResult<()> {
    if is_fatal(slf.py(), &e) {
        return Err(e);
    }
    fatal_error(slf, e, "Fatal error: protocol.data_received() call failed.")
}

/// The protocol is asyncio's `StreamReaderProtocol` with its stock reader: the read goes
/// from the thread's buffer into the reader's `bytearray`, no `bytes` made (see
/// [`super::reader`]).
fn read_into_stock_reader(
    slf: &Bound<'_, StreamCore>,
    proto: &Bound<'_, PyAny>,
    reader: StockReader<'_>,
) -> PyResult<()> {
    match read_and_take(ReadCall::Recv, slf.get().fd, |data| reader.extend(data)) {
        Fed::WouldBlock => Ok(()),
        Fed::Failed(e) => fatal_error(slf, os_error(e), "Fatal read error on socket transport"),
        Fed::Eof => on_eof(slf, proto),
        Fed::Data(extended) => extended
            .and_then(|()| reader.wake())
            .or_else(|e| data_received_failed(slf, e)),
    }
}

/// A native TLS protocol: the bytes go to its incoming BIO directly (what
/// `get_buffer` + `buffer_updated` do, without the calls).
fn read_into_tls(
    slf: &Bound<'_, StreamCore>,
    proto: &Bound<'_, PyAny>,
    tls: &Bound<'_, crate::net::tls::SSLProtocolCore>,
) -> PyResult<()> {
    use crate::net::tls::SSLProtocolCore;
    let py = slf.py();
    // The bytes go to the protocol's incoming BIO, which copies them: a view of the
    // thread's read buffer, no `bytes` object. (The BIO's write runs no Python code, so
    // the buffer is free again before the state machine runs.)
    let fed = read_and_take(ReadCall::Recv, slf.get().fd, |data| {
        crate::pyo::buffer::with_memoryview(py, data, |view| SSLProtocolCore::bio_write(tls, view))
    });
    let res = match fed {
        Fed::WouldBlock => return Ok(()),
        Fed::Failed(e) => {
            return fatal_error(slf, os_error(e), "Fatal read error on socket transport")
        }
        Fed::Eof => return on_eof(slf, proto),
        Fed::Data(written) => written.and_then(|()| SSLProtocolCore::advance(tls)),
    };
    match res {
        Ok(()) => Ok(()),
        Err(e) if is_fatal(py, &e) => Err(e),
        Err(e) => fatal_error(
            slf,
            e,
            "Fatal error: protocol.buffer_updated() call failed.",
        ),
    }
}

/// asyncio's `_read_ready__get_buffer`: receive straight into the protocol's buffer.
fn read_into_buffer(slf: &Bound<'_, StreamCore>, proto: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = slf.py();
    let buf = match proto
        .call_method1(pyo3::intern!(py, "get_buffer"), (-1,))
        .and_then(|buf| {
            if buf.len()? == 0 {
                return Err(PyRuntimeError::new_err(
                    "get_buffer() returned an empty buffer",
                ));
            }
            Ok(buf)
        }) {
        Ok(buf) => buf,
        Err(e) if is_fatal(py, &e) => return Err(e),
        Err(e) => return fatal_error(slf, e, "Fatal error: protocol.get_buffer() call failed."),
    };
    let fd = slf.get().fd;
    let got = match with_bytes_mut(&buf, |b| sys::recv(fd, b)) {
        Ok(r) => r,
        // Not a writable buffer: what socket.recv_into() raises.
        Err(e) => return fatal_error(slf, e, "Fatal read error on socket transport"),
    };
    drop(buf);
    match got {
        Err(e) if would_block(&e) => Ok(()),
        Err(e) => fatal_error(slf, os_error(e), "Fatal read error on socket transport"),
        Ok(0) => on_eof(slf, proto),
        Ok(n) => match proto.call_method1(pyo3::intern!(py, "buffer_updated"), (n,)) {
            Ok(_) => Ok(()),
            Err(e) if is_fatal(py, &e) => Err(e),
            Err(e) => fatal_error(
                slf,
                e,
                "Fatal error: protocol.buffer_updated() call failed.",
            ),
        },
    }
}

/// asyncio's `_read_ready__on_eof`: the peer closed its side.
fn on_eof(slf: &Bound<'_, StreamCore>, proto: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = slf.py();
    slf.get().debug_log(py, "received EOF")?;
    let keep_open = match proto
        .call_method0(pyo3::intern!(py, "eof_received"))
        .and_then(|r| r.is_truthy())
    {
        Ok(k) => k,
        Err(e) if is_fatal(py, &e) => return Err(e),
        Err(e) => return fatal_error(slf, e, "Fatal error: protocol.eof_received() call failed."),
    };
    if keep_open {
        // The protocol may still write; there is nothing more to read.
        if slf.get().st.with(|s| s.stop_reading()) {
            StreamCore::sync_interest(slf);
        }
    } else {
        close(slf);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_plan_follows_the_last_read() {
        assert_eq!(ReadPlan::after(0), ReadPlan::Copy);
        assert_eq!(ReadPlan::after(DIRECT_READ_MIN - 1), ReadPlan::Copy);
        // 1.5 times the last read, rounded up to 1 KiB: the last read's size fills at
        // least half of it.
        assert_eq!(ReadPlan::after(DIRECT_READ_MIN), ReadPlan::Direct(6 * 1024));
        assert_eq!(ReadPlan::after(5 * 1024), ReadPlan::Direct(8 * 1024));
        assert_eq!(ReadPlan::after(10 * 1024), ReadPlan::Direct(15 * 1024));
        assert_eq!(
            ReadPlan::after(SIZED_READ_MIN - 1),
            ReadPlan::Direct(24 * 1024)
        );
        for last in DIRECT_READ_MIN..SIZED_READ_MIN {
            let ReadPlan::Direct(cap) = ReadPlan::after(last) else {
                panic!("{last}")
            };
            assert!(last * 2 >= cap && last + last / 2 <= cap, "{last} -> {cap}");
        }
        assert_eq!(ReadPlan::after(SIZED_READ_MIN), ReadPlan::Sized);
        assert_eq!(ReadPlan::after(40 * 1024), ReadPlan::Sized);
        assert_eq!(ReadPlan::after(MAX_READ), ReadPlan::Sized);
        // A read that filled a direct read's object asks for a bigger one next time (or
        // a sized one), never one at glibc's mmap threshold (128 KiB).
        let mut last = 5 * 1024;
        while let ReadPlan::Direct(cap) = ReadPlan::after(last) {
            assert!(cap > last && cap <= DIRECT_READ_MAX && DIRECT_READ_MAX < 128 * 1024);
            last = cap;
        }
        assert_eq!(ReadPlan::after(last), ReadPlan::Sized);
    }
}
