//! Interactive prompting for the command line: passphrases of encrypted ssh keys from
//! `$RAGENIX_ASKPASS` or the terminal, and age plugins' questions at the terminal, with the
//! progress bar hidden meanwhile. The boot-time installer never reaches this module (it uses
//! [`keys::Unattended`](crate::keys::Unattended)), so it links no terminal UI.

use std::io::{self, IsTerminal};
use std::process::{Command, Stdio};

use age::secrecy::SecretString;
use anyhow::{anyhow, Context, Result};

use crate::error::UserError;
use crate::keys::{Prompt, ASKPASS_ENV};

fn interactive() -> bool {
    io::stderr().is_terminal() && io::stdin().is_terminal()
}

/// The prompt used by the command line: `$RAGENIX_ASKPASS` when set, else the terminal.
pub struct TerminalPrompt;

impl Prompt for TerminalPrompt {
    fn passphrase(&self, key_file: &str) -> Result<Option<SecretString>> {
        if let Some(program) = std::env::var_os(ASKPASS_ENV).filter(|p| !p.is_empty()) {
            let out = Command::new(&program)
                .arg(format!("Passphrase for {key_file}: "))
                .stdin(Stdio::null())
                .stderr(Stdio::inherit())
                .output()
                .with_context(|| {
                    format!("running ${ASKPASS_ENV} ({})", program.to_string_lossy())
                })?;
            if !out.status.success() {
                return Ok(None);
            }
            let text = String::from_utf8(out.stdout)
                .map_err(|_| anyhow!("${ASKPASS_ENV} printed a passphrase that is not UTF-8"))?;
            let text = text.strip_suffix('\n').unwrap_or(&text);
            return Ok(Some(SecretString::from(text.to_owned())));
        }
        if !io::stderr().is_terminal() || !io::stdin().is_terminal() {
            return Err(UserError::with_hint(
                format!("{key_file} is passphrase-protected and there is no terminal to ask for the passphrase"),
                format!("run ragenix from a terminal, set {ASKPASS_ENV} to a program printing the passphrase, or pass an unencrypted identity with -i"),
            )
            .into());
        }
        let pass = crate::progress::suspend(|| {
            dialoguer::Password::new()
                .with_prompt(format!("Passphrase for {key_file}"))
                .allow_empty_password(true)
                .interact()
        })
        .context("reading the passphrase")?;
        Ok(Some(SecretString::from(pass)))
    }

    fn plugin_message(&self, message: &str) {
        crate::progress::suspend(|| eprintln!("{message}"));
    }
    fn plugin_confirm(&self, message: &str, yes: &str, no: Option<&str>) -> Option<bool> {
        if !interactive() {
            return None;
        }
        let mut items = vec![yes];
        items.extend(no);
        crate::progress::suspend(|| {
            dialoguer::Select::new()
                .with_prompt(message)
                .items(&items)
                .default(0)
                .interact()
                .ok()
                .map(|i| i == 0)
        })
    }
    fn plugin_public_string(&self, description: &str) -> Option<String> {
        if !interactive() {
            return None;
        }
        crate::progress::suspend(|| {
            dialoguer::Input::<String>::new()
                .with_prompt(description)
                .interact_text()
                .ok()
        })
    }
    fn plugin_passphrase(&self, description: &str) -> Option<SecretString> {
        if !interactive() {
            return None;
        }
        crate::progress::suspend(|| {
            dialoguer::Password::new()
                .with_prompt(description)
                .interact()
                .ok()
                .map(SecretString::from)
        })
    }
}
