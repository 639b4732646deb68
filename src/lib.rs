//! ferroloop: asyncio's event loop core written in Rust.
//!
//! The crate mirrors asyncio's concepts, one module per concept:
//!
//! * [`event_loop`] — the loop core (`LoopCore`), one file per concern: running, scheduling,
//!   the ready queue, I/O, timers, signals, executors, async generator hooks, the
//!   exception handler API, debug mode.
//! * [`reactor`] — fd readiness (epoll via `mio`) and the registrations, keyed by owner.
//! * [`handle`] — `Handle` and `TimerHandle`, the scheduled callbacks.
//! * [`future`], [`task`] — native `Future` and `Task`, subtypes of the C `_asyncio` ones;
//!   what the loop's `create_future` / `create_task` return.
//! * [`pyo`] — the CPython glue below PyO3's safe API: `GilCell`, contexts, vectorcall,
//!   `Ref`, the native type builder, the panic guard. With [`sys`], the only place
//!   `unsafe` is allowed.
//! * [`names`] — the one table of interned Python objects (asyncio functions, modules).
//! * [`process`] — child processes: exit watching through pidfds, the shared reaper.
//! * [`clock`] — the monotonic clock shared with `time.monotonic()`.
//! * [`sys`] — thin libc wrappers.
//! * [`bench`] — the network benchmarks' echo load generator and pure-Rust floor server
//!   (`ferroloop bench`); not used by the loop.
//!
//! The Python package `ferroloop` (in `python/ferroloop/`) is a thin layer that makes
//! [`event_loop::LoopCore`] an `asyncio.AbstractEventLoop`.

// `unsafe` lives in `pyo` (the CPython glue) and `sys` (libc wrappers) only.
#![deny(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

use pyo3::prelude::*;

pub mod bench;
pub mod clock;
pub mod event_loop;
pub mod future;
pub mod handle;
pub mod names;
pub mod net;
pub mod process;
#[allow(unsafe_code)]
pub mod pyo;
pub mod reactor;

#[allow(unsafe_code)]
pub mod sys;
pub mod task;

/// The native module `ferroloop._ferroloop`.
#[pymodule]
fn _ferroloop(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<event_loop::LoopCore>()?;
    event_loop::fastcall::install(m.py())?;
    event_loop::dispatch::record_own_methods(&m.py().get_type::<event_loop::LoopCore>())?;
    handle::register(m)?;
    m.add_class::<net::stream::StreamCore>()?;
    net::stream::install_fast_methods(m.py())?;
    m.add_function(wrap_pyfunction!(net::stream::_register_transport_class, m)?)?;
    m.add_function(wrap_pyfunction!(
        net::stream::pipe::_register_pipe_transport_classes,
        m
    )?)?;
    m.add_class::<net::datagram::DatagramCore>()?;
    m.add_class::<net::transport::ExtraInfo>()?;
    m.add_function(wrap_pyfunction!(
        net::datagram::_register_datagram_transport_class,
        m
    )?)?;
    m.add_function(wrap_pyfunction!(event_loop::run_until_complete_cb, m)?)?;
    m.add_function(wrap_pyfunction!(event_loop::signals::_signal_wakeup_fd, m)?)?;
    future::register(m)?;
    bench::register(m)?;
    net::dns::register(m)?;
    net::tls::register(m)?;
    task::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
