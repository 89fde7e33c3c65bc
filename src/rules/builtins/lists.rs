//! Lists: access, construction, and the higher-order builtins that call a Nix function per
//! element (`map` and `genList` stay lazy: each element is an application not yet made).

use std::collections::BTreeMap;
use std::rc::Rc;

use super::super::diag::{EvalError, Pos};
use super::super::eval::{type_error_opt, Evaluator};
use super::super::value::{AttrsBuilder, ThunkId, ThunkState, Value};
use super::{bool_of, here};

fn any_all(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
    want: bool,
) -> Result<Value, EvalError> {
    let f = ev.force(a[0], p)?;
    let list = ev.force_list(a[1], p)?;
    for t in list.iter() {
        if bool_of(ev.call(&f, &[*t], p)?, p)? == want {
            return Ok(Value::Bool(want));
        }
    }
    Ok(Value::Bool(!want))
}

pub(super) fn all(ev: &mut Evaluator, a: &[ThunkId], p: Option<Pos>) -> Result<Value, EvalError> {
    any_all(ev, a, p, false)
}

pub(super) fn any(ev: &mut Evaluator, a: &[ThunkId], p: Option<Pos>) -> Result<Value, EvalError> {
    any_all(ev, a, p, true)
}

pub(super) fn concat_lists(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    let list = ev.force_list(a[0], p)?;
    let mut out = Vec::new();
    for t in list.iter() {
        out.extend_from_slice(&ev.force_list(*t, p)?);
    }
    Ok(Value::List(Rc::new(out)))
}

pub(super) fn concat_map(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    let f = ev.force(a[0], p)?;
    let list = ev.force_list(a[1], p)?;
    let mut out = Vec::new();
    for t in list.iter() {
        match ev.call(&f, &[*t], p)? {
            Value::List(l) => out.extend_from_slice(&l),
            other => return Err(type_error_opt(&other, "a list", p)),
        }
    }
    Ok(Value::List(Rc::new(out)))
}

pub(super) fn elem(ev: &mut Evaluator, a: &[ThunkId], p: Option<Pos>) -> Result<Value, EvalError> {
    let x = ev.force(a[0], p)?;
    let list = ev.force_list(a[1], p)?;
    for t in list.iter() {
        let y = ev.force(*t, p)?;
        if ev.equal(&x, &y, here(p))? {
            return Ok(Value::Bool(true));
        }
    }
    Ok(Value::Bool(false))
}

pub(super) fn elem_at(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    let list = ev.force_list(a[0], p)?;
    let i = ev.force_int(a[1], p)?;
    let t = usize::try_from(i)
        .ok()
        .and_then(|i| list.get(i).copied())
        .ok_or_else(|| EvalError::eval(format!("list index {i} is out of bounds"), p))?;
    ev.force(t, p)
}

pub(super) fn head(ev: &mut Evaluator, a: &[ThunkId], p: Option<Pos>) -> Result<Value, EvalError> {
    let list = ev.force_list(a[0], p)?;
    let t = *list
        .first()
        .ok_or_else(|| EvalError::eval("'builtins.head' called on an empty list", p))?;
    ev.force(t, p)
}

pub(super) fn tail(ev: &mut Evaluator, a: &[ThunkId], p: Option<Pos>) -> Result<Value, EvalError> {
    let list = ev.force_list(a[0], p)?;
    if list.is_empty() {
        return Err(EvalError::eval(
            "'builtins.tail' called on an empty list",
            p,
        ));
    }
    Ok(Value::List(Rc::new(list[1..].to_vec())))
}

pub(super) fn filter(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    let f = ev.force(a[0], p)?;
    let list = ev.force_list(a[1], p)?;
    let mut out = Vec::new();
    for t in list.iter() {
        if bool_of(ev.call(&f, &[*t], p)?, p)? {
            out.push(*t);
        }
    }
    Ok(Value::List(Rc::new(out)))
}

pub(super) fn foldl(ev: &mut Evaluator, a: &[ThunkId], p: Option<Pos>) -> Result<Value, EvalError> {
    let f = ev.force(a[0], p)?;
    let list = ev.force_list(a[2], p)?;
    let mut acc = a[1];
    for t in list.iter() {
        let v = ev.call(&f, &[acc, *t], p)?;
        acc = ev.done(v);
    }
    ev.force(acc, p)
}

pub(super) fn gen_list(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    let n = ev.force_int(a[1], p)?;
    if n < 0 {
        return Err(EvalError::eval(
            format!("cannot create list of size {n}"),
            p,
        ));
    }
    let mut out = Vec::with_capacity(n.min(1 << 20) as usize);
    for i in 0..n {
        let it = ev.done(Value::Int(i));
        out.push(ev.alloc(ThunkState::Apply(a[0], it)));
    }
    Ok(Value::List(Rc::new(out)))
}

pub(super) fn length(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    Ok(Value::Int(ev.force_list(a[0], p)?.len() as i64))
}

pub(super) fn map(ev: &mut Evaluator, a: &[ThunkId], p: Option<Pos>) -> Result<Value, EvalError> {
    let list = ev.force_list(a[1], p)?;
    let out = list
        .iter()
        .map(|t| ev.alloc(ThunkState::Apply(a[0], *t)))
        .collect();
    Ok(Value::List(Rc::new(out)))
}

/// Sorts the list's elements into named groups by what `f` says of each, in list order.
fn grouped(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
    mut groups: BTreeMap<Rc<str>, Vec<ThunkId>>,
    key: fn(Value, Option<Pos>) -> Result<Rc<str>, EvalError>,
) -> Result<Value, EvalError> {
    let f = ev.force(a[0], p)?;
    let list = ev.force_list(a[1], p)?;
    for t in list.iter() {
        let k = key(ev.call(&f, &[*t], p)?, p)?;
        groups.entry(k).or_default().push(*t);
    }
    let mut set = AttrsBuilder::new();
    for (k, v) in groups {
        set.insert(k, ev.done(Value::List(Rc::new(v))));
    }
    Ok(set.build())
}

pub(super) fn group_by(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    grouped(ev, a, p, BTreeMap::new(), |v, p| match v {
        Value::Str(s) => Ok(s),
        other => Err(type_error_opt(&other, "a string", p)),
    })
}

pub(super) fn partition(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    let both = [Rc::from("right"), Rc::from("wrong")].map(|k| (k, Vec::new()));
    grouped(ev, a, p, BTreeMap::from(both), |v, p| {
        Ok(Rc::from(if bool_of(v, p)? { "right" } else { "wrong" }))
    })
}

pub(super) fn sort(ev: &mut Evaluator, a: &[ThunkId], p: Option<Pos>) -> Result<Value, EvalError> {
    let f = ev.force(a[0], p)?;
    let list = ev.force_list(a[1], p)?;
    let sorted = merge_sort(ev, &f, &list, p)?;
    Ok(Value::List(Rc::new(sorted)))
}

/// A stable merge sort whose comparison (a Nix function) may fail.
fn merge_sort(
    ev: &mut Evaluator,
    f: &Value,
    items: &[ThunkId],
    p: Option<Pos>,
) -> Result<Vec<ThunkId>, EvalError> {
    if items.len() <= 1 {
        return Ok(items.to_vec());
    }
    let mid = items.len() / 2;
    let left = merge_sort(ev, f, &items[..mid], p)?;
    let right = merge_sort(ev, f, &items[mid..], p)?;
    let mut out = Vec::with_capacity(items.len());
    let (mut i, mut j) = (0, 0);
    while i < left.len() && j < right.len() {
        // Take from the right only when it is strictly less, which keeps the sort stable.
        if bool_of(ev.call(f, &[right[j], left[i]], p)?, p)? {
            out.push(right[j]);
            j += 1;
        } else {
            out.push(left[i]);
            i += 1;
        }
    }
    out.extend_from_slice(&left[i..]);
    out.extend_from_slice(&right[j..]);
    Ok(out)
}
