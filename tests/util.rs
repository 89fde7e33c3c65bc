//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// Whether the tests run under CI, where a missing outside program is a failure, not a skip.
pub fn under_ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

/// Reports a test that cannot run here: a visible skip by hand, a failure under CI.
pub fn skip(test: &str, why: &str) {
    if under_ci() {
        panic!("{test}: {why} (CI=true: skipping is not allowed)");
    }
    eprintln!("SKIPPED {test}: {why}");
}

/// True when `program` can be run; otherwise reports the skip (see [`skip`]) and returns false.
pub fn require_program(test: &str, program: &str) -> bool {
    let found = Command::new(program)
        .arg("--version")
        .output()
        .map(|_| true)
        .unwrap_or(false);
    if !found {
        skip(test, &format!("`{program}` is not installed"));
    }
    found
}

/// True when running as root; otherwise reports the skip.
pub fn require_root(test: &str) -> bool {
    let root = rustix::process::geteuid().is_root();
    if !root {
        skip(test, "needs root");
    }
    root
}

/// `../shared/corpus` beside the repository, if present; otherwise reports the skip.
pub fn corpus_dir(test: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    if dir.is_dir() {
        Some(dir)
    } else {
        skip(
            test,
            "../shared/corpus is not present beside the repository",
        );
        None
    }
}

/// A copy of `dir` in a fresh temp dir with a `.git` marker at its top, so that the copy is the
/// rules root of any rules file in it (as the repository it came from would be).
pub fn copy_as_repository(dir: &std::path::Path) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.unwrap();
        let to = tmp.path().join(entry.path().strip_prefix(dir).unwrap());
        let kind = entry.file_type();
        if kind.is_dir() {
            std::fs::create_dir_all(&to).unwrap();
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &to).unwrap();
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
    std::fs::create_dir(tmp.path().join(".git")).unwrap();
    tmp
}
