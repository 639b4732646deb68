//! The CPython glue: everything ferroloop does below PyO3's safe API lives here.
//!
//! | module | what |
//! |---|---|
//! | [`refs`] | [`Ref`], a strong reference dropped with a direct decref, and its ownership rule |
//! | [`panic`] | the panic guard of hand-written entry points, eager exceptions |
//! | [`context`] | `contextvars` copy/enter/exit without Python-level calls |
//! | [`call`] | vectorcall helpers |
//! | [`exc`] | exceptions taken out of the error indicator as objects |
//! | [`dict`] | single-lookup dict operations |
//! | [`native_type`] | the builder of native subtypes of C types (`ferroloop.Future`/`Task`) |

pub mod call;
pub mod context;
pub mod dict;
pub mod exc;
pub mod native_type;
pub mod panic;
pub mod refs;

pub use refs::Ref;
