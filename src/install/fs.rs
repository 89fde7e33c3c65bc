//! Filesystem operations of the installer, all relative to a directory reached by
//! [`walk`](super::walk): files created in their final mode and owner and swapped in by
//! `renameat`, atomic symlink replacement, chown of a file only if it is the inode that was
//! written, numbered generations and their pruning. Nothing here takes a path
//! to resolve, and nothing here knows about manifests.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use anyhow::{bail, Context, Result};
use rustix::fs::{self as rfs, AtFlags, FileType, Gid, Mode, OFlags, Stat, Uid};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use super::walk::Dir;
use crate::platform::fd;

/// Ownership to give a file; `None` leaves it owned by the installer (root before users exist).
pub type Owner = Option<(u32, u32)>;

/// Which file the install phase wrote, so that a later phase (another process) can tell it
/// from whatever a user may have put under the same name since.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    /// The owner it was left with (the chown phase may find a uid changed by `users` since).
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
}

impl FileId {
    pub fn of(st: &Stat) -> FileId {
        FileId {
            dev: st.st_dev,
            ino: st.st_ino,
            uid: st.st_uid,
            gid: st.st_gid,
        }
    }

    /// Whether `st` is this file: same device and inode (owners change, identity does not).
    pub fn is(&self, st: &Stat) -> bool {
        (self.dev, self.ino) == (st.st_dev, st.st_ino)
    }

    /// The file behind an open handle, as it is now.
    pub fn of_handle(handle: &OwnedFd) -> io::Result<FileId> {
        Ok(FileId::of(&rfs::fstat(handle)?))
    }
}

fn ids(owner: (u32, u32)) -> (Option<Uid>, Option<Gid>) {
    (
        Some(Uid::from_raw_unchecked(owner.0)),
        Some(Gid::from_raw_unchecked(owner.1)),
    )
}

fn show(dir: &Dir, name: &OsStr) -> String {
    dir.path().join(name).display().to_string()
}

/// The temporary name used beside `name` while it is written.
fn temp_name(name: &OsStr, what: &str) -> OsString {
    let mut temp = OsString::from(".");
    temp.push(name);
    temp.push(format!(".ragenix-{what}-{}", std::process::id()));
    temp
}

/// Sets the mode of an open directory (one the installer created or owns).
pub fn set_dir_mode(dir: &Dir, mode: u32) -> Result<()> {
    let fd = dir.reopen_readable()?;
    rfs::fchmod(&fd, Mode::from_raw_mode(mode))
        .with_context(|| format!("cannot set mode {mode:o} on {}", dir.path().display()))
}

/// Changes the owner of an open directory.
pub fn chown_dir(dir: &Dir, owner: (u32, u32)) -> Result<()> {
    let (uid, gid) = ids(owner);
    fd::chown(dir.fd(), uid, gid).with_context(|| {
        format!(
            "cannot chown {} to {}:{}",
            dir.path().display(),
            owner.0,
            owner.1
        )
    })
}

/// Creates the new file `name` in `dir`, never more permissive than `mode`: the mode is given
/// to `openat(O_EXCL|O_NOFOLLOW)` (the umask can only narrow it), then set exactly, and with
/// `owner` the file is handed over, all before any byte is written.
pub fn create_restricted(dir: &Dir, name: &OsStr, mode: u32, owner: Owner) -> io::Result<File> {
    let fd = rfs::openat(
        dir.fd(),
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )?;
    give(&fd, mode, owner)?;
    Ok(File::from(fd))
}

/// Gives an open file exactly `mode` and, if given, `owner` (chown clears set-id bits, so the
/// mode is set again after it).
fn give(fd: &OwnedFd, mode: u32, owner: Owner) -> io::Result<()> {
    if rfs::fstat(fd)?.st_mode & 0o7777 != mode {
        rfs::fchmod(fd, Mode::from_raw_mode(mode))?;
    }
    if let Some(owner) = owner {
        let (uid, gid) = ids(owner);
        rfs::fchown(fd, uid, gid)?;
        if mode & 0o6000 != 0 {
            rfs::fchmod(fd, Mode::from_raw_mode(mode))?;
        }
    }
    Ok(())
}

/// Replaces `name` in `dir` with `data` atomically: a temp file beside it in its final mode
/// and owner, fsync, `renameat`. Readers see the old file or the new one, never a partial or
/// open one. Returns the identity of the file now under `name`.
pub fn write_atomic(
    dir: &Dir,
    name: &OsStr,
    data: &[u8],
    mode: u32,
    owner: Owner,
) -> Result<FileId> {
    dir.refuse_fuse()?;
    let temp = temp_name(name, "tmp");
    let result = (|| -> io::Result<FileId> {
        let mut file = match create_restricted(dir, &temp, mode, owner) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // Left by a run that crashed with our pid; it is ours to remove.
                rfs::unlinkat(dir.fd(), &*temp, AtFlags::empty())?;
                create_restricted(dir, &temp, mode, owner)?
            }
            other => other?,
        };
        file.write_all(data)?;
        file.sync_all()?;
        let id = FileId::of(&rfs::fstat(&file)?);
        rfs::renameat(dir.fd(), &*temp, dir.fd(), name)?;
        Ok(id)
    })();
    if result.is_err() {
        let _ = rfs::unlinkat(dir.fd(), &*temp, AtFlags::empty());
    }
    result.with_context(|| format!("cannot write {}", show(dir, name)))
}

/// Points `name` in `dir` at `target`, replacing whatever symlink or file was there in one
/// `renameat`.
pub fn symlink_atomic(target: &OsStr, dir: &Dir, name: &OsStr) -> Result<()> {
    let temp = temp_name(name, "link");
    let _ = rfs::unlinkat(dir.fd(), &*temp, AtFlags::empty());
    rfs::symlinkat(target, dir.fd(), &*temp)
        .and_then(|()| rfs::renameat(dir.fd(), &*temp, dir.fd(), name))
        .inspect_err(|_| {
            let _ = rfs::unlinkat(dir.fd(), &*temp, AtFlags::empty());
        })
        .with_context(|| {
            format!(
                "cannot link {} -> {}",
                show(dir, name),
                target.to_string_lossy()
            )
        })
}

/// Makes `name` in `dir` a symlink to `target` even when it is a real directory left by an
/// older setup: that directory is moved aside, the link renamed in, and only then is it
/// removed.
pub fn swap_directory_link(target: &OsStr, dir: &Dir, name: &OsStr) -> Result<()> {
    let is_real_dir = stat_at(dir, name)?
        .is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
    if !is_real_dir {
        return symlink_atomic(target, dir, name);
    }
    let aside = temp_name(name, "old");
    remove_tree(dir, &aside)?;
    rfs::renameat(dir.fd(), name, dir.fd(), &*aside)
        .with_context(|| format!("cannot move the old directory {} aside", show(dir, name)))?;
    symlink_atomic(target, dir, name)?;
    remove_tree(dir, &aside)
}

/// What `name` in `dir` is, without following it (`None`: nothing there).
pub fn stat_at(dir: &Dir, name: &OsStr) -> Result<Option<Stat>> {
    match rfs::statat(dir.fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot stat {}", show(dir, name))),
    }
}

/// A handle (see [`fd`]) on `name` in `dir` itself (a symlink is not followed) and what it is;
/// `None` when nothing is there. Whatever happens to the name later, the handle stays on
/// this inode.
pub fn open_handle(dir: &Dir, name: &OsStr) -> Result<Option<(OwnedFd, Stat)>> {
    let fd = match rfs::openat(
        dir.fd(),
        name,
        fd::HANDLE_FLAGS | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", show(dir, name))),
    };
    let st = rfs::fstat(&fd).with_context(|| format!("cannot stat {}", show(dir, name)))?;
    Ok(Some((fd, st)))
}

fn is_regular(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
}

/// The regular file `name` in `dir` opened for reading, or `None` if there is none (a
/// symlink, device or anything else is never opened).
pub fn open_regular(dir: &Dir, name: &OsStr) -> Result<Option<File>> {
    let Some((handle, st)) = open_handle(dir, name)? else {
        return Ok(None);
    };
    if !is_regular(&st) {
        return Ok(None);
    }
    reopen(&handle)
        .map(Some)
        .with_context(|| format!("cannot open {}", show(dir, name)))
}

/// Opens the inode behind a handle for reading.
pub fn reopen(handle: &OwnedFd) -> io::Result<File> {
    fd::reopen_readonly(handle.as_fd())
}

/// Sets mode and owner of the inode behind `handle`.
pub fn give_handle(handle: &OwnedFd, mode: u32, owner: Owner) -> io::Result<()> {
    if let Some(owner) = owner {
        let (uid, gid) = ids(owner);
        fd::chown(handle.as_fd(), uid, gid)?;
    }
    fd::chmod(handle.as_fd(), Mode::from_raw_mode(mode))
}

/// Chowns `name` in `dir` only if it is still the file `expected` that the install phase
/// wrote: a symlink or another file put there since is refused with an error.
pub fn chown_if_same(
    dir: &Dir,
    name: &OsStr,
    expected: FileId,
    owner: (u32, u32),
    mode: u32,
) -> Result<()> {
    let Some((handle, st)) = open_handle(dir, name)? else {
        bail!(
            "{} has disappeared since the install phase",
            show(dir, name)
        );
    };
    if !is_regular(&st) || !expected.is(&st) {
        bail!(
            "{} is no longer the file the install phase wrote (it was replaced): not chowned",
            show(dir, name)
        );
    }
    if (st.st_uid, st.st_gid) == owner {
        return Ok(());
    }
    // Inode numbers are reused: a file a user made after deleting ours could get the same
    // one, but it would be theirs, not the installer's nor have the owner it was left with.
    let left_as = (expected.uid, expected.gid) == (st.st_uid, st.st_gid);
    if st.st_uid != rustix::process::geteuid().as_raw() && !left_as {
        bail!(
            "{} is owned by uid {}, not by the installer: not chowned",
            show(dir, name),
            st.st_uid
        );
    }
    give_handle(&handle, mode, Some(owner)).with_context(|| {
        format!(
            "cannot chown {} to {}:{}",
            show(dir, name),
            owner.0,
            owner.1
        )
    })
}

/// Hard-links the inode behind `handle` as `name` in `dir`.
pub fn link_handle(handle: &OwnedFd, dir: &Dir, name: &OsStr) -> io::Result<()> {
    fd::link(handle.as_fd(), dir.fd(), name)
}

/// Removes `name` in `dir` (not a directory).
pub fn unlink(dir: &Dir, name: &OsStr) -> Result<()> {
    rfs::unlinkat(dir.fd(), name, AtFlags::empty())
        .with_context(|| format!("cannot remove {}", show(dir, name)))
}

/// Removes `name` in `dir` and, if it is a directory, everything below it, without following
/// any symlink.
pub fn remove_tree(dir: &Dir, name: &OsStr) -> Result<()> {
    let what = || format!("cannot remove {}", show(dir, name));
    let Some(st) = stat_at(dir, name)? else {
        return Ok(());
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return rfs::unlinkat(dir.fd(), name, AtFlags::empty()).with_context(what);
    }
    let sub = dir
        .open_sub(std::path::Path::new(name), None)
        .with_context(what)?;
    for entry in list(&sub)? {
        remove_tree(&sub, &entry)?;
    }
    rfs::unlinkat(dir.fd(), name, AtFlags::REMOVEDIR).with_context(what)
}

/// The names in `dir` (without `.` and `..`).
pub fn list(dir: &Dir) -> Result<Vec<OsString>> {
    let fd = dir.reopen_readable()?;
    let mut names = Vec::new();
    let entries = rfs::Dir::read_from(&fd)
        .with_context(|| format!("cannot list {}", dir.path().display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.path().display()))?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_owned());
        }
    }
    Ok(names)
}

/// The generation `name` in `dir` (secretsDir) points to (`…/N`), if it is such a link.
pub fn linked_generation(dir: &Dir, name: &OsStr) -> Option<u64> {
    let target = rfs::readlinkat(dir.fd(), name, Vec::new()).ok()?;
    let target = std::path::PathBuf::from(OsStr::from_bytes(target.as_bytes()));
    target.file_name()?.to_str()?.parse().ok()
}

/// The numbered generation directories in `mount`, ascending.
pub fn generations(mount: &Dir) -> Result<Vec<u64>> {
    let mut found = Vec::new();
    for name in list(mount)? {
        let Some(n) = name.to_str().and_then(|s| s.parse::<u64>().ok()) else {
            continue;
        };
        if stat_at(mount, &name)?
            .is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
        {
            found.push(n);
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
pub fn prune(mount: &Dir, current: u64, keep: u32) -> Result<Vec<u64>> {
    let doomed = generations_to_prune(&generations(mount)?, current, keep);
    for g in &doomed {
        remove_tree(mount, OsStr::new(&g.to_string()))?;
    }
    Ok(doomed)
}

/// Takes an exclusive lock on the file `name` in `dir` for as long as the returned handle
/// lives, so that two installers (activation and a service, two logins) never interleave.
pub fn lock(dir: &Dir, name: &OsStr) -> Result<File> {
    let fd = rfs::openat(
        dir.fd(),
        name,
        OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .with_context(|| format!("cannot open {}", show(dir, name)))?;
    rfs::flock(&fd, rfs::FlockOperation::LockExclusive)
        .with_context(|| format!("cannot lock {}", show(dir, name)))?;
    Ok(File::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn open(path: &std::path::Path) -> Dir {
        Dir::open(path, None).unwrap()
    }

    #[test]
    fn files_are_created_with_the_final_mode_before_any_data() {
        // Whatever the umask (the installer's own test runs it under 077 too), the new, still
        // empty file has exactly the final mode: narrower ones are given to open(2), wider
        // ones than the umask allows are restored before any byte is written.
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        for mode in [0o400, 0o440, 0o600, 0o644, 0o666] {
            let name = format!("f{mode:o}");
            let file = create_restricted(&dir, OsStr::new(&name), mode, None).unwrap();
            assert_eq!(file.metadata().unwrap().len(), 0);
            assert_eq!(
                fs::metadata(tmp.path().join(&name))
                    .unwrap()
                    .permissions()
                    .mode()
                    & 0o7777,
                mode
            );
        }
    }

    #[test]
    fn create_refuses_to_follow_or_reuse_an_existing_path() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        let victim = tmp.path().join("victim");
        fs::write(&victim, "x").unwrap();
        std::os::unix::fs::symlink(&victim, tmp.path().join("link")).unwrap();
        assert!(create_restricted(&dir, OsStr::new("link"), 0o400, None).is_err());
        assert!(create_restricted(&dir, OsStr::new("victim"), 0o400, None).is_err());
        assert_eq!(fs::read(&victim).unwrap(), b"x");
    }

    #[test]
    fn write_atomic_replaces_content_and_mode_and_leaves_no_temp_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        let path = tmp.path().join("s");
        write_atomic(&dir, OsStr::new("s"), b"one", 0o644, None).unwrap();
        let id = write_atomic(&dir, OsStr::new("s"), b"two", 0o400, None).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
            0o400
        );
        assert_eq!(FileId::of(&rfs::stat(&path).unwrap()), id);
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_symlink_over_a_written_file_is_never_written_through() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        fs::write(tmp.path().join("victim"), "x").unwrap();
        std::os::unix::fs::symlink("victim", tmp.path().join("s")).unwrap();
        write_atomic(&dir, OsStr::new("s"), b"secret", 0o400, None).unwrap();
        assert_eq!(fs::read(tmp.path().join("victim")).unwrap(), b"x");
        assert!(fs::symlink_metadata(tmp.path().join("s"))
            .unwrap()
            .is_file());
    }

    #[test]
    fn chown_refuses_a_file_that_is_not_the_one_written() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        let id = write_atomic(&dir, OsStr::new("s"), b"one", 0o400, None).unwrap();
        fs::write(tmp.path().join("other"), "other").unwrap();
        fs::rename(tmp.path().join("other"), tmp.path().join("s")).unwrap();
        let me = (
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw(),
        );
        let err = chown_if_same(&dir, OsStr::new("s"), id, me, 0o400).unwrap_err();
        assert!(
            format!("{err:#}").contains("is no longer the file"),
            "{err:#}"
        );
    }

    #[test]
    fn trees_are_removed_without_following_links() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), "x").unwrap();
        fs::create_dir_all(tmp.path().join("t/a")).unwrap();
        fs::write(tmp.path().join("t/a/f"), "").unwrap();
        std::os::unix::fs::symlink(&outside, tmp.path().join("t/a/l")).unwrap();
        remove_tree(&open(tmp.path()), OsStr::new("t")).unwrap();
        assert!(!tmp.path().join("t").exists());
        assert!(outside.join("keep").exists());
    }

    #[test]
    fn a_directory_left_by_an_old_setup_becomes_a_link() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        let link = tmp.path().join("agenix");
        fs::create_dir(&link).unwrap();
        fs::write(link.join("old"), "x").unwrap();
        let target = tmp.path().join("agenix.d/1");
        fs::create_dir_all(&target).unwrap();
        swap_directory_link(target.as_os_str(), &dir, OsStr::new("agenix")).unwrap();
        assert_eq!(fs::read_link(&link).unwrap(), target);
        let second = tmp.path().join("agenix.d/2");
        swap_directory_link(second.as_os_str(), &dir, OsStr::new("agenix")).unwrap();
        assert_eq!(linked_generation(&dir, OsStr::new("agenix")), Some(2));
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 2);
    }

    #[test]
    fn pruning_keeps_the_current_and_the_newest_older_generations() {
        assert_eq!(generations_to_prune(&[1, 2, 3, 4], 4, 1), vec![1, 2, 3]);
        assert_eq!(generations_to_prune(&[1, 2, 3, 4], 4, 2), vec![1, 2]);
        assert_eq!(generations_to_prune(&[1, 2, 5], 2, 3), vec![5]);
        assert_eq!(generations_to_prune(&[7], 7, 1), Vec::<u64>::new());
    }
}
