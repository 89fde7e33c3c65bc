//! Rules: what `secrets.nix` says about each secret file (who may decrypt it, armor, extras).
//!
//! The one place that knows the rules format: evaluation of the Nix file (our own evaluator
//! over rnix's syntax tree, confined by `sandbox`, with `nix-instantiate` only for constructs it
//! does not support), validation into [`Rules`] (`validate`), the `generator` grammar and the
//! recipient classifier. This module answers "which rule covers this file?".

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
#[cfg(test)]
mod testing;
mod validate;
mod value;

pub use diag::escape_for_display;
use eval::Locations;
pub use generator::{Generator, GeneratorError, MAX_LEN};
pub use recipient::Recipient;
use sandbox::Sandbox;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use serde_json::Value as Json;

use value::Strict;

/// One secret declared in the rules file.
#[derive(Debug, Clone, PartialEq)]
pub struct Secret {
    /// The attribute name as written in the rules file (e.g. `"secrets/db.age"`).
    pub name: String,
    /// The secret file, relative to the rules file's directory, lexically normalised; it never
    /// leads outside the rules root (validation refuses such a rule).
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
    pub(crate) fn new(message: impl Into<String>) -> Self {
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
/// Our evaluator does the work, confined to the rules root unless `opts.impure` (see
/// `sandbox`); only a construct it does not support (search paths `<…>`, fetchers,
/// derivations, `fromTOML`, md5/sha1 hashes, regular expressions outside the POSIX/Rust common
/// subset, nesting deeper than 1000 brackets, …) hands the file to `nix-instantiate` when it is
/// on PATH, under the same confinement, said in one line on stderr. Deliberate differences
/// from `nix-instantiate`:
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
    evaluate_then(file, opts, None, |_, strict, _| Ok(strict.to_json()), Ok)
}

/// Writes what `--dump-rules` prints for `file` to `out`: what [`evaluate`] returns, as
/// indented JSON and a newline. Our evaluator's result is serialised straight from the
/// evaluated value (no `serde_json::Value` copy of it) on the evaluation thread, in chunks that
/// this thread writes to `out` as they come, so neither the whole text nor a copy of the value
/// is ever held. A failure to write is the `io::Error` itself (so that a caller can tell a
/// closed pipe), an unusable rules file a [`RulesError`].
pub fn dump(file: &Path, opts: &LoadOptions, out: &mut dyn Write) -> anyhow::Result<()> {
    let (abs, sandbox) = locate(file, opts.impure).map_err(|f| RulesError::new(f.message))?;
    let (chunks, received) = std::sync::mpsc::sync_channel(2);
    let for_eval = sandbox.clone();
    let mut write_error = None;
    let outcome = run_on_big_stack_while(
        || {
            own_evaluation(file, abs, for_eval, None, |strict, _| {
                let mut sink = Chunks {
                    to: chunks,
                    buf: Vec::with_capacity(Chunks::SIZE),
                };
                write_pretty(&mut sink, &strict)
            })
        },
        || {
            for chunk in received {
                if let Err(e) = out.write_all(&chunk) {
                    // Dropping the receiver stops the serialisation at its next chunk.
                    write_error = Some(e);
                    break;
                }
            }
        },
    );
    if let Some(e) = write_error {
        return Err(e.into());
    }
    let json = match outcome {
        Ok(written) => return written.map_err(Into::into),
        Err(failure) if failure.unsupported && nix_fallback::available() => {
            nix_fallback::evaluate(file, &sandbox, &failure.message, opts)?
        }
        Err(failure) => return Err(RulesError::new(failure.message).into()),
    };
    let mut buffered = std::io::BufWriter::with_capacity(Chunks::SIZE, out);
    write_pretty(&mut buffered, &json)?;
    Ok(())
}

fn write_pretty(out: &mut dyn Write, value: &impl serde::Serialize) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Output made on the evaluation thread, handed in chunks to the thread that writes it.
struct Chunks {
    to: std::sync::mpsc::SyncSender<Vec<u8>>,
    buf: Vec<u8>,
}

impl Chunks {
    const SIZE: usize = 64 << 10;

    fn send(&mut self) -> std::io::Result<()> {
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(Self::SIZE));
        self.to.send(full).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the output was closed")
        })
    }
}

impl Write for Chunks {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= Self::SIZE {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.send()
    }
}

/// Evaluates `file` and hands the result to `own` (on the evaluation thread, where our
/// evaluator's values live) or, after a fallback to `nix-instantiate`, its JSON to `fallback`.
fn evaluate_then<T: Send>(
    file: &Path,
    opts: &LoadOptions,
    keep: Option<&(dyn Fn(&str) -> bool + Sync)>,
    own: impl FnOnce(&Path, Strict, Locations) -> Result<T, RulesError> + Send,
    fallback: impl FnOnce(Json) -> Result<T, RulesError>,
) -> Result<T, RulesError> {
    match evaluate_with(file, opts, keep, own)? {
        Evaluated::Own(result) => Ok(result),
        Evaluated::Nix(json) => fallback(json),
    }
}

/// What evaluating a rules file gave: `own`'s result from our evaluator's value, or the JSON
/// of `nix-instantiate` when ours does not support the file.
enum Evaluated<T> {
    Own(T),
    Nix(Json),
}

fn evaluate_with<T: Send>(
    file: &Path,
    opts: &LoadOptions,
    keep: Option<&(dyn Fn(&str) -> bool + Sync)>,
    own: impl FnOnce(&Path, Strict, Locations) -> Result<T, RulesError> + Send,
) -> Result<Evaluated<T>, RulesError> {
    let (abs, sandbox) = locate(file, opts.impure).map_err(|f| RulesError::new(f.message))?;
    let for_eval = sandbox.clone();
    let outcome = run_on_big_stack(|| {
        let keep = keep.map(|k| k as &dyn Fn(&str) -> bool);
        own_evaluation(file, abs, for_eval, keep, |s, l| own(file, s, l))
    });
    match outcome {
        Ok(result) => result.map(Evaluated::Own),
        Err(failure) if failure.unsupported && nix_fallback::available() => Ok(Evaluated::Nix(
            nix_fallback::evaluate(file, &sandbox, &failure.message, opts)?,
        )),
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
pub fn evaluate_own(file: &Path) -> Result<Json, RulesError> {
    let (abs, sandbox) = locate(file, false).map_err(|f| RulesError::new(f.message))?;
    let owned = file.to_path_buf();
    run_on_big_stack(move || own_evaluation(&owned, abs, sandbox, None, |s, _| s.to_json()))
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
            .and_then(|t| finish(&mut ev, t, None));
        result.map(|(s, _)| s.to_json()).map_err(|e| Failure {
            unsupported: e.kind == diag::ErrorKind::Unsupported,
            message: ev.render(&e),
        })
    })
    .map_err(|f| RulesError::new(f.message))
}

/// `--dump-rules` on `file` with our evaluator only, output discarded, calling `mark` after
/// each phase (parse and lower of each file, evaluation, output) so that the benchmark can
/// count the bytes each one allocates. Not for other uses.
#[doc(hidden)]
pub fn evaluate_phases(file: &Path, mark: fn(&'static str)) -> Result<(), RulesError> {
    let (abs, sandbox) = locate(file, false).map_err(|f| RulesError::new(f.message))?;
    let owned = file.to_path_buf();
    run_on_big_stack(move || {
        let text = std::fs::read_to_string(&owned).map_err(|e| Failure {
            unsupported: false,
            message: e.to_string(),
        })?;
        mark("read");
        let shown = owned.display().to_string();
        let mut ev = eval::Evaluator::new(&shown, sandbox);
        ev.phase = mark;
        mark("builtins");
        let (strict, _) = ev
            .load_source(shown, abs, std::rc::Rc::from(text))
            .and_then(|t| finish(&mut ev, t, None))
            .map_err(|e| Failure {
                unsupported: false,
                message: ev.render(&e),
            })?;
        mark("evaluate");
        write_pretty(&mut std::io::sink(), &strict).map_err(|e| Failure {
            unsupported: false,
            message: e.to_string(),
        })?;
        mark("output");
        drop((strict, ev));
        mark("freed");
        Ok(())
    })
    .map_err(|f| RulesError::new(f.message))
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
    keep: Option<&dyn Fn(&str) -> bool>,
    then: impl FnOnce(Strict, Locations) -> T,
) -> Result<T, Failure> {
    let shown = file.display().to_string();
    let text = read_rules_file(file, &abs, &sandbox).map_err(|message| Failure {
        unsupported: false,
        message: format!("{shown}: {message}"),
    })?;
    let mut ev = eval::Evaluator::new(&shown, sandbox);
    let (strict, locations) = ev
        .load_source(shown.clone(), abs, std::rc::Rc::from(text))
        .and_then(|t| finish(&mut ev, t, keep))
        .map_err(|e| Failure {
            unsupported: e.kind == diag::ErrorKind::Unsupported,
            message: ev.render(&e),
        })?;
    Ok(then(strict, locations))
}

/// The rules file's text. Its name is the user's choice, but in a repository written by
/// someone else the file may be a symlink: confined, it is read like anything else the
/// evaluation reads, so a link to `/proc/self/environ` or `~/.ssh/id_ed25519` is refused
/// instead of having its first lines shown in a syntax error's excerpt.
fn read_rules_file(file: &Path, abs: &Path, sandbox: &Sandbox) -> Result<String, String> {
    let bytes = if sandbox.is_confined() {
        sandbox.read(abs).map_err(|denied| match denied {
            sandbox::Denied::Outside => {
                sandbox.outside_message("following the rules file's symlink", abs)
            }
            sandbox::Denied::Io(e) => format!("cannot read the rules file: {e}"),
        })?
    } else {
        std::fs::read(file).map_err(|e| format!("cannot read the rules file: {e}"))?
    };
    String::from_utf8(bytes)
        .map_err(|_| "cannot read the rules file: stream did not contain valid UTF-8".to_owned())
}

/// Forces the file's value, auto-calls it and forces it deeply: all of it, or of a rules set
/// only the rules whose name `keep` accepts (see [`eval::Evaluator::strict_of_rules`]).
fn finish(
    ev: &mut eval::Evaluator,
    root: value::ThunkId,
    keep: Option<&dyn Fn(&str) -> bool>,
) -> Result<(Strict, Locations), diag::EvalError> {
    let v = ev.force(root, None)?;
    let v = ev.auto_call(v)?;
    let mut locations = Locations::new();
    let strict = match keep {
        None => ev.strict_of(v, &mut locations)?,
        Some(keep) => ev.strict_of_rules(v, keep, &mut locations)?,
    };
    Ok((strict, locations))
}

/// Runs `f` on a thread whose stack fits the evaluator's depth limit, so that deep input ends
/// in a clean error rather than a stack overflow.
fn run_on_big_stack<T: Send>(f: impl FnOnce() -> Result<T, Failure> + Send) -> Result<T, Failure> {
    run_on_big_stack_while(f, || {})
}

/// [`run_on_big_stack`], running `meanwhile` on this thread while `f` runs.
fn run_on_big_stack_while<T: Send>(
    f: impl FnOnce() -> Result<T, Failure> + Send,
    meanwhile: impl FnOnce(),
) -> Result<T, Failure> {
    std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("rules-eval".to_owned())
            .stack_size(eval::STACK_SIZE)
            .spawn_scoped(scope, f);
        match spawned {
            Ok(handle) => {
                meanwhile();
                handle.join().unwrap_or_else(|_| {
                    Err(Failure {
                        unsupported: false,
                        message: "internal error: the rules evaluator panicked".to_owned(),
                    })
                })
            }
            Err(e) => Err(Failure {
                unsupported: false,
                message: format!("cannot start the rules evaluator: {e}"),
            }),
        }
    })
}

/// The rule for one secret file, read as `-e` needs it (see [`Rules::load_for`]).
#[derive(Debug, Clone)]
pub struct RuleFor {
    /// The rules file as given.
    pub file: PathBuf,
    /// The directory secret paths are relative to (the rules file's directory, absolute).
    pub dir: PathBuf,
    /// The rule naming the file, if one does.
    pub secret: Option<Secret>,
    /// The first few rules' names, in name order, for a message when none names the file.
    pub some_names: Vec<String>,
    /// How many rules the file declares.
    pub declared: usize,
    /// Non-fatal findings about that rule, one line each.
    pub warnings: Vec<String>,
}

impl Rules {
    /// Reads, evaluates and validates a rules file.
    pub fn load(file: &Path, opts: &LoadOptions) -> Result<Rules, RulesError> {
        evaluate_then(
            file,
            opts,
            None,
            |file, strict, locations| validate::validate(file, &strict, &locations, None),
            |json| Rules::from_json(file, &json),
        )
    }

    /// Reads the rules file for the rule of one secret file (`secret`, relative to the current
    /// directory, or absolute), as agenix does for `-e` (`(import ./secrets.nix)."x.age"`):
    /// every rule's name is evaluated and checked as [`Rules::load`] checks it, but only the
    /// rule that names `secret` is evaluated further and validated, so another rule's mistake
    /// (a failing import, a misspelt key) does not stop the editing of this one.
    pub fn load_for(file: &Path, opts: &LoadOptions, secret: &Path) -> Result<RuleFor, RulesError> {
        let dir = validate::rules_dir(file)?;
        let wanted = Wanted::new(&dir, secret);
        let keep = |name: &str| wanted.is_named(name);
        let select = |file: &Path, strict: &Strict, locations: &Locations| {
            let rules = validate::validate(file, strict, locations, Some(&wanted))?;
            Ok(RuleFor::of(rules, strict))
        };
        evaluate_then(
            file,
            opts,
            Some(&keep),
            |file, strict, locations| select(file, &strict, &locations),
            |json| select(file, &Strict::from_json(&json), &Locations::new()),
        )
    }

    /// Validates an evaluated rules value (as `--dump-rules` prints it).
    pub fn from_json(file: &Path, json: &Json) -> Result<Rules, RulesError> {
        validate::validate(file, &Strict::from_json(json), &Locations::new(), None)
    }

    /// The absolute path of a secret's file.
    pub fn secret_file(&self, secret: &Secret) -> PathBuf {
        self.dir.join(&secret.path)
    }

    /// Finds the rule for `file` (relative to the current directory, or absolute).
    pub fn find(&self, file: &Path) -> Option<&Secret> {
        let wanted = Wanted::new(&self.dir, file);
        self.secrets.iter().find(|s| wanted.is(&s.path))
    }
}

impl RuleFor {
    /// `rules`, validated for one file, and the names `value` (what they were validated from)
    /// declares.
    fn of(mut rules: Rules, value: &Strict) -> RuleFor {
        let mut names: Vec<&str> = match value {
            Strict::Attrs(top) => top.iter().map(|(k, _)| &**k).collect(),
            _ => Vec::new(),
        };
        names.sort_unstable();
        RuleFor {
            secret: rules.secrets.pop(),
            some_names: names.iter().take(5).map(|n| n.to_string()).collect(),
            declared: names.len(),
            file: rules.file,
            dir: rules.dir,
            warnings: rules.warnings,
        }
    }
}

/// A secret file named on the command line, to be compared with the rules' paths.
pub(crate) struct Wanted {
    /// Absolute and normalised; `None` when it cannot be (no current directory, no file name):
    /// then no rule names it.
    abs: Option<PathBuf>,
    /// Relative to the rules directory, when beneath it.
    beneath: Option<PathBuf>,
    dir: PathBuf,
}

impl Wanted {
    fn new(dir: &Path, file: &Path) -> Wanted {
        let abs = absolute_normalized(file);
        let beneath = abs
            .as_deref()
            .and_then(|a| a.strip_prefix(dir).ok())
            .map(Path::to_path_buf);
        Wanted {
            abs,
            beneath,
            dir: dir.to_path_buf(),
        }
    }

    /// Whether a rule whose normalised path (relative to the rules directory) is `path` names
    /// this file. Most paths lie beneath the rules directory and are compared without building
    /// a path; one that first climbs out of it (`../x.age`, allowed while it stays in the rules
    /// root) is joined and normalised.
    fn is(&self, path: &Path) -> bool {
        if path.starts_with("..") {
            self.abs.as_deref() == Some(&*normalize(&self.dir.join(path)))
        } else {
            self.beneath.as_deref() == Some(path)
        }
    }

    /// [`Wanted::is`] for a rule's name as written.
    fn is_named(&self, name: &str) -> bool {
        if is_normal_relative(name) {
            self.beneath.as_deref() == Some(Path::new(name))
        } else {
            self.is(&normalize(Path::new(name)))
        }
    }
}

/// Lexical normalisation: drops `.` and resolves `..` against earlier components.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    if path.to_str().is_some_and(is_normal_relative) {
        return path.to_path_buf();
    }
    normalize_components(path)
}

/// [`normalize`], component by component.
fn normalize_components(path: &Path) -> PathBuf {
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

/// Whether `name` is a relative path that [`normalize`] leaves as it is (no empty, `.` or `..`
/// component), as nearly every rule's name is: such names are used without taking them apart.
fn is_normal_relative(name: &str) -> bool {
    name.split('/')
        .all(|c| !c.is_empty() && c != "." && c != "..")
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

    fn rules_repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        std::fs::write(
            dir.path().join("secrets.nix"),
            "let k = [ \"age1x\" ]; in { \"b.age\".publicKeys = k; \"a.age\" = { publicKeys = k ++ [ \"\\\"q\" ]; armor = true; n = 1.5; }; }",
        )
        .unwrap();
        dir
    }

    #[test]
    fn dump_writes_what_evaluate_returns_as_indented_json_and_a_newline() {
        let dir = rules_repo();
        let file = dir.path().join("secrets.nix");
        let opts = LoadOptions::default();
        let mut out = Vec::new();
        dump(&file, &opts, &mut out).unwrap();
        let json = evaluate(&file, &opts).unwrap();
        let expected = serde_json::to_string_pretty(&json).unwrap() + "\n";
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn a_dump_of_many_chunks_arrives_whole_and_a_writer_closed_midway_stops_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        let file = dir.path().join("secrets.nix");
        std::fs::write(
            &file,
            "builtins.listToAttrs (builtins.genList (i: { name = \"s${toString i}.age\"; \
             value.publicKeys = [ \"age1${toString i}\" ]; }) 5000)",
        )
        .unwrap();
        let opts = LoadOptions::default();
        let mut whole = Vec::new();
        dump(&file, &opts, &mut whole).unwrap();
        assert!(whole.len() > 4 * Chunks::SIZE, "{} bytes", whole.len());
        let expected = serde_json::to_string_pretty(&evaluate(&file, &opts).unwrap()).unwrap();
        assert!(whole == (expected + "\n").into_bytes());

        /// Takes one chunk, then is closed.
        struct ClosesAfterOne(usize);
        impl Write for ClosesAfterOne {
            fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
                self.0 += 1;
                if self.0 > 1 {
                    return Err(std::io::ErrorKind::BrokenPipe.into());
                }
                Ok(data.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let err = dump(&file, &opts, &mut ClosesAfterOne(0)).unwrap_err();
        let io = err.downcast_ref::<std::io::Error>().expect("an io::Error");
        assert_eq!(io.kind(), std::io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn a_dump_that_cannot_be_written_fails_with_the_io_error() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let dir = rules_repo();
        let err = dump(
            &dir.path().join("secrets.nix"),
            &LoadOptions::default(),
            &mut Closed,
        )
        .unwrap_err();
        let io = err.downcast_ref::<std::io::Error>().expect("an io::Error");
        assert_eq!(io.kind(), std::io::ErrorKind::BrokenPipe);
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
    fn normalising_agrees_with_taking_the_path_apart_for_every_shape_of_name() {
        for name in [
            "",
            "a",
            "a.age",
            "d/a.age",
            "d/e/a.age",
            "/a",
            "a/",
            "a//b",
            "./a",
            "a/.",
            "..",
            "../a",
            "a/..",
            "a/../b",
            ".a",
            "..a",
            "a..",
            "a/.b/c",
            "...",
            "d/./a",
            "//a",
        ] {
            let path = Path::new(name);
            assert_eq!(normalize(path), normalize_components(path), "{name:?}");
        }
    }
}
