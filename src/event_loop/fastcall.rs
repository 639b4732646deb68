//! Hand-written `METH_FASTCALL | METH_KEYWORDS` entry points for the hottest loop methods.
//!
//! `call_soon` runs once per scheduled callback. PyO3's generic argument extraction
//! (a `*args` tuple plus an optional keyword) and its trampoline cost about as much as
//! the rest of the method, so the method descriptor installed on `LoopCore` for it calls
//! a [`crate::pyo::fastcall`] trampoline directly. It parses the vector of arguments
//! itself, never lets a panic unwind into CPython (a panic becomes
//! `pyo3.PanicException`), then delegates to the same Rust code as the PyO3 method.

use std::ffi::CStr;

use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::LoopCore;
use crate::pyo::fastcall::{install as install_method, VectorArgs, VectorMethod};

/// The Python signature of one of asyncio's `BaseEventLoop` methods, for argument errors
/// worded exactly as CPython words them for asyncio's pure-Python methods.
struct Signature {
    /// The `__qualname__` CPython names in its messages, e.g. `BaseEventLoop.call_soon`.
    qualname: &'static str,
    /// Positional-or-keyword parameters after `self` (all required).
    params: &'static [&'static CStr],
    /// Keyword-only parameters (all optional).
    kwonly: &'static [&'static CStr],
    /// Whether the method takes `*args` after `params`.
    varargs: bool,
}

const CALL_SOON: Signature = Signature {
    qualname: "BaseEventLoop.call_soon",
    params: &[c"callback"],
    kwonly: &[c"context"],
    varargs: true,
};
const CALL_SOON_THREADSAFE: Signature = Signature {
    qualname: "BaseEventLoop.call_soon_threadsafe",
    params: &[c"callback"],
    kwonly: &[c"context"],
    varargs: true,
};
const CALL_LATER: Signature = Signature {
    qualname: "BaseEventLoop.call_later",
    params: &[c"delay", c"callback"],
    kwonly: &[c"context"],
    varargs: true,
};
const CALL_AT: Signature = Signature {
    qualname: "BaseEventLoop.call_at",
    params: &[c"when", c"callback"],
    kwonly: &[c"context"],
    varargs: true,
};
const CREATE_TASK: Signature = Signature {
    qualname: "BaseEventLoop.create_task",
    params: &[c"coro"],
    kwonly: &[c"name", c"context"],
    varargs: false,
};

/// Arguments bound to a [`Signature`] (at most two parameters and two keyword-only ones).
struct Bound2<'py> {
    params: [Option<Bound<'py, PyAny>>; 2],
    kwonly: [Option<Bound<'py, PyAny>>; 2],
}

fn name_str(name: &CStr) -> &str {
    // The names above are ASCII literals.
    name.to_str().unwrap_or("?")
}

/// Binds the vectorcall's arguments as CPython binds a Python function's
/// (`initialize_locals`): keywords first (unexpected / duplicated), then too many
/// positionals, then missing ones, with CPython's messages.
fn bind<'py>(sig: &Signature, args: &VectorArgs<'_, 'py>) -> PyResult<Bound2<'py>> {
    let py = args.py();
    let nargs = args.nargs();
    let n_params = sig.params.len();
    let mut bound = Bound2 {
        params: [None, None],
        kwonly: [None, None],
    };
    for (i, slot) in bound
        .params
        .iter_mut()
        .enumerate()
        .take(n_params.min(nargs))
    {
        *slot = Some(args.arg(i));
    }
    let qualname = sig.qualname;
    'kw: for i in 0..args.nkw() {
        if args.kw_name_eq(i, c"self") {
            return Err(PyTypeError::new_err(format!(
                "{qualname}() got multiple values for argument 'self'"
            )));
        }
        for (j, name) in sig.params.iter().enumerate() {
            if args.kw_name_eq(i, name) {
                if bound.params[j].is_some() {
                    return Err(PyTypeError::new_err(format!(
                        "{qualname}() got multiple values for argument '{}'",
                        name_str(name)
                    )));
                }
                bound.params[j] = Some(args.kw_value(i));
                continue 'kw;
            }
        }
        for (j, name) in sig.kwonly.iter().enumerate() {
            if args.kw_name_eq(i, name) {
                bound.kwonly[j] = Some(args.kw_value(i));
                continue 'kw;
            }
        }
        let key = args.kw_name(i);
        let suggestion = suggest(py, sig, &key);
        return Err(PyTypeError::new_err(match suggestion {
            Some(s) => format!(
                "{qualname}() got an unexpected keyword argument '{key}'. Did you mean '{s}'?"
            ),
            None => format!("{qualname}() got an unexpected keyword argument '{key}'"),
        }));
    }
    if !sig.varargs && nargs > n_params {
        // CPython counts `self` among the positionals.
        let (takes, given) = (n_params + 1, nargs + 1);
        let kwonly_given = bound.kwonly.iter().flatten().count();
        let kwonly_sig = if kwonly_given > 0 {
            format!(
                " positional argument{} (and {kwonly_given} keyword-only argument{})",
                if given != 1 { "s" } else { "" },
                if kwonly_given != 1 { "s" } else { "" }
            )
        } else {
            String::new()
        };
        return Err(PyTypeError::new_err(format!(
            "{qualname}() takes {takes} positional argument{} but {given}{kwonly_sig} {} given",
            if takes != 1 { "s" } else { "" },
            if given == 1 && kwonly_given == 0 {
                "was"
            } else {
                "were"
            }
        )));
    }
    let missing: Vec<String> = sig
        .params
        .iter()
        .zip(&bound.params)
        .filter(|(_, v)| v.is_none())
        .map(|(name, _)| format!("'{}'", name_str(name)))
        .collect();
    if !missing.is_empty() {
        let list = match missing.as_slice() {
            [one] => one.clone(),
            [a, b] => format!("{a} and {b}"),
            [init @ .., last] => format!("{}, and {last}", init.join(", ")),
            [] => String::new(),
        };
        return Err(PyTypeError::new_err(format!(
            "{qualname}() missing {} required positional argument{}: {list}",
            missing.len(),
            if missing.len() == 1 { "" } else { "s" },
        )));
    }
    Ok(bound)
}

/// The "Did you mean" suggestion CPython 3.13+ adds to an unexpected keyword argument: the
/// nearest of `self`, the parameters and the keyword-only parameters, computed by the
/// interpreter's own `_suggestions` module.
#[cfg(Py_3_13)]
fn suggest(py: Python<'_>, sig: &Signature, key: &Bound<'_, PyAny>) -> Option<String> {
    let candidates: Vec<&str> = std::iter::once("self")
        .chain(sig.params.iter().chain(sig.kwonly).map(|n| name_str(n)))
        .collect();
    let found = py
        .import(intern!(py, "_suggestions"))
        .and_then(|m| m.call_method1(intern!(py, "_generate_suggestions"), (candidates, key)))
        .ok()?;
    if found.is_none() {
        return None;
    }
    found.extract::<String>().ok()
}

#[cfg(not(Py_3_13))]
fn suggest(_py: Python<'_>, _sig: &Signature, _key: &Bound<'_, PyAny>) -> Option<String> {
    None
}

/// Arguments parsed from a `(fixed..., *args, context=None)` vectorcall.
struct Parsed<'py> {
    fixed: [Option<Bound<'py, PyAny>>; 2],
    rest: Bound<'py, PyTuple>,
    context: Option<Bound<'py, PyAny>>,
}

/// Parses `sig.params.len()` required positionals, then `*args`, then an optional
/// `context=`. The common shapes (every parameter positional, at most `context=` as a
/// keyword) take the fast path; anything else is bound by [`bind`].
#[inline]
fn parse<'py>(sig: &Signature, args: &VectorArgs<'_, 'py>) -> PyResult<Parsed<'py>> {
    let py = args.py();
    let n_fixed = sig.params.len();
    let nargs = args.nargs();
    let nkw = args.nkw();
    let fast = nargs >= n_fixed
        && (nkw == 0 || (nkw == 1 && args.kw_name_is(0, intern!(py, "context"), c"context")));
    if !fast {
        let bound = bind(sig, args)?;
        let [context, _] = bound.kwonly;
        return Ok(Parsed {
            fixed: bound.params,
            rest: args.rest(n_fixed)?,
            context,
        });
    }
    let mut fixed = [None, None];
    for (i, slot) in fixed.iter_mut().enumerate().take(n_fixed) {
        *slot = Some(args.arg(i));
    }
    Ok(Parsed {
        fixed,
        rest: args.rest(n_fixed)?,
        context: (nkw == 1).then(|| args.kw_value(0)),
    })
}

fn first<'py>(p: &mut Parsed<'py>, i: usize) -> PyResult<Bound<'py, PyAny>> {
    // parse() filled every fixed slot or raised.
    p.fixed[i]
        .take()
        .ok_or_else(|| PyTypeError::new_err("missing positional argument"))
}

struct CallSoon;
impl VectorMethod for CallSoon {
    type Recv = LoopCore;
    #[inline]
    fn call<'py>(slf: &Bound<'py, LoopCore>, args: VectorArgs<'_, 'py>) -> PyResult<Py<PyAny>> {
        let mut p = parse(&CALL_SOON, &args)?;
        let cb = first(&mut p, 0)?;
        Ok(LoopCore::call_soon(slf, cb, p.rest, p.context)?.into_any())
    }
}

struct CallSoonThreadsafe;
impl VectorMethod for CallSoonThreadsafe {
    type Recv = LoopCore;
    #[inline]
    fn call<'py>(slf: &Bound<'py, LoopCore>, args: VectorArgs<'_, 'py>) -> PyResult<Py<PyAny>> {
        let mut p = parse(&CALL_SOON_THREADSAFE, &args)?;
        let cb = first(&mut p, 0)?;
        Ok(LoopCore::call_soon_threadsafe(slf, cb, p.rest, p.context)?.into_any())
    }
}

struct CallLater;
impl VectorMethod for CallLater {
    type Recv = LoopCore;
    #[inline]
    fn call<'py>(slf: &Bound<'py, LoopCore>, args: VectorArgs<'_, 'py>) -> PyResult<Py<PyAny>> {
        let mut p = parse(&CALL_LATER, &args)?;
        let (delay, cb) = (first(&mut p, 0)?, first(&mut p, 1)?);
        Ok(LoopCore::call_later(slf, &delay, cb, p.rest, p.context)?.into_any())
    }
}

struct CallAt;
impl VectorMethod for CallAt {
    type Recv = LoopCore;
    #[inline]
    fn call<'py>(slf: &Bound<'py, LoopCore>, args: VectorArgs<'_, 'py>) -> PyResult<Py<PyAny>> {
        let mut p = parse(&CALL_AT, &args)?;
        let (when, cb) = (first(&mut p, 0)?, first(&mut p, 1)?);
        Ok(LoopCore::call_at(slf, &when, cb, p.rest, p.context)?.into_any())
    }
}

/// `create_task(coro, *, name=None, context=None)`: once per task, so it skips PyO3's
/// generic keyword extraction too.
struct CreateTask;
impl VectorMethod for CreateTask {
    type Recv = LoopCore;
    fn call<'py>(slf: &Bound<'py, LoopCore>, args: VectorArgs<'_, 'py>) -> PyResult<Py<PyAny>> {
        let bound = bind(&CREATE_TASK, &args)?;
        let [coro, _] = &bound.params;
        let [name, context] = &bound.kwonly;
        let coro = coro
            .as_ref()
            .ok_or_else(|| PyTypeError::new_err("missing positional argument"))?;
        LoopCore::create_task(slf, coro, name.as_ref(), context.as_ref())
    }
}

/// Replaces the PyO3-generated methods of `LoopCore` that run once per callback or task
/// (`call_soon`, `call_soon_threadsafe`, `call_later`, `call_at`, `create_task`) with the
/// fast entry points.
pub fn install(py: Python<'_>) -> PyResult<()> {
    install_method::<CallSoon>(
        py,
        c"call_soon",
        c"call_soon($self, callback, *args, context=None)\n--\n\nSchedule callback(*args) for the next loop iteration.",
    )?;
    install_method::<CallSoonThreadsafe>(
        py,
        c"call_soon_threadsafe",
        c"call_soon_threadsafe($self, callback, *args, context=None)\n--\n\nLike call_soon(), callable from any thread; wakes the loop.",
    )?;
    install_method::<CallLater>(
        py,
        c"call_later",
        c"call_later($self, delay, callback, *args, context=None)\n--\n\nSchedule callback(*args) to run delay seconds from now.",
    )?;
    install_method::<CreateTask>(
        py,
        c"create_task",
        c"create_task($self, coro, *, name=None, context=None)\n--\n\nSchedule the execution of a coroutine object in a task; return the task.",
    )?;
    install_method::<CallAt>(
        py,
        c"call_at",
        c"call_at($self, when, callback, *args, context=None)\n--\n\nSchedule callback(*args) at loop time when.",
    )?;
    super::sock::install_fast_methods(py)
}
