//! The one way the installer reaches a directory. A path is walked from `/` one component at a
//! time with `openat(O_PATH|O_DIRECTORY|O_NOFOLLOW)`, and every write, link, chmod and chown
//! then happens relative to the final directory's fd (see `fs`). A symlink on the way is only
//! followed while nobody but root (or the installer's own user) could have planted it: every
//! directory walked so far is theirs and not writable by group or others, and so is the link.
//! Below the first directory another user may write to, a symlink is refused with an error
//! naming it (systemd's `chase()` with `CHASE_SAFE` is the model). Root never resolves a name
//! twice: what the walk opened is what gets used.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use crate::platform::fd;

/// Linux's own limit on symlinks followed in one lookup.
const MAX_SYMLINKS: u32 = 40;

/// An open directory reached by a safe walk, and how it was reached.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    /// The directory as walked (symlinks resolved), for messages.
    path: PathBuf,
    /// Why a symlink from here on would not be followed: the first directory walked that
    /// another user may change. `None` while the walk is trusted.
    untrusted: Option<String>,
}

/// Whether a directory (or symlink) with this owner and mode can only be changed by root or
/// the installer's own user.
fn who_else_can_write(st: &Stat, is_link: bool) -> Option<String> {
    let me = rustix::process::geteuid().as_raw();
    if st.st_uid != 0 && st.st_uid != me {
        return Some(format!("is owned by uid {}", st.st_uid));
    }
    if !is_link && st.st_mode & 0o022 != 0 {
        return Some(format!(
            "is writable by group or others (mode {:o})",
            st.st_mode & 0o7777
        ));
    }
    None
}

fn path_flags() -> OFlags {
    fd::HANDLE_FLAGS | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

impl Dir {
    /// `/`, the start of every walk.
    pub fn root() -> Result<Dir> {
        let fd = rfs::open("/", path_flags(), Mode::empty()).context("cannot open /")?;
        Dir::entered(fd, PathBuf::from("/"), None)
    }

    /// Walks to the absolute directory `path`, creating missing directories (owned by the
    /// installer) with exactly `create` as mode when given.
    pub fn open(path: &Path, create: Option<u32>) -> Result<Dir> {
        if !path.is_absolute() {
            bail!("`{}` is not an absolute path", path.display());
        }
        Dir::root()?.open_sub(path, create)
    }

    /// Walks to the parent of the absolute `path` (see [`Dir::open`]) and returns it with the
    /// last component, which is what the caller writes, links or chowns.
    pub fn open_parent(path: &Path, create: Option<u32>) -> Result<(Dir, OsString)> {
        let (parent, name) = split(path)?;
        Ok((Dir::open(parent, create)?, name))
    }

    /// Like [`Dir::open_parent`], for a relative path below this directory.
    pub fn sub_parent(&self, rel: &Path, create: Option<u32>) -> Result<(Dir, OsString)> {
        let (parent, name) = split(rel)?;
        Ok((self.open_sub(parent, create)?, name))
    }

    /// Walks from this directory to `rel` (an absolute path restarts from `/`) under the same
    /// rule. `..` goes to the real parent of the directory reached so far.
    pub fn open_sub(&self, rel: &Path, create: Option<u32>) -> Result<Dir> {
        let mut cur = self.try_clone()?;
        let mut todo: VecDeque<OsString> = VecDeque::new();
        if rel.is_absolute() {
            cur = Dir::root()?;
        }
        push_front(&mut todo, rel);
        let mut links = 0;
        while let Some(c) = todo.pop_front() {
            match c.as_bytes() {
                b"" | b"." => continue,
                b".." => {
                    let fd = rfs::openat(&cur.fd, "..", path_flags(), Mode::empty())
                        .with_context(|| format!("cannot open {}/..", cur.path.display()))?;
                    let mut path = cur.path.clone();
                    path.pop();
                    cur = Dir::entered(fd, path, cur.untrusted.clone())?;
                    continue;
                }
                _ => {}
            }
            let here = cur.path.join(&c);
            match rfs::openat(&cur.fd, &*c, path_flags(), Mode::empty()) {
                Ok(fd) => cur = Dir::entered(fd, here, cur.untrusted.clone())?,
                Err(Errno::NOENT) if create.is_some() => {
                    cur = cur.make(&c, create.unwrap_or(0o755))?;
                }
                Err(Errno::NOTDIR | Errno::LOOP) => {
                    let st = rfs::statat(&cur.fd, &*c, AtFlags::SYMLINK_NOFOLLOW)
                        .with_context(|| format!("cannot inspect {}", here.display()))?;
                    if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
                        bail!("`{}` is not a directory", here.display());
                    }
                    if let Some(why) = &cur.untrusted {
                        bail!(
                            "`{}` is a symlink below {why}: refusing to follow it",
                            here.display()
                        );
                    }
                    if let Some(why) = who_else_can_write(&st, true) {
                        bail!(
                            "`{}` is a symlink that {why}: refusing to follow it",
                            here.display()
                        );
                    }
                    links += 1;
                    if links > MAX_SYMLINKS {
                        bail!("too many symlinks resolving `{}`", here.display());
                    }
                    let target = rfs::readlinkat(&cur.fd, &*c, Vec::new())
                        .with_context(|| format!("cannot read the link {}", here.display()))?;
                    let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
                    if target.is_absolute() {
                        cur = Dir::root()?;
                    }
                    push_front(&mut todo, &target);
                }
                Err(e) => return Err(e).with_context(|| format!("cannot open {}", here.display())),
            }
        }
        Ok(cur)
    }

    /// Creates the directory `name` here with exactly `mode` and enters it.
    fn make(&self, name: &OsStr, mode: u32) -> Result<Dir> {
        let here = self.path.join(name);
        match rfs::mkdirat(&self.fd, name, Mode::from_raw_mode(mode)) {
            Ok(()) => {}
            // Created by someone else meanwhile: walk into it under the usual rule.
            Err(Errno::EXIST) => return self.open_sub(Path::new(name), None),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot create directory {}", here.display()))
            }
        }
        // Opened readable, not O_PATH, to set the exact mode whatever the umask.
        let fd = rfs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("cannot open the new directory {}", here.display()))?;
        let st = rfs::fstat(&fd)?;
        if st.st_uid != rustix::process::geteuid().as_raw() {
            bail!("the new directory {} was replaced", here.display());
        }
        rfs::fchmod(&fd, Mode::from_raw_mode(mode))
            .with_context(|| format!("cannot set mode {mode:o} on {}", here.display()))?;
        Dir::entered(fd, here, self.untrusted.clone())
    }

    /// Wraps a directory fd just opened, noting whether it ends the trusted part of the walk.
    /// On FUSE, owner and mode are whatever a user-space program says (a user's own mount on
    /// their home, with `user_allow_other`, can claim to be root's): never evidence.
    fn entered(fd: OwnedFd, path: PathBuf, untrusted: Option<String>) -> Result<Dir> {
        let st = rfs::fstat(&fd).with_context(|| format!("cannot stat {}", path.display()))?;
        let untrusted = untrusted
            .or_else(|| on_fuse(&fd).then(|| format!("`{}`, which {ON_FUSE}", path.display())))
            .or_else(|| {
                who_else_can_write(&st, false)
                    .map(|why| format!("`{}`, which {why}", path.display()))
            });
        Ok(Dir {
            fd,
            path,
            untrusted,
        })
    }

    pub fn try_clone(&self) -> Result<Dir> {
        Ok(Dir {
            fd: self
                .fd
                .try_clone()
                .context("cannot duplicate a directory fd")?,
            path: self.path.clone(),
            untrusted: self.untrusted.clone(),
        })
    }

    /// The directory as walked, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Why its path is not one only root (or the installer's user) controls, if it is not:
    /// the first directory on the way that someone else may change.
    pub fn untrusted(&self) -> Option<&str> {
        self.untrusted.as_deref()
    }

    /// The fd (`O_PATH` or readable) for `*at` calls.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The same directory opened for reading (listing, `fchmod`).
    pub fn reopen_readable(&self) -> Result<OwnedFd> {
        rfs::openat(
            &self.fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("cannot open {}", self.path.display()))
    }

    /// Refuses a directory on FUSE as the place of a secret's bytes: they would pass
    /// through the user-space program serving it, whatever the file's mode.
    pub fn refuse_fuse(&self) -> Result<()> {
        if on_fuse(&self.fd) {
            bail!(
                "`{}` {ON_FUSE}: refusing to write a secret through it",
                self.path.display()
            );
        }
        Ok(())
    }

    pub fn stat(&self) -> Result<Stat> {
        rfs::fstat(&self.fd).with_context(|| format!("cannot stat {}", self.path.display()))
    }
}

const ON_FUSE: &str = "is on a FUSE filesystem (served by a user-space program)";

/// Whether root is looking at `fd` on FUSE (a filesystem that cannot be asked counts as
/// one). Only root: a FUSE mount is seen by root because its owner allowed it, and then
/// speaks for that owner; home-manager's installer runs as the user, whose own FUSE home
/// (gocryptfs, …) must keep working.
fn on_fuse(fd: &OwnedFd) -> bool {
    if !rustix::process::geteuid().is_root() {
        return false;
    }
    // Unknown counts as FUSE: refusing is the safe side.
    crate::platform::fd::is_fuse(fd.as_fd()).unwrap_or(true)
}

/// `path` minus its last component, and that component; `.`, `..` and an empty last
/// component have no meaning as something to write.
fn split(path: &Path) -> Result<(&Path, OsString)> {
    match (path.parent(), path.components().next_back()) {
        (Some(parent), Some(Component::Normal(name))) => Ok((parent, name.to_owned())),
        _ => bail!("`{}` does not name a file", path.display()),
    }
}

/// Queues the components of `path` ahead of what is left to walk.
fn push_front(todo: &mut VecDeque<OsString>, path: &Path) {
    for c in path.components().rev() {
        match c {
            Component::RootDir | Component::Prefix(_) => {}
            Component::CurDir => {}
            Component::ParentDir => todo.push_front(OsString::from("..")),
            Component::Normal(n) => todo.push_front(n.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn plain_directories_are_walked_and_created_with_the_exact_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open(&tmp.path().join("a/b/c"), Some(0o751)).unwrap();
        assert_eq!(dir.path(), tmp.path().join("a/b/c"));
        for d in ["a", "a/b", "a/b/c"] {
            let mode = std::fs::metadata(tmp.path().join(d))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o7777, 0o751, "{d}");
        }
        assert!(Dir::open(&tmp.path().join("nope"), None).is_err());
    }

    #[test]
    fn a_symlink_below_a_world_writable_directory_is_refused_with_its_name() {
        let tmp = tempfile::tempdir().unwrap();
        // Writable by others: nothing below it is trusted, wherever the temp dir is.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::create_dir(tmp.path().join("real")).unwrap();
        symlink("real", tmp.path().join("link")).unwrap();
        let err = format!(
            "{:#}",
            Dir::open(&tmp.path().join("link/x"), Some(0o755)).unwrap_err()
        );
        assert!(
            err.contains(&format!(
                "`{}` is a symlink below",
                tmp.path().join("link").display()
            )),
            "{err}"
        );
        assert!(err.contains("refusing to follow it"), "{err}");
        assert!(!tmp.path().join("real/x").exists());
    }

    #[test]
    fn a_file_on_the_way_is_not_a_directory() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("f"), "").unwrap();
        let err = format!(
            "{:#}",
            Dir::open(&tmp.path().join("f/x"), Some(0o755)).unwrap_err()
        );
        assert!(err.contains("is not a directory"), "{err}");
    }

    #[test]
    fn split_refuses_paths_that_name_no_file() {
        assert!(split(Path::new("/")).is_err());
        assert!(split(Path::new("/a/..")).is_err());
        assert_eq!(split(Path::new("/a/b")).unwrap().1, "b");
    }
}
