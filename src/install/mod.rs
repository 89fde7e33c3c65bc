//! `ragenix-install`: puts the secrets described by a JSON manifest (written by the NixOS or
//! home-manager module) in place — ramfs mount, numbered generation, decryption, modes and
//! owners, templates, atomic swap, pruning and restart detection. [`run`] reads as its phases.
//! Nix evaluation and the `ragenix` CLI live elsewhere.

pub mod decrypt;
pub mod fs;
pub mod manifest;
pub mod owners;
pub mod restart;
pub mod template;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use zeroize::Zeroizing;

use crate::keys::Identities;
use manifest::{parse_mode, Manifest, Mode};
use owners::Owners;
use restart::{Change, Handoff, State, Units};

/// Which part of the work to do. NixOS's activation runs `mount`, `install`, `chown` as
/// separate steps around user creation; the systemd services run `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    /// Everything in one run (the systemd services, home-manager).
    All,
    /// Mount the ramfs on secretsMountPoint (agenix's `agenixNewGeneration`).
    Mount,
    /// Decrypt into a new generation and swap it in, owners as far as they exist yet.
    Install,
    /// Give every secret its owner and group, then hand changed units to systemd.
    Chown,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub manifest: PathBuf,
    /// Validate only (build time): schema, modes, names, paths, age headers.
    pub check: bool,
    /// With `check`: do not look at the `.age` files (they live outside the store).
    pub skip_files: bool,
    pub phase: Phase,
    /// `systemctl` to call for restartUnits, overriding the "is systemd running" test.
    pub systemctl: Option<PathBuf>,
}

/// What a run achieved: secrets that failed do not stop the others, they are listed here and
/// make the exit status non-zero.
#[derive(Debug, Default)]
pub struct Outcome {
    pub failures: Vec<String>,
}

/// Runs the phases `opts` asks for. `Err` means nothing could be installed at all.
pub fn run(opts: &Options) -> Result<Outcome> {
    let mut manifest = parse(&opts.manifest).context("reading the manifest")?;
    if opts.check {
        return check(&manifest, !opts.skip_files).context("checking the manifest");
    }
    manifest.expand().context("expanding home paths")?;
    validate(&manifest).context("validating the manifest")?;
    let mut outcome = Outcome::default();
    // Locked before mounting: two installers that both saw no ramfs would otherwise stack two
    // mounts on the mount point.
    let _lock = fs::lock_beside(Path::new(&manifest.secrets_mount_point))
        .context("waiting for other installers")?;
    mount(&manifest).context("mounting the secrets filesystem")?;
    match opts.phase {
        Phase::Mount => {}
        Phase::Install => install(&manifest, &mut outcome)?,
        Phase::Chown => chown(&manifest, opts, &mut outcome)?,
        Phase::All => {
            install(&manifest, &mut outcome)?;
            chown(&manifest, opts, &mut outcome)?;
        }
    }
    Ok(outcome)
}

/// Decrypts every secret into a fresh generation and makes it current.
fn install(m: &Manifest, outcome: &mut Outcome) -> Result<()> {
    let previous = previous_generation(m).context("reading the previous generation")?;
    let (number, dir) = new_generation(m).context("creating a new generation")?;
    let identities = keys(m).context("loading identities")?;
    let owners = Owners::load().context("reading users and groups")?;
    let mut generation = NewGeneration::new(m, previous, dir, owners);
    let plaintexts = generation
        .decrypt_and_write(&identities)
        .context("decrypting secrets")?;
    generation
        .render_templates(&plaintexts)
        .context("rendering templates")?;
    generation.save_state().context("recording restart units")?;
    swap(m, &generation.dir).context("switching secretsDir to the new generation")?;
    link_custom_paths(m, &mut generation.failures);
    let pruned = prune(m, number).context("removing old generations")?;
    generation.report(number, &pruned);
    outcome.failures.append(&mut generation.failures);
    Ok(())
}

/// Reads and parses the manifest.
fn parse(path: &Path) -> Result<Manifest> {
    Manifest::read(path)
}

/// Rejects a manifest that breaks any rule, listing every problem.
fn validate(m: &Manifest) -> Result<()> {
    let errors = m.validate();
    if errors.is_empty() {
        return Ok(());
    }
    bail!("{}", errors.join("\n  "))
}

/// `--check`: validation plus, unless skipped, the age header of every `.age` file.
fn check(m: &Manifest, files: bool) -> Result<Outcome> {
    validate(m)?;
    let mut outcome = Outcome::default();
    if files {
        for s in &m.secrets {
            if let Err(e) = decrypt::check_header(Path::new(&s.file)) {
                outcome.failures.push(format!("secret `{}`: {e:#}", s.name));
            }
        }
    }
    if outcome.failures.is_empty() {
        eprintln!(
            "ragenix-install: manifest OK ({} secrets, {} templates)",
            m.secrets.len(),
            m.templates.len()
        );
    }
    Ok(outcome)
}

/// Makes secretsMountPoint a ramfs (system) or a private directory (home).
fn mount(m: &Manifest) -> Result<()> {
    let mount_point = Path::new(&m.secrets_mount_point);
    match m.mode {
        Mode::Home => fs::create_dir_all(mount_point, 0o700),
        Mode::System => {
            fs::create_dir_all(mount_point, 0o751)?;
            if !fs::ramfs_mounted(mount_point)? {
                fs::mount_ramfs(mount_point)?;
            }
            fs::set_mode(mount_point, 0o751)
        }
    }
}

/// The generation secretsDir shows now (a numbered directory, or a plain directory left by an
/// older setup) and its recorded units: what restart detection compares against.
struct Previous {
    dir: Option<PathBuf>,
    state: Option<State>,
}

fn previous_generation(m: &Manifest) -> Result<Previous> {
    let dir = match std::fs::canonicalize(&m.secrets_dir) {
        Ok(dir) if dir.is_dir() => Some(dir),
        Ok(_) => None,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot resolve {}", m.secrets_dir)),
    };
    let state = dir.as_deref().and_then(State::read);
    Ok(Previous { dir, state })
}

/// Creates generation N+1, N being the highest of secretsDir's link and the directories present.
fn new_generation(m: &Manifest) -> Result<(u64, PathBuf)> {
    let mount_point = Path::new(&m.secrets_mount_point);
    let linked = fs::linked_generation(Path::new(&m.secrets_dir)).unwrap_or(0);
    let present = fs::generations(mount_point)?.last().copied().unwrap_or(0);
    let number = linked.max(present) + 1;
    let dir = mount_point.join(number.to_string());
    fs::create_dir_all(&dir, 0o751)?;
    Ok((number, dir))
}

/// Loads the identities, warning about each unusable one; puts plugin directories on PATH.
fn keys(m: &Manifest) -> Result<Identities> {
    if !m.plugin_paths.is_empty() {
        let mut paths: Vec<PathBuf> = m.plugin_paths.iter().map(PathBuf::from).collect();
        if let Some(old) = std::env::var_os("PATH") {
            paths.extend(std::env::split_paths(&old));
        }
        // Single-threaded still: no decryption thread has started.
        std::env::set_var("PATH", std::env::join_paths(paths)?);
    }
    let (identities, warnings) = decrypt::load_identities(&m.identity_paths);
    for w in warnings {
        eprintln!("ragenix-install: warning: {w}");
    }
    if identities.list.is_empty() && !m.secrets.is_empty() {
        eprintln!(
            "ragenix-install: warning: no usable identity among age.identityPaths ({})",
            m.identity_paths.join(", ")
        );
    }
    Ok(identities)
}

/// One manifest entry (secret or template) as the writing code sees it.
struct Entry<'a> {
    key: String,
    what: String,
    name: &'a str,
    path: &'a str,
    mode: &'a str,
    owner: &'a str,
    group: &'a str,
    symlink: bool,
    restart_units: &'a [String],
    reload_units: &'a [String],
    /// Path relative to the generation directory.
    in_generation: String,
    default_path: String,
}

impl<'a> Entry<'a> {
    fn secret(s: &'a manifest::Secret, m: &Manifest) -> Entry<'a> {
        Entry {
            key: format!("secret:{}", s.name),
            what: format!("secret `{}`", s.name),
            name: &s.name,
            path: &s.path,
            mode: &s.mode,
            owner: &s.owner,
            group: &s.group,
            symlink: s.symlink,
            restart_units: &s.restart_units,
            reload_units: &s.reload_units,
            in_generation: s.name.clone(),
            default_path: m.default_path(&s.name),
        }
    }

    fn template(t: &'a manifest::Template, m: &Manifest) -> Entry<'a> {
        Entry {
            key: format!("template:{}", t.name),
            what: format!("template `{}`", t.name),
            name: &t.name,
            path: &t.path,
            mode: &t.mode,
            owner: &t.owner,
            group: &t.group,
            symlink: t.symlink,
            restart_units: &t.restart_units,
            reload_units: &t.reload_units,
            in_generation: format!("templates/{}", t.name),
            default_path: m.default_template_path(&t.name),
        }
    }

    /// Whether the file lives in the generation: always with the default path, whatever
    /// `symlink` says (agenix wrote `symlink = false` secrets with the default path through
    /// the old generation's link and lost them at the next one).
    fn lives_in_generation(&self) -> bool {
        self.symlink || self.path == self.default_path
    }

    /// Where the file is actually written, given a generation directory.
    fn true_path(&self, generation: &Path) -> PathBuf {
        if self.lives_in_generation() {
            generation.join(&self.in_generation)
        } else {
            PathBuf::from(self.path)
        }
    }

    fn units(&self) -> Units {
        Units::from_lists(self.restart_units, self.reload_units)
    }
}

/// In home mode files keep the installer's own ids; that is what "unchanged" compares with.
fn my_ids(m: &Manifest) -> Option<(u32, u32)> {
    (m.mode == Mode::Home).then(|| {
        (
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw(),
        )
    })
}

/// The generation being written: where, against what, and what went wrong so far.
struct NewGeneration<'a> {
    m: &'a Manifest,
    previous: Previous,
    dir: PathBuf,
    owners: Owners,
    state: State,
    failures: Vec<String>,
    secrets_failed: usize,
    templates_failed: usize,
}

impl<'a> NewGeneration<'a> {
    fn new(m: &'a Manifest, previous: Previous, dir: PathBuf, owners: Owners) -> Self {
        NewGeneration {
            m,
            previous,
            dir,
            owners,
            state: State::default(),
            failures: Vec::new(),
            secrets_failed: 0,
            templates_failed: 0,
        }
    }

    /// Decrypts and writes all secrets in parallel; returns the plaintexts templates need.
    fn decrypt_and_write(
        &mut self,
        identities: &Identities,
    ) -> Result<BTreeMap<String, Zeroizing<Vec<u8>>>> {
        let m = self.m;
        let names: BTreeSet<&str> = m.secrets.iter().map(|s| s.name.as_str()).collect();
        let wanted: BTreeSet<&str> = m
            .templates
            .iter()
            .flat_map(|t| template::referenced(&t.content, &names))
            .filter_map(|r| r.ok())
            .collect();
        let this = &*self;
        let results: Vec<_> = m
            .secrets
            .par_iter()
            .map(|s| {
                let e = Entry::secret(s, m);
                let result = (|| {
                    // Plaintext buffers are wiped when dropped.
                    let mut data = Zeroizing::new(Vec::new());
                    decrypt::decrypt_file(Path::new(&s.file), identities, &mut *data)?;
                    let installed = this.write_entry(&e, &data)?;
                    Ok::<_, anyhow::Error>((installed, data))
                })();
                let result = result.map_err(|err| {
                    let kept = this.keep_previous(&e);
                    format!("{} ({}): {err:#}{kept}", e.what, s.file)
                });
                (e, result)
            })
            .collect();
        let mut plaintexts = BTreeMap::new();
        for (e, result) in results {
            match result {
                Ok((change, data)) => {
                    self.record(&e, change);
                    if wanted.contains(e.name) {
                        plaintexts.insert(e.name.to_string(), data);
                    }
                }
                Err(message) => {
                    // Still remembered, so the next run does not count it as removed.
                    self.state.entries.insert(e.key.clone(), e.units());
                    self.failures.push(message);
                    self.secrets_failed += 1;
                }
            }
        }
        Ok(plaintexts)
    }

    /// Renders each template from the decrypted secrets and writes it like a secret.
    fn render_templates(
        &mut self,
        plaintexts: &BTreeMap<String, Zeroizing<Vec<u8>>>,
    ) -> Result<()> {
        let m = self.m;
        let available: BTreeMap<&str, &[u8]> = plaintexts
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        for t in &m.templates {
            let e = Entry::template(t, m);
            let result = template::render(&t.content, &available)
                .map_err(|missing| anyhow::anyhow!("secret `{missing}` could not be decrypted"))
                .and_then(|data| self.write_entry(&e, &Zeroizing::new(data)));
            match result {
                Ok(change) => self.record(&e, change),
                Err(err) => {
                    self.state.entries.insert(e.key.clone(), e.units());
                    let kept = self.keep_previous(&e);
                    self.failures.push(format!("{}: {err:#}{kept}", e.what));
                    self.templates_failed += 1;
                }
            }
        }
        Ok(())
    }

    /// Writes one entry's bytes to its true path in its final mode (and owner if it exists
    /// yet), comparing with the previous generation first. `None`: nothing to compare with.
    fn write_entry(&self, e: &Entry, data: &[u8]) -> Result<Option<Change>> {
        let m = self.m;
        let mode = parse_mode(e.mode).map_err(anyhow::Error::msg)?;
        let owner = match m.mode {
            Mode::System => self.owners.resolve(e.owner, e.group).ok(),
            Mode::Home => None,
        };
        let target = e.true_path(&self.dir);
        let before = if e.lives_in_generation() {
            self.previous.dir.as_ref().map(|d| d.join(&e.in_generation))
        } else {
            Some(target.clone())
        };
        // Without a previous generation (boot) nothing was running with the old secret.
        let change = match (&before, &self.previous.dir) {
            (Some(before), Some(_)) => Some(restart::compare(
                before,
                data,
                mode,
                owner.or_else(|| my_ids(m)),
            )),
            _ => None,
        };
        if let Some(parent) = target.parent() {
            let dir_mode = if e.lives_in_generation() {
                0o751
            } else {
                0o755
            };
            fs::create_dir_all(parent, dir_mode)?;
        }
        fs::write_atomic(&target, data, mode, owner)?;
        Ok(change)
    }

    /// Records an entry's units, and queues them when it changed.
    fn record(&mut self, e: &Entry, change: Option<Change>) {
        let units = e.units();
        if matches!(change, Some(Change::New | Change::Changed)) {
            self.state.pending.add(&units);
        }
        self.state.entries.insert(e.key.clone(), units);
    }

    /// When an entry fails, the previous generation's file (if any) is kept so that services
    /// go on with the old secret instead of none.
    fn keep_previous(&self, e: &Entry) -> &'static str {
        let (Some(old_dir), true) = (&self.previous.dir, e.lives_in_generation()) else {
            return "";
        };
        let old = old_dir.join(&e.in_generation);
        let new = self.dir.join(&e.in_generation);
        if !old.is_file() {
            return "";
        }
        if let Some(parent) = new.parent() {
            if fs::create_dir_all(parent, 0o751).is_err() {
                return "";
            }
        }
        // Same ramfs: a hard link keeps bytes, mode and owner without a readable copy.
        match std::fs::hard_link(&old, &new) {
            Ok(()) => " (the previous version is kept)",
            Err(_) => "",
        }
    }

    /// Adds the units of entries that disappeared, and writes the state file.
    fn save_state(&mut self) -> Result<()> {
        if let Some(old) = &self.previous.state {
            let removed = restart::removed(old, &self.state);
            self.state.pending.add(&removed);
        }
        self.state.write(&self.dir)
    }

    fn report(&self, number: u64, pruned: &[u64]) {
        let m = self.m;
        eprintln!(
            "ragenix-install: generation {number}: {}/{} secrets, {}/{} templates installed{}",
            m.secrets.len() - self.secrets_failed,
            m.secrets.len(),
            m.templates.len() - self.templates_failed,
            m.templates.len(),
            if pruned.is_empty() {
                String::new()
            } else {
                format!(", removed generations {pruned:?}")
            }
        );
    }
}

/// Points secretsDir at the new generation in one rename.
fn swap(m: &Manifest, generation: &Path) -> Result<()> {
    let secrets_dir = Path::new(&m.secrets_dir);
    if let Some(parent) = secrets_dir.parent() {
        fs::create_dir_all(parent, 0o755)?;
    }
    fs::swap_directory_link(generation, secrets_dir)
}

/// Custom paths with `symlink = true` become links into secretsDir (after the swap, so they
/// never dangle).
fn link_custom_paths(m: &Manifest, failures: &mut Vec<String>) {
    let entries = m
        .secrets
        .iter()
        .map(|s| Entry::secret(s, m))
        .chain(m.templates.iter().map(|t| Entry::template(t, m)));
    for e in entries {
        if !e.symlink || e.path == e.default_path {
            continue;
        }
        let link = Path::new(e.path);
        let result = link
            .parent()
            .map_or(Ok(()), |p| fs::create_dir_all(p, 0o755))
            .and_then(|()| fs::symlink_atomic(Path::new(&e.default_path), link));
        if let Err(err) = result {
            failures.push(format!("{}: {err:#}", e.what));
        }
    }
}

/// Removes generations beyond keepGenerations.
fn prune(m: &Manifest, current: u64) -> Result<Vec<u64>> {
    fs::prune(
        Path::new(&m.secrets_mount_point),
        current,
        m.keep_generations,
    )
}

/// Gives every installed file its owner and group, now that users exist, then hands the
/// units of changed secrets to systemd.
fn chown(m: &Manifest, opts: &Options, outcome: &mut Outcome) -> Result<()> {
    let generation = current_generation(m).context("finding the current generation")?;
    if m.mode == Mode::System {
        let owners = Owners::load().context("reading users and groups")?;
        chown_dirs(m, &owners, &generation).context("giving the secret directories their group")?;
        chown_entries(m, &owners, &generation, outcome);
    }
    restart_detection(m, opts, &generation, outcome).context("restarting changed units")
}

fn current_generation(m: &Manifest) -> Result<PathBuf> {
    let secrets_dir = Path::new(&m.secrets_dir);
    match fs::linked_generation(secrets_dir) {
        Some(n) => Ok(Path::new(&m.secrets_mount_point).join(n.to_string())),
        None => bail!(
            "{} is not a link to a generation (run the install phase first)",
            m.secrets_dir
        ),
    }
}

/// The mount point and generation get the `keys` group, as with agenix.
fn chown_dirs(m: &Manifest, owners: &Owners, generation: &Path) -> Result<()> {
    let Some(group) = m.dir_group.as_deref().filter(|g| owners.has_group(g)) else {
        return Ok(());
    };
    let gid = owners.gid(group)?;
    for dir in [Path::new(&m.secrets_mount_point), generation] {
        fs::chown(dir, (0, gid))?;
    }
    let templates = generation.join("templates");
    if templates.is_dir() {
        fs::chown(&templates, (0, gid))?;
    }
    Ok(())
}

fn chown_entries(m: &Manifest, owners: &Owners, generation: &Path, outcome: &mut Outcome) {
    let entries = m
        .secrets
        .iter()
        .map(|s| Entry::secret(s, m))
        .chain(m.templates.iter().map(|t| Entry::template(t, m)));
    for e in entries {
        let target = e.true_path(generation);
        let Ok(meta) = std::fs::symlink_metadata(&target) else {
            continue; // failed to install; already reported
        };
        let result = owners.resolve(e.owner, e.group).and_then(|ids| {
            // Owners that existed at install time were given then.
            if (meta.uid(), meta.gid()) == ids {
                return Ok(());
            }
            fs::chown(&target, ids)
        });
        if let Err(err) = result {
            outcome.failures.push(format!("{}: {err:#}", e.what));
        }
    }
}

/// Hands the units queued by the install phase to systemd, once.
fn restart_detection(
    m: &Manifest,
    opts: &Options,
    generation: &Path,
    outcome: &mut Outcome,
) -> Result<()> {
    let Some(mut state) = State::read(generation) else {
        return Ok(());
    };
    if state.pending.is_empty() {
        return Ok(());
    }
    let handoff = Handoff {
        restart_list: m.restart_list_file.as_ref().map(PathBuf::from),
        reload_list: m.reload_list_file.as_ref().map(PathBuf::from),
        systemctl: Handoff::detect_systemctl(opts.systemctl.clone()),
        user: m.mode == Mode::Home,
    };
    match handoff.hand_over(&state.pending) {
        Ok(done) => eprintln!("ragenix-install: {done}"),
        Err(e) => outcome.failures.push(format!("{e:#}")),
    }
    state.pending = Units::default();
    state.write(generation)
}
