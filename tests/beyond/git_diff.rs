//! `ragenix -d` as a git textconv driver in a real repository, and the one-line message when no
//! identity can decrypt.

use std::fs;
use std::process::{Command, Output};

use predicates::prelude::*;
use predicates::str::contains;

use crate::cli::{bin, Project};
use crate::util::require_program;

fn git(p: &Project, args: &[&str]) -> Output {
    let mut cmd = Command::new("git");
    p.prepare(&mut cmd);
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PAGER", "cat")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.org")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.org")
        .args(args);
    cmd.output().unwrap()
}

fn git_ok(p: &Project, args: &[&str]) -> String {
    let out = git(p, args);
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the driver a small age file may pass git's binary test and be diffed as bytes.
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A repository with `db.age` committed, then changed with `ragenix -e`.
fn repo_with_a_changed_secret() -> Option<Project> {
    if !require_program("git textconv tests", "git") {
        return None;
    }
    let p = Project::new();
    p.rules(&["db.age"]);
    p.create("db.age", b"user = app\npassword = hunter2\nport = 5432\n");
    fs::write(p.path(".gitattributes"), "*.age diff=age\n").unwrap();
    git_ok(&p, &["init", "-q"]);
    git_ok(&p, &["add", "secrets.nix", "db.age", ".gitattributes"]);
    git_ok(&p, &["commit", "-q", "-m", "add db"]);
    p.cmd()
        .args(["-i", "key.txt", "-e", "db.age"])
        .write_stdin("user = app\npassword = correct horse\nport = 5432\n")
        .assert()
        .success();
    Some(p)
}

fn textconv(p: &Project, flags: &str) {
    let command = format!(
        "{} -i {} {flags}",
        shell_words::quote(bin()),
        shell_words::quote(&p.key.display().to_string())
    );
    git_ok(p, &["config", "diff.age.textconv", &command]);
}

#[test]
fn git_diff_with_the_textconv_driver_shows_the_cleartext_lines_that_changed() {
    let Some(p) = repo_with_a_changed_secret() else {
        return;
    };
    let raw = git_ok(&p, &["diff"]);
    assert!(raw.contains("db.age") && !raw.contains("hunter2"), "{raw}");
    textconv(&p, "-d");
    let diff = git_ok(&p, &["diff"]);
    assert!(diff.contains("\n-password = hunter2\n"), "{diff}");
    assert!(diff.contains("\n+password = correct horse\n"), "{diff}");
    assert!(diff.contains("\n user = app\n"), "{diff}");
    assert!(!diff.contains("+user") && !diff.contains("-port"), "{diff}");
    git_ok(&p, &["commit", "-q", "-am", "rotate"]);
    let log = git_ok(&p, &["log", "-p", "--", "db.age"]);
    assert!(log.contains("+password = correct horse"), "{log}");
    assert!(log.contains("+password = hunter2"), "{log}");
}

#[test]
fn without_a_matching_identity_textconv_gives_one_line_instead_of_a_failed_diff() {
    let Some(p) = repo_with_a_changed_secret() else {
        return;
    };
    let other = age::x25519::Identity::generate();
    use age::secrecy::ExposeSecret;
    fs::write(&p.key, other.to_string().expose_secret()).unwrap();
    // Plain -d fails the diff, with one line per file from ragenix.
    textconv(&p, "-d");
    let failed = git(&p, &["diff"]);
    assert!(!failed.status.success());
    let err = String::from_utf8_lossy(&failed.stderr);
    // Git stops at the first failing version; whatever ran said so in one line each.
    let ours: Vec<&str> = err.lines().filter(|l| !l.starts_with("fatal:")).collect();
    assert!(!ours.is_empty(), "{err}");
    for line in ours {
        assert!(
            line.starts_with("ragenix: cannot decrypt ") && line.contains("no identity matched"),
            "{err}"
        );
    }
    // --textconv puts the line in the diff and lets git go on.
    textconv(&p, "--textconv -d");
    let diff = git_ok(&p, &["diff"]);
    // Each version gets its own line, naming the file (not git's temp copy) and telling the
    // versions apart by their ciphertext.
    assert!(
        diff.contains("\n-[ragenix: cannot decrypt db.age (ciphertext ")
            && diff.contains("\n+[ragenix: cannot decrypt db.age (ciphertext ")
            && diff.contains("): no identity matched (tried "),
        "{diff}"
    );
    assert!(!diff.contains("git-blob"), "{diff}");
    assert!(!diff.contains("hunter2"));
}

#[test]
fn decrypt_without_any_identity_is_one_line_and_exit_1() {
    let p = Project::new();
    p.rules(&["a.age"]);
    p.create("a.age", b"x");
    let out = p.cmd().args(["-d", "a.age"]).assert().code(1);
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("ragenix: cannot decrypt a.age: no identity found (tried "),
        "{err}"
    );
    assert!(err.contains("; hint: pass"), "{err}");
    assert!(out.get_output().stdout.is_empty());
    p.cmd()
        .args(["--textconv", "-d", "a.age"])
        .assert()
        .success()
        .stdout(
            predicates::str::starts_with("[ragenix: cannot decrypt a.age (ciphertext ")
                .and(contains("): no identity found (tried "))
                .and(predicates::str::ends_with("]\n")),
        );
    // --textconv only covers identities: a damaged file still fails.
    fs::write(p.path("a.age"), "not age").unwrap();
    p.cmd()
        .args(["-i", "key.txt", "--textconv", "-d", "a.age"])
        .assert()
        .code(1)
        .stderr(contains("not an age file"));
}
