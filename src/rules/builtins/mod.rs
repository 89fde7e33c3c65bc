//! Nix's builtins as far as rules files use them, as data: each is one function, listed once
//! in [`BUILTINS`] with its name and arity, grouped by domain in the submodules. Also the names
//! of the builtins we lack (using one is reported as unsupported, which may lead to the
//! `nix-instantiate` fallback, rather than as an unknown attribute). Evaluation proper is
//! `eval.rs`; builtins reach files and the environment only through its sandbox.

mod attrs;
mod control;
mod json;
mod lists;
mod numbers;
mod paths;
mod strings;

use rustc_hash::FxHashMap;
use std::fmt;
use std::rc::Rc;

use super::diag::{EvalError, Pos};
use super::eval::{type_error_opt, Evaluator};
use super::value::{Attrs, AttrsBuilder, PrimApp, ThunkId, ThunkState, Value};

/// What a builtin does with its arguments, all given (as many as its arity).
pub(crate) type Fun = fn(&mut Evaluator, &[ThunkId], Option<Pos>) -> Result<Value, EvalError>;

/// A builtin: the one place its name, arity and behaviour are stated.
pub(crate) struct Builtin {
    pub name: &'static str,
    pub arity: usize,
    pub fun: Fun,
}

impl fmt::Debug for Builtin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "builtins.{}/{}", self.name, self.arity)
    }
}

const fn b(name: &'static str, arity: usize, fun: Fun) -> Builtin {
    Builtin { name, arity, fun }
}

/// Every builtin we implement, by name.
pub(crate) static BUILTINS: &[Builtin] = &[
    b("abort", 1, control::abort),
    b("add", 2, numbers::add),
    b("addErrorContext", 2, control::add_error_context),
    b("all", 2, lists::all),
    b("any", 2, lists::any),
    b("attrNames", 1, attrs::attr_names),
    b("attrValues", 1, attrs::attr_values),
    b("baseNameOf", 1, paths::base_name_of),
    b("bitAnd", 2, numbers::bit_and),
    b("bitOr", 2, numbers::bit_or),
    b("bitXor", 2, numbers::bit_xor),
    b("catAttrs", 2, attrs::cat_attrs),
    b("ceil", 1, numbers::ceil),
    b("concatLists", 1, lists::concat_lists),
    b("concatMap", 2, lists::concat_map),
    b("concatStringsSep", 2, strings::concat_strings_sep),
    b("deepSeq", 2, control::deep_seq),
    b("dirOf", 1, paths::dir_of),
    b("div", 2, numbers::div),
    b("elem", 2, lists::elem),
    b("elemAt", 2, lists::elem_at),
    b("filter", 2, lists::filter),
    b("floor", 1, numbers::floor),
    b("foldl'", 3, lists::foldl),
    b("fromJSON", 1, json::from_json),
    b("functionArgs", 1, control::function_args),
    b("genList", 2, lists::gen_list),
    b("getAttr", 2, attrs::get_attr),
    b("getEnv", 1, paths::get_env),
    b("groupBy", 2, lists::group_by),
    b("hashString", 2, strings::hash_string),
    b("hasAttr", 2, attrs::has_attr),
    b("head", 1, lists::head),
    b("import", 1, paths::import),
    b("intersectAttrs", 2, attrs::intersect_attrs),
    b("isAttrs", 1, control::is_attrs),
    b("isBool", 1, control::is_bool),
    b("isFloat", 1, control::is_float),
    b("isFunction", 1, control::is_function),
    b("isInt", 1, control::is_int),
    b("isList", 1, control::is_list),
    b("isNull", 1, control::is_null),
    b("isPath", 1, control::is_path),
    b("isString", 1, control::is_string),
    b("length", 1, lists::length),
    b("lessThan", 2, numbers::less_than),
    b("listToAttrs", 1, attrs::list_to_attrs),
    b("map", 2, lists::map),
    b("match", 2, strings::match_),
    b("mapAttrs", 2, attrs::map_attrs),
    b("mul", 2, numbers::mul),
    b("partition", 2, lists::partition),
    b("pathExists", 1, paths::path_exists),
    b("readDir", 1, paths::read_dir),
    b("readFile", 1, paths::read_file),
    b("removeAttrs", 2, attrs::remove_attrs),
    b("replaceStrings", 3, strings::replace_strings),
    b("seq", 2, control::seq),
    b("sort", 2, lists::sort),
    b("split", 2, strings::split),
    b("stringLength", 1, strings::string_length),
    b("sub", 2, numbers::sub),
    b("substring", 3, strings::substring),
    b("tail", 1, lists::tail),
    b("throw", 1, control::throw),
    b("toJSON", 1, json::to_json),
    b("toPath", 1, paths::to_path),
    b("toString", 1, strings::to_string),
    b("trace", 2, control::trace),
    b("tryEval", 1, control::try_eval),
    b("typeOf", 1, control::type_of),
    b(
        "unsafeDiscardStringContext",
        1,
        strings::unsafe_discard_string_context,
    ),
    b("zipAttrsWith", 2, attrs::zip_attrs_with),
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
    let mut set = AttrsBuilder::new();
    for prim in BUILTINS {
        let t = ev.done(Value::Prim(Rc::new(PrimApp {
            prim,
            args: Vec::new(),
        })));
        set.insert(prim.name, t);
    }
    for name in UNSUPPORTED {
        let t = ev.alloc(ThunkState::Unsupported(name));
        set.insert(*name, t);
    }
    for (name, v) in [
        ("true", Value::Bool(true)),
        ("false", Value::Bool(false)),
        ("null", Value::Null),
    ] {
        let t = ev.done(v);
        set.insert(name, t);
    }
    // `builtins.builtins` is the set itself; the thunk is filled in once the set exists.
    let builtins_thunk = ev.alloc(ThunkState::Done(Value::Null));
    set.insert("builtins", builtins_thunk);
    let set = set.into_attrs();
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
    ev.set_done(builtins_thunk, Value::Attrs(Rc::new(set)));
    (names, slots)
}

// ----- helpers shared by the domains ---------------------------------------------------------

/// The position errors point at when the builtin has none (a call made by another builtin).
fn here(p: Option<Pos>) -> Pos {
    p.unwrap_or(Pos { file: 0, offset: 0 })
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
    ev.coerce_to_string(v, more, copy, here(p)).map_err(|e| {
        if p.is_none() {
            EvalError { pos: None, ..e }
        } else {
            e
        }
    })
}

/// A Nix function's Boolean answer (`filter`, `all`, `sort`, …).
fn bool_of(v: Value, p: Option<Pos>) -> Result<bool, EvalError> {
    match v {
        Value::Bool(b) => Ok(b),
        other => Err(type_error_opt(&other, "a Boolean", p)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::rules::evaluate_source;
    use crate::rules::testing::{check_err, check_eval};

    #[test]
    fn no_builtin_is_listed_twice_or_both_supported_and_not() {
        let mut names: Vec<&str> = BUILTINS.iter().map(|b| b.name).collect();
        names.extend(UNSUPPORTED);
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "a name is listed twice");
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
