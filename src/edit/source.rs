//! Where `-e` takes the new content from: `--editor`, stdin, `$VISUAL`/`$EDITOR` or `vi`.
//!
//! Decided before any secret is decrypted, and never so that an empty stdin nobody meant to
//! give silently replaces a secret with nothing (cron, CI, `ssh host cmd` have no terminal).

use std::io::{self, IsTerminal, Read};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use zeroize::Zeroizing;

use crate::error::UserError;

/// Where the new content comes from.
pub enum Source {
    /// Read from stdin already: at least one byte, or empty because `--editor -` asked for it.
    Stdin(Zeroizing<Vec<u8>>),
    /// An editor command, split like a shell would, run on a private plaintext copy.
    Editor(String),
}

/// What [`choose`] needs to know about the process it runs in.
pub struct Console<'a> {
    /// `--editor`, as given.
    pub explicit: Option<&'a str>,
    /// The first of `$VISUAL`, `$EDITOR` that is set and not blank.
    pub configured: Option<String>,
    pub stdin_is_terminal: bool,
    /// Reads stdin to its end.
    pub read_stdin: &'a mut dyn FnMut() -> Result<Zeroizing<Vec<u8>>>,
}

impl Console<'_> {
    /// The real process: its environment and stdin.
    pub fn real<'a>(
        explicit: Option<&'a str>,
        read: &'a mut dyn FnMut() -> Result<Zeroizing<Vec<u8>>>,
    ) -> Console<'a> {
        Console {
            explicit,
            configured: ["VISUAL", "EDITOR"]
                .iter()
                .filter_map(|v| std::env::var(v).ok())
                .find(|v| !v.trim().is_empty()),
            stdin_is_terminal: io::stdin().is_terminal(),
            read_stdin: read,
        }
    }
}

/// Picks the source, in the order `--help` and the README document: `--editor CMD|-`; stdin
/// if it is not a terminal and holds at least one byte; `$VISUAL`/`$EDITOR` (`-` meaning
/// stdin); `vi` on a terminal. `replacing` says whether `file` exists (for the refusal).
pub fn choose(file: &Path, replacing: bool, console: Console<'_>) -> Result<Source> {
    match console.explicit {
        // Asked for by name: an empty stdin is then really meant as an empty secret.
        Some("-") => return Ok(Source::Stdin((console.read_stdin)()?)),
        Some(cmd) => return Ok(Source::Editor(cmd.to_owned())),
        None => {}
    }
    // Reading to the end is the only way to know whether a pipe holds a byte; it costs nothing
    // when the answer is "yes", since stdin is then the content anyway.
    let stdin_read_empty = if console.stdin_is_terminal {
        false
    } else {
        let data = (console.read_stdin)()?;
        if !data.is_empty() {
            return Ok(Source::Stdin(data));
        }
        true
    };
    match console.configured {
        Some(cmd) if cmd.trim() == "-" => {
            if stdin_read_empty {
                return Err(refuse(file, replacing, "stdin is empty and not a terminal"));
            }
            let data = (console.read_stdin)()?;
            if data.is_empty() {
                return Err(refuse(file, replacing, "nothing was typed on stdin"));
            }
            Ok(Source::Stdin(data))
        }
        Some(cmd) => Ok(Source::Editor(cmd)),
        None if console.stdin_is_terminal => Ok(Source::Editor("vi".to_owned())),
        None => Err(refuse(file, replacing, "stdin is empty and not a terminal")),
    }
}

fn refuse(file: &Path, replacing: bool, why: &str) -> anyhow::Error {
    let verb = if replacing { "replace" } else { "create" };
    UserError::with_hint(
        format!("{why}; refusing to {verb} {} with nothing", file.display()),
        "give the new content on stdin, set EDITOR to an editor command (it runs without a \
         terminal too), or pass --editor - to really write an empty secret",
    )
    .into()
}

/// Reads the real stdin to its end into memory that is zeroed when dropped, including every
/// smaller buffer it outgrew. Says so on stderr if nothing arrives for a second, so that a
/// stdin nobody closes (`ssh host ragenix -e …` without `-t`) is not a silent hang.
pub fn read_stdin(file: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let stdin = io::stdin();
    if !ready_within(&stdin, Duration::from_secs(1)) {
        eprintln!(
            "ragenix: reading the new content of {} from stdin (end it with Ctrl-D)",
            file.display()
        );
    }
    read_all(&mut stdin.lock()).context("reading the new content from stdin")
}

fn ready_within(fd: impl AsFd, wait: Duration) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let timeout = Timespec {
        tv_sec: wait.as_secs() as _,
        tv_nsec: wait.subsec_nanos() as _,
    };
    // An fd poll cannot watch (or an error) is simply read; the notice is only a courtesy.
    !matches!(poll(&mut fds, Some(&timeout)), Ok(0))
}

/// `read_to_end` without leaving unzeroed copies behind when the buffer grows.
fn read_all(input: &mut dyn Read) -> io::Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(vec![0u8; 8 * 1024]);
    let mut len = 0;
    loop {
        if len == buf.len() {
            let mut bigger = Zeroizing::new(vec![0u8; buf.len() * 2]);
            bigger[..len].copy_from_slice(&buf[..len]);
            buf = bigger;
        }
        match input.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `choose` with a fake stdin holding `input`; returns the source, or the error text, and
    /// how many times stdin was read.
    fn pick(
        explicit: Option<&str>,
        configured: Option<&str>,
        terminal: bool,
        input: &[u8],
    ) -> (Result<String, String>, usize) {
        let mut reads = 0;
        let mut read = || {
            reads += 1;
            Ok(Zeroizing::new(if reads == 1 {
                input.to_vec()
            } else {
                vec![]
            }))
        };
        let console = Console {
            explicit,
            configured: configured.map(str::to_owned),
            stdin_is_terminal: terminal,
            read_stdin: &mut read,
        };
        let got = match choose(Path::new("a.age"), true, console) {
            Ok(Source::Stdin(d)) => Ok(format!("stdin:{}", String::from_utf8_lossy(&d))),
            Ok(Source::Editor(c)) => Ok(format!("editor:{c}")),
            Err(e) => Err(format!("{e:#}")),
        };
        (got, reads)
    }

    #[test]
    fn an_explicit_editor_never_reads_stdin() {
        assert_eq!(
            pick(Some("ed"), Some("vim"), false, b"x"),
            (Ok("editor:ed".into()), 0)
        );
    }

    #[test]
    fn explicit_dash_takes_even_an_empty_stdin() {
        assert_eq!(pick(Some("-"), None, false, b""), (Ok("stdin:".into()), 1));
    }

    #[test]
    fn stdin_with_content_wins_over_the_environment() {
        assert_eq!(
            pick(None, Some("vim"), false, b"new"),
            (Ok("stdin:new".into()), 1)
        );
    }

    #[test]
    fn an_empty_stdin_falls_through_to_the_environment_then_refuses() {
        assert_eq!(
            pick(None, Some("sed -i s/a/b/"), false, b""),
            (Ok("editor:sed -i s/a/b/".into()), 1)
        );
        let (got, _) = pick(None, None, false, b"");
        assert_eq!(
            got.unwrap_err(),
            "stdin is empty and not a terminal; refusing to replace a.age with nothing"
        );
        // `-` in the environment is stdin, which was empty: not a licence to empty the file.
        let (got, reads) = pick(None, Some("-"), false, b"");
        assert!(got.unwrap_err().contains("refusing"));
        assert_eq!(reads, 1);
    }

    #[test]
    fn a_terminal_is_not_read_unless_asked_and_vi_is_the_last_resort() {
        assert_eq!(
            pick(None, None, true, b"typed"),
            (Ok("editor:vi".into()), 0)
        );
        assert_eq!(
            pick(None, Some("-"), true, b"typed"),
            (Ok("stdin:typed".into()), 1)
        );
        assert!(pick(None, Some("-"), true, b"")
            .0
            .unwrap_err()
            .contains("nothing was typed on stdin; refusing to replace a.age with nothing"));
    }

    #[test]
    fn read_all_keeps_every_byte_across_growth() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(&read_all(&mut &data[..]).unwrap()[..], &data[..]);
        assert!(read_all(&mut &b""[..]).unwrap().is_empty());
    }
}
