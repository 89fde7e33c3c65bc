//! Evaluating a rules file with the real Nix (`nix-instantiate`), for what our evaluator does
//! not support. One call per rules file.

use std::path::Path;
use std::process::Command;

use serde_json::Value as Json;

use super::{LoadOptions, RulesError};

pub(super) fn evaluate(file: &Path, opts: &LoadOptions) -> Result<Json, RulesError> {
    if opts.verbose {
        eprintln!(
            "ragenix: evaluating {} with nix-instantiate",
            file.display()
        );
    }
    let output = Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json", "--"])
        .arg(file)
        .output()
        .map_err(|e| {
            RulesError::new(format!(
                "{}: cannot run nix-instantiate: {e}",
                file.display()
            ))
        })?;
    if !output.status.success() {
        return Err(RulesError::new(format!(
            "{}: nix-instantiate failed: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| {
        RulesError::new(format!(
            "{}: nix-instantiate printed invalid JSON: {e}",
            file.display()
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
