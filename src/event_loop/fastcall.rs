//! Hand-written `METH_FASTCALL | METH_KEYWORDS` entry points for the hottest loop methods.
//!
//! `call_soon` runs once per scheduled callback. PyO3's generic argument extraction
//! (a `*args` tuple plus an optional keyword) and its trampoline cost about as much as
//! the rest of the method, so the method descriptor installed on `LoopCore` for it calls
//! this function directly. It parses the vector of arguments itself, never lets a panic
//! unwind into CPython (a panic becomes `pyo3.PanicException`), then delegates to the
//! same Rust code as the PyO3 method.

use std::ffi::{c_int, CStr};

use pyo3::exceptions::{PyBaseException, PyTypeError};
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyTuple, PyType};

use super::LoopCore;
use crate::pyo::panic::guard_obj;

/// Arguments parsed from a `(fixed..., *args, context=None)` vectorcall.
struct Parsed<'py> {
    fixed: [Option<Bound<'py, PyAny>>; 2],
    rest: Bound<'py, PyTuple>,
    context: Option<Bound<'py, PyAny>>,
}

/// Parses `n_fixed` required positionals, then `*args`, then an optional `context=`.
///
/// # Safety
/// `args[..nargs + len(kwnames)]` and `kwnames` must be the live arguments CPython passes
/// to a `METH_FASTCALL | METH_KEYWORDS` method, and the thread must be attached.
unsafe fn parse<'py>(
    py: Python<'py>,
    name: &str,
    fixed_names: &[&str],
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<Parsed<'py>> {
    let n_fixed = fixed_names.len();
    if (nargs as usize) < n_fixed {
        let missing = &fixed_names[nargs as usize..];
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
    // SAFETY: guaranteed by the caller; every pointer is a borrowed reference that stays
    // valid for the duration of the call.
    unsafe {
        let mut fixed = [None, None];
        for (i, slot) in fixed.iter_mut().enumerate().take(n_fixed) {
            *slot = Some(Bound::from_borrowed_ptr(py, *args.add(i)));
        }
        let mut context = None;
        if !kwnames.is_null() {
            let context_name = intern!(py, "context").as_ptr();
            for i in 0..ffi::PyTuple_GET_SIZE(kwnames) {
                let key = ffi::PyTuple_GET_ITEM(kwnames, i);
                // Keyword names are interned by CPython: the pointer test is the fast path.
                if key != context_name
                    && ffi::PyUnicode_CompareWithASCIIString(key, c"context".as_ptr()) != 0
                {
                    let key = Bound::from_borrowed_ptr(py, key);
                    return Err(PyTypeError::new_err(format!(
                        "{name}() got an unexpected keyword argument '{key}'"
                    )));
                }
                context = Some(Bound::from_borrowed_ptr(py, *args.offset(nargs + i)));
            }
        }
        let n_rest = nargs as usize - n_fixed;
        let rest = if n_rest == 0 {
            PyTuple::empty(py)
        } else {
            let tuple = Bound::from_owned_ptr_or_err(py, ffi::PyTuple_New(n_rest as isize))?;
            for j in 0..n_rest {
                let item = *args.add(n_fixed + j);
                ffi::Py_INCREF(item);
                // Steals the new reference; the tuple is fresh and `j` in range.
                ffi::PyTuple_SET_ITEM(tuple.as_ptr(), j as isize, item);
            }
            tuple.cast_into_unchecked::<PyTuple>()
        };
        Ok(Parsed {
            fixed,
            rest,
            context,
        })
    }
}

/// Defines a `METH_FASTCALL | METH_KEYWORDS` function that parses its arguments with
/// [`parse`] and hands them to `$body`.
macro_rules! fast_method {
    ($fn_name:ident, $py_name:literal, [$($fixed:literal),+], $body:expr) => {
        unsafe extern "C" fn $fn_name(
            slf: *mut ffi::PyObject,
            args: *const *mut ffi::PyObject,
            nargs: ffi::Py_ssize_t,
            kwnames: *mut ffi::PyObject,
        ) -> *mut ffi::PyObject {
            // SAFETY: CPython calls methods with the thread attached.
            let py = unsafe { Python::assume_attached() };
            guard_obj(py, || {
                // SAFETY: the method descriptor checked that `slf` is a LoopCore; the
                // arguments are forwarded verbatim from CPython's vectorcall.
                let slf = unsafe { Bound::from_borrowed_ptr(py, slf) };
                let slf = unsafe { slf.cast_unchecked::<LoopCore>() };
                let parsed = unsafe { parse(py, $py_name, &[$($fixed),+], args, nargs, kwnames)? };
                let body: for<'a, 'py> fn(&'a Bound<'py, LoopCore>, Parsed<'py>) -> PyResult<Py<PyAny>> = $body;
                body(slf, parsed)
            })
        }
    };
}

fn first<'py>(p: &mut Parsed<'py>, i: usize) -> Bound<'py, PyAny> {
    // parse() filled every fixed slot it was asked for.
    p.fixed[i].take().expect("parsed positional argument")
}

fast_method!(call_soon, "call_soon", ["callback"], |slf, mut p| {
    let cb = first(&mut p, 0);
    Ok(LoopCore::call_soon(slf, cb, p.rest, p.context)?.into_any())
});

fast_method!(
    call_soon_threadsafe,
    "call_soon_threadsafe",
    ["callback"],
    |slf, mut p| {
        let cb = first(&mut p, 0);
        Ok(LoopCore::call_soon_threadsafe(slf, cb, p.rest, p.context)?.into_any())
    }
);

fast_method!(
    call_later,
    "call_later",
    ["delay", "callback"],
    |slf, mut p| {
        let (delay, cb) = (first(&mut p, 0), first(&mut p, 1));
        Ok(LoopCore::call_later(slf, &delay, cb, p.rest, p.context)?.into_any())
    }
);

fast_method!(call_at, "call_at", ["when", "callback"], |slf, mut p| {
    let (when, cb) = (first(&mut p, 0), first(&mut p, 1));
    Ok(LoopCore::call_at(slf, &when, cb, p.rest, p.context)?.into_any())
});

/// `create_task(coro, *, name=None, context=None)`: once per task, so it skips PyO3's
/// generic keyword extraction too.
unsafe extern "C" fn create_task(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls methods with the thread attached.
    let py = unsafe { Python::assume_attached() };
    guard_obj(py, || {
        // SAFETY: the method descriptor checked that `slf` is a LoopCore; `args` holds
        // `nargs` positionals then one value per name in `kwnames`, all borrowed for the
        // call.
        let (slf, mut coro, mut name, mut context) = unsafe {
            let slf = Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<LoopCore>();
            if nargs > 1 {
                return Err(PyTypeError::new_err(format!(
                    "create_task() takes 1 positional argument but {nargs} were given"
                )));
            }
            let coro = (nargs == 1).then(|| Bound::from_borrowed_ptr(py, *args));
            (slf, coro, None, None)
        };
        if !kwnames.is_null() {
            // SAFETY: as above; `kwnames` is a tuple of str.
            let kwnames = unsafe { Bound::from_borrowed_ptr(py, kwnames) };
            for (i, key) in kwnames.try_iter()?.enumerate() {
                // SAFETY: as above; the value for keyword `i` follows the positionals.
                let value =
                    unsafe { Bound::from_borrowed_ptr(py, *args.offset(nargs + i as isize)) };
                let key = key?;
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
                *slot = Some(value);
            }
        }
        let coro = coro.ok_or_else(|| {
            PyTypeError::new_err("create_task() missing 1 required positional argument: 'coro'")
        })?;
        LoopCore::create_task(&slf, &coro, name.as_ref(), context.as_ref())
    })
}

fn install_one(
    ty: &Bound<'_, PyType>,
    name: &'static CStr,
    doc: &'static CStr,
    func: ffi::PyCFunctionFastWithKeywords,
) -> PyResult<()> {
    let py = ty.py();
    // The definition must outlive the type: leak it (a few dozen bytes, once per process
    // and method).
    let def: &'static mut ffi::PyMethodDef = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: func,
        },
        ml_flags: (ffi::METH_FASTCALL | ffi::METH_KEYWORDS) as c_int,
        ml_doc: doc.as_ptr(),
    }));
    // SAFETY: `ty` is a live type object and `def` lives forever; PyDescr_NewMethod returns
    // a new reference or NULL with an exception set.
    let descr =
        unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(ty.as_type_ptr(), def)) }?;
    ty.setattr(
        name.to_str()
            .map_err(|e| PyBaseException::new_err(e.to_string()))?,
        descr,
    )
}

/// Replaces the PyO3-generated methods of `LoopCore` that run once per callback or task
/// (`call_soon`, `call_soon_threadsafe`, `call_later`, `call_at`, `create_task`) with the
/// fast entry points.
pub fn install(ty: &Bound<'_, PyType>) -> PyResult<()> {
    install_one(
        ty,
        c"call_soon",
        c"call_soon(callback, *args, context=None)\n--\n\nSchedule callback(*args) for the next loop iteration.",
        call_soon,
    )?;
    install_one(
        ty,
        c"call_soon_threadsafe",
        c"call_soon_threadsafe(callback, *args, context=None)\n--\n\nLike call_soon(), callable from any thread; wakes the loop.",
        call_soon_threadsafe,
    )?;
    install_one(
        ty,
        c"call_later",
        c"call_later(delay, callback, *args, context=None)\n--\n\nSchedule callback(*args) to run delay seconds from now.",
        call_later,
    )?;
    install_one(
        ty,
        c"create_task",
        c"create_task(coro, *, name=None, context=None)\n--\n\nSchedule the execution of a coroutine object in a task; return the task.",
        create_task,
    )?;
    install_one(
        ty,
        c"call_at",
        c"call_at(when, callback, *args, context=None)\n--\n\nSchedule callback(*args) at loop time when.",
        call_at,
    )
}
