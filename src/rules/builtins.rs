//! Nix's builtins as far as rules files use them, and the names of the ones we lack (so that
//! using one is reported as unsupported, which may lead to the `nix-instantiate` fallback,
//! rather than as an unknown attribute).

use rustc_hash::FxHashMap;
use std::path::PathBuf;
use std::rc::Rc;

use serde_json::Value as Json;

use super::diag::{EvalError, Pos};
use super::eval::{type_error_opt, Evaluator};
use super::lower::{canon_path, BinOp, Param};
use super::value::{format_float_json, Attr, Attrs, PrimApp, ThunkId, ThunkState, Value};

/// Supported builtins and their arity.
const SUPPORTED: &[(&str, usize)] = &[
    ("abort", 1),
    ("add", 2),
    ("addErrorContext", 2),
    ("all", 2),
    ("any", 2),
    ("attrNames", 1),
    ("attrValues", 1),
    ("baseNameOf", 1),
    ("bitAnd", 2),
    ("bitOr", 2),
    ("bitXor", 2),
    ("catAttrs", 2),
    ("ceil", 1),
    ("concatLists", 1),
    ("concatMap", 2),
    ("concatStringsSep", 2),
    ("deepSeq", 2),
    ("dirOf", 1),
    ("div", 2),
    ("elem", 2),
    ("elemAt", 2),
    ("filter", 2),
    ("floor", 1),
    ("foldl'", 3),
    ("fromJSON", 1),
    ("functionArgs", 1),
    ("genList", 2),
    ("getAttr", 2),
    ("getEnv", 1),
    ("groupBy", 2),
    ("hashString", 2),
    ("hasAttr", 2),
    ("head", 1),
    ("import", 1),
    ("intersectAttrs", 2),
    ("isAttrs", 1),
    ("isBool", 1),
    ("isFloat", 1),
    ("isFunction", 1),
    ("isInt", 1),
    ("isList", 1),
    ("isNull", 1),
    ("isPath", 1),
    ("isString", 1),
    ("length", 1),
    ("lessThan", 2),
    ("listToAttrs", 1),
    ("map", 2),
    ("match", 2),
    ("mapAttrs", 2),
    ("mul", 2),
    ("partition", 2),
    ("pathExists", 1),
    ("readDir", 1),
    ("readFile", 1),
    ("removeAttrs", 2),
    ("replaceStrings", 3),
    ("seq", 2),
    ("sort", 2),
    ("split", 2),
    ("stringLength", 1),
    ("sub", 2),
    ("substring", 3),
    ("tail", 1),
    ("throw", 1),
    ("toJSON", 1),
    ("toPath", 1),
    ("toString", 1),
    ("trace", 2),
    ("tryEval", 1),
    ("typeOf", 1),
    ("unsafeDiscardStringContext", 1),
    ("zipAttrsWith", 2),
];

/// Builtins of Nix 2.8 that we do not implement.
const UNSUPPORTED: &[&str] = &[
    "appendContext",
    "break",
    "compareVersions",
    "currentSystem",
    "currentTime",
    "derivation",
    "derivationStrict",
    "exec",
    "fetchGit",
    "fetchMercurial",
    "fetchTarball",
    "fetchTree",
    "fetchurl",
    "filterSource",
    "findFile",
    "fromTOML",
    "genericClosure",
    "getContext",
    "getFlake",
    "hasContext",
    "hashFile",
    "importNative",
    "langVersion",
    "nixPath",
    "nixVersion",
    "parseDrvName",
    "path",
    "placeholder",
    "scopedImport",
    "splitVersion",
    "storeDir",
    "storePath",
    "toFile",
    "toXML",
    "traceVerbose",
    "unsafeDiscardOutputDependency",
    "unsafeGetAttrPos",
];

/// Names in scope everywhere, besides `__name` for every builtin.
const GLOBAL_NAMES: &[&str] = &[
    "true",
    "false",
    "null",
    "builtins",
    "import",
    "toString",
    "map",
    "throw",
    "abort",
    "baseNameOf",
    "dirOf",
    "isNull",
    "removeAttrs",
    "derivation",
    "fetchGit",
    "fetchMercurial",
    "fetchTarball",
    "fetchTree",
    "fromTOML",
    "placeholder",
    "scopedImport",
];

/// Builds the `builtins` set; returns the base scope's names (with their slots) and slots.
pub(crate) fn globals(ev: &mut Evaluator) -> (FxHashMap<Rc<str>, u32>, Vec<ThunkId>) {
    let mut set = Attrs::new();
    for (name, arity) in SUPPORTED {
        let t = ev.done(Value::Prim(Rc::new(PrimApp {
            name,
            arity: *arity,
            args: Vec::new(),
        })));
        set.insert(
            Rc::from(*name),
            Attr {
                value: t,
                pos: None,
            },
        );
    }
    for name in UNSUPPORTED {
        let t = ev.alloc(ThunkState::Unsupported(name));
        set.insert(
            Rc::from(*name),
            Attr {
                value: t,
                pos: None,
            },
        );
    }
    for (name, v) in [
        ("true", Value::Bool(true)),
        ("false", Value::Bool(false)),
        ("null", Value::Null),
    ] {
        let t = ev.done(v);
        set.insert(
            Rc::from(name),
            Attr {
                value: t,
                pos: None,
            },
        );
    }
    let builtins_thunk = ev.alloc(ThunkState::Done(Value::Null));
    set.insert(
        Rc::from("builtins"),
        Attr {
            value: builtins_thunk,
            pos: None,
        },
    );
    let set = Rc::new(set);
    // `builtins.builtins` is the set itself; the thunk is filled in once the set exists.
    let mut names = FxHashMap::default();
    let mut slots = Vec::new();
    let dunder = set
        .iter()
        .filter(|(n, _)| !matches!(&***n, "true" | "false" | "null" | "builtins"))
        .map(|(n, a)| (Rc::from(format!("__{n}")), a.value));
    let plain = GLOBAL_NAMES.iter().map(|n| {
        (
            Rc::from(*n),
            set.get(*n).map(|a| a.value).expect("globals are builtins"),
        )
    });
    for (name, t) in plain.chain(dunder).collect::<Vec<_>>() {
        names.insert(name, slots.len() as u32);
        slots.push(t);
    }
    ev.set_done(builtins_thunk, Value::Attrs(set));
    (names, slots)
}

/// Calls builtin `name` with all its arguments.
pub(crate) fn call(
    ev: &mut Evaluator,
    name: &'static str,
    args: &[ThunkId],
    pos: Option<Pos>,
) -> Result<Value, EvalError> {
    let p = pos;
    let here = pos.unwrap_or(Pos { file: 0, offset: 0 });
    let a = |i: usize| args[i];
    Ok(match name {
        "abort" => {
            let msg = to_string(ev, a(0), p)?;
            return Err(EvalError::eval(
                format!("evaluation aborted with the following error message: '{msg}'"),
                p,
            ));
        }
        "throw" => {
            let msg = to_string(ev, a(0), p)?;
            return Err(EvalError {
                thrown: true,
                ..EvalError::eval(msg, p)
            });
        }
        "tryEval" => {
            let (success, value) = match ev.force(a(0), p) {
                Ok(v) => (true, v),
                Err(e) if e.thrown => (false, Value::Bool(false)),
                Err(e) => return Err(e),
            };
            let mut set = Attrs::new();
            let s = ev.done(Value::Bool(success));
            let v = ev.done(value);
            set.insert(
                Rc::from("success"),
                Attr {
                    value: s,
                    pos: None,
                },
            );
            set.insert(
                Rc::from("value"),
                Attr {
                    value: v,
                    pos: None,
                },
            );
            Value::Attrs(Rc::new(set))
        }
        "hashString" => {
            use sha2::Digest;
            let algo = ev.force_str(a(0), p)?;
            let s = coerce(ev, a(1), false, true, p)?;
            let digest: Vec<u8> = match &*algo {
                "sha256" => sha2::Sha256::digest(s.as_bytes()).to_vec(),
                "sha512" => sha2::Sha512::digest(s.as_bytes()).to_vec(),
                "md5" | "sha1" => {
                    return Err(EvalError::unsupported(
                        format!("builtins.hashString \"{algo}\""),
                        p,
                    ))
                }
                other => {
                    return Err(EvalError::eval(
                        format!("unknown hash algorithm '{other}'"),
                        p,
                    ))
                }
            };
            Value::str(
                &digest
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>(),
            )
        }
        "add" | "sub" | "mul" | "div" | "lessThan" => {
            let x = ev.force(a(0), p)?;
            let y = ev.force(a(1), p)?;
            for v in [&x, &y] {
                if !matches!(v, Value::Int(_) | Value::Float(_)) && name != "lessThan" {
                    return Err(type_error_opt(v, "an integer", p));
                }
            }
            let op = match name {
                "add" => BinOp::Add,
                "sub" => BinOp::Sub,
                "mul" => BinOp::Mul,
                "div" => BinOp::Div,
                _ => BinOp::Lt,
            };
            ev.binop_values(op, x, y, here)?
        }
        "bitAnd" | "bitOr" | "bitXor" => {
            let x = ev.force_int(a(0), p)?;
            let y = ev.force_int(a(1), p)?;
            Value::Int(match name {
                "bitAnd" => x & y,
                "bitOr" => x | y,
                _ => x ^ y,
            })
        }
        "ceil" | "floor" => {
            let f = match ev.force(a(0), p)? {
                Value::Int(i) => i as f64,
                Value::Float(f) => f,
                other => return Err(type_error_opt(&other, "a float", p)),
            };
            Value::Int(if name == "ceil" { f.ceil() } else { f.floor() } as i64)
        }
        "addErrorContext" => ev.force(a(1), p)?,
        "all" | "any" => {
            let f = ev.force(a(0), p)?;
            let list = ev.force_list(a(1), p)?;
            let want = name == "any";
            for t in list.iter() {
                let r = ev.call(&f, &[*t], p)?;
                match r {
                    Value::Bool(b) if b == want => return Ok(Value::Bool(want)),
                    Value::Bool(_) => {}
                    other => return Err(type_error_opt(&other, "a Boolean", p)),
                }
            }
            Value::Bool(!want)
        }
        "attrNames" => {
            let set = attrs(ev, a(0), p)?;
            let names = set.keys().map(|k| ev.done(Value::Str(k.clone()))).collect();
            Value::List(Rc::new(names))
        }
        "attrValues" => {
            let set = attrs(ev, a(0), p)?;
            Value::List(Rc::new(set.values().map(|v| v.value).collect()))
        }
        "baseNameOf" => {
            let s = coerce(ev, a(0), false, false, p)?;
            Value::str(base_name_of(&s))
        }
        "dirOf" => match ev.force(a(0), p)? {
            Value::Path(path) => {
                let s = path.to_string_lossy();
                Value::Path(Rc::from(PathBuf::from(dir_of(&s))))
            }
            other => {
                let s = ev.coerce_to_string(other, false, false, here)?;
                Value::str(&dir_of(&s))
            }
        },
        "catAttrs" => {
            let attr = ev.force_str(a(0), p)?;
            let list = ev.force_list(a(1), p)?;
            let mut out = Vec::new();
            for t in list.iter() {
                let set = attrs(ev, *t, p)?;
                if let Some(v) = set.get(&*attr) {
                    out.push(v.value);
                }
            }
            Value::List(Rc::new(out))
        }
        "concatLists" => {
            let list = ev.force_list(a(0), p)?;
            let mut out = Vec::new();
            for t in list.iter() {
                out.extend_from_slice(&ev.force_list(*t, p)?);
            }
            Value::List(Rc::new(out))
        }
        "concatMap" => {
            let f = ev.force(a(0), p)?;
            let list = ev.force_list(a(1), p)?;
            let mut out = Vec::new();
            for t in list.iter() {
                match ev.call(&f, &[*t], p)? {
                    Value::List(l) => out.extend_from_slice(&l),
                    other => return Err(type_error_opt(&other, "a list", p)),
                }
            }
            Value::List(Rc::new(out))
        }
        "concatStringsSep" => {
            let sep = ev.force_str(a(0), p)?;
            let list = ev.force_list(a(1), p)?;
            let mut out = String::new();
            for (i, t) in list.iter().enumerate() {
                if i > 0 {
                    out.push_str(&sep);
                }
                out.push_str(&coerce(ev, *t, false, true, p)?);
            }
            Value::str(&out)
        }
        "seq" => {
            ev.force(a(0), p)?;
            ev.force(a(1), p)?
        }
        "deepSeq" => {
            let v = ev.force(a(0), p)?;
            ev.json_of(v, &mut Default::default()).or_else(|e| {
                if e.message == "cannot convert a function to JSON" {
                    Ok(Json::Null)
                } else {
                    Err(e)
                }
            })?;
            ev.force(a(1), p)?
        }
        "elem" => {
            let x = ev.force(a(0), p)?;
            let list = ev.force_list(a(1), p)?;
            for t in list.iter() {
                let y = ev.force(*t, p)?;
                if ev.equal(&x, &y, here)? {
                    return Ok(Value::Bool(true));
                }
            }
            Value::Bool(false)
        }
        "elemAt" => {
            let list = ev.force_list(a(0), p)?;
            let i = ev.force_int(a(1), p)?;
            let t = usize::try_from(i)
                .ok()
                .and_then(|i| list.get(i).copied())
                .ok_or_else(|| EvalError::eval(format!("list index {i} is out of bounds"), p))?;
            ev.force(t, p)?
        }
        "head" => {
            let list = ev.force_list(a(0), p)?;
            let t = *list
                .first()
                .ok_or_else(|| EvalError::eval("'builtins.head' called on an empty list", p))?;
            ev.force(t, p)?
        }
        "tail" => {
            let list = ev.force_list(a(0), p)?;
            if list.is_empty() {
                return Err(EvalError::eval(
                    "'builtins.tail' called on an empty list",
                    p,
                ));
            }
            Value::List(Rc::new(list[1..].to_vec()))
        }
        "filter" => {
            let f = ev.force(a(0), p)?;
            let list = ev.force_list(a(1), p)?;
            let mut out = Vec::new();
            for t in list.iter() {
                match ev.call(&f, &[*t], p)? {
                    Value::Bool(true) => out.push(*t),
                    Value::Bool(false) => {}
                    other => return Err(type_error_opt(&other, "a Boolean", p)),
                }
            }
            Value::List(Rc::new(out))
        }
        "foldl'" => {
            let f = ev.force(a(0), p)?;
            let list = ev.force_list(a(2), p)?;
            let mut acc = a(1);
            for t in list.iter() {
                let v = ev.call(&f, &[acc, *t], p)?;
                acc = ev.done(v);
            }
            ev.force(acc, p)?
        }
        "fromJSON" => {
            let s = ev.force_str(a(0), p)?;
            let j: Json = serde_json::from_str(&s)
                .map_err(|e| EvalError::eval(format!("while parsing JSON: {e}"), p))?;
            from_json(ev, &j)
        }
        "toJSON" => {
            let v = ev.force(a(0), p)?;
            let j = ev.json_of(v, &mut Default::default())?;
            let mut out = String::new();
            write_json(&j, &mut out);
            Value::str(&out)
        }
        "functionArgs" => match ev.force(a(0), p)? {
            Value::Lambda(def, _) => {
                let mut set = Attrs::new();
                if let Param::Pattern { formals, .. } = &def.param {
                    for (n, d) in formals {
                        let t = ev.done(Value::Bool(d.is_some()));
                        set.insert(
                            n.clone(),
                            Attr {
                                value: t,
                                pos: None,
                            },
                        );
                    }
                }
                Value::Attrs(Rc::new(set))
            }
            Value::Prim(_) => Value::Attrs(Rc::new(Attrs::new())),
            other => return Err(type_error_opt(&other, "a function", p)),
        },
        "genList" => {
            let n = ev.force_int(a(1), p)?;
            if n < 0 {
                return Err(EvalError::eval(
                    format!("cannot create list of size {n}"),
                    p,
                ));
            }
            let mut out = Vec::with_capacity(n.min(1 << 20) as usize);
            for i in 0..n {
                let it = ev.done(Value::Int(i));
                out.push(ev.alloc(ThunkState::Apply(a(0), it)));
            }
            Value::List(Rc::new(out))
        }
        "getAttr" | "hasAttr" => {
            let n = ev.force_str(a(0), p)?;
            let set = attrs(ev, a(1), p)?;
            match (name, set.get(&*n)) {
                ("hasAttr", found) => Value::Bool(found.is_some()),
                (_, Some(v)) => ev.force(v.value, p)?,
                (_, None) => return Err(EvalError::eval(format!("attribute '{n}' missing"), p)),
            }
        }
        "getEnv" => {
            let n = ev.force_str(a(0), p)?;
            Value::str(&ev.sandbox.env(&n))
        }
        "groupBy" | "partition" => {
            let f = ev.force(a(0), p)?;
            let list = ev.force_list(a(1), p)?;
            let mut groups: std::collections::BTreeMap<Rc<str>, Vec<ThunkId>> = Default::default();
            if name == "partition" {
                groups.insert(Rc::from("right"), Vec::new());
                groups.insert(Rc::from("wrong"), Vec::new());
            }
            for t in list.iter() {
                let key: Rc<str> = match (name, ev.call(&f, &[*t], p)?) {
                    ("partition", Value::Bool(b)) => Rc::from(if b { "right" } else { "wrong" }),
                    ("groupBy", Value::Str(s)) => s,
                    (_, other) => {
                        let want = if name == "partition" {
                            "a Boolean"
                        } else {
                            "a string"
                        };
                        return Err(type_error_opt(&other, want, p));
                    }
                };
                groups.entry(key).or_default().push(*t);
            }
            let mut set = Attrs::new();
            for (k, v) in groups {
                let t = ev.done(Value::List(Rc::new(v)));
                set.insert(
                    k,
                    Attr {
                        value: t,
                        pos: None,
                    },
                );
            }
            Value::Attrs(Rc::new(set))
        }
        "import" => {
            let path = coerce_to_path(ev, a(0), p)?;
            let t = ev.import(&path, p)?;
            ev.force(t, p)?
        }
        "intersectAttrs" => {
            let x = attrs(ev, a(0), p)?;
            let y = attrs(ev, a(1), p)?;
            let set: Attrs = y
                .iter()
                .filter(|(k, _)| x.contains_key(*k))
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            Value::Attrs(Rc::new(set))
        }
        "isAttrs" | "isBool" | "isFloat" | "isFunction" | "isInt" | "isList" | "isNull"
        | "isPath" | "isString" => {
            let v = ev.force(a(0), p)?;
            Value::Bool(matches!(
                (name, v),
                ("isAttrs", Value::Attrs(_))
                    | ("isBool", Value::Bool(_))
                    | ("isFloat", Value::Float(_))
                    | ("isFunction", Value::Lambda(..) | Value::Prim(_))
                    | ("isInt", Value::Int(_))
                    | ("isList", Value::List(_))
                    | ("isNull", Value::Null)
                    | ("isPath", Value::Path(_))
                    | ("isString", Value::Str(_))
            ))
        }
        "typeOf" => Value::str(ev.force(a(0), p)?.type_of()),
        "length" => Value::Int(ev.force_list(a(0), p)?.len() as i64),
        "listToAttrs" => {
            let list = ev.force_list(a(0), p)?;
            let mut set = Attrs::new();
            for t in list.iter() {
                let item = attrs(ev, *t, p)?;
                let n = item
                    .get("name")
                    .ok_or_else(|| EvalError::eval("attribute 'name' missing", p))?;
                let (npos, n) = (n.pos, ev.force_str(n.value, p)?);
                let v = item
                    .get("value")
                    .ok_or_else(|| EvalError::eval("attribute 'value' missing", p))?;
                set.entry(n).or_insert(Attr {
                    value: v.value,
                    pos: v.pos.or(npos),
                });
            }
            Value::Attrs(Rc::new(set))
        }
        "match" | "split" => {
            let pattern = ev.force_str(a(0), p)?;
            let s = ev.force_str(a(1), p)?;
            let anchored = if name == "match" {
                format!("^(?:{pattern})$")
            } else {
                pattern.to_string()
            };
            // Nix uses POSIX extended regular expressions; the common subset (classes,
            // groups, repetition, alternation) means the same in Rust's syntax. Anything Rust
            // rejects is left to Nix rather than guessed at.
            let re = regex::Regex::new(&anchored).map_err(|_| {
                EvalError::unsupported(format!("the regular expression \"{pattern}\""), p)
            })?;
            let groups = |ev: &mut Evaluator, caps: &regex::Captures| -> Value {
                let items = (1..caps.len())
                    .map(|i| {
                        let v = caps.get(i).map_or(Value::Null, |m| Value::str(m.as_str()));
                        ev.done(v)
                    })
                    .collect();
                Value::List(Rc::new(items))
            };
            if name == "match" {
                match re.captures(&s) {
                    Some(caps) => groups(ev, &caps),
                    None => Value::Null,
                }
            } else {
                let mut out = Vec::new();
                let mut last = 0;
                for caps in re.captures_iter(&s) {
                    let whole = caps.get(0).expect("group 0 always matches");
                    let before = ev.done(Value::str(&s[last..whole.start()]));
                    out.push(before);
                    let g = groups(ev, &caps);
                    out.push(ev.done(g));
                    last = whole.end();
                }
                let rest = ev.done(Value::str(&s[last..]));
                out.push(rest);
                Value::List(Rc::new(out))
            }
        }
        "map" => {
            let list = ev.force_list(a(1), p)?;
            let out = list
                .iter()
                .map(|t| ev.alloc(ThunkState::Apply(a(0), *t)))
                .collect();
            Value::List(Rc::new(out))
        }
        "mapAttrs" => {
            let set = attrs(ev, a(1), p)?;
            let mut out = Attrs::new();
            for (k, v) in set.iter() {
                let kt = ev.done(Value::Str(k.clone()));
                let partial = ev.alloc(ThunkState::Apply(a(0), kt));
                let t = ev.alloc(ThunkState::Apply(partial, v.value));
                out.insert(
                    k.clone(),
                    Attr {
                        value: t,
                        pos: v.pos,
                    },
                );
            }
            Value::Attrs(Rc::new(out))
        }
        "zipAttrsWith" => {
            let list = ev.force_list(a(1), p)?;
            let mut groups: std::collections::BTreeMap<Rc<str>, Vec<ThunkId>> = Default::default();
            for t in list.iter() {
                for (k, v) in attrs(ev, *t, p)?.iter() {
                    groups.entry(k.clone()).or_default().push(v.value);
                }
            }
            let mut out = Attrs::new();
            for (k, vs) in groups {
                let kt = ev.done(Value::Str(k.clone()));
                let lt = ev.done(Value::List(Rc::new(vs)));
                let partial = ev.alloc(ThunkState::Apply(a(0), kt));
                let t = ev.alloc(ThunkState::Apply(partial, lt));
                out.insert(
                    k,
                    Attr {
                        value: t,
                        pos: None,
                    },
                );
            }
            Value::Attrs(Rc::new(out))
        }
        "pathExists" => {
            let path = coerce_to_path(ev, a(0), p)?;
            let exists = ev.sandbox.exists(&canon_path(&path.to_string_lossy()));
            Value::Bool(
                exists.map_err(|e| ev.denied(e, "", "checking the existence of", &path, p))?,
            )
        }
        "readFile" => {
            let path = coerce_to_path(ev, a(0), p)?;
            let bytes = ev
                .sandbox
                .read(&canon_path(&path.to_string_lossy()))
                .map_err(|e| ev.denied(e, "opening file", "reading", &path, p))?;
            Value::str(&String::from_utf8_lossy(&bytes))
        }
        "readDir" => {
            let path = coerce_to_path(ev, a(0), p)?;
            let entries = ev
                .sandbox
                .read_dir(&canon_path(&path.to_string_lossy()))
                .map_err(|e| {
                    ev.denied(e, "opening directory", "reading the directory", &path, p)
                })?;
            let mut set = Attrs::new();
            for (name, kind) in entries {
                let t = ev.done(Value::str(kind));
                set.insert(
                    Rc::from(name.as_str()),
                    Attr {
                        value: t,
                        pos: None,
                    },
                );
            }
            Value::Attrs(Rc::new(set))
        }
        "removeAttrs" => {
            let set = attrs(ev, a(0), p)?;
            let names = ev.force_list(a(1), p)?;
            let mut out = (*set).clone();
            for t in names.iter() {
                let n = ev.force_str(*t, p)?;
                out.remove(&*n);
            }
            Value::Attrs(Rc::new(out))
        }
        "replaceStrings" => {
            let from = ev.force_list(a(0), p)?;
            let to = ev.force_list(a(1), p)?;
            let s = ev.force_str(a(2), p)?;
            if from.len() != to.len() {
                return Err(EvalError::eval(
                    "'from' and 'to' arguments to 'replaceStrings' have different lengths",
                    p,
                ));
            }
            let mut pats = Vec::with_capacity(from.len());
            for t in from.iter() {
                pats.push(ev.force_str(*t, p)?);
            }
            let mut subs: Vec<Option<Rc<str>>> = vec![None; to.len()];
            let bytes = s.as_bytes();
            let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
            let mut i = 0;
            while i <= bytes.len() {
                let found = pats
                    .iter()
                    .position(|pat| bytes[i..].starts_with(pat.as_bytes()));
                match found {
                    Some(k) => {
                        if subs[k].is_none() {
                            subs[k] = Some(ev.force_str(to[k], p)?);
                        }
                        out.extend_from_slice(subs[k].as_deref().unwrap_or("").as_bytes());
                        if pats[k].is_empty() {
                            if i < bytes.len() {
                                out.push(bytes[i]);
                            }
                            i += 1;
                        } else {
                            i += pats[k].len();
                        }
                    }
                    None => {
                        if i < bytes.len() {
                            out.push(bytes[i]);
                        }
                        i += 1;
                    }
                }
            }
            Value::str(&String::from_utf8_lossy(&out))
        }
        "sort" => {
            let f = ev.force(a(0), p)?;
            let list = ev.force_list(a(1), p)?;
            let sorted = merge_sort(ev, &f, &list, p)?;
            Value::List(Rc::new(sorted))
        }
        "stringLength" => Value::Int(coerce(ev, a(0), false, true, p)?.len() as i64),
        "substring" => {
            let start = ev.force_int(a(0), p)?;
            let len = ev.force_int(a(1), p)?;
            let s = coerce(ev, a(2), false, true, p)?;
            if start < 0 {
                return Err(EvalError::eval("negative start position in 'substring'", p));
            }
            let bytes = s.as_bytes();
            let start = (start as usize).min(bytes.len());
            let end = if len < 0 {
                bytes.len()
            } else {
                start.saturating_add(len as usize).min(bytes.len())
            };
            Value::str(&String::from_utf8_lossy(&bytes[start..end]))
        }
        "toPath" => {
            let s = coerce(ev, a(0), false, false, p)?;
            if !s.starts_with('/') {
                return Err(EvalError::eval(
                    format!("string '{s}' doesn't represent an absolute path"),
                    p,
                ));
            }
            Value::str(&canon_path(&s).to_string_lossy())
        }
        "toString" => Value::str(&coerce(ev, a(0), true, false, p)?),
        "unsafeDiscardStringContext" => Value::Str(ev.force_str(a(0), p)?),
        "trace" => {
            let v = ev.force(a(0), p)?;
            let shown = match &v {
                Value::Str(s) => s.to_string(),
                other => match ev.json_of(other.clone(), &mut Default::default()) {
                    Ok(j) => j.to_string(),
                    Err(_) => format!("<{}>", other.type_of()),
                },
            };
            eprintln!("trace: {shown}");
            ev.force(a(1), p)?
        }
        other => return Err(EvalError::unsupported(format!("builtins.{other}"), p)),
    })
}

fn attrs(ev: &mut Evaluator, t: ThunkId, p: Option<Pos>) -> Result<Rc<Attrs>, EvalError> {
    match ev.force(t, p)? {
        Value::Attrs(a) => Ok(a),
        other => Err(type_error_opt(&other, "a set", p)),
    }
}

/// Forces and coerces to a string; `copy`: paths become the store paths Nix would copy them to.
fn coerce(
    ev: &mut Evaluator,
    t: ThunkId,
    more: bool,
    copy: bool,
    p: Option<Pos>,
) -> Result<String, EvalError> {
    let v = ev.force(t, p)?;
    ev.coerce_to_string(v, more, copy, p.unwrap_or(Pos { file: 0, offset: 0 }))
        .map_err(|e| {
            if p.is_none() {
                EvalError { pos: None, ..e }
            } else {
                e
            }
        })
}

fn to_string(ev: &mut Evaluator, t: ThunkId, p: Option<Pos>) -> Result<String, EvalError> {
    coerce(ev, t, false, true, p)
}

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

fn base_name_of(path: &str) -> &str {
    if path.is_empty() {
        return "";
    }
    let mut last = path.len() - 1;
    if path.as_bytes()[last] == b'/' && last > 0 {
        last -= 1;
    }
    let start = path[..=last].rfind('/').map(|i| i + 1).unwrap_or(0);
    &path[start..=last]
}

fn dir_of(path: &str) -> String {
    match path.rfind('/') {
        None => ".".to_owned(),
        Some(0) => "/".to_owned(),
        Some(i) => path[..i].to_owned(),
    }
}

fn from_json(ev: &mut Evaluator, j: &Json) -> Value {
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
                    let v = from_json(ev, i);
                    ev.done(v)
                })
                .collect();
            Value::List(Rc::new(ids))
        }
        Json::Object(map) => {
            let mut set = Attrs::new();
            for (k, v) in map {
                let v = from_json(ev, v);
                let t = ev.done(v);
                set.insert(
                    Rc::from(k.as_str()),
                    Attr {
                        value: t,
                        pos: None,
                    },
                );
            }
            Value::Attrs(Rc::new(set))
        }
    }
}

/// JSON text as Nix's `toJSON` writes it: compact, keys sorted, Nix's string escapes.
pub(crate) fn write_json(j: &Json, out: &mut String) {
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
        let less = match ev.call(f, &[right[j], left[i]], p)? {
            Value::Bool(b) => b,
            other => return Err(type_error_opt(&other, "a Boolean", p)),
        };
        if less {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::rules::evaluate_source;

    #[track_caller]
    fn check_eval(src: &str, expected: serde_json::Value) {
        let dir = std::env::temp_dir();
        assert_eq!(
            evaluate_source(src, &dir).map_err(|e| e.to_string()),
            Ok(expected),
            "{src}"
        );
    }

    #[track_caller]
    fn check_err(src: &str, expected: &str) {
        let dir = std::env::temp_dir();
        let msg = evaluate_source(src, &dir).unwrap_err().to_string();
        assert!(
            msg.contains(expected),
            "{src}: wanted {expected:?} in:\n{msg}"
        );
        assert!(
            msg.starts_with("input.nix:1:"),
            "{src}: no location in:\n{msg}"
        );
    }

    #[test]
    fn list_builtins_report_nix_messages() {
        check_err(
            "builtins.head [ ]",
            "'builtins.head' called on an empty list",
        );
        check_err(
            "builtins.tail [ ]",
            "'builtins.tail' called on an empty list",
        );
        check_err("builtins.elemAt [ 1 ] 1", "list index 1 is out of bounds");
        check_err(
            "builtins.genList (x: x) (-1)",
            "cannot create list of size -1",
        );
        check_err(
            "builtins.length 1",
            "value is an integer while a list was expected",
        );
        check_err("map (x: x) { }", "value is a set while a list was expected");
        check_err(
            "builtins.filter (x: 1) [ 1 ]",
            "value is an integer while a Boolean was expected",
        );
    }

    #[test]
    fn attribute_builtins_report_nix_messages() {
        check_err("builtins.getAttr \"x\" { }", "attribute 'x' missing");
        check_err(
            "builtins.listToAttrs [ { value = 1; } ]",
            "attribute 'name' missing",
        );
        check_err(
            "builtins.attrNames [ ]",
            "value is a list while a set was expected",
        );
        check_err("builtins.nope", "attribute 'nope' missing");
    }

    #[test]
    fn string_builtins_report_nix_messages() {
        check_err(
            "builtins.replaceStrings [ \"a\" ] [ ] \"a\"",
            "'from' and 'to' arguments to 'replaceStrings' have different lengths",
        );
        check_err(
            "builtins.substring (-1) 1 \"a\"",
            "negative start position in 'substring'",
        );
        check_err("builtins.fromJSON \"{\"", "while parsing JSON");
        check_err(
            "builtins.hashString \"crc\" \"\"",
            "unknown hash algorithm 'crc'",
        );
        check_err(
            "abort \"stop\"",
            "evaluation aborted with the following error message: 'stop'",
        );
        check_err("throw \"stop\"", "error: stop");
    }

    #[test]
    fn file_builtins_read_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(
            dir.path().join("sub/default.nix"),
            "{ k = builtins.readFile ./k; }",
        )
        .unwrap();
        std::fs::write(dir.path().join("sub/k"), "key\n").unwrap();
        let got = evaluate_source(
            "[ (import ./sub).k (builtins.readDir ./sub) (builtins.pathExists ./sub/k) (builtins.pathExists ./nope) ]",
            dir.path(),
        )
        .unwrap();
        assert_eq!(
            got,
            json!(["key\n", {"default.nix": "regular", "k": "regular"}, true, false])
        );
        let msg = evaluate_source("builtins.readFile ./nope", dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("opening file '") && msg.contains("nope': No such file or directory"),
            "{msg}"
        );
        let msg = evaluate_source("import ./nope.nix", dir.path())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("nope.nix"), "{msg}");
        check_err(
            "builtins.readFile \"relative\"",
            "string 'relative' doesn't represent an absolute path",
        );
    }

    #[test]
    fn an_import_cycle_is_reported_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.nix"), "import ./b.nix").unwrap();
        std::fs::write(dir.path().join("b.nix"), "import ./a.nix").unwrap();
        let msg = evaluate_source("import ./a.nix", dir.path())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("infinite recursion encountered"), "{msg}");
    }

    #[test]
    fn higher_order_builtins() {
        check_eval("builtins.sort (a: b: a < b) [ 3 1 2 ]", json!([1, 2, 3]));
        check_eval(
            "builtins.mapAttrs (n: v: n + v) { a = \"1\"; }",
            json!({"a": "a1"}),
        );
        check_eval("builtins.foldl' (a: b: a * b) 1 [ 2 3 4 ]", json!(24));
        check_eval(
            "builtins.concatMap (x: [ x x ]) [ 1 2 ]",
            json!([1, 1, 2, 2]),
        );
        check_eval(
            "builtins.toJSON { b = 1.5; a = [ null \"\\n\" ]; }",
            json!("{\"a\":[null,\"\\n\"],\"b\":1.5}"),
        );
        check_eval("__head [ 1 ]", json!(1));
    }
}
