//! [`GilCell`]: interior mutability for state that is only touched while attached to the
//! interpreter — the state of the loop, of every handle, future and task.
//!
//! # The re-entrancy rule
//!
//! **No access to a `GilCell` is ever open while Python code runs.** Callbacks re-enter
//! the loop (a callback calls `call_soon`, a protocol's `data_received` calls
//! `transport.write()`, a `__del__` schedules work), so state held across a call into
//! Python would be seen half-updated, or — since the access is exclusive — the re-entrant
//! access fails (a panic on GIL builds, a deadlock with a mutex). "Python code" includes
//! dropping a Python reference: a decref may free an object and run its `__del__`.
//!
//! The type makes that the path of least resistance: the state is reachable only inside a
//! closure, [`GilCell::with`], which gets `&mut T` and no `Python` token. What the closure
//! returns is how values leave the cell, so the pattern for anything that may run Python
//! code is *take it out in the closure, use or drop it after*:
//!
//! ```ignore
//! let old = st.inner.with(|g| g.result.replace(new));   // no Python code inside
//! drop(old);                                             // the decref runs outside
//! ```
//!
//! Inside the closure: read and write plain fields, move references in and out, clone a
//! reference (an incref never runs Python code). Never call a Python API, never let a
//! reference be dropped (an assignment over `Some(x)` drops `x`: use `replace`/`take`).
//! In debug builds, the drop of a [`super::Ref`] inside an open access and the vectorcall
//! helpers of [`super::call`] assert this (see [`assert_no_access_open`]).
//!
//! # Why not a mutex
//!
//! On GIL builds of CPython every access happens with the GIL held, and the GIL serializes
//! them (its release/acquire orders the memory accesses of successive holders). A
//! `std::sync::Mutex` would add two atomic read-modify-write instructions per access —
//! measurable on a path that runs several times per callback — so on GIL builds a
//! `GilCell` is a `RefCell`: a re-entrant access (which would deadlock a mutex) is caught
//! by the borrow flag and panics, which PyO3 turns into a Python exception. On
//! free-threaded builds it is a real mutex.

#[cfg(debug_assertions)]
thread_local! {
    /// How many `GilCell` accesses are open on this thread (debug builds only).
    static OPEN: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Counts an open access for the duration of a closure (debug builds only).
struct OpenAccess;

impl OpenAccess {
    #[inline(always)]
    fn begin() -> OpenAccess {
        #[cfg(debug_assertions)]
        OPEN.with(|o| o.set(o.get() + 1));
        OpenAccess
    }
}

impl Drop for OpenAccess {
    #[inline(always)]
    fn drop(&mut self) {
        #[cfg(debug_assertions)]
        OPEN.with(|o| o.set(o.get() - 1));
    }
}

/// In debug builds, panics if a [`GilCell`] access is open on this thread: called where
/// Python code may run (a decref of a [`super::Ref`], the call helpers). Free in release
/// builds.
#[inline(always)]
pub fn assert_no_access_open(what: &str) {
    #[cfg(debug_assertions)]
    OPEN.with(|o| {
        assert!(
            o.get() == 0,
            "{what} while a GilCell access is open (see pyo::gil_cell's re-entrancy rule)"
        )
    });
    #[cfg(not(debug_assertions))]
    let _ = what;
}

#[cfg(not(Py_GIL_DISABLED))]
mod imp {
    use std::cell::RefCell;

    /// A cell whose accesses are serialized by the GIL (see the module docs).
    #[derive(Default)]
    pub struct GilCell<T>(RefCell<T>);

    // SAFETY: see the module docs — every access happens with the GIL held, so no two
    // threads ever touch the RefCell (or its borrow flag) at the same time.
    unsafe impl<T: Send> Sync for GilCell<T> {}

    impl<T> GilCell<T> {
        pub const fn new(value: T) -> Self {
            GilCell(RefCell::new(value))
        }

        /// Runs `f` with exclusive access (the rule: no Python code inside, see the module
        /// docs); panics on a re-entrant access from the same thread.
        #[inline]
        pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
            let _open = super::OpenAccess::begin();
            f(&mut self.0.borrow_mut())
        }

        /// [`GilCell::with`] if nobody holds access, else `None` (for the garbage
        /// collector's traversal and clearing, which must never block or panic).
        #[inline]
        pub fn try_with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
            let mut g = self.0.try_borrow_mut().ok()?;
            let _open = super::OpenAccess::begin();
            Some(f(&mut g))
        }
    }
}

#[cfg(Py_GIL_DISABLED)]
mod imp {
    use std::sync::Mutex;

    /// A mutex: without a GIL, accesses are serialized by the lock itself.
    #[derive(Default)]
    pub struct GilCell<T>(Mutex<T>);

    impl<T> GilCell<T> {
        pub const fn new(value: T) -> Self {
            GilCell(Mutex::new(value))
        }

        /// Runs `f` with exclusive access (the rule: no Python code inside, see the module
        /// docs).
        #[inline]
        pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
            let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
            let _open = super::OpenAccess::begin();
            f(&mut g)
        }

        /// [`GilCell::with`] if nobody holds the lock, else `None`.
        #[inline]
        pub fn try_with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
            let mut g = self.0.try_lock().ok()?;
            let _open = super::OpenAccess::begin();
            Some(f(&mut g))
        }
    }
}

pub use imp::GilCell;

impl<T> GilCell<T> {
    /// Replaces the state, returning the old one (to be dropped by the caller, outside).
    #[inline]
    pub fn replace(&self, value: T) -> T {
        self.with(|s| std::mem::replace(s, value))
    }

    /// Takes the state out, leaving the default (to be dropped by the caller, outside).
    #[inline]
    pub fn take(&self) -> T
    where
        T: Default,
    {
        self.with(std::mem::take)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_returns_what_the_closure_takes_out() {
        let cell = GilCell::new(Some(String::from("old")));
        let old = cell.with(|s| s.replace(String::from("new")));
        assert_eq!(old.as_deref(), Some("old"));
        assert_eq!(cell.take().as_deref(), Some("new"));
        assert_eq!(cell.with(|s| s.clone()), None);
    }

    #[test]
    fn try_with_refuses_a_nested_access() {
        let cell = GilCell::new(1);
        cell.with(|_| assert!(cell.try_with(|_| ()).is_none()));
        assert_eq!(cell.try_with(|v| *v), Some(1));
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "while a GilCell access is open")]
    fn python_work_inside_an_access_is_caught_in_debug_builds() {
        let cell = GilCell::new(0);
        cell.with(|_| assert_no_access_open("a call into Python"));
    }

    #[test]
    fn no_access_is_open_after_one_ends() {
        let cell = GilCell::new(0);
        cell.with(|v| *v += 1);
        assert_no_access_open("after the access");
    }
}
