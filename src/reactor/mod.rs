//! The reactor: readiness of the loop's file descriptors. Pure Rust, no Python.
//!
//! * [`poller`] — the epoll instance (through `mio`), the eventfd waker of
//!   `call_soon_threadsafe`, and the [`Ready`] events one poll reports.
//! * [`registrations`] — who owns each registered fd: a slab of registrations whose
//!   generation-tagged tokens (see [`slab`]) are what epoll reports, so an event resolves
//!   to its owner directly, and an event for a registration that is gone (its fd closed,
//!   the number perhaps reused by a new owner) is dropped.
//!
//! The loop decides what an owner is (see `event_loop::io`); the reactor only keeps
//! one owner per fd and the directions it is polled for.

pub mod poller;
pub mod registrations;
pub mod slab;

pub use poller::{Poller, Ready, SIGNALS, WAKER};
pub use registrations::{Interest, RegisterError, Registrations};
