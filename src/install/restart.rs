//! restartUnits / reloadUnits: deciding which entries changed since the previous generation
//! (bytes, mode, owner; new and removed entries count as changes) and handing the units to
//! systemd, either through NixOS's activation lists or `systemctl`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use rustix::fs::{Mode, OFlags};
use serde::{Deserialize, Serialize};

use super::fs::{open_regular, write_atomic, FileId, Owner};
use super::walk::Dir;

/// File kept in each generation directory (root-only) recording which units each entry wants
/// and the units still to be handed over; it holds no secret data.
pub const STATE_FILE: &str = ".ragenix-state.json";

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Units {
    pub restart_units: BTreeSet<String>,
    pub reload_units: BTreeSet<String>,
}

impl Units {
    pub fn add(&mut self, other: &Units) {
        self.restart_units
            .extend(other.restart_units.iter().cloned());
        self.reload_units.extend(other.reload_units.iter().cloned());
    }

    pub fn is_empty(&self) -> bool {
        self.restart_units.is_empty() && self.reload_units.is_empty()
    }

    pub fn from_lists(restart: &[String], reload: &[String]) -> Units {
        Units {
            restart_units: restart.iter().cloned().collect(),
            reload_units: reload.iter().cloned().collect(),
        }
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// `secret:<name>` / `template:<name>` → the units it declared.
    pub entries: BTreeMap<String, Units>,
    /// Units of changed entries, not yet handed to systemd (the chown phase does that).
    pub pending: Units,
    /// The file each installed entry was written as: the chown phase (another process) only
    /// chowns that inode.
    #[serde(default)]
    pub files: BTreeMap<String, FileId>,
}

impl State {
    pub fn read(generation: &Dir) -> Option<State> {
        let mut file = open_regular(generation, STATE_FILE.as_ref()).ok()??;
        let mut text = Vec::new();
        file.read_to_end(&mut text).ok()?;
        serde_json::from_slice(&text).ok()
    }

    pub fn write(&self, generation: &Dir) -> Result<()> {
        let json = serde_json::to_vec_pretty(self)?;
        write_atomic(generation, STATE_FILE.as_ref(), &json, 0o400, None).map(drop)
    }
}

/// How an installed entry compares with what was there before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    New,
    Changed,
    Unchanged,
}

/// Compares the previous file (opened by the caller; `None`: there was none) with the new
/// bytes, mode and owner (`None`: the owner could not be resolved yet, so it cannot be shown
/// unchanged).
pub fn compare(previous: Option<fs::File>, data: &[u8], mode: u32, owner: Owner) -> Change {
    let Some(mut previous) = previous else {
        return Change::New;
    };
    let Ok(meta) = previous.metadata() else {
        return Change::Changed;
    };
    let mut old = Vec::new();
    let same = meta.is_file()
        && meta.len() == data.len() as u64
        && meta.mode() & 0o7777 == mode
        && owner == Some((meta.uid(), meta.gid()))
        && previous.read_to_end(&mut old).is_ok()
        && old == data;
    zeroize::Zeroize::zeroize(&mut old);
    if same {
        Change::Unchanged
    } else {
        Change::Changed
    }
}

/// Units of entries recorded in `previous` but absent from `current`.
pub fn removed(previous: &State, current: &State) -> Units {
    let mut units = Units::default();
    for (key, u) in &previous.entries {
        if !current.entries.contains_key(key) {
            units.add(u);
        }
    }
    units
}

/// Where changed units go.
#[derive(Debug, Clone)]
pub struct Handoff {
    /// NixOS activation lists (`/run/nixos/activation-{restart,reload}-list`).
    pub restart_list: Option<PathBuf>,
    pub reload_list: Option<PathBuf>,
    /// `systemctl` to call when no lists are configured; `None` means systemd is not running.
    pub systemctl: Option<PathBuf>,
    /// `systemctl --user` (home-manager).
    pub user: bool,
}

impl Handoff {
    /// The program to call: the one given, else `systemctl` when systemd runs this machine.
    pub fn detect_systemctl(explicit: Option<PathBuf>) -> Option<PathBuf> {
        explicit.or_else(|| {
            Path::new("/run/systemd/system")
                .is_dir()
                .then(|| PathBuf::from("systemctl"))
        })
    }

    /// Hands `units` over; returns a one-line account of what was done.
    pub fn hand_over(&self, units: &Units) -> Result<String> {
        if units.is_empty() {
            return Ok("no unit to restart or reload".into());
        }
        let list = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>().join(" ");
        let what = format!(
            "restart [{}], reload [{}]",
            list(&units.restart_units),
            list(&units.reload_units)
        );
        if self.restart_list.is_some() || self.reload_list.is_some() {
            let (restart, reload) = (self.restart_list.as_deref(), self.reload_list.as_deref());
            append_units(restart, &units.restart_units).context("writing the restart list")?;
            append_units(reload, &units.reload_units).context("writing the reload list")?;
            return Ok(format!("queued for the activation: {what}"));
        }
        let Some(systemctl) = &self.systemctl else {
            return Ok(format!("systemd is not running, not asked to {what}"));
        };
        for (verb, set) in [
            ("try-restart", &units.restart_units),
            ("try-reload-or-restart", &units.reload_units),
        ] {
            if set.is_empty() {
                continue;
            }
            let mut cmd = Command::new(systemctl);
            if self.user {
                cmd.arg("--user");
            }
            // --no-block: we may run inside a systemd job (the oneshot service); waiting on
            // other jobs from there can deadlock.
            cmd.arg("--no-block").arg(verb).args(set);
            let status = cmd
                .status()
                .with_context(|| format!("cannot run {}", systemctl.display()))?;
            if !status.success() {
                bail!(
                    "`{} {verb} {}` failed ({status})",
                    systemctl.display(),
                    list(set)
                );
            }
        }
        Ok(format!("asked systemd to {what}"))
    }
}

fn append_units(list: Option<&Path>, units: &BTreeSet<String>) -> Result<()> {
    let Some(list) = list else { return Ok(()) };
    if units.is_empty() {
        return Ok(());
    }
    // /run/nixos may not exist yet early in an activation.
    let (dir, name) = Dir::open_parent(list, Some(0o755))?;
    let mut file = rustix::fs::openat(
        dir.fd(),
        &*name,
        OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .map(fs::File::from)
    .with_context(|| format!("cannot open {}", list.display()))?;
    let mut text = String::new();
    for unit in units {
        text.push_str(unit);
        text.push('\n');
    }
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", list.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn compare_sees_bytes_mode_and_owner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let open = || Some(fs::File::open(&path).unwrap());
        assert_eq!(compare(None, b"a", 0o400, None), Change::New);
        fs::write(&path, b"a").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        let meta = fs::metadata(&path).unwrap();
        let me = Some((meta.uid(), meta.gid()));
        assert_eq!(compare(open(), b"a", 0o400, me), Change::Unchanged);
        assert_eq!(compare(open(), b"b", 0o400, me), Change::Changed);
        assert_eq!(compare(open(), b"a", 0o440, me), Change::Changed);
        assert_eq!(
            compare(open(), b"a", 0o400, Some((meta.uid() + 1, meta.gid()))),
            Change::Changed
        );
        assert_eq!(compare(open(), b"a", 0o400, None), Change::Changed);
    }

    #[test]
    fn removed_entries_contribute_their_units() {
        let units = |r: &[&str]| Units {
            restart_units: r.iter().map(|s| s.to_string()).collect(),
            reload_units: BTreeSet::new(),
        };
        let previous = State {
            entries: BTreeMap::from([
                ("secret:a".into(), units(&["a.service"])),
                ("secret:gone".into(), units(&["gone.service"])),
            ]),
            pending: Units::default(),
            ..State::default()
        };
        let current = State {
            entries: BTreeMap::from([("secret:a".into(), units(&["a.service"]))]),
            pending: Units::default(),
            ..State::default()
        };
        assert_eq!(removed(&previous, &current), units(&["gone.service"]));
    }

    #[test]
    fn activation_lists_get_one_unit_per_line_appended() {
        let dir = tempfile::tempdir().unwrap();
        let restart = dir.path().join("restart");
        fs::write(&restart, "other.service\n").unwrap();
        let handoff = Handoff {
            restart_list: Some(restart.clone()),
            reload_list: Some(dir.path().join("reload")),
            systemctl: None,
            user: false,
        };
        let units = Units::from_lists(&["b.service".into(), "a.service".into()], &[]);
        handoff.hand_over(&units).unwrap();
        assert_eq!(
            fs::read_to_string(&restart).unwrap(),
            "other.service\na.service\nb.service\n"
        );
        assert!(!dir.path().join("reload").exists());
    }
}
