//! What one run does: the [`Action`] built from the parsed flags, each variant carrying the
//! flags that only make sense for it (ripgrep's `Mode`).
//!
//! Flags every action shares (`--rules`, `-i`, `-v`) stay in [`Args`]; parsing is clap's.

use std::path::PathBuf;

use clap::error::ErrorKind;
use clap::CommandFactory;

use crate::cli::Args;
use crate::structured::{Format, Key};

/// The one thing a command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `-e FILE [--editor CMD]`
    Edit {
        file: PathBuf,
        editor: Option<String>,
    },
    /// `-d FILE [--textconv] [--key KEY [--format F]]`
    Decrypt {
        file: PathBuf,
        textconv: bool,
        /// With `--key`: the document's format (given, or told by FILE's name) and the key.
        structured: Option<(Format, Key)>,
    },
    /// `-r [FILE…] [--stale]`; no files means every secret.
    Rekey {
        files: Vec<PathBuf>,
        stale: bool,
    },
    /// `--generate [FILE…] [--force]`; no files means every missing secret with a generator.
    Generate {
        files: Vec<PathBuf>,
        force: bool,
    },
    /// `--check [--json]`
    Check {
        json: bool,
    },
    DumpRules,
    Schema,
    Completions(clap_complete::Shell),
    Man,
}

impl Action {
    /// Reads the action off `args`. A flag that belongs to another action is a usage error,
    /// found here, before any I/O.
    pub fn from_args(args: &Args) -> Result<Action, clap::Error> {
        let mut m = Modifiers {
            editor: args.editor.clone(),
            textconv: args.textconv,
            json: args.json,
            stale: args.stale,
            force: args.force,
            key: args.key.clone(),
            format: args.format,
        };
        let take = std::mem::take::<bool>;
        let action = if let Some(file) = &args.edit {
            Action::Edit {
                file: file.clone(),
                editor: m.editor.take(),
            }
        } else if let Some(file) = &args.decrypt {
            let structured = match m.key.take() {
                Some(key) => Some(structured(file, &key, m.format.take())?),
                None => None,
            };
            Action::Decrypt {
                file: file.clone(),
                textconv: take(&mut m.textconv),
                structured,
            }
        } else if let Some(files) = &args.rekey {
            Action::Rekey {
                files: files.clone(),
                stale: take(&mut m.stale),
            }
        } else if let Some(files) = &args.generate {
            Action::Generate {
                files: files.clone(),
                force: take(&mut m.force),
            }
        } else if args.check {
            Action::Check {
                json: take(&mut m.json),
            }
        } else if args.dump_rules {
            Action::DumpRules
        } else if args.schema {
            Action::Schema
        } else if let Some(shell) = args.completions {
            Action::Completions(shell)
        } else if args.man {
            Action::Man
        } else {
            // clap's required action group makes this unreachable from the command line.
            return Err(usage(ErrorKind::MissingRequiredArgument, "no action given"));
        };
        m.reject_leftovers()?;
        Ok(action)
    }
}

/// `--key` and `--format` of `-d FILE`, checked against each other: without `--format`, the
/// format is told by FILE's name.
fn structured(
    file: &std::path::Path,
    key: &str,
    format: Option<Format>,
) -> Result<(Format, Key), clap::Error> {
    let invalid = |e: String| usage(ErrorKind::InvalidValue, &e);
    let key: Key = key.parse().map_err(|e| invalid(format!("--key: {e}")))?;
    let format = match format {
        Some(f) => f,
        None => Format::from_file_name(&file.to_string_lossy()).ok_or_else(|| {
            invalid(format!(
                "cannot tell the format of {} from its name; pass --format {}",
                file.display(),
                Format::NAMES[1..].join("|")
            ))
        })?,
    };
    key.check_for(format)
        .map_err(|e| invalid(format!("--key: {e}")))?;
    Ok((format, key))
}

/// The flags that belong to one action; building the action takes those it uses, and any
/// left over was given to the wrong one.
struct Modifiers {
    editor: Option<String>,
    textconv: bool,
    json: bool,
    stale: bool,
    force: bool,
    key: Option<String>,
    format: Option<Format>,
}

impl Modifiers {
    fn reject_leftovers(self) -> Result<(), clap::Error> {
        // Destructured, so that a new modifier does not compile until it is handled here.
        let Modifiers {
            editor,
            textconv,
            json,
            stale,
            force,
            key,
            format,
        } = self;
        let misplaced = [
            (editor.is_some(), "--editor", "--edit"),
            (textconv, "--textconv", "--decrypt"),
            (json, "--json", "--check"),
            (stale, "--stale", "--rekey"),
            (force, "--force", "--generate"),
            (key.is_some(), "--key", "--decrypt"),
            (format.is_some(), "--format", "--key"),
        ];
        match misplaced.iter().find(|(left, _, _)| *left) {
            Some((_, flag, owner)) => Err(usage(
                ErrorKind::ArgumentConflict,
                &format!("{flag} only applies to {owner}"),
            )),
            None => Ok(()),
        }
    }
}

fn usage(kind: ErrorKind, message: &str) -> clap::Error {
    Args::command().error(kind, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn action(line: &[&str]) -> Result<Action, String> {
        let args = Args::try_parse_from(std::iter::once("ragenix").chain(line.iter().copied()))
            .map_err(|e| e.to_string())?;
        Action::from_args(&args).map_err(|e| e.to_string())
    }

    #[test]
    fn each_action_takes_its_own_flags() {
        assert_eq!(
            action(&["-e", "a.age", "--editor", "-"]),
            Ok(Action::Edit {
                file: "a.age".into(),
                editor: Some("-".into())
            })
        );
        assert_eq!(
            action(&["--textconv", "-d", "a.age"]),
            Ok(Action::Decrypt {
                file: "a.age".into(),
                textconv: true,
                structured: None
            })
        );
        assert_eq!(
            action(&["-d", "a.yaml.age", "--key", "db/password"]),
            Ok(Action::Decrypt {
                file: "a.yaml.age".into(),
                textconv: false,
                structured: Some((Format::Yaml, "db/password".parse().unwrap()))
            })
        );
        assert_eq!(
            action(&["-r", "--stale"]),
            Ok(Action::Rekey {
                files: vec![],
                stale: true
            })
        );
        assert_eq!(
            action(&["--generate", "x.age", "--force"]),
            Ok(Action::Generate {
                files: vec!["x.age".into()],
                force: true
            })
        );
        assert_eq!(
            action(&["--check", "--json"]),
            Ok(Action::Check { json: true })
        );
        assert_eq!(action(&["--schema"]), Ok(Action::Schema));
    }

    #[test]
    fn a_flag_given_to_another_action_is_named_with_its_owner() {
        for (line, message) in [
            (
                &["-r", "--editor", "vi"][..],
                "--editor only applies to --edit",
            ),
            (
                &["-e", "a.age", "--textconv"][..],
                "--textconv only applies to --decrypt",
            ),
            (&["-r", "--json"][..], "--json only applies to --check"),
            (
                &["--check", "--stale"][..],
                "--stale only applies to --rekey",
            ),
            (&["-r", "--force"][..], "--force only applies to --generate"),
            (
                &["--dump-rules", "--json"][..],
                "--json only applies to --check",
            ),
            (
                &["--check", "--key", "a"][..],
                "--key only applies to --decrypt",
            ),
            (
                &["-d", "a.json.age", "--format", "json"][..],
                "--format only applies to --key",
            ),
        ] {
            let err = action(line).unwrap_err();
            assert!(err.contains(message), "{line:?}: {err}");
        }
    }
}
