//! Control and introspection: errors (`throw`, `abort`, `tryEval`), forcing order (`seq`,
//! `deepSeq`), `trace`, and questions about a value's type or a function's arguments.

use std::rc::Rc;

use super::super::diag::{escape_for_display, EvalError, Pos};
use super::super::eval::{type_error_opt, Evaluator};
use super::super::lower::Param;
use super::super::value::{AttrsBuilder, ThunkId, Value};
use super::coerce;

pub(super) fn abort(ev: &mut Evaluator, a: &[ThunkId], p: Option<Pos>) -> Result<Value, EvalError> {
    let msg = coerce(ev, a[0], false, true, p)?;
    Err(EvalError::eval(
        format!("evaluation aborted with the following error message: '{msg}'"),
        p,
    ))
}

pub(super) fn throw(ev: &mut Evaluator, a: &[ThunkId], p: Option<Pos>) -> Result<Value, EvalError> {
    let msg = coerce(ev, a[0], false, true, p)?;
    Err(EvalError {
        thrown: true,
        ..EvalError::eval(msg, p)
    })
}

pub(super) fn try_eval(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    let (success, value) = match ev.force(a[0], p) {
        Ok(v) => (true, v),
        Err(e) if e.thrown => (false, Value::Bool(false)),
        Err(e) => return Err(e),
    };
    let mut set = AttrsBuilder::new();
    set.insert("success", ev.done(Value::Bool(success)));
    set.insert("value", ev.done(value));
    Ok(set.build())
}

pub(super) fn add_error_context(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    ev.force(a[1], p)
}

pub(super) fn seq(ev: &mut Evaluator, a: &[ThunkId], p: Option<Pos>) -> Result<Value, EvalError> {
    ev.force(a[0], p)?;
    ev.force(a[1], p)
}

pub(super) fn deep_seq(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    let v = ev.force(a[0], p)?;
    if let Err(e) = ev.strict_of(v, &mut Default::default()) {
        // Functions are left unforced, not an error, when forcing deeply.
        if e.message != "cannot convert a function to JSON" {
            return Err(e);
        }
    }
    ev.force(a[1], p)
}

pub(super) fn trace(ev: &mut Evaluator, a: &[ThunkId], p: Option<Pos>) -> Result<Value, EvalError> {
    let v = ev.force(a[0], p)?;
    let shown = match &v {
        Value::Str(s) => s.to_string(),
        other => match ev.json_of(other.clone(), &mut Default::default()) {
            Ok(j) => j.to_string(),
            Err(_) => format!("<{}>", other.type_of()),
        },
    };
    // The author's text, on a line of its own that `trace: ` starts.
    eprintln!("trace: {}", escape_for_display(&shown));
    ev.force(a[1], p)
}

pub(super) fn type_of(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    Ok(Value::str(ev.force(a[0], p)?.type_of()))
}

/// `isAttrs`, `isInt`, …: whether the forced argument matches a pattern.
macro_rules! type_predicate {
    ($($fun:ident: $pattern:pat,)*) => {$(
        pub(super) fn $fun(
            ev: &mut Evaluator,
            a: &[ThunkId],
            p: Option<Pos>,
        ) -> Result<Value, EvalError> {
            Ok(Value::Bool(matches!(ev.force(a[0], p)?, $pattern)))
        }
    )*};
}

type_predicate! {
    is_attrs: Value::Attrs(_),
    is_bool: Value::Bool(_),
    is_float: Value::Float(_),
    is_function: Value::Lambda(..) | Value::Prim(_),
    is_int: Value::Int(_),
    is_list: Value::List(_),
    is_null: Value::Null,
    is_path: Value::Path(_),
    is_string: Value::Str(_),
}

pub(super) fn function_args(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    match ev.force(a[0], p)? {
        Value::Lambda(def, _) => {
            let mut set = AttrsBuilder::new();
            if let Param::Pattern { formals, .. } = &def.param {
                for (n, d) in formals {
                    set.insert(Rc::clone(n), ev.done(Value::Bool(d.is_some())));
                }
            }
            Ok(set.build())
        }
        Value::Prim(_) => Ok(AttrsBuilder::new().build()),
        other => Err(type_error_opt(&other, "a function", p)),
    }
}
