//! The installer's in-memory filesystem for the secrets: Linux mounts a ramfs with `mount(2)`
//! on the walked directory's fd; macOS makes an HFS+ RAM disk with its tools ([`ramdisk`]),
//! which take the mount point by name. Which one is used follows the manifest's platform, so a
//! Linux test can run the macOS path with fake tools.

use std::os::fd::BorrowedFd;
use std::path::Path;

use anyhow::{Context, Result};
use rustix::fs::AtFlags;

use super::ramdisk::{self, Runner};
use super::{sys, Os};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretsFs {
    Ramfs,
    RamDisk,
}

impl SecretsFs {
    pub fn for_os(os: Os) -> SecretsFs {
        match os {
            Os::Linux => SecretsFs::Ramfs,
            Os::MacOs => SecretsFs::RamDisk,
        }
    }

    /// Whether mounting hands the mount point to other programs by name, so that the path to
    /// it must be one no other user can change.
    pub fn mounts_by_name(self) -> bool {
        self == SecretsFs::RamDisk
    }

    /// Whether our filesystem is mounted on the directory `dir` (walked to `path`).
    pub fn is_mounted(
        self,
        dir: BorrowedFd<'_>,
        path: &Path,
        run: &mut dyn Runner,
    ) -> Result<bool> {
        match self {
            SecretsFs::Ramfs => {
                let ramfs = sys::is_ramfs(dir)
                    .with_context(|| format!("cannot statfs {}", path.display()))?;
                Ok(ramfs && is_mount_root(dir, path)?)
            }
            SecretsFs::RamDisk => Ok(ramdisk::mounted_device(run, path)?.is_some()),
        }
    }

    /// Mounts a fresh one on `dir` (walked to `path`).
    pub fn mount(self, dir: BorrowedFd<'_>, path: &Path, run: &mut dyn Runner) -> Result<()> {
        match self {
            SecretsFs::Ramfs => sys::mount_ramfs(dir)
                .with_context(|| format!("cannot mount ramfs on {}", path.display())),
            SecretsFs::RamDisk => ramdisk::mount(run, path)
                .map(drop)
                .with_context(|| format!("cannot make a RAM disk on {}", path.display())),
        }
    }
}

/// Whether `dir` is where a filesystem is mounted: the kernel's answer where it gives one,
/// else a different device from its parent's.
fn is_mount_root(dir: BorrowedFd<'_>, path: &Path) -> Result<bool> {
    if let Some(root) = sys::is_mount_root(dir) {
        return Ok(root);
    }
    let parent = rustix::fs::statat(dir, "..", AtFlags::empty())
        .with_context(|| format!("cannot stat {}/..", path.display()))?;
    let me = rustix::fs::fstat(dir).with_context(|| format!("cannot stat {}", path.display()))?;
    Ok(parent.st_dev != me.st_dev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::io;
    use std::os::fd::AsFd;

    struct Refuse;
    impl Runner for Refuse {
        fn run(&mut self, program: &str, _: &[&OsStr]) -> io::Result<ramdisk::Ran> {
            panic!("{program} must not run for a ramfs");
        }
    }

    #[test]
    fn each_os_gets_agenix_filesystem() {
        assert_eq!(SecretsFs::for_os(Os::Linux), SecretsFs::Ramfs);
        assert_eq!(SecretsFs::for_os(Os::MacOs), SecretsFs::RamDisk);
        assert!(SecretsFs::RamDisk.mounts_by_name());
        assert!(!SecretsFs::Ramfs.mounts_by_name());
    }

    #[test]
    fn a_plain_directory_is_not_a_ramfs_and_runs_no_tool() {
        let dir = tempfile::tempdir().unwrap();
        let fd = std::fs::File::open(dir.path()).unwrap();
        assert!(!SecretsFs::Ramfs
            .is_mounted(fd.as_fd(), dir.path(), &mut Refuse)
            .unwrap());
        assert!(!is_mount_root(fd.as_fd(), dir.path()).unwrap());
    }
}
