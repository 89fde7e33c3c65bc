//! Making a batch of staged files durable before they are renamed into place, so a power loss
//! after a rename cannot expose an empty or partial file. Linux syncs each filesystem once
//! (`syncfs`); macOS has no `syncfs`, and its `fsync` stops at the drive's cache, so each file
//! gets `F_FULLFSYNC`.

use std::collections::HashSet;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result};

use super::{sys, Os};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// One `syncfs` per filesystem the files are on (Linux).
    SyncfsPerFilesystem,
    /// One full flush per file, through the drive's cache (`F_FULLFSYNC` on macOS, `fsync`
    /// on Linux, which already goes through it).
    FullFsyncPerFile,
}

impl Flush {
    pub fn for_os(os: Os) -> Flush {
        match os {
            Os::Linux => Flush::SyncfsPerFilesystem,
            Os::MacOs => Flush::FullFsyncPerFile,
        }
    }

    pub fn current() -> Flush {
        Flush::for_os(Os::CURRENT)
    }

    /// Which of the files (given by their device numbers) get a sync call.
    pub fn plan(self, devices: &[u64]) -> Vec<usize> {
        match self {
            Flush::FullFsyncPerFile => (0..devices.len()).collect(),
            Flush::SyncfsPerFilesystem => {
                let mut seen = HashSet::new();
                (0..devices.len())
                    .filter(|&i| seen.insert(devices[i]))
                    .collect()
            }
        }
    }

    /// Makes the content of every file durable; returns how many sync calls that took. The
    /// error names the file whose flush failed.
    pub fn flush(self, files: &[(&File, &Path)]) -> Result<usize> {
        let mut devices = Vec::with_capacity(files.len());
        for (file, path) in files {
            let meta = file
                .metadata()
                .with_context(|| format!("reading {}", path.display()))?;
            devices.push(meta.dev());
        }
        let plan = self.plan(&devices);
        for &i in &plan {
            let (file, path) = files[i];
            match self {
                Flush::SyncfsPerFilesystem => sys::syncfs(file.as_fd())
                    .with_context(|| format!("syncing the filesystem of {}", path.display()))?,
                Flush::FullFsyncPerFile => sys::full_fsync(file.as_fd())
                    .with_context(|| format!("syncing {}", path.display()))?,
            }
        }
        Ok(plan.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_os_gets_its_strategy() {
        assert_eq!(Flush::for_os(Os::Linux), Flush::SyncfsPerFilesystem);
        assert_eq!(Flush::for_os(Os::MacOs), Flush::FullFsyncPerFile);
    }

    #[test]
    fn syncfs_runs_once_per_filesystem_and_fullfsync_once_per_file() {
        let devices = [7, 7, 9, 7, 9];
        assert_eq!(Flush::SyncfsPerFilesystem.plan(&devices), vec![0, 2]);
        assert_eq!(Flush::FullFsyncPerFile.plan(&devices), vec![0, 1, 2, 3, 4]);
        assert!(Flush::SyncfsPerFilesystem.plan(&[]).is_empty());
    }

    fn two_files(dir: &Path) -> (File, File) {
        let a = File::create(dir.join("a")).unwrap();
        let b = File::create(dir.join("b")).unwrap();
        (a, b)
    }

    // syncfs exists only on Linux; the per-file flush runs everywhere.
    #[test]
    fn both_strategies_flush_real_files() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = two_files(dir.path());
        let files = [(&a, dir.path().join("a")), (&b, dir.path().join("b"))];
        let files: Vec<(&File, &Path)> = files.iter().map(|(f, p)| (*f, p.as_path())).collect();
        assert_eq!(Flush::FullFsyncPerFile.flush(&files).unwrap(), 2);
        if Os::CURRENT == Os::Linux {
            assert_eq!(Flush::SyncfsPerFilesystem.flush(&files).unwrap(), 1);
        }
    }

    #[test]
    fn a_failed_flush_names_the_file() {
        // fsync on a character device is refused (EINVAL on Linux, ENOTSUP on macOS).
        let null = File::open("/dev/null").unwrap();
        let err = Flush::FullFsyncPerFile
            .flush(&[(&null, Path::new("/dev/null"))])
            .unwrap_err();
        assert!(
            format!("{err:#}").starts_with("syncing /dev/null: "),
            "{err:#}"
        );
    }
}
