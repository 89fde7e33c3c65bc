//! Atomic replacement of files: write a temp file beside the target, fsync, rename, fsync the
//! directory. A reader (or a crash) sees either the old file or the new one, never a mix.
//!
//! Temp files carry a recognisable name so a later run can remove ones a SIGKILL left behind;
//! on SIGINT/SIGTERM/SIGHUP the temp files in flight are removed before exiting.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::{self, File, Permissions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use std::sync::{Mutex, OnceLock, RwLock};

use anyhow::{Context, Result};
use tempfile::{Builder, NamedTempFile};

use crate::platform::flush::Flush;
use crate::signals;

/// Marks our temp files: `.NAME.ragenix-tmp-XXXXXX` beside `NAME`.
const TEMP_MARK: &str = ".ragenix-tmp-";

/// New content for `target`, fully written and synced, not yet visible under its name.
/// Dropping it removes the temp file.
pub struct Staged {
    tmp: Option<NamedTempFile>,
    target: PathBuf,
}

/// Temp files that exist now. Creation holds `GATE` for reading (so creations run in parallel);
/// the signal cleanup takes it for writing and never releases it, so no temp file can appear
/// between the cleanup and the exit.
static GATE: RwLock<()> = RwLock::new(());
static IN_FLIGHT: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static ON_SIGNAL: OnceLock<Option<signals::Registration>> = OnceLock::new();

fn in_flight() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner())
}

fn remove_in_flight() {
    let gate = GATE.write().unwrap_or_else(|e| e.into_inner());
    for path in in_flight().iter() {
        let _ = fs::remove_file(path);
    }
    std::mem::forget(gate);
}

fn forget_in_flight(path: &Path) {
    let mut list = in_flight();
    if let Some(i) = list.iter().position(|p| p == path) {
        list.swap_remove(i);
    }
}

fn create_temp(target: &Path, mode: u32) -> Result<NamedTempFile> {
    ON_SIGNAL.get_or_init(|| signals::on_fatal_signal(remove_in_flight).ok());
    let dir = dir_of(target);
    let _gate = GATE.read().unwrap_or_else(|e| e.into_inner());
    let tmp = Builder::new()
        .prefix(&temp_prefix(target))
        .permissions(Permissions::from_mode(mode))
        .tempfile_in(dir)
        .with_context(|| format!("creating a temp file in {}", dir.display()))?;
    // Marks it as owned by a live run until the descriptor closes (rename or removal), so that
    // another run's stale-temp clean-up leaves it alone whatever else goes wrong. Best effort:
    // on a filesystem without `flock`, the writer lock (`lock`) still keeps runs apart.
    let _ = rustix::fs::flock(
        tmp.as_file(),
        rustix::fs::FlockOperation::NonBlockingLockExclusive,
    );
    in_flight().push(tmp.path().to_path_buf());
    Ok(tmp)
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let path = tmp.path().to_path_buf();
            drop(tmp); // removes the file
            forget_in_flight(&path);
        }
    }
}

fn dir_of(target: &Path) -> &Path {
    match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn temp_prefix(target: &Path) -> OsString {
    let mut prefix = OsString::from(".");
    prefix.push(target.file_name().unwrap_or_default());
    prefix.push(TEMP_MARK);
    prefix
}

/// Writes new content for `target` into a temp file in the same directory. The temp file gets
/// the target's current permission bits, or 0644 minus umask for a new file.
pub fn stage(target: &Path, write: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<Staged> {
    stage_with(target, write, true)
}

/// Like [`stage`] but leaves the data in the page cache: for batches, where one
/// [`sync_staged`] before the renames replaces an fsync per file.
pub fn stage_unsynced(
    target: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<Staged> {
    stage_with(target, write, false)
}

/// Makes the content of every staged temp file durable the platform's way (see
/// [`Flush`]), so that renaming them afterwards cannot expose an empty or partial file after a
/// power loss.
pub fn sync_staged(staged: &[Staged]) -> Result<()> {
    let files: Vec<(&File, &Path)> = staged
        .iter()
        .map(|s| {
            let tmp = s.tmp.as_ref().expect("a Staged always holds its temp file");
            (tmp.as_file(), tmp.path())
        })
        .collect();
    Flush::current().flush(&files).map(drop)
}

fn stage_with(
    target: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<()>,
    sync: bool,
) -> Result<Staged> {
    let old_mode = match fs::metadata(target) {
        Ok(m) => Some(m.permissions().mode() & 0o7777),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", target.display())),
    };
    let mut staged = Staged {
        tmp: Some(create_temp(target, old_mode.unwrap_or(0o644))?),
        target: target.to_path_buf(),
    };
    let tmp = staged.tmp.as_mut().expect("just created");
    if let Some(mode) = old_mode {
        // The mode given at open was reduced by the umask; the old file's bits win.
        tmp.as_file()
            .set_permissions(Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {}", tmp.path().display()))?;
    }
    let shown = tmp.path().display().to_string();
    {
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, tmp.as_file_mut());
        write(&mut out)?;
        out.flush().with_context(|| format!("writing {shown}"))?;
    }
    if sync {
        tmp.as_file()
            .sync_all()
            .with_context(|| format!("syncing {shown}"))?;
    }
    Ok(staged)
}

impl Staged {
    /// The file that will be replaced.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Renames the temp file over the target and syncs the directory entry.
    pub fn commit(self) -> Result<()> {
        let dir = dir_of(&self.target).to_path_buf();
        self.commit_nosync()?;
        sync_dir(&dir)
    }

    /// Renames without syncing the directory; the caller syncs each directory once after a
    /// batch (see `rekey`).
    pub fn commit_nosync(mut self) -> Result<()> {
        let tmp = self
            .tmp
            .take()
            .expect("a Staged always holds its temp file");
        let path = tmp.path().to_path_buf();
        let result = tmp.persist(&self.target);
        forget_in_flight(&path);
        match result {
            Ok(_) => Ok(()),
            // Put it back so that dropping `self` removes the temp file.
            Err(e) => {
                self.tmp = Some(e.file);
                Err(e.error).with_context(|| format!("replacing {}", self.target.display()))
            }
        }
    }
}

/// Makes renames in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

/// Atomically replaces (or creates) `target` with what `write` produces.
pub fn write(target: &Path, write: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    stage(target, write)?.commit()
}

/// Removes temp files for `target` left by an earlier run that was killed; returns how many.
pub fn remove_stale(target: &Path) -> Result<usize> {
    let name = target.file_name().unwrap_or_default().to_owned();
    remove_stale_in(dir_of(target), &[name].into_iter().collect())
}

/// Like [`remove_stale`] for many files of one directory, reading the directory once.
pub fn remove_stale_in(dir: &Path, names: &HashSet<OsString>) -> Result<usize> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    let mark = TEMP_MARK.as_bytes();
    let wanted: HashSet<&[u8]> = names.iter().map(|n| n.as_encoded_bytes()).collect();
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let file_name = entry.file_name();
        let bytes = file_name.as_encoded_bytes();
        // `.NAME.ragenix-tmp-XXXXXX`: find the last mark, check NAME is one of ours.
        let Some(at) = bytes.windows(mark.len()).rposition(|w| w == mark) else {
            continue;
        };
        if at < 1 || bytes[0] != b'.' || at + mark.len() == bytes.len() {
            continue;
        }
        if wanted.contains(&bytes[1..at]) && !owned_by_a_live_run(&entry.path()) {
            match fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                // Its run finished (renamed or removed it) after we listed it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("removing stale {}", entry.path().display()))
                }
            }
        }
    }
    Ok(removed)
}

/// Whether the run that created temp file `path` still holds its `flock` (see `create_temp`).
/// A file that cannot be opened to check (unreadable mode, not a regular file) counts as
/// stale, as it did before the check existed.
fn owned_by_a_live_run(path: &Path) -> bool {
    use rustix::fs::{flock, FlockOperation, Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let Ok(fd) = rustix::fs::open(path, flags, Mode::empty()) else {
        return false;
    };
    // Probing takes the lock if it is free; it goes again when `fd` closes.
    matches!(
        flock(&fd, FlockOperation::NonBlockingLockShared),
        Err(rustix::io::Errno::WOULDBLOCK)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftovers(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(TEMP_MARK))
            .collect()
    }

    #[test]
    fn replacing_keeps_the_old_permission_bits() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.age");
        fs::write(&f, "old").unwrap();
        fs::set_permissions(&f, Permissions::from_mode(0o640)).unwrap();
        write(&f, |w| Ok(w.write_all(b"new")?)).unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&f).unwrap().permissions().mode() & 0o7777,
            0o640
        );
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn a_new_file_gets_0644_minus_umask() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("new file.age");
        write(&f, |w| Ok(w.write_all(b"x")?)).unwrap();
        let umask = rustix::process::umask(rustix::fs::Mode::empty());
        rustix::process::umask(umask);
        let mode = fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644 & !umask.bits());
    }

    #[test]
    fn a_failed_write_leaves_the_original_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.age");
        fs::write(&f, "old").unwrap();
        let r = write(&f, |w| {
            w.write_all(b"partial")?;
            anyhow::bail!("boom")
        });
        assert!(r.is_err());
        assert_eq!(fs::read(&f).unwrap(), b"old");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn stale_temps_of_this_target_only_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.age");
        let mut staged = stage(&f, |w| Ok(w.write_all(b"x")?)).unwrap();
        // As if the process had been killed: the file stays, its descriptor (and lock) goes.
        let (file, path) = staged.tmp.take().unwrap().keep().unwrap();
        drop(file);
        forget_in_flight(&path);
        fs::write(dir.path().join(".b.age.ragenix-tmp-123"), "other").unwrap();
        assert!(path.exists());
        assert_eq!(remove_stale(&f).unwrap(), 1);
        assert!(!path.exists());
        assert_eq!(leftovers(dir.path()).len(), 1);
    }

    #[test]
    fn stale_clean_up_leaves_the_temp_file_of_a_live_run() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.age");
        // Staged and not yet committed: as another process in the middle of its rekey.
        let live = stage(&f, |w| Ok(w.write_all(b"x")?)).unwrap();
        let path = live.tmp.as_ref().unwrap().path().to_path_buf();
        assert_eq!(remove_stale(&f).unwrap(), 0);
        assert!(path.exists());
        live.commit().unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"x");
    }
}
