//! Attribute sets: names, values, lookup, and the builtins that build sets from lists or
//! other sets.

use std::collections::BTreeMap;
use std::rc::Rc;

use super::super::diag::{EvalError, Pos};
use super::super::eval::Evaluator;
use super::super::value::{Attr, AttrsBuilder, ThunkId, ThunkState, Value};
use super::attrs;

pub(super) fn attr_names(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    let set = attrs(ev, a[0], p)?;
    let names = set.keys().map(|k| ev.done(Value::Str(k.clone()))).collect();
    Ok(Value::List(Rc::new(names)))
}

pub(super) fn attr_values(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    let set = attrs(ev, a[0], p)?;
    Ok(Value::List(Rc::new(
        set.values().map(|v| v.value).collect(),
    )))
}

pub(super) fn cat_attrs(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    let attr = ev.force_str(a[0], p)?;
    let list = ev.force_list(a[1], p)?;
    let mut out = Vec::new();
    for t in list.iter() {
        if let Some(v) = attrs(ev, *t, p)?.get(&*attr) {
            out.push(v.value);
        }
    }
    Ok(Value::List(Rc::new(out)))
}

pub(super) fn get_attr(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    let n = ev.force_str(a[0], p)?;
    let set = attrs(ev, a[1], p)?;
    match set.get(&*n) {
        Some(v) => ev.force(v.value, p),
        None => Err(EvalError::eval(format!("attribute '{n}' missing"), p)),
    }
}

pub(super) fn has_attr(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    let n = ev.force_str(a[0], p)?;
    let set = attrs(ev, a[1], p)?;
    Ok(Value::Bool(set.contains_key(&*n)))
}

pub(super) fn intersect_attrs(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    let x = attrs(ev, a[0], p)?;
    let y = attrs(ev, a[1], p)?;
    let mut set = AttrsBuilder::new();
    for (k, v) in y.iter().filter(|(k, _)| x.contains_key(*k)) {
        set.insert_attr(k.clone(), *v);
    }
    Ok(set.build())
}

pub(super) fn list_to_attrs(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    let list = ev.force_list(a[0], p)?;
    let mut set = AttrsBuilder::new();
    for t in list.iter() {
        let item = attrs(ev, *t, p)?;
        let n = item
            .get("name")
            .ok_or_else(|| EvalError::eval("attribute 'name' missing", p))?;
        let (npos, n) = (n.pos, ev.force_str(n.value, p)?);
        let v = item
            .get("value")
            .ok_or_else(|| EvalError::eval("attribute 'value' missing", p))?;
        // The first definition of a name wins, as in Nix.
        set.insert_first(
            n,
            Attr {
                value: v.value,
                pos: v.pos.or(npos),
            },
        );
    }
    Ok(set.build())
}

pub(super) fn map_attrs(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    let set = attrs(ev, a[1], p)?;
    let mut out = AttrsBuilder::new();
    for (k, v) in set.iter() {
        let kt = ev.done(Value::Str(k.clone()));
        let partial = ev.alloc(ThunkState::Apply(a[0], kt));
        let t = ev.alloc(ThunkState::Apply(partial, v.value));
        out.insert_attr(
            k.clone(),
            Attr {
                value: t,
                pos: v.pos,
            },
        );
    }
    Ok(out.build())
}

pub(super) fn remove_attrs(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    let set = attrs(ev, a[0], p)?;
    let names = ev.force_list(a[1], p)?;
    let mut out = (*set).clone();
    for t in names.iter() {
        let n = ev.force_str(*t, p)?;
        out.remove(&*n);
    }
    Ok(Value::Attrs(Rc::new(out)))
}

pub(super) fn zip_attrs_with(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    let list = ev.force_list(a[1], p)?;
    let mut groups: BTreeMap<Rc<str>, Vec<ThunkId>> = BTreeMap::new();
    for t in list.iter() {
        for (k, v) in attrs(ev, *t, p)?.iter() {
            groups.entry(k.clone()).or_default().push(v.value);
        }
    }
    let mut out = AttrsBuilder::new();
    for (k, vs) in groups {
        let kt = ev.done(Value::Str(k.clone()));
        let lt = ev.done(Value::List(Rc::new(vs)));
        let partial = ev.alloc(ThunkState::Apply(a[0], kt));
        out.insert(k, ev.alloc(ThunkState::Apply(partial, lt)));
    }
    Ok(out.build())
}
