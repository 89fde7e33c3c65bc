//! The macOS calls behind the platform layer. Not compiled on the Linux machines that test
//! ragenix: kept to calls that exist on macOS in std and rustix, a few lines each.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, Gid, Mode, OFlags, Uid};

use super::Os;

pub const OS: Os = Os::MacOs;

pub fn syncfs(_fd: BorrowedFd<'_>) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "macOS has no syncfs",
    ))
}

/// `fsync` on macOS leaves the data in the drive's cache; `F_FULLFSYNC` does not.
pub fn full_fsync(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::fs::fcntl_fullfsync(fd)?)
}

pub fn is_ramfs(_fd: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(false)
}

/// macFUSE (formerly osxfuse) names its file systems `macfuse…`/`osxfuse…`; FUSE-T `fuse-t`.
pub fn is_fuse(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let fs = rustix::fs::fstatfs(fd)?;
    let name: Vec<u8> = fs
        .f_fstypename
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok([&b"macfuse"[..], b"osxfuse", b"fuse"]
        .iter()
        .any(|prefix| name.starts_with(prefix)))
}

/// macOS reports no mount-root attribute; callers compare devices with the parent.
pub fn is_mount_root(_fd: BorrowedFd<'_>) -> Option<bool> {
    None
}

pub fn mount_ramfs(_fd: BorrowedFd<'_>) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "ramfs exists only on Linux",
    ))
}

/// No `O_PATH`: a read-only descriptor, a symlink opened as itself (`O_SYMLINK`), and no wait
/// on a FIFO.
pub const HANDLE_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::NONBLOCK)
    .union(OFlags::SYMLINK);

/// No `O_PATH` (nor a portable `O_SEARCH`): directories on the way are opened for reading.
pub const DIR_SEARCH_FLAGS: OFlags = OFlags::RDONLY;

/// macOS has no `openat2`: the caller walks one component at a time.
pub fn openat2_beneath(
    _root: BorrowedFd<'_>,
    _rel: &std::path::Path,
    _flags: OFlags,
) -> Option<io::Result<OwnedFd>> {
    None
}

/// The handle is already readable: a new descriptor on the same open file.
pub fn reopen_readonly(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    Ok(rustix::io::fcntl_dupfd_cloexec(fd, 0)?)
}

pub fn chown_handle(fd: BorrowedFd<'_>, uid: Option<Uid>, gid: Option<Gid>) -> io::Result<()> {
    Ok(rustix::fs::fchown(fd, uid, gid)?)
}

pub fn chmod_handle(fd: BorrowedFd<'_>, mode: Mode) -> io::Result<()> {
    Ok(rustix::fs::fchmod(fd, mode)?)
}

/// macOS cannot link a descriptor: its current name (`F_GETPATH`) is linked, and the caller
/// checks the result is the same inode.
pub fn link_handle(fd: BorrowedFd<'_>, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let source = rustix::fs::getpath(fd)?;
    Ok(rustix::fs::linkat(
        rustix::fs::CWD,
        source.as_c_str(),
        dir,
        name,
        AtFlags::empty(),
    )?)
}
