//! The outside world: paths, files (`import`, `readFile`, `readDir`, `pathExists`) and the
//! environment (`getEnv`), every access through the evaluator's sandbox.

use std::path::PathBuf;
use std::rc::Rc;

use super::super::diag::{EvalError, Pos};
use super::super::eval::Evaluator;
use super::super::lower::canon_path;
use super::super::value::{AttrsBuilder, ThunkId, Value};
use super::{coerce, here};

/// Nix's `coerceToPath`: a path, or a string holding an absolute path.
fn coerce_to_path(ev: &mut Evaluator, t: ThunkId, p: Option<Pos>) -> Result<PathBuf, EvalError> {
    let s = coerce(ev, t, false, false, p)?;
    if !s.starts_with('/') {
        return Err(EvalError::eval(
            format!("string '{s}' doesn't represent an absolute path"),
            p,
        ));
    }
    Ok(PathBuf::from(s))
}

pub(super) fn base_name_of(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    let path = coerce(ev, a[0], false, false, p)?;
    if path.is_empty() {
        return Ok(Value::str(""));
    }
    // One trailing slash is ignored.
    let mut last = path.len() - 1;
    if path.as_bytes()[last] == b'/' && last > 0 {
        last -= 1;
    }
    let start = path[..=last].rfind('/').map(|i| i + 1).unwrap_or(0);
    Ok(Value::str(&path[start..=last]))
}

fn parent_text(path: &str) -> String {
    match path.rfind('/') {
        None => ".".to_owned(),
        Some(0) => "/".to_owned(),
        Some(i) => path[..i].to_owned(),
    }
}

pub(super) fn dir_of(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    match ev.force(a[0], p)? {
        Value::Path(path) => {
            let s = path.to_string_lossy();
            Ok(Value::Path(Rc::from(PathBuf::from(parent_text(&s)))))
        }
        other => {
            let s = ev.coerce_to_string(other, false, false, here(p))?;
            Ok(Value::str(&parent_text(&s)))
        }
    }
}

pub(super) fn to_path(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    let path = coerce_to_path(ev, a[0], p)?;
    Ok(Value::str(
        &canon_path(&path.to_string_lossy()).to_string_lossy(),
    ))
}

pub(super) fn import(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    let path = coerce_to_path(ev, a[0], p)?;
    let t = ev.import(&path, p)?;
    ev.force(t, p)
}

pub(super) fn path_exists(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    let path = coerce_to_path(ev, a[0], p)?;
    let exists = ev.sandbox.exists(&canon_path(&path.to_string_lossy()));
    let exists = exists.map_err(|e| ev.denied(e, "", "checking the existence of", &path, p))?;
    Ok(Value::Bool(exists))
}

pub(super) fn read_file(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    let path = coerce_to_path(ev, a[0], p)?;
    let bytes = ev
        .sandbox
        .read(&canon_path(&path.to_string_lossy()))
        .map_err(|e| ev.denied(e, "opening file", "reading", &path, p))?;
    Ok(Value::str(&String::from_utf8_lossy(&bytes)))
}

pub(super) fn read_dir(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    let path = coerce_to_path(ev, a[0], p)?;
    let entries = ev
        .sandbox
        .read_dir(&canon_path(&path.to_string_lossy()))
        .map_err(|e| ev.denied(e, "opening directory", "reading the directory", &path, p))?;
    let mut set = AttrsBuilder::new();
    for (name, kind) in entries {
        set.insert(name.as_str(), ev.done(Value::str(kind)));
    }
    Ok(set.build())
}

pub(super) fn get_env(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    let n = ev.force_str(a[0], p)?;
    Ok(Value::str(&ev.sandbox.env(&n)))
}
