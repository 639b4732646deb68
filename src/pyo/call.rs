//! Calls through vectorcall: no argument tuple or keyword dict built.

use std::ptr;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};

use super::exc::{fetch_exc, take};

use super::context::with_context;
use super::gil_cell::assert_no_access_open;

/// `func(*argv)` through vectorcall (no argument tuple), discarding the result.
#[inline(always)]
pub fn vectorcall(
    py: Python<'_>,
    func: &Bound<'_, PyAny>,
    argv: &[*mut ffi::PyObject],
) -> PyResult<()> {
    assert_no_access_open("a call into Python");
    // SAFETY: `argv` holds borrowed references the caller keeps alive for the call; the
    // result is a new reference (released here) or NULL with an exception set.
    unsafe {
        let res = ffi::PyObject_Vectorcall(
            func.as_ptr(),
            argv.as_ptr(),
            argv.len(),
            std::ptr::null_mut(),
        );
        if res.is_null() {
            return Err(PyErr::fetch(py));
        }
        ffi::Py_DECREF(res);
    }
    Ok(())
}

/// Calls `func(*args)` inside `ctx`, as `ctx.run(func, *args)` would, without building
/// an argument vector for `Context.run`.
#[inline]
pub fn call_in_context(
    py: Python<'_>,
    ctx: &Bound<'_, PyAny>,
    func: &Bound<'_, PyAny>,
    args: &Bound<'_, PyTuple>,
) -> PyResult<()> {
    assert_no_access_open("a call into Python");
    // SAFETY: `args` is a live tuple (the macro reads its size field).
    let no_args = unsafe { ffi::PyTuple_GET_SIZE(args.as_ptr()) } == 0;
    with_context(py, ctx, || {
        if no_args {
            return vectorcall(py, func, &[]);
        }
        // SAFETY: `func` and `args` are live; a NULL result means an exception is set.
        unsafe {
            let res = ffi::PyObject_Call(func.as_ptr(), args.as_ptr(), std::ptr::null_mut());
            if res.is_null() {
                return Err(PyErr::fetch(py));
            }
            ffi::Py_DECREF(res);
        }
        Ok(())
    })
}

/// `callable(*args)` through vectorcall (no argument tuple built).
pub fn vcall<'py>(
    callable: &Bound<'py, PyAny>,
    args: &[*mut ffi::PyObject],
) -> PyResult<Bound<'py, PyAny>> {
    assert_no_access_open("a call into Python");
    // SAFETY: `args` are borrowed references kept alive by the caller for the call; a new
    // reference or NULL with an exception set is returned.
    unsafe {
        Bound::from_owned_ptr_or_err(
            callable.py(),
            ffi::PyObject_Vectorcall(
                callable.as_ptr(),
                args.as_ptr(),
                args.len(),
                ptr::null_mut(),
            ),
        )
    }
}

/// How a `send()` into a generator or coroutine ended.
pub enum Sent<'py> {
    /// It returned (`StopIteration(value)`).
    Return(Bound<'py, PyAny>),
    /// It yielded.
    Yield(Bound<'py, PyAny>),
    /// It raised (the exception object, taken out of the error indicator).
    Raise(Bound<'py, PyAny>),
}

/// `coro.send(None)` through `PyIter_Send` (no `StopIteration` created for a return).
#[inline]
pub fn send_none<'py>(coro: &Bound<'py, PyAny>) -> Sent<'py> {
    assert_no_access_open("a call into Python");
    let py = coro.py();
    let mut res = ptr::null_mut();
    // SAFETY: `coro` is live; PyIter_Send stores a new reference in `res` (result or return
    // value) or returns PYGEN_ERROR with an exception set.
    let status = unsafe { ffi::PyIter_Send(coro.as_ptr(), ffi::Py_None(), &mut res) };
    match status {
        // SAFETY: `res` is a new reference in both cases.
        ffi::PySendResult::PYGEN_RETURN => Sent::Return(unsafe { Bound::from_owned_ptr(py, res) }),
        // SAFETY: as above.
        ffi::PySendResult::PYGEN_NEXT => Sent::Yield(unsafe { Bound::from_owned_ptr(py, res) }),
        ffi::PySendResult::PYGEN_ERROR => Sent::Raise(fetch_exc(py)),
    }
}

/// `obj.name()`; an exception is returned as an object (see [`fetch_exc`]).
#[inline]
pub fn call_method0_raw<'py>(
    obj: &Bound<'py, PyAny>,
    name: &Bound<'py, PyString>,
) -> Result<Bound<'py, PyAny>, Bound<'py, PyAny>> {
    assert_no_access_open("a call into Python");
    // SAFETY: live arguments; returns a new reference or NULL with an exception set.
    unsafe {
        take(
            obj.py(),
            ffi::PyObject_CallMethodNoArgs(obj.as_ptr(), name.as_ptr()),
        )
    }
}

/// `obj.name(arg)`; an exception is returned as an object (see [`fetch_exc`]).
#[inline]
pub fn call_method1_raw<'py>(
    obj: &Bound<'py, PyAny>,
    name: &Bound<'py, PyString>,
    arg: &Bound<'py, PyAny>,
) -> Result<Bound<'py, PyAny>, Bound<'py, PyAny>> {
    assert_no_access_open("a call into Python");
    // SAFETY: live arguments; returns a new reference or NULL with an exception set.
    unsafe {
        take(
            obj.py(),
            ffi::PyObject_CallMethodOneArg(obj.as_ptr(), name.as_ptr(), arg.as_ptr()),
        )
    }
}

/// The most arguments [`call_method_kw`] passes (self included).
const MAX_METHOD_ARGS: usize = 6;

/// `obj.name(*args, **dict(zip(kwnames, kwargs)))` through vectorcall: no argument tuple
/// or keyword dict built. At most `MAX_METHOD_ARGS` (6) arguments in all, counting `obj`.
pub fn call_method_kw<'py>(
    obj: &Bound<'py, PyAny>,
    name: &Bound<'py, PyString>,
    args: &[&Bound<'py, PyAny>],
    kwnames: &Bound<'py, PyTuple>,
    kwargs: &[&Bound<'py, PyAny>],
) -> PyResult<Bound<'py, PyAny>> {
    assert_no_access_open("a call into Python");
    let py = obj.py();
    let n = 1 + args.len() + kwargs.len();
    if n > MAX_METHOD_ARGS || kwnames.len() != kwargs.len() {
        return Err(pyo3::exceptions::PySystemError::new_err(
            "call_method_kw: bad argument count",
        ));
    }
    let mut argv = [ptr::null_mut(); MAX_METHOD_ARGS];
    argv[0] = obj.as_ptr();
    for (slot, a) in argv[1..].iter_mut().zip(args.iter().chain(kwargs)) {
        *slot = a.as_ptr();
    }
    // SAFETY: every pointer in `argv[..n]` is a borrowed reference the caller keeps alive
    // for the call; the vector holds `1 + args.len()` positionals (self first) then one
    // value per name in `kwnames`. Returns a new reference or NULL with an exception set.
    unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyObject_VectorcallMethod(
                name.as_ptr(),
                argv.as_ptr(),
                1 + args.len(),
                kwnames.as_ptr(),
            ),
        )
    }
}
