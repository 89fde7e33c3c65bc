//! Runtime values of the evaluator. Thunks and scopes live in per-evaluation arenas and are
//! named by index, so that recursive `let`/`rec` scopes need no reference cycles and everything
//! is freed when the evaluation ends.

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use serde_json::Value as Json;

use super::builtins::Builtin;
use super::diag::Pos;
use super::lower::{ExprRef, LambdaDef};

pub(crate) type ThunkId = u32;
pub(crate) type EnvId = u32;

/// A value in weak head normal form; its parts may still be unevaluated thunks.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Path(Rc<Path>),
    List(Rc<Vec<ThunkId>>),
    Attrs(Rc<Attrs>),
    Lambda(Rc<LambdaDef>, EnvId),
    Prim(Rc<PrimApp>),
}

/// An attribute: its value and where it was defined (when it comes from source).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attr {
    pub value: ThunkId,
    pub pos: Option<Pos>,
}

/// Attribute sets are ordered by name, as Nix's `attrNames` and JSON output are.
pub(crate) type Attrs = BTreeMap<Rc<str>, Attr>;

/// A built-in function, possibly partially applied.
#[derive(Debug)]
pub(crate) struct PrimApp {
    pub prim: &'static Builtin,
    pub args: Vec<ThunkId>,
}

/// Builds an attribute set whose attributes carry no position of their own, as builtins make
/// them; the one way builtins create sets, so that the set's representation stays here.
#[derive(Default)]
pub(crate) struct AttrsBuilder {
    attrs: Attrs,
}

impl AttrsBuilder {
    pub fn new() -> Self {
        AttrsBuilder::default()
    }

    /// Sets `name`; a later value for the same name replaces an earlier one.
    pub fn insert(&mut self, name: impl Into<Rc<str>>, value: ThunkId) {
        self.insert_attr(name, Attr { value, pos: None });
    }

    /// Sets `name` to an attribute that keeps where it was defined.
    pub fn insert_attr(&mut self, name: impl Into<Rc<str>>, attr: Attr) {
        self.attrs.insert(name.into(), attr);
    }

    /// Sets `name` unless it is already set (the first definition wins).
    pub fn insert_first(&mut self, name: impl Into<Rc<str>>, attr: Attr) {
        self.attrs.entry(name.into()).or_insert(attr);
    }

    pub fn into_attrs(self) -> Attrs {
        self.attrs
    }

    pub fn build(self) -> Value {
        Value::Attrs(Rc::new(self.attrs))
    }
}

#[derive(Debug)]
pub(crate) enum ThunkState {
    Expr(ExprRef, EnvId),
    /// A lazy function application (function thunk, argument thunk), made by builtins such
    /// as `map`.
    Apply(ThunkId, ThunkId),
    /// Being evaluated: forcing it again is infinite recursion (at this position).
    Blackhole(Option<Pos>),
    Done(Value),
    /// A builtin Nix has and we do not; an error only if used.
    Unsupported(&'static str),
}

/// A scope: the slots of a `let`, `rec`, or function frame, or the set of a `with`.
#[derive(Debug)]
pub(crate) struct EnvData {
    pub parent: Option<EnvId>,
    pub slots: Vec<ThunkId>,
    pub with: Option<ThunkId>,
}

impl Value {
    /// Nix's `showType`, used in type errors.
    pub fn show_type(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a Boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::Path(_) => "a path",
            Value::List(_) => "a list",
            Value::Attrs(_) => "a set",
            Value::Lambda(..) => "a function",
            Value::Prim(p) if p.args.is_empty() => "a built-in function",
            Value::Prim(_) => "a partially applied built-in function",
        }
    }

    /// `builtins.typeOf`.
    pub fn type_of(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::Path(_) => "path",
            Value::List(_) => "list",
            Value::Attrs(_) => "set",
            Value::Lambda(..) | Value::Prim(_) => "lambda",
        }
    }

    pub fn str(s: &str) -> Value {
        Value::Str(Rc::from(s))
    }
}

/// A deeply forced value as `--strict --json` prints it: paths are already store paths and
/// numbers are as JSON writes them. Strings and names are shared with the evaluator, so making
/// one copies no text; only what a caller needs as JSON is converted.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Strict {
    Null,
    Bool(bool),
    Num(serde_json::Number),
    Str(Rc<str>),
    List(Vec<Strict>),
    /// In the evaluated set's order (by name for our evaluator, the JSON object's otherwise).
    Attrs(Vec<(Rc<str>, Strict)>),
}

impl Strict {
    pub fn to_json(&self) -> Json {
        match self {
            Strict::Null => Json::Null,
            Strict::Bool(b) => Json::Bool(*b),
            Strict::Num(n) => Json::Number(n.clone()),
            Strict::Str(s) => Json::String(s.to_string()),
            Strict::List(items) => Json::Array(items.iter().map(Strict::to_json).collect()),
            Strict::Attrs(attrs) => Json::Object(
                attrs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_json()))
                    .collect(),
            ),
        }
    }

    pub fn from_json(json: &Json) -> Strict {
        match json {
            Json::Null => Strict::Null,
            Json::Bool(b) => Strict::Bool(*b),
            Json::Number(n) => Strict::Num(n.clone()),
            Json::String(s) => Strict::Str(Rc::from(s.as_str())),
            Json::Array(items) => Strict::List(items.iter().map(Strict::from_json).collect()),
            Json::Object(map) => Strict::Attrs(
                map.iter()
                    .map(|(k, v)| (Rc::from(k.as_str()), Strict::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// The value's JSON type, as validation messages name it.
    pub fn json_type(&self) -> &'static str {
        match self {
            Strict::Null => "null",
            Strict::Bool(_) => "a boolean",
            Strict::Num(_) => "a number",
            Strict::Str(_) => "a string",
            Strict::List(_) => "a list",
            Strict::Attrs(_) => "an attribute set",
        }
    }

    pub fn get(&self, name: &str) -> Option<&Strict> {
        match self {
            Strict::Attrs(attrs) => attrs.iter().find(|(k, _)| &**k == name).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Serialised as the JSON it stands for, so that output is written straight from the evaluated
/// value without building a `serde_json::Value` copy of it.
impl serde::Serialize for Strict {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Strict::Null => s.serialize_unit(),
            Strict::Bool(b) => s.serialize_bool(*b),
            Strict::Num(n) => n.serialize(s),
            Strict::Str(text) => s.serialize_str(text),
            Strict::List(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Strict::Attrs(attrs) => {
                let mut map = s.serialize_map(Some(attrs.len()))?;
                for (k, v) in attrs {
                    map.serialize_entry(&**k, v)?;
                }
                map.end()
            }
        }
    }
}

/// Formats a float as C++ iostreams do by default (`%g`, 6 significant digits), which is how
/// Nix writes floats in JSON.
pub(crate) fn format_float_json(f: f64) -> String {
    if f.is_nan() {
        return if f.is_sign_negative() { "-nan" } else { "nan" }.to_owned();
    }
    if f.is_infinite() {
        return if f < 0.0 { "-inf" } else { "inf" }.to_owned();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    let sci = format!("{f:.5e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        let decimals = (5 - exp).max(0) as usize;
        trim_zeros(&format!("{f:.decimals$}"))
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim_zeros(mantissa), exp.abs())
    }
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s.to_owned()
    }
}

/// `toString` of a float: `%f`, as Nix's `std::to_string` gives.
pub(crate) fn format_float_to_string(f: f64) -> String {
    format!("{f:.6}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_cpp_streams() {
        assert_eq!(format_float_json(1.0), "1");
        assert_eq!(format_float_json(2.5), "2.5");
        assert_eq!(format_float_json(0.1), "0.1");
        assert_eq!(format_float_json(1.0 / 3.0), "0.333333");
        assert_eq!(format_float_json(1e20), "1e+20");
        assert_eq!(format_float_json(123456789.123), "1.23457e+08");
        assert_eq!(format_float_json(1.5e-7), "1.5e-07");
        assert_eq!(format_float_json(100000.0), "100000");
        assert_eq!(format_float_json(0.0001), "0.0001");
    }

    #[test]
    fn to_string_of_floats_has_six_decimals() {
        assert_eq!(format_float_to_string(1.5), "1.500000");
    }
}
