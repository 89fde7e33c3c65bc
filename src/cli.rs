//! Command line: agenix's flags, parsed with clap, dispatched to the modules that do the work.
//!
//! Owns flag validation (before any I/O), rules loading for the actions that need it, the
//! single place errors are printed, and the exit code: 0 success, 1 failure, 2 usage.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{ArgGroup, Parser};

use crate::error::{self, UserError};
use crate::keys::{self, Identities};
use crate::prompt::TerminalPrompt;
use crate::rules::{self, LoadOptions, Rules, Secret};

/// Edit, decrypt and rekey age-encrypted secrets declared in an agenix `secrets.nix`.
#[derive(Parser, Debug)]
#[command(name = "ragenix", version, about, max_term_width = 100)]
#[command(group(ArgGroup::new("action").required(true).multiple(false)))]
pub struct Args {
    /// Edit FILE: decrypt it to a private temp file, run the editor, re-encrypt to the rules'
    /// recipients
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

    /// Identity to decrypt with (age identity file or ssh private key); repeatable.
    /// Default: ~/.ssh/id_ed25519 and ~/.ssh/id_rsa when present
    #[arg(short, long, value_name = "PATH", action = clap::ArgAction::Append, num_args = 1)]
    pub identity: Vec<PathBuf>,

    /// The rules file
    #[arg(
        long,
        value_name = "PATH",
        env = "RULES",
        default_value = "./secrets.nix"
    )]
    pub rules: PathBuf,

    /// Editor command, split like a shell would; `-` reads the new content from stdin.
    /// Default: $VISUAL, then $EDITOR, then vi
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
    /// wrong recipients, wrong armor); exit 1 if there is any. Needs no identity
    #[arg(long, group = "action")]
    pub check: bool,

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
    if let Err(e) = args.check() {
        e.exit();
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) if e.is::<Reported>() => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("ragenix: {e:#}");
            if let Some(h) = error::hint(&e) {
                eprintln!("hint: {h}");
            }
            ExitCode::FAILURE
        }
    }
}

impl Args {
    /// Flag combinations clap's attributes cannot express; checked before any I/O.
    pub fn check(&self) -> Result<(), clap::Error> {
        use clap::CommandFactory;
        if self.editor.is_some() && self.edit.is_none() {
            return Err(Args::command().error(
                clap::error::ErrorKind::ArgumentConflict,
                "--editor only applies to --edit",
            ));
        }
        // Not clap's `requires`: it is waived when another member of the action group is
        // present, which is exactly the case to refuse.
        for (given, flag, action, present) in [
            (
                self.textconv,
                "--textconv",
                "--decrypt",
                self.decrypt.is_some(),
            ),
            (self.json, "--json", "--check", self.check),
            (self.stale, "--stale", "--rekey", self.rekey.is_some()),
            (self.force, "--force", "--generate", self.generate.is_some()),
        ] {
            if given && !present {
                return Err(Args::command().error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!("{flag} only applies to {action}"),
                ));
            }
        }
        Ok(())
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Runs one parsed command line.
pub fn run(args: &Args) -> Result<()> {
    if let Some(file) = &args.decrypt {
        return decrypt(args, file);
    }
    if let Some(shell) = args.completions {
        return crate::manual::completions(shell, &mut io::stdout().lock());
    }
    if args.man {
        return crate::manual::man_page(&mut io::stdout().lock());
    }
    if args.schema {
        let mut out = io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &crate::schema::rules_schema())?;
        writeln!(out)?;
        return out.flush().map_err(Into::into);
    }
    if args.dump_rules {
        return rules::dump(&args.rules, &load_options(args), &mut io::stdout());
    }
    let rules = load_rules(args)?;
    if let Some(file) = &args.edit {
        let secret = find_rule(&rules, file)?;
        let opts = crate::edit::EditOptions {
            editor: args.editor.clone(),
            verbose: args.verbose,
        };
        return crate::edit::edit(file, secret, &opts, || identities(args));
    }
    if args.check {
        return check(args, &rules);
    }
    if let Some(files) = &args.generate {
        let only = find_rules(&rules, files)?;
        return crate::generate::generate_files(&rules, &only, args.force, args.verbose);
    }
    if let Some(files) = &args.rekey {
        let mut selected: Vec<&Secret> = if files.is_empty() {
            rules.secrets.iter().collect()
        } else {
            find_rules(&rules, files)?
        };
        if args.stale {
            let stale = crate::check::stale(&rules);
            selected.retain(|s| stale.iter().any(|x| x.name == s.name));
            if selected.is_empty() {
                eprintln!("ragenix: no stale secrets, nothing to rekey");
                return Ok(());
            }
        }
        return crate::rekey::rekey(&rules, &selected, &identities(args)?, args.verbose);
    }
    unreachable!("clap requires one action")
}

fn load_options(args: &Args) -> LoadOptions {
    LoadOptions {
        verbose: args.verbose,
        impure: args.impure,
    }
}

fn load_rules(args: &Args) -> Result<Rules> {
    if !args.rules.exists() {
        return Err(UserError::with_hint(
            format!("rules file {} does not exist", args.rules.display()),
            "pass --rules PATH or set RULES, or run from the directory holding secrets.nix",
        )
        .into());
    }
    let rules = Rules::load(&args.rules, &load_options(args))?;
    for w in &rules.warnings {
        eprintln!("ragenix: warning: {w}");
    }
    Ok(rules)
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
fn check(args: &Args, rules: &Rules) -> Result<()> {
    let report = crate::check::check(rules);
    let mut out = io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", report.render_human())?;
        writeln!(out, "{}", report.summary())?;
    }
    out.flush()?;
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
        let mut known: Vec<String> = rules
            .secrets
            .iter()
            .take(5)
            .map(|s| s.name.clone())
            .collect();
        if rules.secrets.len() > known.len() {
            known.push("…".into());
        }
        UserError::with_hint(
            format!("{} has no rule in {}", file.display(), rules.file.display()),
            format!(
                "paths in the rules are relative to {}; it declares: {}",
                rules.dir.display(),
                if known.is_empty() {
                    "nothing".into()
                } else {
                    known.join(", ")
                }
            ),
        )
        .into()
    })
}

fn identities(args: &Args) -> Result<Identities> {
    keys::load_identities(&args.identity, Arc::new(TerminalPrompt))
}

fn decrypt(args: &Args, file: &Path) -> Result<()> {
    let mut input =
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let ids = match identities(args) {
        Ok(ids) => ids,
        Err(e) => return no_identity(args, file, e),
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    if let Err(e) = crate::age_io::decrypt(&ids, &mut input, &mut out) {
        // age_io reports "no identity matched" as a UserError and a key that could not be
        // unlocked through `unlock_error`; both happen before any output. Every other error is
        // about the file or the output.
        if ids.unlock_error.get().is_some() || e.chain().any(|c| c.is::<UserError>()) {
            drop(out);
            return no_identity(args, file, e);
        }
        return Err(e.context(format!("cannot decrypt {}", file.display())));
    }
    out.flush()?;
    Ok(())
}

/// `-d` without a usable identity: one line, hint included, because `-d` is often run by git
/// as a textconv driver for every file version in a diff. With `--textconv` the line goes to
/// stdout and the exit is 0, so git shows it in place of the cleartext and goes on; without
/// it, exit 1, because a caller reading stdout as the secret must see the failure.
fn no_identity(args: &Args, file: &Path, e: anyhow::Error) -> Result<()> {
    let mut why = format!("{e:#}");
    if let Some(h) = error::hint(&e) {
        why.push_str("; hint: ");
        why.push_str(h);
    }
    if args.textconv {
        // Git hands us each old version as a randomly named temp file, so the notice names
        // only the file; a fingerprint of the ciphertext keeps a changed file from looking
        // unchanged (identical textconv output hides the file from the diff).
        let name = file.file_name().map_or(file, Path::new).display();
        let print = ciphertext_fingerprint(file)?;
        let mut out = io::stdout().lock();
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
