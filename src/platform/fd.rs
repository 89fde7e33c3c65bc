//! Handles on inodes: what the installer's walk opens instead of names, and what it does
//! through them. Linux has `O_PATH` handles, reached again through `/proc/self/fd`; macOS has
//! neither, so there a handle is a read-only descriptor (a symlink opened as itself), and a
//! hard link goes through the handle's current name, checked to be that inode afterwards.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path};

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Uid};
use rustix::io::Errno;

use super::sys;

/// Open flags for a handle: no access to the content is asked (Linux), or read-only without
/// blocking on a FIFO (macOS). Callers add `NOFOLLOW`, `DIRECTORY`, `CLOEXEC`.
pub const HANDLE_FLAGS: OFlags = sys::HANDLE_FLAGS;

/// Open flags for a directory that is only passed through: search permission is enough where
/// the system allows it (`O_PATH`), reading otherwise.
pub const DIR_SEARCH_FLAGS: OFlags = sys::DIR_SEARCH_FLAGS;

/// Opens `rel` beneath the directory `root` without following a symlink anywhere on the way,
/// nor `..`: a symlink met is `ELOOP`, a `..` or absolute component `EXDEV`. `openat2` does it
/// in one call where the kernel has it; elsewhere (macOS, Linux before 5.6) the same rule is
/// kept by walking one component at a time.
pub fn open_beneath(root: BorrowedFd<'_>, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    // `openat2` would allow a `..` that stays beneath; the walk cannot check that, so neither
    // does.
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(Errno::XDEV.into());
    }
    match sys::openat2_beneath(root, rel, flags | OFlags::CLOEXEC) {
        Some(result) => result,
        None => walk_beneath(root, rel, flags),
    }
}

/// [`open_beneath`] without `openat2`, one `openat(O_NOFOLLOW)` per component.
fn walk_beneath(root: BorrowedFd<'_>, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(name) => parts.push(name),
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(Errno::XDEV.into())
            }
        }
    }
    let Some((last, dirs)) = parts.split_last() else {
        return Ok(rustix::fs::openat(
            root,
            ".",
            flags | OFlags::CLOEXEC,
            Mode::empty(),
        )?);
    };
    let nofollow = |dir: BorrowedFd<'_>, name: &OsStr, flags: OFlags| {
        rustix::fs::openat(
            dir,
            name,
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            // `O_NOFOLLOW|O_DIRECTORY` on a symlink may say "not a directory" first.
            Errno::NOTDIR
                if rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink) =>
            {
                Errno::LOOP
            }
            e => e,
        })
    };
    let mut cur: Option<OwnedFd> = None;
    for name in dirs {
        let dir = cur.as_ref().map_or(root, |fd| fd.as_fd());
        cur = Some(nofollow(dir, name, DIR_SEARCH_FLAGS | OFlags::DIRECTORY)?);
    }
    let dir = cur.as_ref().map_or(root, |fd| fd.as_fd());
    Ok(nofollow(dir, last, flags)?)
}

/// Whether the directory or file `fd` is on a FUSE file system, whose owners and modes are
/// whatever a user-space program reports.
pub fn is_fuse(fd: BorrowedFd<'_>) -> io::Result<bool> {
    sys::is_fuse(fd)
}

/// The inode behind `handle`, opened for reading.
pub fn reopen_readonly(handle: BorrowedFd<'_>) -> io::Result<File> {
    Ok(File::from(sys::reopen_readonly(handle)?))
}

/// Changes the owner of the inode behind `handle`.
pub fn chown(handle: BorrowedFd<'_>, uid: Option<Uid>, gid: Option<Gid>) -> io::Result<()> {
    sys::chown_handle(handle, uid, gid)
}

/// Changes the mode of the inode behind `handle`.
pub fn chmod(handle: BorrowedFd<'_>, mode: Mode) -> io::Result<()> {
    sys::chmod_handle(handle, mode)
}

/// Hard-links the inode behind `handle` as `name` in `dir`. Whatever the platform's way, the
/// new name is then checked to be that inode, and removed (with an error) if it is not.
pub fn link(handle: BorrowedFd<'_>, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    sys::link_handle(handle, dir, name)?;
    let want = rustix::fs::fstat(handle)?;
    let got = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if (got.st_dev, got.st_ino) != (want.st_dev, want.st_ino) {
        let _ = rustix::fs::unlinkat(dir, name, AtFlags::empty());
        return Err(io::Error::other(
            "the file to link was replaced while it was being linked",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsFd;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn handle(path: &std::path::Path) -> std::os::fd::OwnedFd {
        rustix::fs::open(
            path,
            HANDLE_FLAGS | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    #[test]
    fn a_handle_reads_chmods_and_links_its_inode() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "content").unwrap();
        let h = handle(&file);
        let mut text = String::new();
        reopen_readonly(h.as_fd())
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "content");
        chmod(h.as_fd(), Mode::from_raw_mode(0o640)).unwrap();
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o640
        );
        let me = rustix::process::getuid();
        chown(h.as_fd(), Some(me), None).unwrap();
        let d = std::fs::File::open(dir.path()).unwrap();
        link(h.as_fd(), d.as_fd(), OsStr::new("g")).unwrap();
        let (a, b) = (
            std::fs::metadata(&file).unwrap(),
            std::fs::metadata(dir.path().join("g")).unwrap(),
        );
        assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
    }

    #[test]
    fn a_symlink_handle_is_the_link_itself() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("l")).unwrap();
        let h = handle(&dir.path().join("l"));
        let st = rustix::fs::fstat(&h).unwrap();
        assert_eq!(
            rustix::fs::FileType::from_raw_mode(st.st_mode),
            rustix::fs::FileType::Symlink
        );
    }

    /// A tree with a file two levels down, a symlink to a directory outside, and a symlink to
    /// a file inside.
    fn beneath_tree() -> (tempfile::TempDir, tempfile::TempDir) {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "outside").unwrap();
        std::fs::create_dir_all(root.path().join("a/b")).unwrap();
        std::fs::write(root.path().join("a/b/f"), "inside").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("a/out")).unwrap();
        std::os::unix::fs::symlink("b/f", root.path().join("a/near")).unwrap();
        (root, outside)
    }

    fn read_beneath(
        open: fn(BorrowedFd<'_>, &Path, OFlags) -> io::Result<OwnedFd>,
        root: &Path,
        rel: &str,
    ) -> io::Result<String> {
        let r = std::fs::File::open(root).unwrap();
        let fd = open(r.as_fd(), Path::new(rel), OFlags::RDONLY)?;
        let mut text = String::new();
        File::from(fd).read_to_string(&mut text)?;
        Ok(text)
    }

    /// Both ways of opening beneath a directory (the kernel's `openat2` and the walk used
    /// where it is missing) refuse every symlink and `..`, inside or not.
    #[test]
    fn opening_beneath_follows_no_symlink_and_no_parent_either_way() {
        let (root, _outside) = beneath_tree();
        for open in [open_beneath, walk_beneath] {
            assert_eq!(read_beneath(open, root.path(), "a/b/f").unwrap(), "inside");
            assert_eq!(
                read_beneath(open, root.path(), "./a/b/f").unwrap(),
                "inside"
            );
            for rel in ["a/out/secret", "a/near"] {
                let err = read_beneath(open, root.path(), rel).unwrap_err();
                assert_eq!(
                    err.raw_os_error(),
                    Some(Errno::LOOP.raw_os_error()),
                    "{rel}"
                );
            }
            for rel in ["a/../a/b/f", "../x", "/etc/passwd"] {
                let err = read_beneath(open, root.path(), rel).unwrap_err();
                assert_eq!(
                    err.raw_os_error(),
                    Some(Errno::XDEV.raw_os_error()),
                    "{rel}"
                );
            }
            let r = std::fs::File::open(root.path()).unwrap();
            assert!(open(
                r.as_fd(),
                Path::new("a"),
                OFlags::RDONLY | OFlags::DIRECTORY
            )
            .is_ok());
            let err = open(
                r.as_fd(),
                Path::new("a/out"),
                OFlags::RDONLY | OFlags::DIRECTORY,
            )
            .unwrap_err();
            assert_eq!(err.raw_os_error(), Some(Errno::LOOP.raw_os_error()));
        }
    }
}
