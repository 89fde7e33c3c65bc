//! The macOS secrets filesystem, made the way agenix's darwin module makes it: a 512 MiB RAM
//! disk (`hdiutil attach -nomount ram://1048576`), formatted HFS+ (`newfs_hfs -v agenix`) and
//! mounted `nobrowse,nodev,nosuid,-m=0751`, with `diskutil info` saying whether one is there.
//! The steps go through a [`Runner`], so the sequence is tested on Linux with fake tools. Unlike
//! agenix, a disk attached by a failed run is detached again, and "mounted" means `diskutil`
//! reports a volume whose mount point is exactly ours.

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// 512-byte sectors: 512 MiB, agenix's size.
pub const RAM_URL: &str = "ram://1048576";
pub const VOLUME_NAME: &str = "agenix";
pub const MOUNT_OPTIONS: &str = "nobrowse,nodev,nosuid,-m=0751";

/// What a finished command reported.
#[derive(Debug, Clone)]
pub struct Ran {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a program with arguments, without a shell.
pub trait Runner {
    fn run(&mut self, program: &str, args: &[&OsStr]) -> io::Result<Ran>;
}

/// The system's tools, found on `PATH` (the nix-darwin daemon sets a fixed, root-owned one).
pub struct Commands;

impl Runner for Commands {
    fn run(&mut self, program: &str, args: &[&OsStr]) -> io::Result<Ran> {
        let out = Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()?;
        Ok(Ran {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// Runs one step; a failure is an error naming the command and quoting its stderr.
fn step(runner: &mut dyn Runner, program: &str, args: &[&OsStr]) -> Result<String> {
    let shown = || {
        let mut s = program.to_string();
        for a in args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    };
    let ran = runner
        .run(program, args)
        .with_context(|| format!("cannot run `{}`", shown()))?;
    if !ran.success {
        bail!("`{}` failed: {}", shown(), ran.stderr.trim());
    }
    Ok(ran.stdout)
}

/// The value of a `Key: value` line of `diskutil info`.
fn field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// The device (`/dev/diskN`) of the volume mounted exactly at `mount_point`, if any.
pub fn mounted_device(runner: &mut dyn Runner, mount_point: &Path) -> Result<Option<String>> {
    let args = [OsStr::new("info"), mount_point.as_os_str()];
    let ran = runner
        .run("diskutil", &args)
        .context("cannot run `diskutil info`")?;
    if !ran.success {
        return Ok(None);
    }
    // diskutil may answer for the volume holding a plain directory: only a volume mounted on
    // the directory itself counts.
    if field(&ran.stdout, "Mount Point").map(Path::new) != Some(mount_point) {
        return Ok(None);
    }
    Ok(field(&ran.stdout, "Device Node").map(str::to_string))
}

fn is_disk_device(dev: &str) -> bool {
    dev.strip_prefix("/dev/disk")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Attaches, formats and mounts a fresh RAM disk on `mount_point` (which must exist and be
/// reachable only through directories root controls: the tools take it by name). Returns the
/// device. A disk attached here is detached again if a later step fails.
pub fn mount(runner: &mut dyn Runner, mount_point: &Path) -> Result<String> {
    let out = step(
        runner,
        "hdiutil",
        &[
            OsStr::new("attach"),
            OsStr::new("-nomount"),
            OsStr::new(RAM_URL),
        ],
    )?;
    let device = out.trim().to_string();
    if !is_disk_device(&device) {
        bail!("`hdiutil attach -nomount {RAM_URL}` printed {device:?}, not a /dev/diskN device");
    }
    let dev = OsString::from(&device);
    let finish = |runner: &mut dyn Runner| -> Result<()> {
        step(
            runner,
            "newfs_hfs",
            &[OsStr::new("-v"), OsStr::new(VOLUME_NAME), &dev],
        )?;
        step(
            runner,
            "mount",
            &[
                OsStr::new("-t"),
                OsStr::new("hfs"),
                OsStr::new("-o"),
                OsStr::new(MOUNT_OPTIONS),
                &dev,
                mount_point.as_os_str(),
            ],
        )?;
        match mounted_device(runner, mount_point)? {
            Some(d) if d == device => Ok(()),
            Some(d) => bail!(
                "after mounting {device}, diskutil reports {d} on {}",
                mount_point.display()
            ),
            None => bail!(
                "after mounting {device}, diskutil reports no volume on {}",
                mount_point.display()
            ),
        }
    };
    if let Err(e) = finish(runner) {
        return Err(
            match step(runner, "hdiutil", &[OsStr::new("detach"), &dev]) {
                Ok(_) => e,
                Err(d) => e.context(format!("and detaching {device} failed too: {d:#}")),
            },
        );
    }
    Ok(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers from a script of (program, success, stdout) and records every call.
    struct Script {
        answers: Vec<(&'static str, bool, String)>,
        calls: Vec<String>,
    }

    impl Runner for Script {
        fn run(&mut self, program: &str, args: &[&OsStr]) -> io::Result<Ran> {
            let mut call = program.to_string();
            for a in args {
                call.push(' ');
                call.push_str(&a.to_string_lossy());
            }
            self.calls.push(call);
            let (expected, success, stdout) = self.answers.remove(0);
            assert_eq!(expected, program);
            Ok(Ran {
                success,
                stdout,
                stderr: format!("{program} says no"),
            })
        }
    }

    fn info(dev: &str, mp: &str) -> String {
        format!("   Device Identifier:  disk9\n   Device Node:  {dev}\n   Mount Point:  {mp}\n")
    }

    #[test]
    fn a_fresh_disk_is_attached_formatted_mounted_and_checked() {
        let mut s = Script {
            answers: vec![
                ("hdiutil", true, "/dev/disk9          \t\n".into()),
                ("newfs_hfs", true, String::new()),
                ("mount", true, String::new()),
                ("diskutil", true, info("/dev/disk9", "/run/agenix.d")),
            ],
            calls: vec![],
        };
        assert_eq!(
            mount(&mut s, Path::new("/run/agenix.d")).unwrap(),
            "/dev/disk9"
        );
        assert_eq!(
            s.calls,
            [
                "hdiutil attach -nomount ram://1048576",
                "newfs_hfs -v agenix /dev/disk9",
                "mount -t hfs -o nobrowse,nodev,nosuid,-m=0751 /dev/disk9 /run/agenix.d",
                "diskutil info /run/agenix.d",
            ]
        );
    }

    #[test]
    fn a_failed_format_detaches_the_disk_and_names_the_step() {
        let mut s = Script {
            answers: vec![
                ("hdiutil", true, "/dev/disk9\n".into()),
                ("newfs_hfs", false, String::new()),
                ("hdiutil", true, String::new()),
            ],
            calls: vec![],
        };
        let err = mount(&mut s, Path::new("/run/agenix.d")).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "`newfs_hfs -v agenix /dev/disk9` failed: newfs_hfs says no"
        );
        assert_eq!(s.calls.last().unwrap(), "hdiutil detach /dev/disk9");
    }

    #[test]
    fn a_mount_that_does_not_show_in_diskutil_is_an_error() {
        let mut s = Script {
            answers: vec![
                ("hdiutil", true, "/dev/disk9\n".into()),
                ("newfs_hfs", true, String::new()),
                ("mount", true, String::new()),
                ("diskutil", true, info("/dev/disk1s1", "/")),
                ("hdiutil", false, String::new()),
            ],
            calls: vec![],
        };
        let err = format!(
            "{:#}",
            mount(&mut s, Path::new("/run/agenix.d")).unwrap_err()
        );
        assert!(
            err.starts_with("and detaching /dev/disk9 failed too")
                && err.contains("diskutil reports no volume on /run/agenix.d"),
            "{err}"
        );
    }

    #[test]
    fn hdiutil_output_that_is_not_a_disk_device_is_refused_before_anything_runs() {
        for out in [
            "",
            "/dev/disk",
            "/dev/disk9 /dev/disk10",
            "/etc/passwd",
            "disk9",
        ] {
            let mut s = Script {
                answers: vec![("hdiutil", true, out.into())],
                calls: vec![],
            };
            let err = format!("{:#}", mount(&mut s, Path::new("/m")).unwrap_err());
            assert!(err.contains("not a /dev/diskN device"), "{out:?}: {err}");
            assert_eq!(s.calls.len(), 1);
        }
    }

    #[test]
    fn only_a_volume_mounted_on_the_directory_itself_counts() {
        let mp = Path::new("/private/var/run/agenix.d");
        let cases = [
            (
                true,
                info("/dev/disk4", "/private/var/run/agenix.d"),
                Some("/dev/disk4"),
            ),
            (true, info("/dev/disk1s1", "/"), None),
            (true, "   Device Node: /dev/disk4\n".to_string(), None),
            (false, String::new(), None),
        ];
        for (success, out, want) in cases {
            let mut s = Script {
                answers: vec![("diskutil", success, out)],
                calls: vec![],
            };
            let got = mounted_device(&mut s, mp).unwrap();
            assert_eq!(got.as_deref(), want);
            assert_eq!(s.calls, ["diskutil info /private/var/run/agenix.d"]);
        }
    }
}
