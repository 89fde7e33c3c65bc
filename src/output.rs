//! Standard output: one buffered writer per run, and ripgrep's rule that a reader closing the
//! pipe early (`ragenix --dump-rules | head`) ends the run quietly with success.
//!
//! Does not decide what is printed; the actions do.

use std::io::{self, BufWriter, StdoutLock, Write};

use anyhow::Result;
use serde::Serialize;

/// Large enough that a 10,000-rule `--dump-rules` takes a few dozen writes, not one per line.
const BUFFER: usize = 64 * 1024;

/// Stdout behind one buffer; flush it explicitly, since a flush error in `drop` is lost.
pub fn stdout() -> BufWriter<StdoutLock<'static>> {
    BufWriter::with_capacity(BUFFER, io::stdout().lock())
}

/// `value` as pretty JSON and a newline on stdout.
pub fn json(value: &impl Serialize) -> Result<()> {
    json_to(io::stdout().lock(), value)
}

fn json_to(out: impl Write, value: &impl Serialize) -> Result<()> {
    // serde_json writes token by token; without the buffer each one is a system call.
    let mut out = BufWriter::with_capacity(BUFFER, out);
    // Through `io::Error` so that a closed pipe is recognised by [`is_broken_pipe`].
    serde_json::to_writer_pretty(&mut out, value).map_err(io::Error::from)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// Whether `e` comes from writing to a pipe whose reader has gone.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        let kind = c
            .downcast_ref::<io::Error>()
            .map(io::Error::kind)
            .or_else(|| {
                c.downcast_ref::<serde_json::Error>()
                    .and_then(serde_json::Error::io_error_kind)
            });
        kind == Some(io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_output_reaches_the_writer_in_buffer_sized_pieces() {
        struct Counting(usize, usize);
        impl Write for Counting {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0 += 1;
                self.1 += b.len();
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let rules: Vec<(String, Vec<&str>)> = (0..10_000)
            .map(|i| {
                (
                    format!("secret-{i}.age"),
                    vec!["age1xyz", "ssh-ed25519 AAAA"],
                )
            })
            .collect();
        let mut counting = Counting(0, 0);
        json_to(&mut counting, &rules).unwrap();
        assert!(counting.1 > 10 * BUFFER, "{} bytes", counting.1);
        assert!(
            counting.0 <= counting.1 / BUFFER + 2,
            "{} writes",
            counting.0
        );
    }

    #[test]
    fn a_broken_pipe_is_recognised_through_serde_json_and_context() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let raw = serde_json::to_writer(Closed, &[1, 2, 3]).unwrap_err();
        assert!(is_broken_pipe(
            &anyhow::Error::new(raw).context("printing the rules")
        ));
        let other = io::Error::new(io::ErrorKind::StorageFull, "disk full");
        assert!(!is_broken_pipe(&anyhow::Error::new(other)));
    }
}
