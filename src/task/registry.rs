//! Registering tasks with asyncio, so that `asyncio.all_tasks()` sees them.
//!
//! asyncio keeps its tasks in a `weakref.WeakSet` (`_asyncio._all_tasks` on 3.11,
//! `_asyncio._scheduled_tasks` on 3.12 and 3.13); `all_tasks()` is Python code that lists
//! the set (`WeakSet.__iter__` calls each entry of the set's `data` to get its task). The
//! C Task calls the set's Python `add()` for every new task, which allocates a weak
//! reference the cyclic GC must track, and when the task dies the weak reference's
//! callback — `WeakSet._remove`, Python again — takes it out.
//!
//! ferroloop puts a [`TaskRef`] into the set's `data` instead: a small object that behaves
//! like a weak reference to the task (calling it returns the task, or `None` once dead; it
//! hashes and compares like one, so the `WeakSet`'s own methods keep working), but that the
//! GC does not track — asyncio's registry then adds no work to the collector. The task owns
//! its `TaskRef` through a [`Registration`]: when the task finishes (`all_tasks()` drops done
//! tasks anyway), is cleared or dies, the registration turns the `TaskRef` dead and takes it
//! out of the set — deferred through `_pending_removals` while someone iterates the set, as
//! `WeakSet._remove` defers.
//!
//! On the free-threaded build a plain weak reference (with `_remove` as callback) is used:
//! there, a `TaskRef` could hand out its task while another thread frees it. If the set is
//! not the `WeakSet` this expects, tasks register through `_asyncio._register_task`.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyList, PySet};

use crate::pyo::Ref;

/// The parts of asyncio's task `WeakSet` that registration touches.
pub(crate) struct Registry {
    /// `WeakSet.data`: the set of weak references.
    data: Py<PySet>,
    /// `WeakSet._remove`: the callback of the set's weak references.
    #[cfg_attr(not(Py_GIL_DISABLED), allow(dead_code))]
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
    let set = match c.getattr(intern!(py, "_scheduled_tasks")) {
        Ok(s) => s,
        Err(_) => c.getattr(intern!(py, "_all_tasks"))?,
    };
    let weak_set = py.import("_weakrefset")?.getattr(intern!(py, "WeakSet"))?;
    if !set.get_type().is(&weak_set) {
        return Ok(None);
    }
    let data = set.getattr(intern!(py, "data"))?;
    let iterating = set.getattr(intern!(py, "_iterating"))?;
    let pending = set.getattr(intern!(py, "_pending_removals"))?;
    if !(data.is_exact_instance_of::<PySet>()
        && iterating.is_exact_instance_of::<PySet>()
        && pending.is_exact_instance_of::<PyList>())
    {
        return Ok(None);
    }
    Ok(Some(Registry {
        data: data.cast_into::<PySet>()?.unbind(),
        remove: set.getattr(intern!(py, "_remove"))?.unbind(),
        iterating: iterating.cast_into::<PySet>()?.unbind(),
        pending_removals: pending.cast_into::<PyList>()?.unbind(),
    }))
}

/// A task's entry in asyncio's registry; dropping it takes the entry out.
pub(crate) struct Registration {
    registry: &'static Registry,
    /// The entry in `Registry::data`: a [`TaskRef`] (a weak reference on free-threaded
    /// builds).
    entry: Ref,
}

impl Registry {
    /// `WeakSet.add(task)`.
    pub(crate) fn register(&'static self, task: &Bound<'_, PyAny>) -> PyResult<Registration> {
        let py = task.py();
        #[cfg(not(Py_GIL_DISABLED))]
        let entry = crate::pyo::task_ref::new(task)?;
        #[cfg(Py_GIL_DISABLED)]
        let entry = crate::pyo::object::new_weakref(task, self.remove.bind(py))?;
        self.data.bind(py).add(&entry)?;
        Ok(Registration {
            registry: self,
            entry: Ref::new(entry),
        })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // A Registration lives in a task's state, which is only dropped or replaced by the
        // task's slots and methods: the thread is attached.
        let py = crate::pyo::attached::in_owner_drop();
        let entry = self.entry.get(py);
        // Dead first: whoever still holds the entry can no longer reach the task.
        #[cfg(not(Py_GIL_DISABLED))]
        crate::pyo::task_ref::kill(&entry);
        let reg = self.registry;
        let done = if reg.iterating.bind(py).is_empty() {
            reg.data.bind(py).discard(&entry).map(drop)
        } else {
            reg.pending_removals.bind(py).append(&entry)
        };
        if let Err(e) = done {
            // Nowhere to raise from a drop (as for an error in a weak reference callback).
            e.write_unraisable(py, Some(&entry));
        }
    }
}
