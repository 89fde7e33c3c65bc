//! Arithmetic, comparison and bit operations, with Nix's types and overflow errors (the
//! operators themselves are `eval.rs`'s; these are their builtin spellings).

use super::super::diag::{EvalError, Pos};
use super::super::eval::{type_error_opt, Evaluator};
use super::super::lower::BinOp;
use super::super::value::{ThunkId, Value};
use super::here;

/// `op` on two numbers; `add`, `sub`, `mul` and `div` take numbers only, where the `<` that
/// `lessThan` is also compares strings, paths and lists.
fn arith(ev: &mut Evaluator, a: &[ThunkId], p: Option<Pos>, op: BinOp) -> Result<Value, EvalError> {
    let x = ev.force(a[0], p)?;
    let y = ev.force(a[1], p)?;
    if op != BinOp::Lt {
        for v in [&x, &y] {
            if !matches!(v, Value::Int(_) | Value::Float(_)) {
                return Err(type_error_opt(v, "an integer", p));
            }
        }
    }
    ev.binop_values(op, x, y, here(p))
}

pub(super) fn add(ev: &mut Evaluator, a: &[ThunkId], p: Option<Pos>) -> Result<Value, EvalError> {
    arith(ev, a, p, BinOp::Add)
}

pub(super) fn sub(ev: &mut Evaluator, a: &[ThunkId], p: Option<Pos>) -> Result<Value, EvalError> {
    arith(ev, a, p, BinOp::Sub)
}

pub(super) fn mul(ev: &mut Evaluator, a: &[ThunkId], p: Option<Pos>) -> Result<Value, EvalError> {
    arith(ev, a, p, BinOp::Mul)
}

pub(super) fn div(ev: &mut Evaluator, a: &[ThunkId], p: Option<Pos>) -> Result<Value, EvalError> {
    arith(ev, a, p, BinOp::Div)
}

pub(super) fn less_than(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    arith(ev, a, p, BinOp::Lt)
}

fn bits(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
    op: fn(i64, i64) -> i64,
) -> Result<Value, EvalError> {
    let x = ev.force_int(a[0], p)?;
    let y = ev.force_int(a[1], p)?;
    Ok(Value::Int(op(x, y)))
}

pub(super) fn bit_and(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    bits(ev, a, p, |x, y| x & y)
}

pub(super) fn bit_or(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    bits(ev, a, p, |x, y| x | y)
}

pub(super) fn bit_xor(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    bits(ev, a, p, |x, y| x ^ y)
}

fn float_of(ev: &mut Evaluator, t: ThunkId, p: Option<Pos>) -> Result<f64, EvalError> {
    match ev.force(t, p)? {
        Value::Int(i) => Ok(i as f64),
        Value::Float(f) => Ok(f),
        other => Err(type_error_opt(&other, "a float", p)),
    }
}

pub(super) fn ceil(ev: &mut Evaluator, a: &[ThunkId], p: Option<Pos>) -> Result<Value, EvalError> {
    Ok(Value::Int(float_of(ev, a[0], p)?.ceil() as i64))
}

pub(super) fn floor(ev: &mut Evaluator, a: &[ThunkId], p: Option<Pos>) -> Result<Value, EvalError> {
    Ok(Value::Int(float_of(ev, a[0], p)?.floor() as i64))
}
