//! The Linux system calls behind the platform layer (the only file compiled for Linux alone).

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, Gid, Mode, OFlags, Uid};

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

/// `FUSE_SUPER_MAGIC` from `<linux/magic.h>`: a FUSE (or fuseblk) filesystem.
const FUSE_SUPER_MAGIC: u64 = 0x6573_5546;

pub fn is_fuse(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let fs = rustix::fs::fstatfs(fd)?;
    #[allow(clippy::unnecessary_cast)]
    Ok(fs.f_type as u64 == FUSE_SUPER_MAGIC)
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
    let target = format!("/proc/self/fd/{}", fd.as_raw_fd());
    Ok(mount(
        "ramfs",
        target.as_str(),
        "ramfs",
        MountFlags::NODEV | MountFlags::NOSUID,
        c"mode=0751",
    )?)
}

pub const HANDLE_FLAGS: OFlags = OFlags::PATH;

/// Directories passed through on the way to a file need only search permission.
pub const DIR_SEARCH_FLAGS: OFlags = OFlags::PATH;

/// `openat2` beneath `root` with no symlink at all; `None` on kernels before 5.6, where the
/// caller walks instead.
pub fn openat2_beneath(
    root: BorrowedFd<'_>,
    rel: &std::path::Path,
    flags: OFlags,
) -> Option<io::Result<OwnedFd>> {
    use rustix::fs::ResolveFlags;
    let how = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    match rustix::fs::openat2(root, rel, flags, Mode::empty(), how) {
        Err(rustix::io::Errno::NOSYS) => None,
        other => Some(other.map_err(io::Error::from)),
    }
}

/// `/proc/self/fd/N` names exactly the inode an `O_PATH` handle holds.
fn proc_name(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

pub fn reopen_readonly(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::CLOEXEC;
    Ok(rustix::fs::open(
        proc_name(fd).as_str(),
        flags,
        Mode::empty(),
    )?)
}

pub fn chown_handle(fd: BorrowedFd<'_>, uid: Option<Uid>, gid: Option<Gid>) -> io::Result<()> {
    Ok(rustix::fs::chownat(fd, "", uid, gid, AtFlags::EMPTY_PATH)?)
}

pub fn chmod_handle(fd: BorrowedFd<'_>, mode: Mode) -> io::Result<()> {
    Ok(rustix::fs::chmod(proc_name(fd).as_str(), mode)?)
}

pub fn link_handle(fd: BorrowedFd<'_>, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let source = proc_name(fd);
    Ok(rustix::fs::linkat(
        rustix::fs::CWD,
        source.as_str(),
        dir,
        name,
        AtFlags::SYMLINK_FOLLOW,
    )?)
}
