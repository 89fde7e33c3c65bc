//! Evaluating a rules file with the real Nix (`nix-instantiate`), for what our evaluator does
//! not support. One call per rules file, under the same policy as our own evaluation: confined
//! runs use Nix's restricted evaluation with the rules root as the only readable tree and no
//! URI allowed, no builds, no substitutes; a root Nix could not be confined to is refused.

use std::path::Path;
use std::process::Command;

use serde_json::Value as Json;

use super::{escape_for_display, LoadOptions, RulesError, Sandbox};

/// Settings that keep `nix-instantiate` from reading outside the allowed paths or reaching the
/// network: `restrict-eval` also empties `getEnv` and refuses `fetch*` of any URI not listed
/// in `allowed-uris` (none is), and with no import from derivation, `--readonly-mode` and no
/// substituters nothing is built or downloaded.
///
/// Not `pure-eval`: Nix 2.8 then refuses to read the rules file itself ("access to absolute
/// path … is forbidden in pure eval mode"), and `restrict-eval` already gives its guarantees
/// for a plain file (no environment, no paths outside the allowed ones, no unlisted URIs).
const CONFINED: &[&str] = &[
    "--readonly-mode",
    "--option",
    "restrict-eval",
    "true",
    "--option",
    "allowed-uris",
    "",
    "--option",
    "allow-import-from-derivation",
    "false",
    "--option",
    "allow-unsafe-native-code-during-evaluation",
    "false",
    "--option",
    "substituters",
    "",
    "--option",
    "builders",
    "",
    "--option",
    "nix-path",
    "",
];

/// Environment variables through which Nix would take more search paths or settings.
const NIX_ENV: &[&str] = &["NIX_PATH", "NIX_CONFIG"];

pub(super) fn evaluate(
    file: &Path,
    sandbox: &Sandbox,
    why: &str,
    opts: &LoadOptions,
) -> Result<Json, RulesError> {
    let shown = file.display();
    let reason = why.lines().next().unwrap_or(why);
    let mut cmd = Command::new("nix-instantiate");
    cmd.args(["--eval", "--strict", "--json"]);
    match sandbox.roots() {
        None => {
            eprintln!("ragenix: {reason}; evaluating {shown} with nix-instantiate (impure)");
        }
        Some((lexical, real)) => {
            // `-I` takes `PREFIX=PATH`: a root with `=` in its name would not be allowed as a
            // whole, and a `:` would split it, so such a root cannot be expressed.
            for root in [lexical, real] {
                let text = root.to_string_lossy();
                if text.contains('=') || text.contains(':') {
                    return Err(RulesError::new(format!(
                        "{why}\nragenix: {shown}: cannot hand this file to nix-instantiate \
                         confined to the rules root {}: its name contains '=' or ':'; move \
                         the repository, or pass --impure to evaluate without confinement",
                        root.display()
                    )));
                }
            }
            if version().is_none_or(|v| v < CONFINABLE) {
                return Err(RulesError::new(format!(
                    "{why}\nragenix: {shown}: the installed nix-instantiate is older than Nix \
                     {}.{} and cannot be confined to the rules root; upgrade Nix, or pass \
                     --impure to evaluate without confinement",
                    CONFINABLE.0, CONFINABLE.1
                )));
            }
            eprintln!(
                "ragenix: {reason}; evaluating {shown} with nix-instantiate, restricted to {} \
                 and without network",
                lexical.display()
            );
            cmd.args(CONFINED);
            for root in [lexical, real] {
                cmd.arg("-I").arg(root);
            }
            for var in NIX_ENV {
                cmd.env_remove(var);
            }
        }
    }
    if opts.verbose {
        eprintln!("ragenix: running {cmd:?}");
    }
    let output = cmd
        .arg("--")
        .arg(file)
        .output()
        .map_err(|e| RulesError::new(format!("{shown}: cannot run nix-instantiate: {e}")))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    // A Nix that does not know one of the confining settings only warns and goes on without
    // it; its result may have been obtained unconfined, so it is not used.
    if sandbox.is_confined() && stderr.contains("unknown setting") {
        return Err(RulesError::new(format!(
            "{shown}: this nix-instantiate cannot be confined (it does not know a setting \
             ragenix relies on); use Nix 2.4 or later, or pass --impure\n{}",
            quoted(&stderr)
        )));
    }
    if !output.status.success() {
        return Err(RulesError::new(format!(
            "{shown}: nix-instantiate failed:\n{}",
            quoted(&stderr)
        )));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| {
        RulesError::new(format!(
            "{shown}: nix-instantiate printed invalid JSON: {e}"
        ))
    })
}

/// What `nix-instantiate` printed on stderr, each line escaped and started by
/// `nix-instantiate: `: it echoes thrown messages and traces with their newlines, so a line of
/// its own could be one of the rules author's choosing (a CI log's `::error::`).
fn quoted(stderr: &str) -> String {
    stderr
        .trim_end()
        .lines()
        .map(|line| format!("nix-instantiate: {}", escape_for_display(line)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether `nix-instantiate` can be run at all.
pub(super) fn available() -> bool {
    version().is_some()
}

/// The oldest Nix known to honour every setting in [`CONFINED`].
const CONFINABLE: (u32, u32) = (2, 4);

/// `nix-instantiate`'s version as (major, minor), from `nix-instantiate (Nix) 2.8.0`.
fn version() -> Option<(u32, u32)> {
    let out = Command::new("nix-instantiate")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let number = text.split_whitespace().last()?;
    let mut parts = number.split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
}
