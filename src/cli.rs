//! Command line: agenix's flags, parsed with clap into an [`Action`], dispatched to the
//! modules that do the work.
//!
//! Owns rules loading for the actions that need it, the single place errors are printed, and
//! the exit code: 0 success, 1 failure, 2 usage. Which flag belongs to which action is
//! [`crate::action`]'s.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{ArgGroup, Parser};

use crate::action::Action;
use crate::error::{self, UserError};
use crate::keys::{self, Identities};
use crate::lock;
use crate::output;
use crate::prompt::TerminalPrompt;
use crate::rules::{self, escape_for_display, LoadOptions, RuleFor, Rules, Secret};
use crate::structured::{self, Format, Key};

/// Edit, decrypt and rekey age-encrypted secrets declared in an agenix `secrets.nix`.
#[derive(Parser, Debug)]
#[command(name = "ragenix", version, about, max_term_width = 100)]
#[command(group(ArgGroup::new("action").required(true).multiple(false)))]
pub struct Args {
    /// Edit FILE: decrypt it to a private temp file, run the editor, re-encrypt to the rules'
    /// recipients
    ///
    /// The new content comes from the first that applies: --editor CMD (or --editor -, stdin);
    /// stdin, if it is not a terminal and holds at least one byte; $VISUAL, then $EDITOR (`-`
    /// meaning stdin); vi, on a terminal. An editor in $EDITOR runs without a terminal too (a
    /// script such as `sed -i s/a/b/` from cron). An empty stdin that is not a terminal, with
    /// no editor set, is an error and changes nothing; only --editor - writes an empty secret.
    /// Content from stdin replaces FILE even when no identity can decrypt it (the "unchanged"
    /// check is then skipped); an editor needs an identity to show the old content.
    #[arg(
        short,
        long,
        value_name = "FILE",
        group = "action",
        allow_hyphen_values = true
    )]
    pub edit: Option<PathBuf>,

    /// Decrypt FILE to stdout (needs no rule for FILE)
    #[arg(
        short,
        long,
        value_name = "FILE",
        group = "action",
        allow_hyphen_values = true
    )]
    pub decrypt: Option<PathBuf>,

    /// Re-encrypt every secret in the rules (or only the named ones) to its current
    /// recipients; all or nothing
    #[arg(short, long, value_name = "FILE", group = "action", num_args = 0..)]
    pub rekey: Option<Vec<PathBuf>>,

    /// Identities to decrypt with (age identity files or ssh private keys): `-i A B` or
    /// `-i A -i B`. Default: ~/.ssh/id_ed25519 and ~/.ssh/id_rsa when present
    #[arg(short, long, value_name = "PATH", action = clap::ArgAction::Append, num_args = 1..)]
    pub identity: Vec<PathBuf>,

    /// The rules file
    #[arg(
        long,
        value_name = "PATH",
        env = "RULES",
        default_value = "./secrets.nix"
    )]
    pub rules: PathBuf,

    /// With -e: editor command, split like a shell would; `-` reads the new content from stdin
    /// (even when empty). Default: stdin if it holds content, else $VISUAL, $EDITOR, vi
    #[arg(long, value_name = "CMD", allow_hyphen_values = true)]
    pub editor: Option<String>,

    /// Say what is being done
    #[arg(short, long)]
    pub verbose: bool,

    /// Let the rules file read outside its repository, see environment variables, and let a
    /// nix-instantiate fallback fetch; only for rules files you trust
    #[arg(long, env = "RAGENIX_IMPURE", value_parser = clap::builder::FalseyValueParser::new())]
    pub impure: bool,

    /// Print the rules file evaluated to JSON and exit
    #[arg(long, group = "action")]
    pub dump_rules: bool,

    /// With -d: when no identity can decrypt FILE, print a one-line notice on stdout and exit 0
    /// (for `git config diff.age.textconv "ragenix --textconv -d"`)
    #[arg(long)]
    pub textconv: bool,

    /// Report every difference between the rules and the files (missing, orphaned, unreadable,
    /// wrong recipients, wrong armor); exit 1 if there is any. Needs no identity; with -i it
    /// also decrypts the files whose rules declare `keys` and looks each key up
    #[arg(long, group = "action")]
    pub check: bool,

    /// With -d: print only the value at KEY (`github/oauth_token`) of the decrypted JSON, YAML,
    /// dotenv or INI document
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,

    /// With --key: how to read the document. Default: from FILE's name (`db.yaml.age`,
    /// `app.env.age`)
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<Format>,

    /// With --check: print the report as JSON
    #[arg(long)]
    pub json: bool,

    /// With -r: re-encrypt only the secrets whose recipients or armor differ from the rules
    #[arg(long, visible_alias = "lazy")]
    pub stale: bool,

    /// Create every missing secret whose rule has a `generator` (or only the named ones) and
    /// encrypt it to its recipients
    #[arg(long, value_name = "FILE", group = "action", num_args = 0..)]
    pub generate: Option<Vec<PathBuf>>,

    /// With --generate: replace secrets that already exist
    #[arg(long)]
    pub force: bool,

    /// Print the JSON Schema of the rules format and exit
    #[arg(long, group = "action")]
    pub schema: bool,

    /// Print shell completions for SHELL to stdout
    #[arg(long, value_name = "SHELL", group = "action", hide = true)]
    pub completions: Option<clap_complete::Shell>,

    /// Print the man page (roff) to stdout
    #[arg(long, group = "action", hide = true)]
    pub man: bool,
}

pub fn main() -> ExitCode {
    let args = Args::parse();
    let action = match Action::from_args(&args) {
        Ok(action) => action,
        Err(e) => e.exit(),
    };
    match run(&args, action) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) if e.is::<Reported>() => ExitCode::FAILURE,
        Err(e) => {
            // Errors quoting the rules author's text escape it where they are made; this keeps
            // any ESC or CR a message still carries off the terminal, the lines it has intact.
            let shown: Vec<String> = format!("{e:#}").lines().map(escape_for_display).collect();
            eprintln!("ragenix: {}", shown.join("\n"));
            if let Some(h) = error::hint(&e) {
                eprintln!("hint: {h}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Runs `action` with the flags every action shares from `args`.
pub fn run(args: &Args, action: Action) -> Result<()> {
    match action {
        Action::Decrypt {
            file,
            textconv,
            structured,
        } => decrypt(args, &file, textconv, structured),
        Action::Completions(shell) => {
            let mut out = output::stdout();
            crate::manual::completions(shell, &mut out)?;
            out.flush().map_err(Into::into)
        }
        Action::Man => {
            let mut out = output::stdout();
            crate::manual::man_page(&mut out)?;
            out.flush().map_err(Into::into)
        }
        Action::Schema => output::json(&crate::schema::rules_schema()),
        Action::DumpRules => {
            // Written in 64 KiB chunks as it is serialised: no second buffer.
            rules::dump(
                &args.rules,
                &load_options(args),
                &mut std::io::stdout().lock(),
            )
        }
        Action::Edit { file, editor } => {
            // Only the edited file's rule is evaluated, as agenix does.
            let found = load_rule_for(args, &file)?;
            let secret = found.secret.as_ref().ok_or_else(|| {
                let names = found.some_names.iter().map(String::as_str);
                no_rule(&file, &found.file, &found.dir, names, found.declared)
            })?;
            let opts = crate::edit::EditOptions {
                editor,
                verbose: args.verbose,
            };
            crate::edit::edit(
                &file,
                secret,
                &opts,
                || identities(args),
                // At a terminal, giving up would throw away what the user just typed.
                || lock::writer(&found.file, std::io::stdin().is_terminal()),
            )
        }
        Action::Check { json } => {
            let rules = load_rules(args)?;
            // Keys are looked up only with identities asked for: a plain `--check` (CI)
            // decrypts nothing.
            let ids = if args.identity.is_empty() {
                None
            } else {
                Some(identities(args)?)
            };
            check(&rules, ids.as_ref(), json)
        }
        Action::Generate { files, force } => {
            let rules = load_rules(args)?;
            let only = find_rules(&rules, &files)?;
            // Held from the plan on: a second run must see the files the first one created.
            let _lock = lock::writer(&rules.file, false)?;
            crate::generate::generate_files(&rules, &only, force, args.verbose)
        }
        Action::Rekey { files, stale } => {
            let rules = load_rules(args)?;
            // Held from the stale check on, so that it sees the files as the previous run left.
            let _lock = lock::writer(&rules.file, false)?;
            let mut selected: Vec<&Secret> = if files.is_empty() {
                rules.secrets.iter().collect()
            } else {
                find_rules(&rules, &files)?
            };
            if stale {
                let stale = crate::check::stale(&rules);
                selected.retain(|s| stale.iter().any(|x| x.name == s.name));
                if selected.is_empty() {
                    eprintln!("ragenix: no stale secrets, nothing to rekey");
                    return Ok(());
                }
            }
            crate::rekey::rekey(&rules, &selected, &identities(args)?, args.verbose)
        }
    }
}

fn load_options(args: &Args) -> LoadOptions {
    LoadOptions {
        verbose: args.verbose,
        impure: args.impure,
    }
}

fn load_rules(args: &Args) -> Result<Rules> {
    rules_file_exists(args)?;
    let rules = Rules::load(&args.rules, &load_options(args))?;
    warn(&rules.warnings);
    Ok(rules)
}

/// The rule for `file` alone (see [`Rules::load_for`]).
fn load_rule_for(args: &Args, file: &Path) -> Result<RuleFor> {
    rules_file_exists(args)?;
    let found = Rules::load_for(&args.rules, &load_options(args), file)?;
    warn(&found.warnings);
    Ok(found)
}

fn rules_file_exists(args: &Args) -> Result<()> {
    if args.rules.exists() {
        return Ok(());
    }
    Err(UserError::with_hint(
        format!("rules file {} does not exist", args.rules.display()),
        "pass --rules PATH or set RULES, or run from the directory holding secrets.nix",
    )
    .into())
}

fn warn(warnings: &[String]) {
    for w in warnings {
        eprintln!("ragenix: warning: {w}");
    }
}

/// The rules for `files`, each once, in the order given.
fn find_rules<'r>(rules: &'r Rules, files: &[PathBuf]) -> Result<Vec<&'r Secret>> {
    let mut found: Vec<&Secret> = Vec::with_capacity(files.len());
    for f in files {
        let s = find_rule(rules, f)?;
        // Naming a file twice must not process it twice.
        if !found.iter().any(|x| x.name == s.name) {
            found.push(s);
        }
    }
    Ok(found)
}

/// `--check`: the report on stdout; findings are a failure without an error message of their
/// own, since the report already says everything.
fn check(rules: &Rules, ids: Option<&Identities>, json: bool) -> Result<()> {
    let report = crate::check::check_with_keys(rules, ids);
    if json {
        output::json(&report)?;
    } else {
        let mut out = output::stdout();
        write!(out, "{}", report.render_human())?;
        if let crate::check::KeyCheck::Skipped { declared } = report.keys {
            writeln!(
                out,
                "note: {declared} declared key(s) not checked: pass -i to decrypt the files and look them up"
            )?;
        }
        writeln!(out, "{}", report.summary())?;
        out.flush()?;
    }
    if report.ok {
        Ok(())
    } else {
        Err(Reported.into())
    }
}

/// A failure that has already been reported in full on stdout or stderr.
#[derive(Debug)]
struct Reported;

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("failed (reported above)")
    }
}

impl std::error::Error for Reported {}

fn find_rule<'r>(rules: &'r Rules, file: &Path) -> Result<&'r Secret> {
    rules.find(file).ok_or_else(|| {
        let names = rules.secrets.iter().map(|s| s.name.as_str());
        no_rule(file, &rules.file, &rules.dir, names, rules.secrets.len())
    })
}

/// "`file` has no rule", with the first few of the `declared` rules' `names` as a hint.
fn no_rule<'a>(
    file: &Path,
    rules_file: &Path,
    dir: &Path,
    names: impl Iterator<Item = &'a str>,
    declared: usize,
) -> anyhow::Error {
    let mut known: Vec<&str> = names.take(5).collect();
    if declared > known.len() {
        known.push("…");
    }
    UserError::with_hint(
        format!("{} has no rule in {}", file.display(), rules_file.display()),
        format!(
            "paths in the rules are relative to {}; it declares: {}",
            dir.display(),
            if known.is_empty() {
                "nothing".into()
            } else {
                known.join(", ")
            }
        ),
    )
    .into()
}

fn identities(args: &Args) -> Result<Identities> {
    keys::load_identities(&args.identity, Arc::new(TerminalPrompt))
}

fn decrypt(
    args: &Args,
    file: &Path,
    textconv: bool,
    structured: Option<(Format, Key)>,
) -> Result<()> {
    let mut input =
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let ids = match identities(args) {
        Ok(ids) => ids,
        Err(e) => return no_identity(textconv, file, e),
    };
    let mut out = output::stdout();
    // A document is read whole before one value is taken from it; a plain file streams.
    let mut document = zeroize::Zeroizing::new(Vec::new());
    let sink: &mut dyn Write = if structured.is_some() {
        &mut *document
    } else {
        &mut out
    };
    if let Err(e) = crate::age_io::decrypt(&ids, &mut input, sink) {
        // age_io reports "no identity matched" as a UserError and a key that could not be
        // unlocked through `unlock_error`; both happen before any output. Every other error is
        // about the file or the output.
        if ids.unlock_error.get().is_some() || e.chain().any(|c| c.is::<UserError>()) {
            drop(out);
            return no_identity(textconv, file, e);
        }
        return Err(e.context(format!("cannot decrypt {}", file.display())));
    }
    if let Some((format, key)) = structured {
        let value = structured::extract(format, &document, &key)
            .with_context(|| format!("{}: {format} key `{key}`", file.display()))?;
        out.write_all(&value)?;
    }
    out.flush()?;
    Ok(())
}

/// `-d` without a usable identity: one line, hint included, because `-d` is often run by git
/// as a textconv driver for every file version in a diff. With `--textconv` the line goes to
/// stdout and the exit is 0, so git shows it in place of the cleartext and goes on; without
/// it, exit 1, because a caller reading stdout as the secret must see the failure.
fn no_identity(textconv: bool, file: &Path, e: anyhow::Error) -> Result<()> {
    let mut why = format!("{e:#}");
    if let Some(h) = error::hint(&e) {
        why.push_str("; hint: ");
        why.push_str(h);
    }
    if textconv {
        // Git hands us each old version as a randomly named temp file, so the notice names
        // only the file; a fingerprint of the ciphertext keeps a changed file from looking
        // unchanged (identical textconv output hides the file from the diff).
        let name = file.file_name().map_or(file, Path::new).display();
        let print = ciphertext_fingerprint(file)?;
        let mut out = output::stdout();
        writeln!(
            out,
            "[ragenix: cannot decrypt {name} (ciphertext {print:016x}): {why}]"
        )?;
        return out.flush().map_err(Into::into);
    }
    eprintln!("ragenix: cannot decrypt {}: {why}", file.display());
    Err(Reported.into())
}

/// Tells versions of a file apart; the ciphertext is no secret, and both sides of a diff are
/// computed by the same binary, so std's hasher is enough.
fn ciphertext_fingerprint(file: &Path) -> Result<u64> {
    use std::hash::Hasher;
    use std::io::Read;
    let mut input =
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = input
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", file.display()))?;
        if n == 0 {
            return Ok(hasher.finish());
        }
        hasher.write(&buf[..n]);
    }
}
