//! The counter behind default task names (`Task-{n}`), shared with CPython's C Task.
//!
//! asyncio numbers every default-named C `Task` from one counter of its C module: a
//! `static uint64_t task_name_counter` of `_asynciomodule.c` on 3.11, a field of the
//! `_asyncio` module state on 3.12+. Neither is reachable through an API, and ferroloop's
//! tasks must take their numbers from the same sequence (`loop.create_task()`, then
//! `asyncio.Task(coro, loop=loop)`, then `loop.create_task()` are `Task-1`, `Task-2`,
//! `Task-3`, as on asyncio's loop).
//!
//! So the counter is located once, by observation: two C tasks are created (with default
//! names, on a stand-in loop, never scheduled), and the one aligned `u64` of the `_asyncio`
//! module's writable memory (its module state, and the writable segments of the shared
//! object that holds its code) that held the first task's number and then the second's is
//! the counter. It is then set back to its value before the probe, and ferroloop's tasks
//! increment it. Anything unexpected (no unique match, numbers not consecutive) falls back
//! to a counter of ferroloop's own, as before.

use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule;

/// The address of the C counter, or `None` when it could not be located.
static LOCATED: PyOnceLock<Option<usize>> = PyOnceLock::new();

/// ferroloop's own counter, used only when the C counter could not be located.
static FALLBACK: AtomicU64 = AtomicU64::new(0);

/// The number of the next default-named task (`Task-{n}`), taken from asyncio's sequence.
pub fn next_task_number(py: Python<'_>) -> u64 {
    match LOCATED.get_or_init(py, || locate(py)) {
        Some(addr) => {
            // SAFETY: `addr` is the 8-aligned address of the C module's `uint64_t`
            // counter, which lives as long as the process (the module is never unloaded);
            // it is only written with the GIL held, as C does.
            let counter = unsafe { AtomicU64::from_ptr(*addr as *mut u64) };
            counter.fetch_add(1, Ordering::Relaxed) + 1
        }
        None => FALLBACK.fetch_add(1, Ordering::Relaxed) + 1,
    }
}

const PROBE: &std::ffi::CStr = c"
import _asyncio

class _StandInLoop:
    def get_debug(self):
        return False
    def call_soon(self, *args, **kwargs):
        pass
    def call_exception_handler(self, context):
        pass

async def _nothing():
    pass

def probe():
    coro = _nothing()
    try:
        task = _asyncio.Task(coro, loop=_StandInLoop())
        task._log_destroy_pending = False
        name = task.get_name()
    finally:
        coro.close()
    return int(name.removeprefix('Task-'))
";

/// Finds the C counter's address (see the module docs).
fn locate(py: Python<'_>) -> Option<usize> {
    // Without a GIL, C increments its counter with no lock that ferroloop could share:
    // two threads naming tasks at once could hand out one number twice. Keep our own.
    if cfg!(Py_GIL_DISABLED) {
        return None;
    }
    let result = (|| -> PyResult<Option<usize>> {
        let c = py.import("_asyncio")?;
        let probe = PyModule::from_code(
            py,
            PROBE,
            c"<ferroloop task counter probe>",
            c"_ferroloop_task_counter_probe",
        )?
        .getattr(intern!(py, "probe"))?;
        let regions = regions(&c)?;
        let first: u64 = probe.call0()?.extract()?;
        let mut candidates: Vec<usize> = Vec::new();
        for &(start, len) in &regions {
            scan(start, len, first, &mut candidates);
        }
        let second: u64 = probe.call0()?.extract()?;
        if second != first + 1 || first == 0 {
            return Ok(None);
        }
        // SAFETY: every candidate is an aligned `u64` inside a readable region (see
        // `scan`).
        candidates.retain(|&a| unsafe { std::ptr::read_volatile(a as *const u64) } == second);
        let [addr] = candidates[..] else {
            return Ok(None);
        };
        // Undo the probe's two numbers.
        // SAFETY: the unique `u64` that followed the C counter through two task
        // creations: the counter itself, in writable memory of the `_asyncio` module.
        unsafe { AtomicU64::from_ptr(addr as *mut u64) }.store(first - 1, Ordering::Relaxed);
        Ok(Some(addr))
    })();
    result.unwrap_or_else(|e| {
        e.write_unraisable(py, None);
        None
    })
}

/// Appends to `out` the address of every aligned `u64` equal to `value` in
/// `[start, start + len)`, a readable region.
fn scan(start: usize, len: usize, value: u64, out: &mut Vec<usize>) {
    let first = start.next_multiple_of(8);
    let end = start + len;
    let mut a = first;
    while a + 8 <= end {
        // SAFETY: `[start, start + len)` is readable memory (a module state block or a
        // loaded PT_LOAD segment) and `a..a + 8` lies inside it, aligned.
        if unsafe { std::ptr::read_volatile(a as *const u64) } == value {
            out.push(a);
        }
        a += 8;
    }
}

/// The memory where `_asyncio` may keep its counter: its module state (3.12+), and the
/// writable segments of the shared object (or executable) that holds its code.
fn regions(module: &Bound<'_, PyModule>) -> PyResult<Vec<(usize, usize)>> {
    let mut regions = Vec::new();
    // SAFETY: `module` is a live module object; both calls only read it. PyModule_GetDef
    // returns NULL (no exception) for a module without a definition.
    unsafe {
        let def = ffi::PyModule_GetDef(module.as_ptr());
        if !def.is_null() && (*def).m_size > 0 {
            let state = ffi::PyModule_GetState(module.as_ptr());
            if !state.is_null() {
                regions.push((state as usize, (*def).m_size as usize));
            }
        }
    }
    let task = module.getattr(intern!(module.py(), "Task"))?;
    // SAFETY: `task` is a live type object (`_asyncio.Task`); its `tp_init` is a function
    // of the `_asyncio` code.
    let code = unsafe {
        let tp = task.as_ptr().cast::<ffi::PyTypeObject>();
        (*tp).tp_init.map(|f| f as usize)
    };
    if let Some(code) = code {
        regions.extend(writable_segments_containing(code));
    }
    Ok(regions)
}

/// The writable `PT_LOAD` segments of the loaded object one of whose segments contains
/// `addr`.
fn writable_segments_containing(addr: usize) -> Vec<(usize, usize)> {
    struct Search {
        addr: usize,
        found: Vec<(usize, usize)>,
    }
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut c_void,
    ) -> libc::c_int {
        // SAFETY: dl_iterate_phdr passes a valid `info` for the call and our `data`.
        let (info, search) = unsafe { (&*info, &mut *(data as *mut Search)) };
        if info.dlpi_phdr.is_null() {
            return 0;
        }
        // SAFETY: `dlpi_phdr` points at `dlpi_phnum` program headers.
        let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
        let base = info.dlpi_addr as usize;
        let contains = phdrs.iter().any(|p| {
            p.p_type == libc::PT_LOAD
                && (base + p.p_vaddr as usize..base + (p.p_vaddr + p.p_memsz) as usize)
                    .contains(&search.addr)
        });
        if !contains {
            return 0;
        }
        search.found = phdrs
            .iter()
            .filter(|p| p.p_type == libc::PT_LOAD && p.p_flags & libc::PF_W != 0)
            .map(|p| (base + p.p_vaddr as usize, p.p_memsz as usize))
            .collect();
        1
    }
    let mut search = Search {
        addr,
        found: Vec::new(),
    };
    // SAFETY: `each` only reads the headers it is given and writes `search`, which
    // outlives the call.
    unsafe {
        libc::dl_iterate_phdr(Some(each), (&mut search as *mut Search).cast());
    }
    search.found
}
