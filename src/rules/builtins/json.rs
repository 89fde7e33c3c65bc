//! JSON in and out of Nix values: `fromJSON`, and `toJSON` written as Nix writes it.

use std::rc::Rc;

use serde_json::Value as Json;

use super::super::diag::{EvalError, Pos};
use super::super::eval::Evaluator;
use super::super::value::{format_float_json, AttrsBuilder, ThunkId, Value};

pub(super) fn from_json(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    let s = ev.force_str(a[0], p)?;
    let j: Json = serde_json::from_str(&s)
        .map_err(|e| EvalError::eval(format!("while parsing JSON: {e}"), p))?;
    Ok(value_of(ev, &j))
}

pub(super) fn to_json(
    ev: &mut Evaluator,
    a: &[ThunkId],
    p: Option<Pos>,
) -> Result<Value, EvalError> {
    let v = ev.force(a[0], p)?;
    let j = ev.json_of(v, &mut Default::default())?;
    let mut out = String::new();
    write_json(&j, &mut out);
    Ok(Value::str(&out))
}

fn value_of(ev: &mut Evaluator, j: &Json) -> Value {
    match j {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        Json::String(s) => Value::str(s),
        Json::Array(items) => {
            let ids = items
                .iter()
                .map(|i| {
                    let v = value_of(ev, i);
                    ev.done(v)
                })
                .collect();
            Value::List(Rc::new(ids))
        }
        Json::Object(map) => {
            let mut set = AttrsBuilder::new();
            for (k, v) in map {
                let v = value_of(ev, v);
                set.insert(k.as_str(), ev.done(v));
            }
            set.build()
        }
    }
}

/// JSON text as Nix's `toJSON` writes it: compact, keys sorted, Nix's string escapes.
fn write_json(j: &Json, out: &mut String) {
    match j {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => match n.as_f64() {
            Some(f) if !n.is_i64() && !n.is_u64() => out.push_str(&format_float_json(f)),
            _ => out.push_str(&n.to_string()),
        },
        Json::String(s) => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        Json::Object(map) => {
            out.push('{');
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(&Json::String(k.clone()), out);
                out.push(':');
                write_json(&map[k], out);
            }
            out.push('}');
        }
    }
}
