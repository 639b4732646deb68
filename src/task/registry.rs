//! Registering tasks with asyncio, so that `asyncio.all_tasks()` sees them.
//!
//! asyncio keeps its tasks in a `weakref.WeakSet` (`_asyncio._all_tasks` on 3.11,
//! `_asyncio._scheduled_tasks` on 3.12 and 3.13). The C Task calls the set's Python
//! `add()` for every new task, and when the task dies the weak reference's callback —
//! `WeakSet._remove`, Python again — takes it out. Those two Python calls cost more than
//! the rest of creating a task.
//!
//! ferroloop does what `add()` does — a weak reference with the set's `_remove` callback,
//! put into the set's underlying `data` — without running Python, and takes that weak
//! reference out again as soon as the task is done (`all_tasks()` drops done tasks
//! anyway). Freed before its task, the weak reference never fires its callback. A task that
//! dies while still pending keeps the callback path, so the set stays exact. Removals while
//! someone iterates the set are deferred through its `_pending_removals`, as `_remove`
//! defers them.
//!
//! If the set is not the `WeakSet` this expects, tasks register through
//! `_asyncio._register_task` as before.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyList, PySet};

use crate::future::layout::Ref;

/// The parts of asyncio's task `WeakSet` that registration touches.
pub(crate) struct Registry {
    /// `WeakSet.data`: the set of weak references.
    data: Py<PySet>,
    /// `WeakSet._remove`: the callback of every weak reference in `data`.
    remove: Py<PyAny>,
    /// `WeakSet._iterating`: non-empty while the set is being iterated.
    iterating: Py<PySet>,
    /// `WeakSet._pending_removals`: removals deferred until the iteration ends.
    pending_removals: Py<PyList>,
}

static REGISTRY: PyOnceLock<Option<Registry>> = PyOnceLock::new();

/// The task registry, or `None` when tasks must register through `_register_task`.
pub(crate) fn get(py: Python<'_>) -> Option<&'static Registry> {
    REGISTRY
        .get_or_init(py, || load(py).ok().flatten())
        .as_ref()
}

fn load(py: Python<'_>) -> PyResult<Option<Registry>> {
    let c = py.import("_asyncio")?;
    let set = match c.getattr("_scheduled_tasks") {
        Ok(s) => s,
        Err(_) => c.getattr("_all_tasks")?,
    };
    let weak_set = py.import("_weakrefset")?.getattr("WeakSet")?;
    if !set.get_type().is(&weak_set) {
        return Ok(None);
    }
    let data = set.getattr("data")?;
    let iterating = set.getattr("_iterating")?;
    let pending = set.getattr("_pending_removals")?;
    if !(data.is_exact_instance_of::<PySet>()
        && iterating.is_exact_instance_of::<PySet>()
        && pending.is_exact_instance_of::<PyList>())
    {
        return Ok(None);
    }
    Ok(Some(Registry {
        data: data.cast_into::<PySet>()?.unbind(),
        remove: set.getattr("_remove")?.unbind(),
        iterating: iterating.cast_into::<PySet>()?.unbind(),
        pending_removals: pending.cast_into::<PyList>()?.unbind(),
    }))
}

impl Registry {
    /// `WeakSet.add(task)`; returns the weak reference to hand to [`Registry::unregister`].
    pub(crate) fn register(&self, task: &Bound<'_, PyAny>) -> PyResult<Ref> {
        let py = task.py();
        // SAFETY: `task` (weak-referenceable: our types have a weaklist) and the callback
        // are live; PyWeakref_NewRef returns a new reference or NULL with an exception set.
        let wr = unsafe {
            Bound::from_owned_ptr_or_err(
                py,
                ffi::PyWeakref_NewRef(task.as_ptr(), self.remove.as_ptr()),
            )?
        };
        self.data.bind(py).add(&wr)?;
        Ok(Ref::new(wr))
    }

    /// Takes a done task's weak reference out of the set (deferred while the set is being
    /// iterated, as `WeakSet._remove` does).
    pub(crate) fn unregister(&self, py: Python<'_>, wr: Ref) -> PyResult<()> {
        let wr = wr.into_bound(py);
        if !self.iterating.bind(py).is_empty() {
            return self.pending_removals.bind(py).append(wr);
        }
        self.data.bind(py).discard(wr).map(drop)
    }
}
