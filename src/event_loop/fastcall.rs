//! Hand-written `METH_FASTCALL | METH_KEYWORDS` entry points for the hottest loop methods.
//!
//! `call_soon` runs once per scheduled callback. PyO3's generic argument extraction
//! (a `*args` tuple plus an optional keyword) and its trampoline cost about as much as
//! the rest of the method, so the method descriptor installed on `LoopCore` for it calls
//! a [`crate::pyo::fastcall`] trampoline directly. It parses the vector of arguments
//! itself, never lets a panic unwind into CPython (a panic becomes
//! `pyo3.PanicException`), then delegates to the same Rust code as the PyO3 method.

use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::LoopCore;
use crate::pyo::fastcall::{install as install_method, VectorArgs, VectorMethod};

/// Arguments parsed from a `(fixed..., *args, context=None)` vectorcall.
struct Parsed<'py> {
    fixed: [Option<Bound<'py, PyAny>>; 2],
    rest: Bound<'py, PyTuple>,
    context: Option<Bound<'py, PyAny>>,
}

/// Parses `fixed_names.len()` required positionals, then `*args`, then an optional
/// `context=`.
#[inline]
fn parse<'py>(
    name: &str,
    fixed_names: &[&str],
    args: &VectorArgs<'_, 'py>,
) -> PyResult<Parsed<'py>> {
    let py = args.py();
    let n_fixed = fixed_names.len();
    let nargs = args.nargs();
    if nargs < n_fixed {
        let missing = &fixed_names[nargs..];
        return Err(PyTypeError::new_err(format!(
            "{name}() missing {} required positional argument{}: {}",
            missing.len(),
            if missing.len() == 1 { "" } else { "s" },
            missing
                .iter()
                .map(|m| format!("'{m}'"))
                .collect::<Vec<_>>()
                .join(" and ")
        )));
    }
    let mut fixed = [None, None];
    for (i, slot) in fixed.iter_mut().enumerate().take(n_fixed) {
        *slot = Some(args.arg(i));
    }
    let mut context = None;
    let nkw = args.nkw();
    if nkw > 0 {
        let context_name = intern!(py, "context");
        for i in 0..nkw {
            if !args.kw_name_is(i, context_name, c"context") {
                let key = args.kw_name(i);
                return Err(PyTypeError::new_err(format!(
                    "{name}() got an unexpected keyword argument '{key}'"
                )));
            }
            context = Some(args.kw_value(i));
        }
    }
    Ok(Parsed {
        fixed,
        rest: args.rest(n_fixed)?,
        context,
    })
}

fn first<'py>(p: &mut Parsed<'py>, i: usize) -> Bound<'py, PyAny> {
    // parse() filled every fixed slot it was asked for.
    p.fixed[i].take().expect("parsed positional argument")
}

struct CallSoon;
impl VectorMethod for CallSoon {
    type Recv = LoopCore;
    #[inline]
    fn call<'py>(slf: &Bound<'py, LoopCore>, args: VectorArgs<'_, 'py>) -> PyResult<Py<PyAny>> {
        let mut p = parse("call_soon", &["callback"], &args)?;
        let cb = first(&mut p, 0);
        Ok(LoopCore::call_soon(slf, cb, p.rest, p.context)?.into_any())
    }
}

struct CallSoonThreadsafe;
impl VectorMethod for CallSoonThreadsafe {
    type Recv = LoopCore;
    #[inline]
    fn call<'py>(slf: &Bound<'py, LoopCore>, args: VectorArgs<'_, 'py>) -> PyResult<Py<PyAny>> {
        let mut p = parse("call_soon_threadsafe", &["callback"], &args)?;
        let cb = first(&mut p, 0);
        Ok(LoopCore::call_soon_threadsafe(slf, cb, p.rest, p.context)?.into_any())
    }
}

struct CallLater;
impl VectorMethod for CallLater {
    type Recv = LoopCore;
    #[inline]
    fn call<'py>(slf: &Bound<'py, LoopCore>, args: VectorArgs<'_, 'py>) -> PyResult<Py<PyAny>> {
        let mut p = parse("call_later", &["delay", "callback"], &args)?;
        let (delay, cb) = (first(&mut p, 0), first(&mut p, 1));
        Ok(LoopCore::call_later(slf, &delay, cb, p.rest, p.context)?.into_any())
    }
}

struct CallAt;
impl VectorMethod for CallAt {
    type Recv = LoopCore;
    #[inline]
    fn call<'py>(slf: &Bound<'py, LoopCore>, args: VectorArgs<'_, 'py>) -> PyResult<Py<PyAny>> {
        let mut p = parse("call_at", &["when", "callback"], &args)?;
        let (when, cb) = (first(&mut p, 0), first(&mut p, 1));
        Ok(LoopCore::call_at(slf, &when, cb, p.rest, p.context)?.into_any())
    }
}

/// `create_task(coro, *, name=None, context=None)`: once per task, so it skips PyO3's
/// generic keyword extraction too.
struct CreateTask;
impl VectorMethod for CreateTask {
    type Recv = LoopCore;
    fn call<'py>(slf: &Bound<'py, LoopCore>, args: VectorArgs<'_, 'py>) -> PyResult<Py<PyAny>> {
        let nargs = args.nargs();
        if nargs > 1 {
            return Err(PyTypeError::new_err(format!(
                "create_task() takes 1 positional argument but {nargs} were given"
            )));
        }
        let (mut coro, mut name, mut context) = ((nargs == 1).then(|| args.arg(0)), None, None);
        for i in 0..args.nkw() {
            let key = args.kw_name(i);
            let slot = match key.cast::<pyo3::types::PyString>()?.to_str()? {
                "name" => &mut name,
                "context" => &mut context,
                "coro" if coro.is_none() => &mut coro,
                "coro" => {
                    return Err(PyTypeError::new_err(
                        "create_task() got multiple values for argument 'coro'",
                    ))
                }
                other => {
                    return Err(PyTypeError::new_err(format!(
                        "create_task() got an unexpected keyword argument '{other}'"
                    )))
                }
            };
            *slot = Some(args.kw_value(i));
        }
        let coro = coro.ok_or_else(|| {
            PyTypeError::new_err("create_task() missing 1 required positional argument: 'coro'")
        })?;
        LoopCore::create_task(slf, &coro, name.as_ref(), context.as_ref())
    }
}

/// Replaces the PyO3-generated methods of `LoopCore` that run once per callback or task
/// (`call_soon`, `call_soon_threadsafe`, `call_later`, `call_at`, `create_task`) with the
/// fast entry points.
pub fn install(py: Python<'_>) -> PyResult<()> {
    install_method::<CallSoon>(
        py,
        c"call_soon",
        c"call_soon(callback, *args, context=None)\n--\n\nSchedule callback(*args) for the next loop iteration.",
    )?;
    install_method::<CallSoonThreadsafe>(
        py,
        c"call_soon_threadsafe",
        c"call_soon_threadsafe(callback, *args, context=None)\n--\n\nLike call_soon(), callable from any thread; wakes the loop.",
    )?;
    install_method::<CallLater>(
        py,
        c"call_later",
        c"call_later(delay, callback, *args, context=None)\n--\n\nSchedule callback(*args) to run delay seconds from now.",
    )?;
    install_method::<CreateTask>(
        py,
        c"create_task",
        c"create_task(coro, *, name=None, context=None)\n--\n\nSchedule the execution of a coroutine object in a task; return the task.",
    )?;
    install_method::<CallAt>(
        py,
        c"call_at",
        c"call_at(when, callback, *args, context=None)\n--\n\nSchedule callback(*args) at loop time when.",
    )
}
