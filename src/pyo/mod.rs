//! The CPython glue: everything ferroloop does below PyO3's safe API lives here, and this
//! module (with [`crate::sys`], the libc wrappers) is the only place `unsafe` is allowed
//! (`#![deny(unsafe_code)]` at the crate root). Each function offers a safe API whose
//! `// SAFETY:` comments carry the reasoning.
//!
//! | module | what |
//! |---|---|
//! | [`gil_cell`] | [`GilCell`], the state cell of every object, and the re-entrancy rule |
//! | [`refs`] | [`Ref`], a strong reference dropped with a direct decref, and its ownership rule |
//! | [`attached`] | the Python token where CPython runs code attached but PyO3 gives none |
//! | [`mod@panic`] | the panic guard of hand-written entry points, eager exceptions |
//! | [`context`] | `contextvars` copy/enter/exit without Python-level calls |
//! | [`call`] | vectorcall helpers, `send()`, method calls returning exceptions as objects |
//! | [`exc`] | exceptions taken out of the error indicator as objects |
//! | [`object`] | refcounts, GC tracking, type checks, attribute access |
//! | [`errno`] | `OSError` from an errno or an `io::Error`, as CPython builds it |
//! | [`dict`] | single-lookup dict operations |
//! | [`fastcall`] | hand-written vectorcall methods of `#[pyclass]` types |
//! | [`recursion`] | the interpreter's recursion guard around native recursion |
//! | [`task_counter`] | the C Task's counter of default names, shared with ferroloop's tasks |
//! | [`native_type`] | the builder of native subtypes of C types (`ferroloop.Future`/`Task`) |
//! | [`iter`] | hand-written `tp_iternext` / `am_send` of an iterator class |
//! | [`task_ref`] | the untracked weak-reference look-alike of the task registry |
//! | [`bytes`] | `bytes` objects filled in place (a `recv` straight into the object) |
//! | [`buffer`] | byte views of bytes-like objects (the buffer protocol) for socket syscalls |
//! | [`socket_fd`] | a `socket.socket`'s fd read from the object (`sock_*` calls) |
//! | [`frame`] | the Python frame a native call was made from (debug mode's tracebacks) |

pub mod attached;
pub mod buffer;
pub mod bytes;
pub mod call;
pub mod context;
pub mod dict;
pub mod errno;
pub mod exc;
pub mod fastcall;
pub mod frame;
pub mod gil_cell;
pub mod iter;
pub mod native_type;
pub mod object;
pub mod panic;
pub mod recursion;
pub mod refs;
pub mod socket_fd;
pub mod task_counter;
#[cfg(not(Py_GIL_DISABLED))]
pub mod task_ref;

pub use gil_cell::GilCell;
pub use refs::Ref;
