//! One writer at a time: `-e`, `-r` and `--generate` hold an exclusive `flock` on the rules
//! file while they write, so two runs never interleave their temp files and renames.
//!
//! The rules file is the lock because every writer opens it anyway and it leaves nothing in
//! the repository. Where the filesystem refuses `flock` on it (some network mounts), a lock
//! file in a directory private to the user (`$XDG_RUNTIME_DIR`; macOS's per-user `$TMPDIR`)
//! named after the rules file's real path takes its place.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rustix::fs::{flock, FlockOperation};
use sha2::{Digest, Sha256};

use crate::error::UserError;
use crate::platform;

/// How long a second run waits by default before giving up.
const DEFAULT_WAIT: Duration = Duration::from_secs(300);
/// Seconds to wait for another run instead of the default 300.
pub const TIMEOUT_ENV: &str = "RAGENIX_LOCK_TIMEOUT";
/// How often a waiting run tries again. `flock` cannot time out by itself, and a blocking
/// attempt on a thread would leave a lock taken after we gave up.
const RETRY: Duration = Duration::from_millis(50);

/// Held while a run writes; released when dropped (or when the process dies, whatever kills
/// it: the kernel drops `flock` locks with the last descriptor).
#[derive(Debug)]
pub struct WriterLock {
    _file: File,
}

/// Takes the writer lock for `rules_file`, waiting (with a one-line notice) while another run
/// holds it: up to `$RAGENIX_LOCK_TIMEOUT` seconds, or 300; or, when `someone_waits` (a user
/// at a terminal whose edit would be lost by giving up) and no timeout is set, until it is free.
pub fn writer(rules_file: &Path, someone_waits: bool) -> Result<WriterLock> {
    let wait = patience(timeout_from_env()?, someone_waits);
    let shown = rules_file.display();
    let file = File::open(rules_file)
        .with_context(|| format!("cannot open {shown} to lock it against other runs"))?;
    let unsupported = match acquire(&file, rules_file, wait) {
        Ok(()) => return Ok(WriterLock { _file: file }),
        Err(Failure::TimedOut) => return Err(timed_out(rules_file, wait.unwrap_or_default())),
        Err(Failure::Unsupported(e)) => e,
    };
    let runtime_dir = platform::plaintext::private_runtime_dir(platform::Os::CURRENT, |name| {
        std::env::var_os(name)
    });
    let fallback = runtime_lock_path(rules_file, runtime_dir).with_context(|| {
        format!("cannot lock {shown} against other runs ({unsupported}) and there is no fallback")
    })?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        // The runtime dir is the user's own, but a symlink there is still never followed.
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&fallback)
        .with_context(|| format!("cannot open the lock file {}", fallback.display()))?;
    match acquire(&file, rules_file, wait) {
        Ok(()) => Ok(WriterLock { _file: file }),
        Err(Failure::TimedOut) => Err(timed_out(rules_file, wait.unwrap_or_default())),
        Err(Failure::Unsupported(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", fallback.display()))
        }
    }
}

/// How long to wait: `None` is until the lock is free.
fn patience(configured: Option<Duration>, someone_waits: bool) -> Option<Duration> {
    match (configured, someone_waits) {
        (Some(t), _) => Some(t),
        (None, true) => None,
        (None, false) => Some(DEFAULT_WAIT),
    }
}

enum Failure {
    /// The filesystem does not support `flock` on this file.
    Unsupported(io::Error),
    /// Another run held the lock for the whole wait.
    TimedOut,
}

fn acquire(file: &File, rules_file: &Path, wait: Option<Duration>) -> Result<(), Failure> {
    let deadline = wait.map(|w| Instant::now() + w);
    let mut announced = false;
    loop {
        match flock(file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::WOULDBLOCK) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(Failure::Unsupported(e.into())),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Failure::TimedOut);
        }
        if !announced {
            let limit = match wait {
                Some(w) => format!("up to {} s", w.as_secs()),
                None => "Ctrl-C gives up".to_owned(),
            };
            eprintln!(
                "ragenix: waiting for another ragenix run on {} to finish ({limit})",
                rules_file.display()
            );
            announced = true;
        }
        std::thread::sleep(RETRY);
    }
}

fn timed_out(rules_file: &Path, wait: Duration) -> anyhow::Error {
    UserError::with_hint(
        format!(
            "another ragenix run is still writing the secrets of {} after {} s; nothing was changed",
            rules_file.display(),
            wait.as_secs()
        ),
        format!("wait for it to finish, or set {TIMEOUT_ENV} to wait longer (seconds)"),
    )
    .into()
}

fn timeout_from_env() -> Result<Option<Duration>> {
    match std::env::var(TIMEOUT_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .map(|secs| Some(Duration::from_secs(secs)))
            .map_err(|_| {
                UserError::with_hint(
                    format!("${TIMEOUT_ENV} is \"{v}\", not a number of seconds"),
                    format!("set {TIMEOUT_ENV} to a whole number of seconds, e.g. 60"),
                )
                .into()
            }),
        Err(e) => Err(UserError::new(format!("${TIMEOUT_ENV}: {e}")).into()),
    }
}

/// `<private runtime dir>/ragenix-<hash of the rules file's real path>.lock`: private to the user,
/// never in the repository.
fn runtime_lock_path(rules_file: &Path, runtime_dir: Option<PathBuf>) -> Result<PathBuf> {
    let dir = runtime_dir
        .context("there is no directory private to this user ($XDG_RUNTIME_DIR is not set)")?;
    let real = rules_file
        .canonicalize()
        .with_context(|| format!("resolving {}", rules_file.display()))?;
    let hash = Sha256::digest(real.as_os_str().as_encoded_bytes());
    let name: String = hash[..12].iter().map(|b| format!("{b:02x}")).collect();
    Ok(dir.join(format!("ragenix-{name}.lock")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_rules_file_times_out_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("secrets.nix");
        std::fs::write(&rules, "{}").unwrap();
        let first = writer(&rules, false).unwrap();
        let other = File::open(&rules).unwrap();
        assert!(matches!(
            acquire(&other, &rules, Some(Duration::ZERO)),
            Err(Failure::TimedOut)
        ));
        drop(first);
        assert!(acquire(&other, &rules, Some(Duration::ZERO)).is_ok());
    }

    #[test]
    fn only_a_user_at_a_terminal_waits_without_limit_and_a_set_timeout_always_wins() {
        let set = Some(Duration::from_secs(7));
        assert_eq!(patience(set, true), set);
        assert_eq!(patience(set, false), set);
        assert_eq!(patience(None, true), None);
        assert_eq!(patience(None, false), Some(DEFAULT_WAIT));
    }

    #[test]
    fn the_fallback_lock_is_in_the_runtime_dir_and_named_by_the_real_rules_path() {
        let repo = tempfile::tempdir().unwrap();
        let run = tempfile::tempdir().unwrap();
        let rules = repo.path().join("secrets.nix");
        std::fs::write(&rules, "{}").unwrap();
        std::fs::write(repo.path().join("other.nix"), "{}").unwrap();
        let dir = Some(run.path().to_path_buf());
        let lock = runtime_lock_path(&rules, dir.clone()).unwrap();
        assert_eq!(lock.parent(), Some(run.path()));
        // Another spelling of the same file shares the lock; another file does not.
        let spelled = repo.path().join(".").join("secrets.nix");
        assert_eq!(runtime_lock_path(&spelled, dir.clone()).unwrap(), lock);
        let other = runtime_lock_path(&repo.path().join("other.nix"), dir).unwrap();
        assert_ne!(other, lock);
        let err = runtime_lock_path(&rules, None).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "there is no directory private to this user ($XDG_RUNTIME_DIR is not set)"
        );
    }
}
