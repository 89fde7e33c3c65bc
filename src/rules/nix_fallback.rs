//! Evaluating a rules file with the real Nix (`nix-instantiate`), for what our evaluator does
//! not support. One call per rules file, under the same policy as our own evaluation: confined
//! runs use Nix's restricted evaluation with the rules root as the only readable tree and no
//! URI allowed, no builds, no substitutes; a root Nix could not be confined to is refused.

use std::path::Path;
use std::process::Command;

use serde_json::Value as Json;

use super::{LoadOptions, RulesError, Sandbox};

/// Settings that keep `nix-instantiate` from reading outside the allowed paths or reaching the
/// network: `restrict-eval` also empties `getEnv` and refuses `fetch*` of any URI not listed
/// in `allowed-uris` (none is), and with no import from derivation, `--readonly-mode` and no
/// substituters nothing is built or downloaded.
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
    if !output.status.success() {
        return Err(RulesError::new(format!(
            "{shown}: nix-instantiate failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| {
        RulesError::new(format!(
            "{shown}: nix-instantiate printed invalid JSON: {e}"
        ))
    })
}

/// Whether `nix-instantiate` can be run at all.
pub(super) fn available() -> bool {
    Command::new("nix-instantiate")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}
