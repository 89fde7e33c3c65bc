//! Where a private plaintext directory is made. Linux: `$XDG_RUNTIME_DIR`, then `/dev/shm`
//! (both memory-backed). macOS: the per-user `$TMPDIR` under `/var/folders`, which only its
//! user can enter (it is on disk, like all of macOS's temp space). Anything else is a fallback
//! to a shared, disk-backed temp directory, and the caller warns about it.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use super::Os;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// A tmpfs private to the user or the machine's shared memory (Linux).
    Memory,
    /// A directory only this user can enter (macOS's per-user `$TMPDIR`); checked before use.
    PrivateTemp,
    /// A shared temp directory on disk: the last resort, with a warning.
    Disk,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    pub path: PathBuf,
    pub backing: Backing,
}

/// The candidates in order of preference; `env` reads an environment variable.
pub fn candidates(os: Os, env: impl Fn(&str) -> Option<OsString>) -> Vec<Base> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let mut bases = Vec::new();
    let base = |path, backing| Base { path, backing };
    match os {
        Os::Linux => {
            if let Some(xdg) = var("XDG_RUNTIME_DIR") {
                bases.push(base(xdg, Backing::Memory));
            }
            bases.push(base(PathBuf::from("/dev/shm"), Backing::Memory));
            bases.push(base(var("TMPDIR").unwrap_or("/tmp".into()), Backing::Disk));
        }
        Os::MacOs => {
            if let Some(tmp) = var("TMPDIR") {
                bases.push(base(tmp, Backing::PrivateTemp));
            }
            bases.push(base(PathBuf::from("/tmp"), Backing::Disk));
        }
    }
    bases
}

/// A directory private to the user for small runtime files such as a lock: Linux's
/// `$XDG_RUNTIME_DIR`, macOS's per-user `$TMPDIR` when it really is private. Never a shared
/// one, where another user could plant the file first.
pub fn private_runtime_dir(os: Os, env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let base = match os {
        Os::Linux => Base {
            path: env("XDG_RUNTIME_DIR").filter(|v| !v.is_empty())?.into(),
            backing: Backing::Memory,
        },
        Os::MacOs => Base {
            path: env("TMPDIR").filter(|v| !v.is_empty())?.into(),
            backing: Backing::PrivateTemp,
        },
    };
    (os == Os::Linux || base.usable()).then_some(base.path)
}

/// The candidates for this system and environment.
pub fn current() -> Vec<Base> {
    candidates(Os::CURRENT, |name| std::env::var_os(name))
}

impl Base {
    /// Whether a private directory may be made here: it is a directory, and a `PrivateTemp`
    /// one is really private (ours, no access for group or others), else it is no better than
    /// a shared temp directory.
    pub fn usable(&self) -> bool {
        let Ok(meta) = std::fs::metadata(&self.path) else {
            return false;
        };
        if !meta.is_dir() {
            return false;
        }
        match self.backing {
            Backing::PrivateTemp => {
                meta.uid() == rustix::process::geteuid().as_raw() && meta.mode() & 0o077 == 0
            }
            Backing::Memory | Backing::Disk => true,
        }
    }

    /// What to tell the user when the plaintext goes here: only a disk-backed fallback is
    /// worth a warning.
    pub fn warning(&self, tried: &[Base]) -> Option<String> {
        if self.backing != Backing::Disk {
            return None;
        }
        let tried: Vec<String> = tried
            .iter()
            .filter(|b| b.backing != Backing::Disk)
            .map(|b| b.path.display().to_string())
            .collect();
        let why = if tried.is_empty() {
            String::from("none is configured")
        } else {
            format!("{} cannot be used", tried.join(", "))
        };
        Some(format!(
            "no private or memory-backed directory for the plaintext ({why}); it goes to a 0700 directory in {}, on disk",
            self.path.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    /// The first usable candidate and its warning, as `edit` picks them.
    fn choose(bases: &[Base]) -> Option<(&Base, Option<String>)> {
        let i = bases.iter().position(|b| b.usable())?;
        Some((&bases[i], bases[i].warning(&bases[..i])))
    }

    fn env<'a>(vars: &'a [(&'a str, &'a Path)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_os_str().to_owned())
        }
    }

    #[test]
    fn linux_prefers_the_runtime_dir_then_dev_shm_then_tmpdir() {
        let bases = candidates(
            Os::Linux,
            env(&[
                ("XDG_RUNTIME_DIR", Path::new("/run/user/1")),
                ("TMPDIR", Path::new("/t")),
            ]),
        );
        let got: Vec<_> = bases
            .iter()
            .map(|b| (b.path.to_str().unwrap(), b.backing))
            .collect();
        assert_eq!(
            got,
            [
                ("/run/user/1", Backing::Memory),
                ("/dev/shm", Backing::Memory),
                ("/t", Backing::Disk)
            ]
        );
        let bases = candidates(Os::Linux, env(&[("XDG_RUNTIME_DIR", Path::new(""))]));
        assert_eq!(bases[0].path, Path::new("/dev/shm"));
        assert_eq!(bases[1].path, Path::new("/tmp"));
    }

    #[test]
    fn macos_uses_its_per_user_tmpdir_then_tmp() {
        let bases = candidates(
            Os::MacOs,
            env(&[
                ("TMPDIR", Path::new("/var/folders/xy/abc/T/")),
                ("XDG_RUNTIME_DIR", Path::new("/ignored")),
            ]),
        );
        assert_eq!(
            bases,
            [
                Base {
                    path: "/var/folders/xy/abc/T/".into(),
                    backing: Backing::PrivateTemp
                },
                Base {
                    path: "/tmp".into(),
                    backing: Backing::Disk
                },
            ]
        );
        assert_eq!(candidates(Os::MacOs, env(&[]))[0].path, Path::new("/tmp"));
    }

    #[test]
    fn a_private_tmpdir_is_chosen_without_warning() {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
        let bases = candidates(Os::MacOs, env(&[("TMPDIR", dir.path())]));
        let (base, warning) = choose(&bases).unwrap();
        assert_eq!(base.path, dir.path());
        assert_eq!(warning, None);
    }

    #[test]
    fn a_tmpdir_others_can_enter_is_skipped_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let bases = candidates(Os::MacOs, env(&[("TMPDIR", dir.path())]));
        let (base, warning) = choose(&bases).unwrap();
        assert_eq!(base.path, Path::new("/tmp"));
        let warning = warning.unwrap();
        assert!(
            warning.contains(&format!("{} cannot be used", dir.path().display()))
                && warning.ends_with("in /tmp, on disk"),
            "{warning}"
        );
    }

    #[test]
    fn linux_without_memory_dirs_falls_back_with_a_warning() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("missing");
        let bases = vec![
            Base {
                path: missing.clone(),
                backing: Backing::Memory,
            },
            Base {
                path: tmp.path().into(),
                backing: Backing::Disk,
            },
        ];
        let (base, warning) = choose(&bases).unwrap();
        assert_eq!(base.path, tmp.path());
        assert!(warning.unwrap().contains(&missing.display().to_string()));
        // A memory-backed directory that exists is taken silently.
        let shm = tempfile::tempdir().unwrap();
        let bases = vec![Base {
            path: shm.path().into(),
            backing: Backing::Memory,
        }];
        assert_eq!(choose(&bases).unwrap().1, None);
    }

    #[test]
    fn the_private_runtime_dir_is_never_a_shared_one() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        assert_eq!(
            private_runtime_dir(Os::Linux, env(&[("XDG_RUNTIME_DIR", "/run/user/1000")])),
            Some(PathBuf::from("/run/user/1000"))
        );
        assert_eq!(
            private_runtime_dir(Os::Linux, env(&[("TMPDIR", "/tmp")])),
            None
        );
        assert_eq!(
            private_runtime_dir(Os::Linux, env(&[("XDG_RUNTIME_DIR", "")])),
            None
        );
        // macOS: /tmp is shared (sticky, world-writable), so not private.
        assert_eq!(
            private_runtime_dir(Os::MacOs, env(&[("TMPDIR", "/tmp")])),
            None
        );
        let private = tempfile::tempdir().unwrap();
        let path = private.path().to_path_buf();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let got = private_runtime_dir(Os::MacOs, |name| {
            (name == "TMPDIR").then(|| path.clone().into_os_string())
        });
        assert_eq!(got, Some(path));
    }
}
