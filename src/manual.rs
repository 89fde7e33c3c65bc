//! Shell completions and the man page, generated from the clap definition in [`crate::cli`]
//! so they can never disagree with the flags. The Nix package runs these at build time.

use std::io::Write;

use anyhow::Result;
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Args;

/// Writes the completion script for `shell`.
pub fn completions(shell: Shell, out: &mut dyn Write) -> Result<()> {
    let mut command = Args::command();
    let name = command.get_name().to_owned();
    clap_complete::generate(shell, &mut command, name, out);
    out.flush()?;
    Ok(())
}

/// Writes the man page (section 1, roff).
pub fn man_page(out: &mut dyn Write) -> Result<()> {
    clap_mangen::Man::new(Args::command()).render(out)?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_offer_the_long_flags() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut out = Vec::new();
            completions(shell, &mut out).unwrap();
            let text = String::from_utf8(out).unwrap();
            for flag in ["rekey", "check", "generate", "stale"] {
                assert!(text.contains(flag), "{shell:?} lacks {flag}");
            }
        }
    }

    #[test]
    fn the_man_page_documents_the_flags_but_not_the_hidden_ones() {
        let mut out = Vec::new();
        man_page(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(".ie \\n(.g .ds Aq") || text.contains(".TH ragenix 1"));
        assert!(text.contains("\\-\\-check") && text.contains("\\-\\-generate"));
        // Hidden flags are packaging aids: named in the synopsis's action group, not described.
        assert!(!text.contains("Print shell completions"));
    }
}
