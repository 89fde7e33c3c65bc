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
use crate::keys::{self, Identities, TerminalPrompt};
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

    /// Print the rules file evaluated to JSON and exit
    #[arg(long, group = "action")]
    pub dump_rules: bool,
}

pub fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = args.check() {
        e.exit();
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
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
    if args.dump_rules {
        let json = rules::evaluate(&args.rules, &load_options(args))?;
        let mut out = io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &json)?;
        writeln!(out)?;
        return out.flush().map_err(Into::into);
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
    if let Some(files) = &args.rekey {
        let selected: Vec<&Secret> = if files.is_empty() {
            rules.secrets.iter().collect()
        } else {
            let mut found: Vec<&Secret> = Vec::with_capacity(files.len());
            for f in files {
                let s = find_rule(&rules, f)?;
                // Naming a file twice must not stage it twice.
                if !found.iter().any(|x| x.name == s.name) {
                    found.push(s);
                }
            }
            found
        };
        return crate::rekey::rekey(&rules, &selected, &identities(args)?, args.verbose);
    }
    unreachable!("clap requires one action")
}

fn load_options(args: &Args) -> LoadOptions {
    LoadOptions {
        verbose: args.verbose,
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
    let ids = identities(args)?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    crate::age_io::decrypt(&ids, &mut input, &mut out)
        .with_context(|| format!("cannot decrypt {}", file.display()))?;
    out.flush()?;
    Ok(())
}
