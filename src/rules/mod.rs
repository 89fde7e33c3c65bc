//! Rules: what `secrets.nix` says about each secret file (who may decrypt it, armor, extras).
//!
//! Evaluation of the Nix file itself lives in the submodules (our own evaluator over rnix's
//! syntax tree, with `nix-instantiate` only for constructs it does not support); this module
//! turns the evaluated value into validated [`Rules`] and answers "which rule covers this file?".

mod builtins;
mod diag;
mod eval;
mod generator;
mod lower;
mod nix_fallback;
mod recipient;
mod sandbox;
mod store;
mod syntax;
mod value;

pub use eval::Locations;
pub use generator::{Generator, GeneratorError, MAX_LEN};
pub use recipient::Recipient;
pub use sandbox::{impure_from_env, Sandbox, IMPURE_ENV};

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde_json::Value as Json;

use value::Strict;

/// One secret declared in the rules file.
#[derive(Debug, Clone, PartialEq)]
pub struct Secret {
    /// The attribute name as written in the rules file (e.g. `"secrets/db.age"`).
    pub name: String,
    /// The secret file, relative to the rules file's directory, lexically normalised.
    pub path: PathBuf,
    /// Recipients, flattened, trimmed of surrounding whitespace, de-duplicated, in order.
    pub public_keys: Vec<String>,
    /// Whether the file is written ASCII-armored.
    pub armor: bool,
    /// Every other attribute of the rule (e.g. `generator`), as evaluated.
    pub extra: BTreeMap<String, Json>,
}

/// The validated content of a rules file.
#[derive(Debug, Clone)]
pub struct Rules {
    /// The rules file as given.
    pub file: PathBuf,
    /// The directory secret paths are relative to (the rules file's directory, absolute).
    pub dir: PathBuf,
    /// Secrets in attribute-name order (Nix's order).
    pub secrets: Vec<Secret>,
    /// Non-fatal findings (e.g. a nested list in `publicKeys`), one line each.
    pub warnings: Vec<String>,
}

/// Options for reading a rules file.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Say more on stderr about a fallback to `nix-instantiate`.
    pub verbose: bool,
    /// Lift confinement: read anywhere, see the environment, let `nix-instantiate` fetch.
    pub impure: bool,
}

/// A rules file that cannot be used. `Display` is the full message a user should see
/// (file, location when known, and what is wrong).
#[derive(Debug)]
pub struct RulesError {
    message: String,
}

impl RulesError {
    pub fn new(message: impl Into<String>) -> Self {
        RulesError {
            message: message.into(),
        }
    }
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RulesError {}

/// Evaluates the rules file to the JSON value `nix-instantiate --eval --strict --json` prints.
///
/// Our evaluator does the work; only a construct it does not support (search paths `<…>`,
/// fetchers, derivations, `fromTOML`, md5/sha1 hashes, regular expressions outside the
/// POSIX/Rust common subset, nesting deeper than 1000 brackets, …) hands the file to `nix-instantiate` when it is on PATH (said on stderr
/// under `verbose`). Deliberate differences from `nix-instantiate`:
/// - a top-level function whose arguments all have defaults is called with them, as
///   `nix eval --file` does (`nix-instantiate` only calls it when given some `--arg`);
/// - path values become the store path Nix would copy them to, computed without writing to
///   the store;
/// - strings are UTF-8: invalid bytes (from `readFile`, or a `substring` cut through a
///   character) are replaced with U+FFFD; string contexts are not tracked;
/// - evaluation nested deeper than 10,000 calls is an error ("stack overflow"), where Nix's
///   limit is its C stack;
/// - syntax errors are located by rnix: the same line as Nix, the column may differ slightly.
pub fn evaluate(file: &Path, opts: &LoadOptions) -> Result<Json, RulesError> {
    evaluate_located(file, opts).map(|e| e.json)
}

/// An evaluated rules file and where its attributes were defined (empty when `nix-instantiate`
/// did the evaluation).
#[derive(Debug, Clone)]
pub struct Evaluated {
    pub json: Json,
    pub locations: Locations,
}

/// Like [`evaluate`], also returning source locations for validation messages.
pub fn evaluate_located(file: &Path, opts: &LoadOptions) -> Result<Evaluated, RulesError> {
    evaluate_then(
        file,
        opts,
        |_, strict, locations| Ok(Evaluated::new(&strict, locations)),
        |json| {
            Ok(Evaluated {
                json,
                locations: Locations::new(),
            })
        },
    )
}

/// Evaluates `file` and hands the result to `own` (on the evaluation thread, where our
/// evaluator's values live) or, after a fallback to `nix-instantiate`, its JSON to `fallback`.
fn evaluate_then<T: Send + 'static>(
    file: &Path,
    opts: &LoadOptions,
    own: fn(&Path, Strict, Locations) -> Result<T, RulesError>,
    fallback: impl FnOnce(Json) -> Result<T, RulesError>,
) -> Result<T, RulesError> {
    let (abs, sandbox) = locate(file, opts.impure).map_err(|f| RulesError::new(f.message))?;
    let owned = file.to_path_buf();
    let for_eval = sandbox.clone();
    let outcome =
        run_on_big_stack(move || own_evaluation(&owned, abs, for_eval, |s, l| own(&owned, s, l)));
    match outcome {
        Ok(result) => result,
        Err(failure) if failure.unsupported && nix_fallback::available() => fallback(
            nix_fallback::evaluate(file, &sandbox, &failure.message, opts)?,
        ),
        Err(failure) => Err(RulesError::new(failure.message)),
    }
}

/// The rules file's absolute path (as path values are built from it) and the policy its
/// evaluation runs under, decided once here.
fn locate(file: &Path, impure: bool) -> Result<(PathBuf, Sandbox), Failure> {
    let shown = file.display();
    let fail = |message: String| Failure {
        unsupported: false,
        message,
    };
    let abs = std::env::current_dir()
        .map(|d| lower::canon_path(&d.join(file).to_string_lossy()))
        .map_err(|e| {
            fail(format!(
                "{shown}: cannot resolve the current directory: {e}"
            ))
        })?;
    let sandbox = if impure {
        Sandbox::impure()
    } else {
        Sandbox::confined_to_rules_of(&abs)
            .map_err(|e| fail(format!("{shown}: cannot find the rules root: {e}")))?
    };
    Ok((abs, sandbox))
}

/// Evaluates a rules file with our evaluator only, confined to its rules root, never falling
/// back to `nix-instantiate`.
pub fn evaluate_own(file: &Path) -> Result<Evaluated, RulesError> {
    let (abs, sandbox) = locate(file, false).map_err(|f| RulesError::new(f.message))?;
    let owned = file.to_path_buf();
    run_on_big_stack(move || own_evaluation(&owned, abs, sandbox, |s, l| Evaluated::new(&s, l)))
        .map_err(|f| RulesError::new(f.message))
}

/// Parses and evaluates Nix source text as if it were a file in `dir`, with our evaluator only
/// (no fallback), confined to `dir`. The entry point for fuzzing; never panics on any input.
pub fn evaluate_source(text: &str, dir: &Path) -> Result<Json, RulesError> {
    let path = lower::canon_path(&dir.join("input.nix").to_string_lossy());
    let sandbox = Sandbox::confined_to(dir)
        .map_err(|e| RulesError::new(format!("{}: {e}", dir.display())))?;
    let text = text.to_owned();
    run_on_big_stack(move || {
        let mut ev = eval::Evaluator::new("input.nix", sandbox);
        let result = ev
            .load_source("input.nix".to_owned(), path, std::rc::Rc::from(text))
            .and_then(|t| finish(&mut ev, t));
        result.map(|(s, _)| s.to_json()).map_err(|e| Failure {
            unsupported: e.kind == diag::ErrorKind::Unsupported,
            message: ev.render(&e),
        })
    })
    .map_err(|f| RulesError::new(f.message))
}

impl Evaluated {
    fn new(strict: &Strict, locations: Locations) -> Self {
        Evaluated {
            json: strict.to_json(),
            locations,
        }
    }
}

/// Why our evaluator failed, rendered; `unsupported` allows the fallback.
struct Failure {
    unsupported: bool,
    message: String,
}

fn own_evaluation<T>(
    file: &Path,
    abs: PathBuf,
    sandbox: Sandbox,
    then: impl FnOnce(Strict, Locations) -> T,
) -> Result<T, Failure> {
    let shown = file.display().to_string();
    // The rules file itself is read as named: the user chose it.
    let text = std::fs::read_to_string(file).map_err(|e| Failure {
        unsupported: false,
        message: format!("{shown}: cannot read the rules file: {e}"),
    })?;
    let mut ev = eval::Evaluator::new(&shown, sandbox);
    let (strict, locations) = ev
        .load_source(shown.clone(), abs, std::rc::Rc::from(text))
        .and_then(|t| finish(&mut ev, t))
        .map_err(|e| Failure {
            unsupported: e.kind == diag::ErrorKind::Unsupported,
            message: ev.render(&e),
        })?;
    Ok(then(strict, locations))
}

/// Forces the file's value, auto-calls it and forces it deeply.
fn finish(
    ev: &mut eval::Evaluator,
    root: value::ThunkId,
) -> Result<(Strict, Locations), diag::EvalError> {
    let v = ev.force(root, None)?;
    let v = ev.auto_call(v)?;
    let mut locations = Locations::new();
    let strict = ev.strict_of(v, &mut locations)?;
    Ok((strict, locations))
}

/// Runs `f` on a thread whose stack fits the evaluator's depth limit, so that deep input ends
/// in a clean error rather than a stack overflow.
fn run_on_big_stack<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    let spawned = std::thread::Builder::new()
        .name("rules-eval".to_owned())
        .stack_size(eval::STACK_SIZE)
        .spawn(f);
    match spawned {
        Ok(handle) => handle.join().unwrap_or_else(|_| {
            Err(Failure {
                unsupported: false,
                message: "internal error: the rules evaluator panicked".to_owned(),
            })
        }),
        Err(e) => Err(Failure {
            unsupported: false,
            message: format!("cannot start the rules evaluator: {e}"),
        }),
    }
}

impl Rules {
    /// Reads, evaluates and validates a rules file.
    pub fn load(file: &Path, opts: &LoadOptions) -> Result<Rules, RulesError> {
        evaluate_then(
            file,
            opts,
            |file, strict, locations| Rules::validate(file, &strict, &locations),
            |json| Rules::from_json(file, &json),
        )
    }

    /// Validates an evaluated rules value.
    pub fn from_json(file: &Path, json: &Json) -> Result<Rules, RulesError> {
        Rules::from_json_located(file, json, &Locations::new())
    }

    /// Validates an evaluated rules value; messages point at `locations` where known.
    pub fn from_json_located(
        file: &Path,
        json: &Json,
        locations: &Locations,
    ) -> Result<Rules, RulesError> {
        Rules::validate(file, &Strict::from_json(json), locations)
    }

    fn validate(file: &Path, value: &Strict, locations: &Locations) -> Result<Rules, RulesError> {
        let file_shown = file.display().to_string();
        // Secrets are visited in name order, which is the order `locations` records them in.
        let at = |i: usize, rule: &Strict, attr: Option<&str>| -> String {
            let found = attr.and_then(|a| {
                let Strict::Attrs(attrs) = rule else {
                    return None;
                };
                let j = attrs.iter().position(|(k, _)| &**k == a)?;
                locations.attr(i, j)
            });
            found
                .or_else(|| locations.secret(i))
                .unwrap_or_else(|| file_shown.clone())
        };
        let shown = file.display();
        let dir = rules_dir(file)?;
        let root = Sandbox::confined_to_rules_of(&dir.join("secrets.nix"))
            .map_err(|e| RulesError::new(format!("{shown}: cannot find the rules root: {e}")))?;
        let Strict::Attrs(top) = value else {
            return Err(RulesError::new(format!(
                "{shown}: the rules file must evaluate to an attribute set of secrets, not {}",
                value.json_type()
            )));
        };
        let mut secrets = Vec::with_capacity(top.len());
        let mut warnings = Vec::new();
        let mut names: Vec<&(std::rc::Rc<str>, Strict)> = top.iter().collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (i, (name, rule)) in names.into_iter().enumerate() {
            let Strict::Attrs(attrs) = rule else {
                return Err(RulesError::new(format!(
                    "{}: secret \"{name}\" must be an attribute set, not {}",
                    at(i, rule, None),
                    rule.json_type()
                )));
            };
            let keys = rule.get("publicKeys").ok_or_else(|| {
                RulesError::new(format!(
                    "{}: secret \"{name}\" has no publicKeys attribute",
                    at(i, rule, None)
                ))
            })?;
            let mut flat = Vec::new();
            let nested = flatten_keys(keys, &mut flat).map_err(|what| {
                RulesError::new(format!(
                    "{}: secret \"{name}\": publicKeys must be a list of strings, found {what}",
                    at(i, rule, Some("publicKeys"))
                ))
            })?;
            if nested {
                warnings.push(format!(
                    "{}: secret \"{name}\": publicKeys contains a nested list; it was flattened",
                    at(i, rule, Some("publicKeys"))
                ));
            }
            let mut public_keys: Vec<String> = Vec::with_capacity(flat.len());
            for key in flat {
                let key = key.trim();
                if !key.is_empty() && !public_keys.iter().any(|k| k == key) {
                    public_keys.push(key.to_owned());
                }
            }
            let armor = match rule.get("armor") {
                None | Some(Strict::Null) => false,
                Some(Strict::Bool(b)) => *b,
                Some(other) => {
                    return Err(RulesError::new(format!(
                        "{}: secret \"{name}\": armor must be a boolean, not {}",
                        at(i, rule, Some("armor")),
                        other.json_type()
                    )))
                }
            };
            let path = normalize(Path::new(&**name));
            if let Some(why) = escapes(&root, &dir, &path) {
                return Err(RulesError::new(format!(
                    "{}: secret \"{name}\": {why}",
                    at(i, rule, None)
                )));
            }
            let extra = attrs
                .iter()
                .filter(|(k, _)| &**k != "publicKeys" && &**k != "armor")
                .map(|(k, v)| (k.to_string(), v.to_json()))
                .collect();
            secrets.push(Secret {
                name: name.to_string(),
                path,
                public_keys,
                armor,
                extra,
            });
        }
        Ok(Rules {
            file: file.to_path_buf(),
            dir,
            secrets,
            warnings,
        })
    }

    /// The absolute path of a secret's file.
    pub fn secret_file(&self, secret: &Secret) -> PathBuf {
        self.dir.join(&secret.path)
    }

    /// Finds the rule for `file` (relative to the current directory, or absolute).
    pub fn find(&self, file: &Path) -> Option<&Secret> {
        let wanted = absolute_normalized(file)?;
        self.secrets
            .iter()
            .find(|s| self.dir.join(&s.path) == wanted)
    }
}

/// Why a secret's file (`path`, normalised, relative to the rules directory `dir`) would not stay
/// inside the rules root, if it would not: an absolute name, `..` past the root, or a symlink
/// (in the repository, under the attacker's control) that leads out of it. Every action writes
/// or reads the file by this path, so such a name is refused before any of them starts.
fn escapes(root: &Sandbox, dir: &Path, path: &Path) -> Option<String> {
    let (_, top) = root.roots()?;
    let outside = || {
        format!(
            "the file name leads outside the rules root {} (the nearest directory above the \
             rules file holding .git, .hg, .jj or .sl); name files inside it",
            top.display()
        )
    };
    if path.is_absolute() {
        return Some(format!(
            "the file name is absolute; names are relative to the rules file's directory and {}",
            outside().replacen("the file name leads", "may not lead", 1)
        ));
    }
    let abs = normalize(&dir.join(path));
    match root.resolve(&abs) {
        Err(sandbox::Denied::Outside) => Some(outside()),
        Ok(_) | Err(sandbox::Denied::Io(_)) => None,
    }
}

/// Flattens a `publicKeys` value into `out`; returns whether a nested list was seen, or a
/// description of the first non-string, non-list element.
fn flatten_keys<'a>(value: &'a Strict, out: &mut Vec<&'a str>) -> Result<bool, String> {
    let Strict::List(list) = value else {
        return Err(format!("{} instead of a list", value.json_type()));
    };
    let mut nested = false;
    for item in list {
        match item {
            Strict::Str(s) => out.push(s),
            Strict::List(_) => {
                flatten_keys(item, out)?;
                nested = true;
            }
            other => return Err(format!("an element that is {}", other.json_type())),
        }
    }
    Ok(nested)
}

fn rules_dir(file: &Path) -> Result<PathBuf, RulesError> {
    let parent = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // Canonical so that FILE arguments given through symlinked or relative paths still match.
    parent.canonicalize().map_err(|e| {
        RulesError::new(format!(
            "{}: cannot resolve the rules file's directory: {e}",
            file.display()
        ))
    })
}

/// Lexical normalisation: drops `.` and resolves `..` against earlier components.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for comp in path.components() {
        match comp {
            Component::CurDir => {}
            // `..` cancels a name, never a `..` before it, nor the root.
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir) => {}
                _ => out.push(".."),
            },
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Absolute form of `file` whose existing parent directory is canonicalised, so that it can be
/// compared with paths under the (canonical) rules directory.
fn absolute_normalized(file: &Path) -> Option<PathBuf> {
    let abs = if file.is_absolute() {
        normalize(file)
    } else {
        normalize(&std::env::current_dir().ok()?.join(file))
    };
    let name = abs.file_name()?.to_owned();
    let parent = abs.parent()?;
    let parent = parent
        .canonicalize()
        .unwrap_or_else(|_| parent.to_path_buf());
    Some(parent.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn load(json: Json) -> Result<Rules, RulesError> {
        Rules::from_json(Path::new("secrets.nix"), &json)
    }

    #[test]
    fn nested_key_lists_are_flattened_with_a_warning_naming_the_secret() {
        let rules = load(json!({"a.age": {"publicKeys": [["k1", "k2"], "k3"]}})).unwrap();
        assert_eq!(rules.secrets[0].public_keys, ["k1", "k2", "k3"]);
        assert_eq!(rules.warnings.len(), 1);
        assert!(
            rules.warnings[0].contains("\"a.age\""),
            "{:?}",
            rules.warnings
        );
    }

    #[test]
    fn keys_are_trimmed_and_deduplicated_in_order() {
        let rules = load(json!({"a.age": {"publicKeys": ["k2\n", " k1", "k2", ""]}})).unwrap();
        assert_eq!(rules.secrets[0].public_keys, ["k2", "k1"]);
        assert!(rules.warnings.is_empty());
    }

    #[test]
    fn empty_public_keys_load() {
        let rules = load(json!({"a.age": {"publicKeys": []}})).unwrap();
        assert!(rules.secrets[0].public_keys.is_empty());
    }

    #[test]
    fn armor_defaults_to_false_and_must_be_a_bool() {
        let rules =
            load(json!({"a.age": {"publicKeys": [], "armor": true}, "b.age": {"publicKeys": []}}))
                .unwrap();
        assert!(rules.secrets[0].armor);
        assert!(!rules.secrets[1].armor);
        let err = load(json!({"a.age": {"publicKeys": [], "armor": "yes"}})).unwrap_err();
        assert!(
            err.to_string()
                .contains("\"a.age\": armor must be a boolean"),
            "{err}"
        );
    }

    #[test]
    fn other_attributes_are_kept() {
        let rules = load(json!({"a.age": {"publicKeys": [], "generator": "hex:32"}})).unwrap();
        assert_eq!(rules.secrets[0].extra["generator"], json!("hex:32"));
    }

    #[test]
    fn a_rule_without_public_keys_is_an_error_naming_it() {
        let err = load(json!({"x/y.age": {"armor": true}})).unwrap_err();
        assert!(
            err.to_string()
                .contains("secret \"x/y.age\" has no publicKeys"),
            "{err}"
        );
    }

    #[test]
    fn non_string_keys_are_an_error() {
        let err = load(json!({"a.age": {"publicKeys": ["k", 3]}})).unwrap_err();
        assert!(err.to_string().contains("a number"), "{err}");
        let err = load(json!({"a.age": {"publicKeys": "k"}})).unwrap_err();
        assert!(
            err.to_string().contains("a string instead of a list"),
            "{err}"
        );
    }

    #[test]
    fn the_top_level_must_be_an_attribute_set_of_attribute_sets() {
        assert!(load(json!([1]))
            .unwrap_err()
            .to_string()
            .contains("not a list"));
        let err = load(json!({"a.age": 1})).unwrap_err();
        assert!(
            err.to_string()
                .contains("\"a.age\" must be an attribute set"),
            "{err}"
        );
    }

    #[test]
    fn secret_paths_are_normalised() {
        let rules = load(json!({"./sub/../x.age": {"publicKeys": []}})).unwrap();
        assert_eq!(rules.secrets[0].path, PathBuf::from("x.age"));
    }

    #[test]
    fn normalising_keeps_every_leading_parent_component() {
        assert_eq!(
            normalize(Path::new("../../a/./b/../c")),
            PathBuf::from("../../a/c")
        );
        assert_eq!(normalize(Path::new("a/../../b")), PathBuf::from("../b"));
        assert_eq!(normalize(Path::new("/../a")), PathBuf::from("/a"));
    }

    #[test]
    fn names_that_leave_the_rules_root_are_refused_naming_the_rule() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        std::fs::create_dir_all(repo.join("secrets")).unwrap();
        std::fs::create_dir_all(dir.path().join("other")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("other"), repo.join("secrets/out")).unwrap();
        let file = repo.join("secrets/secrets.nix");
        for name in [
            "../../other/prod.age",
            "/etc/prod.age",
            "out/prod.age",
            "x/../../../y.age",
        ] {
            let err = Rules::from_json(&file, &json!({ name: {"publicKeys": []} })).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&format!("secret \"{name}\": ")), "{msg}");
            assert!(msg.contains("outside the rules root"), "{msg}");
        }
        // Inside the repository, above the rules file, is fine.
        let rules = Rules::from_json(&file, &json!({"../top.age": {"publicKeys": []}})).unwrap();
        assert_eq!(rules.secrets[0].path, PathBuf::from("../top.age"));
    }
}
