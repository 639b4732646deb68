//! Argument parsing with the error messages of CPython's Argument Clinic
//! (`_PyArg_UnpackKeywords` in `Python/getargs.c`), which the C `_asyncio.Future` and
//! `_asyncio.Task` methods use: a misused `ferroloop.Future`/`Task` method raises the
//! `TypeError` an `asyncio.Future`/`Task` method raises, message included, per version
//! (3.13 says "got an unexpected keyword argument" and suggests a close keyword; 3.11 and
//! 3.12 say "is an invalid keyword argument for").

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use super::eager;

/// A clinic signature: `posonly` positional-only parameters, then the named ones
/// (`keywords`: positional-or-keyword first, then keyword-only). The first `minpos`
/// parameters are required; at most `maxpos` may be given by position.
pub(crate) struct Signature {
    pub fname: &'static str,
    pub posonly: usize,
    pub keywords: &'static [&'static str],
    pub minpos: usize,
    pub maxpos: usize,
}

/// Keyword arguments as `(name, value)` pairs, in the order given (a name may be any
/// object when it comes from a `**kwargs` dict).
pub(crate) type Keywords<'py> = Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>;

/// The keyword arguments of a `tp_init` call.
pub(crate) fn from_dict<'py>(kwargs: Option<&Bound<'py, PyDict>>) -> Keywords<'py> {
    kwargs.map_or_else(Vec::new, |d| d.iter().collect())
}

/// The keyword arguments of a vectorcall.
pub(crate) fn from_kwnames<'py>(
    kw: Vec<(Bound<'py, PyString>, Bound<'py, PyAny>)>,
) -> Keywords<'py> {
    kw.into_iter().map(|(k, v)| (k.into_any(), v)).collect()
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn type_error(py: Python<'_>, msg: String) -> PyErr {
    eager::<PyTypeError>(py, msg)
}

fn find<'a, 'py>(kw: &'a Keywords<'py>, name: &str) -> PyResult<Option<&'a Bound<'py, PyAny>>> {
    for (k, v) in kw {
        if let Ok(k) = k.cast::<PyString>() {
            if k.to_str()? == name {
                return Ok(Some(v));
            }
        }
    }
    Ok(None)
}

/// Binds `pos` and `kw` to `sig`'s parameters (one slot per parameter, `None` when not
/// given), raising the clinic's `TypeError` on a mismatch.
pub(crate) fn unpack<'py>(
    py: Python<'py>,
    sig: &Signature,
    pos: &[Bound<'py, PyAny>],
    kw: &Keywords<'py>,
) -> PyResult<Vec<Option<Bound<'py, PyAny>>>> {
    let f = sig.fname;
    let nargs = pos.len();
    let maxargs = sig.posonly + sig.keywords.len();
    let minposonly = sig.posonly.min(sig.minpos);
    let mut buf: Vec<Option<Bound<'py, PyAny>>> = vec![None; maxargs];
    if kw.is_empty() && sig.minpos <= nargs && nargs <= sig.maxpos {
        for (slot, a) in buf.iter_mut().zip(pos) {
            *slot = Some(a.clone());
        }
        return Ok(buf);
    }
    if nargs + kw.len() > maxargs {
        return Err(type_error(
            py,
            format!(
                "{f}() takes at most {maxargs} {}argument{} ({} given)",
                if nargs == 0 { "keyword " } else { "" },
                plural(maxargs),
                nargs + kw.len()
            ),
        ));
    }
    if nargs > sig.maxpos {
        let msg = if sig.maxpos == 0 {
            format!("{f}() takes no positional arguments")
        } else {
            format!(
                "{f}() takes {} {} positional argument{} ({nargs} given)",
                if sig.minpos < sig.maxpos {
                    "at most"
                } else {
                    "exactly"
                },
                sig.maxpos,
                plural(sig.maxpos)
            )
        };
        return Err(type_error(py, msg));
    }
    if nargs < minposonly {
        return Err(type_error(
            py,
            format!(
                "{f}() takes {} {minposonly} positional argument{} ({nargs} given)",
                if minposonly < sig.maxpos {
                    "at least"
                } else {
                    "exactly"
                },
                plural(minposonly)
            ),
        ));
    }
    for (slot, a) in buf.iter_mut().zip(pos) {
        *slot = Some(a.clone());
    }
    let mut remaining = kw.len();
    let first = nargs.max(sig.posonly);
    for (i, slot) in buf.iter_mut().enumerate().skip(first) {
        let name = sig.keywords[i - sig.posonly];
        let current = if remaining > 0 {
            find(kw, name)?
        } else if i >= sig.minpos {
            break;
        } else {
            None
        };
        match current {
            Some(v) => {
                *slot = Some(v.clone());
                remaining -= 1;
            }
            None if i < sig.minpos => {
                return Err(type_error(
                    py,
                    format!("{f}() missing required argument '{name}' (pos {})", i + 1),
                ));
            }
            None => {}
        }
    }
    if remaining > 0 {
        for i in sig.posonly..nargs {
            let name = sig.keywords[i - sig.posonly];
            if find(kw, name)?.is_some() {
                return Err(type_error(
                    py,
                    format!(
                        "argument for {f}() given by name ('{name}') and position ({})",
                        i + 1
                    ),
                ));
            }
        }
        return Err(unexpected_keyword(py, sig, kw));
    }
    Ok(buf)
}

/// `error_unexpected_keyword_arg` of `getargs.c`.
fn unexpected_keyword(py: Python<'_>, sig: &Signature, kw: &Keywords<'_>) -> PyErr {
    let f = sig.fname;
    for (k, _) in kw {
        let Ok(k) = k.cast::<PyString>() else {
            return type_error(py, "keywords must be strings".into());
        };
        let name = match k.to_str() {
            Ok(n) => n,
            Err(e) => return e,
        };
        if sig.keywords.contains(&name) {
            continue;
        }
        if py.version_info() < (3, 13) {
            return type_error(
                py,
                format!("'{name}' is an invalid keyword argument for {f}()"),
            );
        }
        return type_error(
            py,
            match suggestion(name, sig.keywords) {
                Some(s) => format!(
                    "{f}() got an unexpected keyword argument '{name}'. Did you mean '{s}'?"
                ),
                None => format!("{f}() got an unexpected keyword argument '{name}'"),
            },
        );
    }
    type_error(py, format!("invalid keyword argument for {f}()"))
}

/// `{fname}() takes no arguments`: the clinic's check for a method that takes nothing but
/// its defining class (3.12+).
pub(crate) fn no_arguments(
    py: Python<'_>,
    fname: &str,
    pos: &[Bound<'_, PyAny>],
    kw: &[(Bound<'_, PyString>, Bound<'_, PyAny>)],
) -> PyResult<()> {
    // Before 3.13 the clinic's check ignores keyword arguments (3.12's C methods accept
    // and drop them).
    if pos.is_empty() && (kw.is_empty() || py.version_info() < (3, 13)) {
        return Ok(());
    }
    Err(type_error(py, format!("{fname}() takes no arguments")))
}

/// `_PyArg_CheckPositional(name, nargs, min, max)`.
pub(crate) fn check_positional(
    py: Python<'_>,
    name: &str,
    nargs: usize,
    min: usize,
    max: usize,
) -> PyResult<()> {
    if nargs < min {
        return Err(type_error(
            py,
            format!(
                "{name} expected {}{min} argument{}, got {nargs}",
                if min == max { "" } else { "at least " },
                plural(min)
            ),
        ));
    }
    if nargs > max {
        return Err(type_error(
            py,
            format!(
                "{name} expected {}{max} argument{}, got {nargs}",
                if min == max { "" } else { "at most " },
                plural(max)
            ),
        ));
    }
    Ok(())
}

/// `_Py_CalculateSuggestions` (`Python/suggestions.c`, 3.13): the closest of `candidates`
/// to `name` by CPython's weighted Levenshtein distance, if close enough.
fn suggestion<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let mut best: Option<&'a str> = None;
    let mut best_distance = usize::MAX;
    for &item in candidates {
        if item == name {
            continue;
        }
        // No more than 1/3 of the involved characters should need changing.
        let max_distance = ((name.len() + item.len() + 3) * MOVE_COST / 6).min(best_distance - 1);
        let d = levenshtein(name.as_bytes(), item.as_bytes(), max_distance);
        if d > max_distance {
            continue;
        }
        if best.is_none() || d < best_distance {
            best = Some(item);
            best_distance = d;
        }
    }
    best
}

const MOVE_COST: usize = 2;
const CASE_COST: usize = 1;
const MAX_STRING_SIZE: usize = 40;

fn substitution_cost(a: u8, b: u8) -> usize {
    if a & 31 != b & 31 {
        return MOVE_COST;
    }
    if a == b {
        return 0;
    }
    if a.eq_ignore_ascii_case(&b) {
        CASE_COST
    } else {
        MOVE_COST
    }
}

fn levenshtein<'a>(mut a: &'a [u8], mut b: &'a [u8], max_cost: usize) -> usize {
    while let (Some(x), Some(y)) = (a.first(), b.first()) {
        if x != y {
            break;
        }
        a = &a[1..];
        b = &b[1..];
    }
    while let (Some(x), Some(y)) = (a.last(), b.last()) {
        if x != y {
            break;
        }
        a = &a[..a.len() - 1];
        b = &b[..b.len() - 1];
    }
    if a.is_empty() || b.is_empty() {
        return (a.len() + b.len()) * MOVE_COST;
    }
    if a.len() > MAX_STRING_SIZE || b.len() > MAX_STRING_SIZE {
        return max_cost + 1;
    }
    if b.len() < a.len() {
        std::mem::swap(&mut a, &mut b);
    }
    if (b.len() - a.len()) * MOVE_COST > max_cost {
        return max_cost + 1;
    }
    let mut buffer: Vec<usize> = (1..=a.len()).map(|i| i * MOVE_COST).collect();
    let mut result = 0;
    for (b_index, &code) in b.iter().enumerate() {
        let mut distance = b_index * MOVE_COST;
        result = distance;
        let mut minimum = usize::MAX;
        for (index, &ch) in a.iter().enumerate() {
            let substitute = distance + substitution_cost(code, ch);
            distance = buffer[index];
            let insert_delete = result.min(distance) + MOVE_COST;
            result = insert_delete.min(substitute);
            buffer[index] = result;
            minimum = minimum.min(result);
        }
        if minimum > max_cost {
            return max_cost + 1;
        }
    }
    result
}

/// A tuple of the positional arguments of a `tp_init` call, as a vector.
pub(crate) fn positional<'py>(args: &Bound<'py, PyTuple>) -> Vec<Bound<'py, PyAny>> {
    args.iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_follow_cpython() {
        assert_eq!(suggestion("msg2", &["msg"]), Some("msg"));
        assert_eq!(suggestion("foo", &["msg"]), None);
        assert_eq!(
            suggestion("foo", &["coro", "loop", "name", "context"]),
            None
        );
        assert_eq!(
            suggestion("lop", &["coro", "loop", "name", "context"]),
            Some("loop")
        );
        assert_eq!(
            suggestion("Name", &["coro", "loop", "name", "context"]),
            Some("name")
        );
        assert_eq!(suggestion("x", &["limit"]), None);
    }
}
