//! The Linux system calls behind the platform layer (the only file compiled for Linux alone).

use std::io;
use std::os::fd::BorrowedFd;

use super::Os;

pub const OS: Os = Os::Linux;

/// `RAMFS_MAGIC` from `<linux/magic.h>`: what `fstatfs` reports for a ramfs.
const RAMFS_MAGIC: u64 = 0x8584_58f6;

pub fn syncfs(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::fs::syncfs(fd)?)
}

/// Linux's `fsync` already asks the drive to flush its cache.
pub fn full_fsync(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::fs::fsync(fd)?)
}

pub fn is_ramfs(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let fs = rustix::fs::fstatfs(fd)?;
    // `f_type`'s integer type differs between architectures.
    #[allow(clippy::unnecessary_cast)]
    Ok(fs.f_type as u64 == RAMFS_MAGIC)
}

/// `STATX_ATTR_MOUNT_ROOT`, where the kernel reports it (5.8+).
pub fn is_mount_root(fd: BorrowedFd<'_>) -> Option<bool> {
    use rustix::fs::{statx, AtFlags, StatxAttributes, StatxFlags};
    let sx = statx(fd, "", AtFlags::EMPTY_PATH, StatxFlags::BASIC_STATS).ok()?;
    sx.stx_attributes_mask
        .contains(StatxAttributes::MOUNT_ROOT)
        .then(|| sx.stx_attributes.contains(StatxAttributes::MOUNT_ROOT))
}

/// Mounts a ramfs (never swapped out) with mode 0751 on the directory `fd` holds open, by its
/// `/proc/self/fd` name: the directory that was walked, whatever its path is now.
pub fn mount_ramfs(fd: BorrowedFd<'_>) -> io::Result<()> {
    use rustix::mount::{mount, MountFlags};
    use std::os::fd::AsRawFd;
    let target = format!("/proc/self/fd/{}", fd.as_raw_fd());
    Ok(mount(
        "ramfs",
        target.as_str(),
        "ramfs",
        MountFlags::NODEV | MountFlags::NOSUID,
        c"mode=0751",
    )?)
}
