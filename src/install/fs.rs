//! Filesystem primitives for the installer: files created in their final mode and swapped in by
//! rename, atomic symlink replacement, numbered generations and their pruning, the ramfs mount.
//! Nothing here knows about manifests.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rustix::fs::{Gid, Uid};

/// Ownership to give a file; `None` leaves it owned by the installer (root before users exist).
pub type Owner = Option<(u32, u32)>;

fn ids(owner: (u32, u32)) -> (Option<Uid>, Option<Gid>) {
    (
        Some(Uid::from_raw_unchecked(owner.0)),
        Some(Gid::from_raw_unchecked(owner.1)),
    )
}

/// Creates `dir` and missing parents with `mode` (exactly, whatever the umask).
pub fn create_dir_all(dir: &Path, mode: u32) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_all(parent, mode)?;
    }
    match DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => set_mode(dir, mode),
        // Another thread created it first.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create directory {}", dir.display())),
    }
}

/// Sets `path`'s mode (used on directories the installer just created or owns).
pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set mode {mode:o} on {}", path.display()))
}

/// Changes the owner of `path` itself (never a symlink's target).
pub fn chown(path: &Path, owner: (u32, u32)) -> Result<()> {
    let (uid, gid) = ids(owner);
    rustix::fs::chownat(
        rustix::fs::CWD,
        path,
        uid,
        gid,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .with_context(|| format!("cannot chown {} to {}:{}", path.display(), owner.0, owner.1))
}

/// The temporary name used beside `path` while it is written.
fn temp_beside(path: &Path, what: &str) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".ragenix-{what}-{}", std::process::id()));
    path.with_file_name(name)
}

/// Creates a new file that is never more permissive than `mode`: the mode is given to
/// `open(2)` (the umask can only narrow it), then widened to exactly `mode` before any byte is
/// written. With `owner`, the file is handed over before it holds data too.
pub fn create_restricted(path: &Path, mode: u32, owner: Owner) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)?;
    if file.metadata()?.permissions().mode() & 0o7777 != mode {
        file.set_permissions(fs::Permissions::from_mode(mode))?;
    }
    if let Some(owner) = owner {
        let (uid, gid) = ids(owner);
        rustix::fs::fchown(&file, uid, gid)?;
        // chown clears set-id bits; restore them now that the owner is final.
        if mode & 0o6000 != 0 {
            file.set_permissions(fs::Permissions::from_mode(mode))?;
        }
    }
    Ok(file)
}

/// Replaces `path` with `data` atomically: a temp file beside it in its final mode and owner,
/// fsync, rename. Readers see the old file or the new one, never a partial or open one.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32, owner: Owner) -> Result<()> {
    let temp = temp_beside(path, "tmp");
    let result = (|| -> io::Result<()> {
        let mut file = match create_restricted(&temp, mode, owner) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // Left by a run that crashed with our pid; it is ours to remove.
                fs::remove_file(&temp)?;
                create_restricted(&temp, mode, owner)?
            }
            other => other?,
        };
        file.write_all(data)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

/// Points `link` at `target`, replacing whatever symlink or file was there in one rename.
pub fn symlink_atomic(target: &Path, link: &Path) -> Result<()> {
    let temp = temp_beside(link, "link");
    let _ = fs::remove_file(&temp);
    std::os::unix::fs::symlink(target, &temp)
        .and_then(|()| fs::rename(&temp, link))
        .inspect_err(|_| {
            let _ = fs::remove_file(&temp);
        })
        .with_context(|| format!("cannot link {} -> {}", link.display(), target.display()))
}

/// Makes `link` a symlink to `target` even when `link` is a real directory left by an older
/// setup: that directory is moved aside, the link renamed in, and only then is it removed.
pub fn swap_directory_link(target: &Path, link: &Path) -> Result<()> {
    let is_real_dir = fs::symlink_metadata(link).is_ok_and(|m| m.is_dir());
    if !is_real_dir {
        return symlink_atomic(target, link);
    }
    let aside = temp_beside(link, "old");
    if aside.exists() {
        fs::remove_dir_all(&aside).with_context(|| format!("cannot remove {}", aside.display()))?;
    }
    fs::rename(link, &aside)
        .with_context(|| format!("cannot move the old directory {} aside", link.display()))?;
    symlink_atomic(target, link)?;
    fs::remove_dir_all(&aside)
        .with_context(|| format!("cannot remove the old directory {}", aside.display()))
}

/// The generation `secrets_dir` points to (`…/N`), if it is such a link.
pub fn linked_generation(secrets_dir: &Path) -> Option<u64> {
    let target = fs::read_link(secrets_dir).ok()?;
    target.file_name()?.to_str()?.parse().ok()
}

/// The numbered generation directories under `mount_point`, ascending.
pub fn generations(mount_point: &Path) -> Result<Vec<u64>> {
    let entries = match fs::read_dir(mount_point) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", mount_point.display())),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry?;
        if let Some(n) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u64>().ok())
        {
            if entry.file_type()?.is_dir() {
                found.push(n);
            }
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// Which generations to delete: all but `current` and the `keep - 1` newest before it.
/// Generations above `current` are leftovers of interrupted runs and go too.
pub fn generations_to_prune(all: &[u64], current: u64, keep: u32) -> Vec<u64> {
    let older_kept: Vec<u64> = all
        .iter()
        .copied()
        .filter(|&g| g < current)
        .rev()
        .take(keep.saturating_sub(1) as usize)
        .collect();
    all.iter()
        .copied()
        .filter(|g| *g != current && !older_kept.contains(g))
        .collect()
}

/// Removes old generations (see [`generations_to_prune`]); returns the removed numbers.
pub fn prune(mount_point: &Path, current: u64, keep: u32) -> Result<Vec<u64>> {
    let doomed = generations_to_prune(&generations(mount_point)?, current, keep);
    for g in &doomed {
        let dir = mount_point.join(g.to_string());
        fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    Ok(doomed)
}

/// Whether a ramfs is mounted exactly at `mount_point` (per `/proc/self/mounts`).
pub fn ramfs_mounted(mount_point: &Path) -> Result<bool> {
    let mounts = fs::read("/proc/self/mounts").context("cannot read /proc/self/mounts")?;
    Ok(mounts_has_ramfs(
        &mounts,
        mount_point.as_os_str().as_bytes(),
    ))
}

fn mounts_has_ramfs(mounts: &[u8], mount_point: &[u8]) -> bool {
    mounts.split(|b| *b == b'\n').any(|line| {
        let mut fields = line.split(|b| *b == b' ');
        let (_, target, fstype) = (fields.next(), fields.next(), fields.next());
        target.map(unescape_mount_field).as_deref() == Some(mount_point) && fstype == Some(b"ramfs")
    })
}

/// `/proc/mounts` escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mount_field(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

/// Takes an exclusive lock for `mount_point` for as long as the returned handle lives, so that
/// two installers (activation and a service, two logins) never interleave. The lock is a file
/// beside the mount point (`/run/agenix.d.lock`), not the mount point itself: a directory
/// locked before the ramfs is mounted on it is not the directory a later installer opens.
pub fn lock_beside(mount_point: &Path) -> Result<File> {
    let mut name = mount_point
        .file_name()
        .with_context(|| format!("{} has no file name", mount_point.display()))?
        .to_owned();
    name.push(".lock");
    let path = mount_point.with_file_name(name);
    if let Some(parent) = path.parent() {
        create_dir_all(parent, 0o755)?;
    }
    let handle = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    rustix::fs::flock(&handle, rustix::fs::FlockOperation::LockExclusive)
        .with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(handle)
}

/// Mounts a fresh ramfs (never swapped to disk) at `mount_point`, mode 0751.
pub fn mount_ramfs(mount_point: &Path) -> Result<()> {
    use rustix::mount::{mount, MountFlags};
    mount(
        "ramfs",
        mount_point,
        "ramfs",
        MountFlags::NODEV | MountFlags::NOSUID,
        c"mode=0751",
    )
    .with_context(|| format!("cannot mount ramfs on {}", mount_point.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_created_with_the_final_mode_before_any_data() {
        // Whatever the umask (the installer's own test runs it under 077 too), the new, still
        // empty file has exactly the final mode: narrower ones are given to open(2), wider
        // ones than the umask allows are restored before any byte is written.
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o400, 0o440, 0o600, 0o644, 0o666] {
            let path = dir.path().join(format!("f{mode:o}"));
            let file = create_restricted(&path, mode, None).unwrap();
            assert_eq!(file.metadata().unwrap().len(), 0);
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
                mode
            );
        }
    }

    #[test]
    fn create_refuses_to_follow_or_reuse_an_existing_path() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "x").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("link")).unwrap();
        assert!(create_restricted(&dir.path().join("link"), 0o400, None).is_err());
        assert!(create_restricted(&victim, 0o400, None).is_err());
        assert_eq!(fs::read(&victim).unwrap(), b"x");
    }

    #[test]
    fn write_atomic_replaces_content_and_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        write_atomic(&path, b"one", 0o644, None).unwrap();
        write_atomic(&path, b"two", 0o400, None).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
            0o400
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_directory_left_by_an_old_setup_becomes_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("agenix");
        fs::create_dir(&link).unwrap();
        fs::write(link.join("old"), "x").unwrap();
        let target = dir.path().join("agenix.d/1");
        fs::create_dir_all(&target).unwrap();
        swap_directory_link(&target, &link).unwrap();
        assert_eq!(fs::read_link(&link).unwrap(), target);
        swap_directory_link(&dir.path().join("agenix.d/2"), &link).unwrap();
        assert_eq!(linked_generation(&link), Some(2));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn pruning_keeps_the_current_and_the_newest_older_generations() {
        assert_eq!(generations_to_prune(&[1, 2, 3, 4], 4, 1), vec![1, 2, 3]);
        assert_eq!(generations_to_prune(&[1, 2, 3, 4], 4, 2), vec![1, 2]);
        assert_eq!(generations_to_prune(&[1, 2, 5], 2, 3), vec![5]);
        assert_eq!(generations_to_prune(&[7], 7, 1), Vec::<u64>::new());
    }

    #[test]
    fn ramfs_mounts_are_found_with_escaped_paths() {
        let mounts = b"proc /proc proc rw 0 0\nnone /run/a\\040b ramfs rw,mode=751 0 0\n";
        assert!(mounts_has_ramfs(mounts, b"/run/a b"));
        assert!(!mounts_has_ramfs(mounts, b"/proc"));
        assert!(!mounts_has_ramfs(mounts, b"/run/a"));
    }
}
