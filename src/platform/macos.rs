//! The macOS calls behind the platform layer. Not compiled on the Linux machines that test
//! ragenix: kept to calls that exist on macOS in std and rustix, a few lines each.

use std::io;
use std::os::fd::BorrowedFd;

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
