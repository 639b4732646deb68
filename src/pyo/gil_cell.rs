//! Interior mutability for state that is only touched while attached to the interpreter.
//!
//! On GIL builds of CPython every access to the loop's queues and a handle's references
//! happens with the GIL held, and the GIL serializes them (its release/acquire orders the
//! memory accesses of successive holders). A `std::sync::Mutex` would add two atomic
//! read-modify-write instructions per access — measurable on a path that runs several
//! times per callback — so on GIL builds [`GilCell`] is a `RefCell`: a re-entrant access
//! (which would deadlock a mutex) is caught by the borrow flag and panics, which PyO3
//! turns into a Python exception. On free-threaded builds it is a real mutex.
//!
//! Invariant for callers: take the guard only while attached to the interpreter, and
//! release it before running any Python code (a decref that may free an object counts).

#[cfg(not(Py_GIL_DISABLED))]
mod imp {
    use std::cell::{RefCell, RefMut};

    /// A cell whose accesses are serialized by the GIL.
    #[derive(Default)]
    pub struct GilCell<T>(RefCell<T>);

    // SAFETY: see the module docs — every access happens with the GIL held, so no two
    // threads ever touch the RefCell (or its borrow flag) at the same time.
    unsafe impl<T: Send> Sync for GilCell<T> {}

    /// Guard returned by [`GilCell::lock`].
    pub type Guard<'a, T> = RefMut<'a, T>;

    impl<T> GilCell<T> {
        pub const fn new(value: T) -> Self {
            GilCell(RefCell::new(value))
        }

        /// Exclusive access; panics on a re-entrant access from the same thread.
        #[inline]
        pub fn lock(&self) -> Guard<'_, T> {
            self.0.borrow_mut()
        }

        /// Exclusive access if nobody holds it (for the garbage collector's traversal).
        #[inline]
        pub fn try_lock(&self) -> Option<Guard<'_, T>> {
            self.0.try_borrow_mut().ok()
        }
    }
}

#[cfg(Py_GIL_DISABLED)]
mod imp {
    use std::sync::{Mutex, MutexGuard};

    /// A mutex: without a GIL, accesses are serialized by the lock itself.
    #[derive(Default)]
    pub struct GilCell<T>(Mutex<T>);

    /// Guard returned by [`GilCell::lock`].
    pub type Guard<'a, T> = MutexGuard<'a, T>;

    impl<T> GilCell<T> {
        pub const fn new(value: T) -> Self {
            GilCell(Mutex::new(value))
        }

        #[inline]
        pub fn lock(&self) -> Guard<'_, T> {
            self.0.lock().unwrap_or_else(|e| e.into_inner())
        }

        #[inline]
        pub fn try_lock(&self) -> Option<Guard<'_, T>> {
            self.0.try_lock().ok()
        }
    }
}

pub use imp::{GilCell, Guard};
