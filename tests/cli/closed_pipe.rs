//! A reader that stops early (`| head -c1`) ends every action that writes to stdout quietly
//! with exit 0, as ripgrep does (issue 9 item 5).

use std::fs;
use std::process::{Command, Output, Stdio};

use super::Project;

/// A project whose `--dump-rules`, `--check --json` and `-d` print far more than a pipe holds,
/// so the writer is still writing when the reader goes.
fn big_project() -> Project {
    let p = Project::new();
    let names: Vec<String> = (0..3000).map(|i| format!("secret-{i:04}.age")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    p.rules(&refs);
    let big: Vec<u8> = (0..4 << 20).map(|i| (i % 251) as u8).collect();
    p.create("secret-0000.age", &big);
    p
}

const ACTIONS: [&[&str]; 7] = [
    &["--dump-rules"],
    &["--schema"],
    &["--completions", "bash"],
    &["--man"],
    &["--check", "--json"],
    &["--check"],
    &["-i", "key.txt", "-d", "secret-0000.age"],
];

fn assert_quiet_success(args: &[&str], out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{args:?}");
}

#[test]
fn writing_into_a_pipe_nobody_reads_is_a_quiet_success() {
    let p = big_project();
    for args in ACTIONS {
        // The reader is gone before ragenix starts: the very first write fails with EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = p
            .std_cmd()
            .args(args)
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_quiet_success(args, &out);
    }
}

#[test]
fn head_c1_after_any_action_exits_0_without_a_message() {
    let p = big_project();
    for args in ACTIONS {
        let line = format!(
            "{} | head -c1 >/dev/null; exit ${{PIPESTATUS[0]}}",
            shell_words::join(std::iter::once(super::bin()).chain(args.iter().copied()))
        );
        let mut c = Command::new("bash");
        p.prepare(&mut c);
        let out = c.args(["-c", &line]).output().unwrap();
        assert_quiet_success(args, &out);
    }
    // And the files are still there to be read in full.
    assert!(fs::metadata(p.path("secret-0000.age")).unwrap().len() > 4 << 20);
}
