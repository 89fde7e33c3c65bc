//! Handles on inodes: what the installer's walk opens instead of names, and what it does
//! through them. Linux has `O_PATH` handles, reached again through `/proc/self/fd`; macOS has
//! neither, so there a handle is a read-only descriptor (a symlink opened as itself), and a
//! hard link goes through the handle's current name, checked to be that inode afterwards.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::BorrowedFd;

use rustix::fs::{AtFlags, Gid, Mode, OFlags, Uid};

use super::sys;

/// Open flags for a handle: no access to the content is asked (Linux), or read-only without
/// blocking on a FIFO (macOS). Callers add `NOFOLLOW`, `DIRECTORY`, `CLOEXEC`.
pub const HANDLE_FLAGS: OFlags = sys::HANDLE_FLAGS;

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
}
