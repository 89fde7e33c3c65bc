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

/// A directory for test trees that must sit where root's installer trusts every directory on
/// the way (the macOS RAM-disk tools take the mount point by name) and where a systemd booted by
/// `../shared/real-systemd/boot.sh` still sees them (it gets fresh `/tmp`, `/run`, `/var/tmp`).
/// The target directory's tmp when the checkout is in such a place; a checkout under `/tmp`
/// (as a CI clone may be) uses `/var/lib/ragenix-tests` when running as root instead.
pub fn scratch_base() -> PathBuf {
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    if is_trusted_and_visible(&target) || !rustix::process::geteuid().is_root() {
        return target;
    }
    let base = PathBuf::from("/var/lib/ragenix-tests");
    match std::fs::create_dir(&base) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => panic!("cannot create {}: {e}", base.display()),
    }
    std::fs::set_permissions(&base, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    assert!(
        is_trusted_and_visible(&base),
        "{} is not a root-owned directory only root can write to",
        base.display()
    );
    base
}

/// Whether `dir` and every directory above it belong to root (or us) and are writable by no
/// one else, and none is one of the directories boot.sh replaces.
fn is_trusted_and_visible(dir: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    let Ok(dir) = dir.canonicalize() else {
        return false;
    };
    let hidden = ["/tmp", "/run", "/var/tmp", "/dev/shm"];
    if hidden.iter().any(|h| dir.starts_with(h)) {
        return false;
    }
    dir.ancestors().all(|d| {
        std::fs::symlink_metadata(d)
            .is_ok_and(|m| m.is_dir() && (m.uid() == 0 || m.uid() == me) && m.mode() & 0o022 == 0)
    })
}
