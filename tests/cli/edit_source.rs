//! Where `-e` takes the new content from, for every way of starting it: stdin `/dev/null`, an
//! empty pipe, a pipe with data, a terminal (`script`), crossed with `--editor`, `$VISUAL` and
//! `$EDITOR`. The property above all: an existing secret is never emptied unless
//! `--editor -` was given with an empty stdin (issue 14).

use std::fs;
use std::io::Write;
use std::process::{Command, Output, Stdio};

use predicates::prelude::*;
use predicates::str::contains;

use super::{script, stderr_of, Project};
use crate::util::require_program;

const ORIGINAL: &[u8] = b"original-Q8";

/// How stdin is connected.
#[derive(Clone, Copy, Debug)]
enum Stdin {
    DevNull,
    EmptyPipe,
    Pipe,
    /// A pseudo-terminal from `script`; `typed` is what the user types before Ctrl-D.
    Terminal {
        typed: bool,
    },
}

/// Which editor settings are given.
#[derive(Clone, Copy, Debug)]
enum Editor {
    Nothing,
    Env(&'static str, &'static str),
    Both,
    Flag(&'static str),
}

/// What the run must leave.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// Exit 0 and this content.
    Content(&'static [u8]),
    /// Exit 1 with the refusal; the file byte-for-byte as it was.
    Refused,
}
use Outcome::*;

const PIPED: &[u8] = b"piped-K2";
const TYPED: &[u8] = b"typed-K3\n";
const EDITED: &[u8] = b"original-Q8 edited";
const VISUAL: &[u8] = b"original-Q8 visual";
const VI: &[u8] = b"original-Q8 vi";

/// The expected outcome, written out case by case rather than derived, so that the table is
/// the specification the README documents.
fn expected(stdin: Stdin, editor: Editor) -> Outcome {
    use Editor::*;
    use Stdin::*;
    match (stdin, editor) {
        // An editor asked for by flag always wins.
        (_, Flag("ed")) => Content(EDITED),
        (Pipe, Flag("-")) => Content(PIPED),
        (DevNull | EmptyPipe, Flag("-")) => Content(b""),
        (Terminal { typed: true }, Flag("-")) => Content(TYPED),
        (Terminal { typed: false }, Flag("-")) => Content(b""),
        // Then stdin holding at least one byte.
        (Pipe, _) => Content(PIPED),
        // Then $VISUAL, $EDITOR, with `-` meaning stdin.
        (_, Env(_, "ed")) => Content(EDITED),
        (_, Both) => Content(VISUAL),
        (Terminal { typed: true }, Env(_, "-")) => Content(TYPED),
        (Terminal { typed: false } | DevNull | EmptyPipe, Env(_, "-")) => Refused,
        // Then vi, on a terminal only.
        (Terminal { .. }, Nothing) => Content(VI),
        (DevNull | EmptyPipe, Nothing) => Refused,
        (s, e) => unreachable!("no expectation for {s:?} {e:?}"),
    }
}

fn setup() -> Project {
    let p = Project::new();
    p.rules(&["a.age"]);
    fs::create_dir(p.path("bin")).unwrap();
    for (name, word) in [("ed", "edited"), ("visual", "visual"), ("vi", "vi")] {
        script(
            &p.path(format!("bin/{name}")),
            &format!("printf ' {word}' >> \"$1\""),
        );
    }
    p
}

fn run(p: &Project, stdin: Stdin, editor: Editor) -> Output {
    let mut args: Vec<String> = vec!["-i".into(), "key.txt".into()];
    if let Editor::Flag(cmd) = editor {
        args.extend(["--editor".into(), cmd.into()]);
    }
    args.extend(["-e".into(), "a.age".into()]);
    let mut c = match stdin {
        Stdin::Terminal { .. } => {
            let mut inner = vec![super::bin().to_owned()];
            inner.extend(args);
            let mut c = Command::new("timeout");
            c.args([
                "60",
                "script",
                "-qec",
                &shell_words::join(&inner),
                "/dev/null",
            ]);
            c
        }
        _ => {
            let mut c = Command::new("timeout");
            c.arg("60").arg(super::bin()).args(&args);
            c
        }
    };
    p.prepare(&mut c);
    let path = format!(
        "{}:{}",
        p.path("bin").display(),
        std::env::var("PATH").unwrap()
    );
    c.env("PATH", path);
    match editor {
        Editor::Env(var, cmd) => {
            c.env(var, cmd);
        }
        Editor::Both => {
            c.env("VISUAL", "visual").env("EDITOR", "ed");
        }
        _ => {}
    }
    let feed: &[u8] = match stdin {
        Stdin::DevNull => {
            c.stdin(Stdio::null());
            return c.output().unwrap();
        }
        Stdin::EmptyPipe | Stdin::Terminal { typed: false } => b"",
        Stdin::Pipe => PIPED,
        Stdin::Terminal { typed: true } => TYPED,
    };
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    // A reader that never reads (the editor cases) may close the pipe early.
    let _ = pipe.write_all(feed);
    drop(pipe);
    child.wait_with_output().unwrap()
}

#[test]
fn no_way_of_starting_edit_empties_a_secret_unless_asked_with_editor_dash() {
    let with_tty = require_program("no_way_of_starting_edit_empties_a_secret", "script");
    let mut stdins = vec![Stdin::DevNull, Stdin::EmptyPipe, Stdin::Pipe];
    if with_tty {
        stdins.extend([
            Stdin::Terminal { typed: false },
            Stdin::Terminal { typed: true },
        ]);
    }
    let editors = [
        Editor::Nothing,
        Editor::Env("EDITOR", "ed"),
        Editor::Env("VISUAL", "ed"),
        Editor::Env("EDITOR", "-"),
        Editor::Env("VISUAL", "-"),
        Editor::Both,
        Editor::Flag("ed"),
        Editor::Flag("-"),
    ];
    let mut failures = Vec::new();
    for &stdin in &stdins {
        for &editor in &editors {
            let p = setup();
            p.create("a.age", ORIGINAL);
            let before = fs::read(p.path("a.age")).unwrap();
            let out = run(&p, stdin, editor);
            // What a terminal user saw is on stdout under `script`.
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                stderr_of(&out)
            );
            let got = match out.status.code() {
                Some(0) => Content(match p.open("a.age").unwrap() {
                    c if c == PIPED => PIPED,
                    c if c == TYPED => TYPED,
                    c if c == EDITED => EDITED,
                    c if c == VISUAL => VISUAL,
                    c if c == VI => VI,
                    c if c.is_empty() => b"",
                    c if c == ORIGINAL => ORIGINAL,
                    c => panic!("{stdin:?} {editor:?}: unexpected content {c:?}"),
                }),
                Some(1)
                    if said.contains("refusing to replace a.age with nothing")
                        && said.contains("--editor -")
                        && fs::read(p.path("a.age")).unwrap() == before =>
                {
                    Refused
                }
                _ => panic!("{stdin:?} {editor:?}: {:?}\n{said}", out.status),
            };
            let want = expected(stdin, editor);
            if got != want {
                failures.push(format!("{stdin:?} {editor:?}: want {want:?}, got {got:?}"));
            }
            let emptied = got == Content(b"");
            assert!(
                !emptied || matches!(editor, Editor::Flag("-")),
                "{stdin:?} {editor:?} emptied the secret"
            );
            assert!(p.leftover_private_dirs().is_empty(), "{stdin:?} {editor:?}");
            assert!(p.temp_files().is_empty(), "{stdin:?} {editor:?}");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn an_editor_in_the_environment_edits_with_stdin_at_dev_null() {
    let p = Project::new();
    p.rules(&["token.age"]);
    p.create("token.age", b"user=alice pass=hunter2");
    let mut c = p.std_cmd();
    c.stdin(Stdio::null());
    assert_cmd::Command::from_std(c)
        .env("EDITOR", "sed -i s/hunter2/hunter3/")
        .args(["-i", "key.txt", "-e", "token.age"])
        .assert()
        .success();
    assert_eq!(p.open("token.age").unwrap(), b"user=alice pass=hunter3");
}

#[test]
fn a_new_secret_is_not_created_empty_from_an_empty_stdin() {
    let p = Project::new();
    p.rules(&["new.age"]);
    let mut c = p.std_cmd();
    c.stdin(Stdio::null());
    assert_cmd::Command::from_std(c)
        .args(["-e", "new.age"])
        .assert()
        .code(1)
        .stderr(contains(
            "stdin is empty and not a terminal; refusing to create new.age with nothing",
        ));
    assert!(!p.path("new.age").exists());
}

/// `a.age` encrypted to a key that is not given to ragenix; `other.txt` is a key that matches
/// nothing.
fn foreign_secret() -> Project {
    let p = Project::new();
    p.rules(&["a.age"]);
    p.create("a.age", ORIGINAL);
    let other = age::x25519::Identity::generate();
    use age::secrecy::ExposeSecret;
    fs::write(p.path("other.txt"), other.to_string().expose_secret()).unwrap();
    p
}

#[test]
fn stdin_replaces_a_secret_no_identity_decrypts_and_go_age_reads_it() {
    if !require_program("stdin_replaces_a_secret_no_identity_decrypts", "age") {
        return;
    }
    let p = foreign_secret();
    // None matches, then none found (HOME has no ~/.ssh keys).
    for (args, why) in [
        (
            &["-i", "other.txt"][..],
            "no identity matched (tried other.txt)",
        ),
        (&[][..], "no identity found"),
    ] {
        let new = format!("rotated by {why}");
        p.cmd()
            .args(args)
            .args(["-e", "a.age"])
            .write_stdin(new.clone())
            .assert()
            .success()
            .stderr(
                contains("ragenix: note: cannot decrypt a.age: ")
                    .and(contains(why))
                    .and(contains("the \"unchanged\" check was skipped")),
            );
        let out = Command::new("age")
            .args(["-d", "-i", "key.txt", "a.age"])
            .current_dir(p.path(""))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        assert_eq!(out.stdout, new.as_bytes());
    }
}

#[test]
fn an_editor_still_needs_an_identity_for_the_old_content() {
    let p = foreign_secret();
    let before = fs::read(p.path("a.age")).unwrap();
    p.cmd()
        .args(["-i", "other.txt", "--editor", "true", "-e", "a.age"])
        .assert()
        .code(1)
        .stderr(contains("cannot decrypt a.age: no identity matched"));
    assert_eq!(fs::read(p.path("a.age")).unwrap(), before);
}

#[test]
fn a_broken_identity_file_stays_an_error_when_content_comes_from_stdin() {
    let p = foreign_secret();
    let before = fs::read(p.path("a.age")).unwrap();
    fs::write(p.path("junk.key"), "not a key\n").unwrap();
    for key in ["junk.key", "missing.key"] {
        p.cmd()
            .args(["-i", key, "-e", "a.age"])
            .write_stdin("new")
            .assert()
            .code(1)
            .stderr(contains(format!("cannot read identity {key}")));
        assert_eq!(fs::read(p.path("a.age")).unwrap(), before);
    }
}

#[test]
fn a_damaged_secret_is_not_overwritten_from_stdin_as_if_foreign() {
    let p = foreign_secret();
    fs::write(p.path("a.age"), "not an age file").unwrap();
    p.cmd()
        .args(["-i", "key.txt", "-e", "a.age"])
        .write_stdin("new")
        .assert()
        .code(1)
        .stderr(contains("not an age file"));
    assert_eq!(fs::read(p.path("a.age")).unwrap(), b"not an age file");
}

#[test]
fn stdin_replaces_a_secret_whose_locked_key_cannot_be_unlocked_here() {
    if !require_program("stdin_replaces_a_secret_whose_locked_key", "ssh-keygen") {
        return;
    }
    let p = Project::new();
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "sesame", "-C", "", "-f"])
        .arg(p.path("id"))
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let public = fs::read_to_string(p.path("id.pub")).unwrap();
    p.rules_at("secrets.nix", &[("a.age", &[public.trim()], false)]);
    p.cmd()
        .args(["-i", "id", "-e", "a.age"])
        .write_stdin("first")
        .assert()
        .success();
    // No terminal and no RAGENIX_ASKPASS: the key that matches cannot be unlocked.
    p.cmd()
        .args(["-i", "id", "-e", "a.age"])
        .write_stdin("second")
        .assert()
        .success()
        .stderr(contains("passphrase-protected").and(contains("check was skipped")));
    let askpass = script(&p.path("askpass.sh"), "echo sesame");
    p.cmd()
        .env("RAGENIX_ASKPASS", &askpass)
        .args(["-i", "id", "-d", "a.age"])
        .assert()
        .success()
        .stdout("second");
}
