//! `ragenix-install`: puts the secrets described by a JSON manifest (written by the NixOS or
//! home-manager module) in place — ramfs mount, numbered generation, decryption, modes and
//! owners, templates, atomic swap, pruning and restart detection. [`run`] reads as its phases.
//! Every directory is reached through [`walk`] and every file operation is relative to it
//! ([`fs`]), so no user-owned directory on a path can redirect root. Nix evaluation and the
//! `ragenix` CLI live elsewhere.

pub mod decrypt;
pub mod fs;
pub mod manifest;
pub mod owners;
pub mod restart;
pub mod template;
pub mod walk;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use zeroize::Zeroizing;

use crate::keys::Identities;
use crate::platform::ramdisk;
use crate::platform::secrets_fs::SecretsFs;
use crate::structured;
use fs::{FileId, Owner};
use manifest::{Entry, Manifest, Mode, Source, Stage};
use owners::Owners;
use restart::{Change, Handoff, State, Units};
use walk::Dir;

/// Which part of the work to do. NixOS's activation runs `mount`, `install`, `chown` as
/// separate steps around user creation; the systemd services run `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    if opts.check {
        let manifest = Manifest::read(&opts.manifest, Stage::Build)?;
        return Ok(check(&manifest, !opts.skip_files));
    }
    let manifest = Manifest::read(&opts.manifest, Stage::Activation)?;
    let entries = &manifest.entries;
    let mut outcome = Outcome::default();
    // Locked before mounting: two installers that both saw no ramfs would otherwise stack two
    // mounts on the mount point.
    let _lock = lock(&manifest).context("waiting for other installers")?;
    let mount_dir = mount(&manifest).context("mounting the secrets filesystem")?;
    match opts.phase {
        Phase::Mount => {}
        Phase::Install => install(&manifest, entries, &mount_dir, &mut outcome)?,
        Phase::Chown => chown(&manifest, entries, &mount_dir, opts, &mut outcome)?,
        Phase::All => {
            install(&manifest, entries, &mount_dir, &mut outcome)?;
            chown(&manifest, entries, &mount_dir, opts, &mut outcome)?;
        }
    }
    Ok(outcome)
}

/// Decrypts every secret into a fresh generation and makes it current.
fn install(m: &Manifest, entries: &[Entry], mount_dir: &Dir, outcome: &mut Outcome) -> Result<()> {
    let link = SecretsDir::open(m).context("opening the directory of secretsDir")?;
    let previous =
        previous_generation(&link, mount_dir).context("reading the previous generation")?;
    let (number, dir) = new_generation(&link, mount_dir).context("creating a new generation")?;
    let identities = keys(m).context("loading identities")?;
    let owners = Owners::load().context("reading users and groups")?;
    let mut generation = NewGeneration::new(m, entries, previous, dir, owners);
    let plaintexts = generation
        .decrypt_and_write(&identities)
        .context("decrypting secrets")?;
    generation
        .render_templates(&plaintexts)
        .context("rendering templates")?;
    generation.save_state().context("recording restart units")?;
    swap(m, &link, number).context("switching secretsDir to the new generation")?;
    link_custom_paths(entries, &mut generation.failures);
    let pruned =
        fs::prune(mount_dir, number, m.keep_generations).context("removing old generations")?;
    generation.report(number, &pruned);
    outcome.failures.append(&mut generation.failures);
    Ok(())
}

/// `--check` of a manifest [`Manifest::read`] has validated: unless skipped, the age header of
/// every `.age` file.
fn check(m: &Manifest, files: bool) -> Outcome {
    let mut outcome = Outcome::default();
    if files {
        for e in &m.entries {
            let Source::Secret { file, .. } = &e.source else {
                continue;
            };
            if let Err(err) = decrypt::check_header(Path::new(file)) {
                outcome
                    .failures
                    .push(format!("secret `{}`: {err:#}", e.name));
            }
        }
    }
    if outcome.failures.is_empty() {
        let (secrets, templates) = m.counts();
        eprintln!("ragenix-install: manifest OK ({secrets} secrets, {templates} templates)");
    }
    outcome
}

/// Takes the installers' lock, a file beside the mount point (`/run/agenix.d.lock`), not the
/// mount point itself: a directory locked before the ramfs is mounted on it is not the
/// directory a later installer opens. Named after the mount point as walked, so every
/// spelling of it takes the same lock.
fn lock(m: &Manifest) -> Result<std::fs::File> {
    let (parent, name) = Dir::open_parent(Path::new(&m.secrets_mount_point), Some(0o755))?;
    let mount_dir = parent.open_sub(Path::new(&name), Some(mount_point_mode(m)))?;
    let real_parent = mount_dir.open_sub(Path::new(".."), None)?;
    let mut name = mount_dir
        .path()
        .file_name()
        .map(OsStr::to_os_string)
        .with_context(|| format!("{} has no file name", mount_dir.path().display()))?;
    name.push(".lock");
    fs::lock(&real_parent, &name)
}

fn mount_point_mode(m: &Manifest) -> u32 {
    match m.mode {
        Mode::Home => 0o700,
        Mode::System => 0o751,
    }
}

/// Makes secretsMountPoint the platform's in-memory filesystem (system) or a private directory
/// (home) and returns it open. On Linux whether our ramfs is already there is asked of the
/// directory itself, never of its name; macOS's tools only take names, so there the path must
/// be one only root can change.
fn mount(m: &Manifest) -> Result<Dir> {
    let (parent, name) = Dir::open_parent(Path::new(&m.secrets_mount_point), Some(0o755))?;
    let name = Path::new(&name);
    match m.mode {
        Mode::Home => parent.open_sub(name, Some(0o700)),
        Mode::System => {
            let secrets_fs = SecretsFs::for_os(m.platform.into());
            let tools = &mut ramdisk::Commands;
            let mut dir = parent.open_sub(name, Some(0o751))?;
            if !secrets_fs.is_mounted(dir.fd(), dir.path(), tools)? {
                if let (true, Some(why)) = (secrets_fs.mounts_by_name(), dir.untrusted()) {
                    bail!(
                        "{} is below {why}: refusing to hand its name to `mount`",
                        dir.path().display()
                    );
                }
                secrets_fs.mount(dir.fd(), dir.path(), tools)?;
                dir = parent.open_sub(name, None)?;
                if !secrets_fs.is_mounted(dir.fd(), dir.path(), tools)? {
                    bail!(
                        "{} is not a {secrets_fs:?} after mounting one",
                        dir.path().display()
                    );
                }
            }
            fs::set_dir_mode(&dir, 0o751)?;
            Ok(dir)
        }
    }
}

/// secretsDir's parent directory, open, and secretsDir's own name in it (the link).
struct SecretsDir {
    parent: Dir,
    name: OsString,
}

impl SecretsDir {
    fn open(m: &Manifest) -> Result<SecretsDir> {
        let (parent, name) = Dir::open_parent(Path::new(&m.secrets_dir), Some(0o755))?;
        Ok(SecretsDir { parent, name })
    }

    /// The generation the link points to, if it is one.
    fn linked(&self) -> Option<u64> {
        fs::linked_generation(&self.parent, &self.name)
    }
}

/// The generation secretsDir shows now (a numbered directory, or a plain directory left by an
/// older setup) and its recorded units and files: what restart detection and kept versions
/// compare against.
struct Previous {
    dir: Option<Dir>,
    state: Option<State>,
    /// Whether `dir` is one of our generations on the ramfs, which only root can have
    /// written. A plain directory is only compared with: whoever owns secretsDir's parent may
    /// have planted it, state file and hard links included, so nothing in it is kept.
    ours: bool,
}

fn previous_generation(link: &SecretsDir, mount_dir: &Dir) -> Result<Previous> {
    let (dir, ours) = match link.linked() {
        Some(n) => (
            mount_dir.open_sub(Path::new(&n.to_string()), None).ok(),
            true,
        ),
        None => match fs::stat_at(&link.parent, &link.name)? {
            Some(st) if rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir() => (
                Some(link.parent.open_sub(Path::new(&link.name), None)?),
                false,
            ),
            _ => (None, false),
        },
    };
    let state = dir.as_ref().filter(|_| ours).and_then(State::read);
    Ok(Previous { dir, state, ours })
}

/// Creates generation N+1, N being the highest of secretsDir's link and the directories present.
fn new_generation(link: &SecretsDir, mount_dir: &Dir) -> Result<(u64, Dir)> {
    let linked = link.linked().unwrap_or(0);
    let present = fs::generations(mount_dir)?.last().copied().unwrap_or(0);
    let number = linked.max(present) + 1;
    let dir = mount_dir.open_sub(Path::new(&number.to_string()), Some(0o751))?;
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
    if identities.list.is_empty() && m.entries.iter().any(Entry::is_secret) {
        eprintln!(
            "ragenix-install: warning: {}",
            decrypt::no_identity(&m.identity_paths)
        );
    }
    Ok(identities)
}

impl Entry {
    /// The directory the file is written in (walked safely, created if `create`) and its name
    /// there, given the generation directory.
    fn locate(&self, generation: &Dir, create: bool) -> Result<(Dir, OsString)> {
        if self.lives_in_generation() {
            generation.sub_parent(Path::new(&self.in_generation()), create.then_some(0o751))
        } else {
            Dir::open_parent(Path::new(&self.path), create.then_some(0o755))
        }
    }
}

/// The plaintext of every secret's `.age` file, each decrypted once however many secrets read
/// it (structured secrets share one document), in parallel; a failure as its message.
fn decrypt_each_file_once<'e>(
    entries: &'e [Entry],
    identities: &Identities,
    no_identity: Option<&str>,
) -> BTreeMap<&'e str, Result<Zeroizing<Vec<u8>>, String>> {
    let files: BTreeSet<&str> = entries
        .iter()
        .filter_map(|e| match &e.source {
            Source::Secret { file, .. } => Some(file.as_str()),
            Source::Template { .. } => None,
        })
        .collect();
    files
        .into_par_iter()
        .map(|file| {
            if let Some(why) = no_identity {
                return (file, Err(why.to_string()));
            }
            let mut data = Zeroizing::new(Vec::new());
            let result = decrypt::decrypt_file(Path::new(file), identities, &mut *data)
                .map(|()| data)
                .map_err(|e| format!("{e:#}"));
            (file, result)
        })
        .collect()
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
    entries: &'a [Entry],
    previous: Previous,
    dir: Dir,
    owners: Owners,
    state: State,
    failures: Vec<String>,
    secrets_failed: usize,
    templates_failed: usize,
}

/// What writing one entry produced: how it compares with before, and which file it is.
type Written = (Option<Change>, FileId);

impl<'a> NewGeneration<'a> {
    fn new(
        m: &'a Manifest,
        entries: &'a [Entry],
        previous: Previous,
        dir: Dir,
        owners: Owners,
    ) -> Self {
        NewGeneration {
            m,
            entries,
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
        let names: BTreeSet<&str> = self
            .entries
            .iter()
            .filter(|e| e.is_secret())
            .map(|e| e.name.as_str())
            .collect();
        let wanted: BTreeSet<&str> = self
            .entries
            .iter()
            .filter_map(|e| match &e.source {
                Source::Template { content } => Some(content.as_str()),
                Source::Secret { .. } => None,
            })
            .flat_map(|content| template::referenced(content, &names))
            .filter_map(|r| r.ok())
            .collect();
        let this = &*self;
        let no_identity = identities
            .list
            .is_empty()
            .then(|| decrypt::no_identity(&self.m.identity_paths));
        let documents = decrypt_each_file_once(self.entries, identities, no_identity.as_deref());
        let results: Vec<_> = self
            .entries
            .par_iter()
            .filter_map(|e| match &e.source {
                Source::Secret { file, structured } => Some((e, file, structured)),
                Source::Template { .. } => None,
            })
            .map(|(e, file, structured)| {
                let result = (|| {
                    let document = documents[file.as_str()]
                        .as_ref()
                        .map_err(|err| anyhow::anyhow!("{err}"))?;
                    let extracted;
                    let data: &[u8] = match structured {
                        None => document,
                        Some((format, key)) => {
                            extracted = structured::extract(*format, document, key)
                                .with_context(|| format!("{format} key `{key}`"))?;
                            &extracted
                        }
                    };
                    let written = this.write_entry(e, data)?;
                    // Plaintext buffers are wiped when dropped.
                    let data = wanted
                        .contains(e.name.as_str())
                        .then(|| Zeroizing::new(data.to_vec()));
                    Ok::<_, anyhow::Error>((written, data))
                })();
                let result = result.map_err(|err| {
                    let (kept, id) = this.keep_previous(e);
                    (format!("{} ({file}): {err:#}{kept}", e.what()), id)
                });
                (e, result)
            })
            .collect();
        let mut plaintexts = BTreeMap::new();
        for (e, result) in results {
            match result {
                Ok((written, data)) => {
                    self.record(e, written);
                    if let Some(data) = data {
                        plaintexts.insert(e.name.clone(), data);
                    }
                }
                Err((message, kept)) => {
                    self.record_failure(e, kept);
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
        let available: BTreeMap<&str, &[u8]> = plaintexts
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        for e in self.entries {
            let Source::Template { content } = &e.source else {
                continue;
            };
            let result = template::render(content, &available)
                .map_err(|missing| anyhow::anyhow!("secret `{missing}` could not be decrypted"))
                .and_then(|data| self.write_entry(e, &Zeroizing::new(data)));
            match result {
                Ok(written) => self.record(e, written),
                Err(err) => {
                    let (kept, id) = self.keep_previous(e);
                    self.record_failure(e, id);
                    self.failures.push(format!("{}: {err:#}{kept}", e.what()));
                    self.templates_failed += 1;
                }
            }
        }
        Ok(())
    }

    /// The owner an entry gets in the install phase: the declared one if it exists yet.
    fn owner(&self, e: &Entry) -> Owner {
        match self.m.mode {
            Mode::System => self.owners.resolve(&e.owner, &e.group).ok(),
            Mode::Home => None,
        }
    }

    /// Writes one entry's bytes to its true path in its final mode (and owner if it exists
    /// yet), comparing with the previous generation first.
    fn write_entry(&self, e: &Entry, data: &[u8]) -> Result<Written> {
        let mode = e.mode;
        let owner = self.owner(e);
        let (dir, name) = e.locate(&self.dir, true)?;
        // Without a previous generation (boot) nothing was running with the old secret.
        let change = self.previous.dir.as_ref().map(|_| {
            let before = self.previous_file(e, &dir, &name);
            restart::compare(before, data, mode, owner.or_else(|| my_ids(self.m)))
        });
        let id = fs::write_atomic(&dir, &name, data, mode, owner)?;
        Ok((change, id))
    }

    /// The previous version of an entry, opened for comparing: in the previous generation, or
    /// at its custom path if that is still the file installed there last time.
    fn previous_file(&self, e: &Entry, dir: &Dir, name: &OsStr) -> Option<std::fs::File> {
        if e.lives_in_generation() {
            let old = self.previous.dir.as_ref()?;
            let (old_dir, old_name) = old.sub_parent(Path::new(&e.in_generation()), None).ok()?;
            return fs::open_regular(&old_dir, &old_name).ok()?;
        }
        let recorded = self.previous.state.as_ref()?.files.get(&e.key())?;
        let (handle, st) = fs::open_handle(dir, name).ok()??;
        if !recorded.is(&st) || !rustix::fs::FileType::from_raw_mode(st.st_mode).is_file() {
            return None;
        }
        fs::reopen(&handle).ok()
    }

    /// Records an entry's units and file, and queues the units when it changed.
    fn record(&mut self, e: &Entry, (change, id): Written) {
        if matches!(change, Some(Change::New | Change::Changed)) {
            self.state.pending.add(&e.units);
        }
        self.state.entries.insert(e.key(), e.units.clone());
        self.state.files.insert(e.key(), id);
    }

    /// A failed entry is still remembered, so the next run does not count it as removed; a
    /// kept previous version is recorded for the chown phase.
    fn record_failure(&mut self, e: &Entry, kept: Option<FileId>) {
        self.state.entries.insert(e.key(), e.units.clone());
        if let Some(id) = kept {
            self.state.files.insert(e.key(), id);
        }
    }

    /// When an entry fails, its previous version (if any) is kept so that services go on with
    /// the old secret instead of none, but only with the mode and owner declared now: if
    /// those cannot be given to it, it is removed instead. Returns what happened, for the
    /// failure message, and the kept file.
    fn keep_previous(&self, e: &Entry) -> (String, Option<FileId>) {
        let mode = e.mode;
        // Owners that do not exist yet get it in the chown phase, like a new file.
        let owner = match self.m.mode {
            Mode::System => Some(self.owner(e).unwrap_or((0, 0))),
            Mode::Home => None,
        };
        let new_ids = owner.map_or(String::new(), |(u, g)| format!(" and owner {u}:{g}"));
        if e.lives_in_generation() {
            let Some(old) = self.previous.dir.as_ref().filter(|_| self.previous.ours) else {
                return (String::new(), None);
            };
            let Ok((old_dir, name)) = old.sub_parent(Path::new(&e.in_generation()), None) else {
                return (String::new(), None);
            };
            let Ok(Some((handle, st))) = fs::open_handle(&old_dir, &name) else {
                return (String::new(), None);
            };
            if !rustix::fs::FileType::from_raw_mode(st.st_mode).is_file() {
                return (String::new(), None);
            }
            if let Err(err) = fs::give_handle(&handle, mode, owner) {
                let msg = format!(
                    " (the previous version was dropped: cannot give it mode {mode:04o}{new_ids}: {err})"
                );
                return (msg, None);
            }
            // Same ramfs: a hard link keeps the bytes without a readable copy.
            let linked = e
                .locate(&self.dir, true)
                .and_then(|(dir, name)| Ok(fs::link_handle(&handle, &dir, &name)?));
            return match linked {
                Ok(()) => (
                    format!(" (the previous version is kept, with mode {mode:04o}{new_ids})"),
                    FileId::of_handle(&handle).ok(),
                ),
                Err(err) => (
                    format!(" (the previous version could not be kept: {err:#})"),
                    None,
                ),
            };
        }
        // A custom path written in place: the old file is still there, if it is ours.
        let Ok((dir, name)) = e.locate(&self.dir, false) else {
            return (String::new(), None);
        };
        let Ok(Some((handle, st))) = fs::open_handle(&dir, &name) else {
            return (String::new(), None);
        };
        let recorded = self
            .previous
            .state
            .as_ref()
            .and_then(|s| s.files.get(&e.key()));
        let ours = rustix::fs::FileType::from_raw_mode(st.st_mode).is_file()
            && recorded.is_some_and(|r| r.is(&st));
        if !ours {
            return (
                format!(
                    " ({} is not the file installed there before: left alone)",
                    e.path
                ),
                None,
            );
        }
        match fs::give_handle(&handle, mode, owner) {
            Ok(()) => (
                format!(" (the previous version is kept, with mode {mode:04o}{new_ids})"),
                Some(FileId::of(&st)),
            ),
            Err(err) => match fs::unlink(&dir, &name) {
                Ok(()) => (
                    format!(
                        " (the previous version was removed: cannot give it mode {mode:04o}{new_ids}: {err})"
                    ),
                    None,
                ),
                Err(rm) => (
                    format!(
                        " (cannot give the previous version mode {mode:04o}{new_ids} ({err}) nor remove it: {rm:#})"
                    ),
                    None,
                ),
            },
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
        let (secrets, templates) = self.m.counts();
        eprintln!(
            "ragenix-install: generation {number}: {}/{secrets} secrets, {}/{templates} templates installed{}",
            secrets - self.secrets_failed,
            templates - self.templates_failed,
            if pruned.is_empty() {
                String::new()
            } else {
                format!(", removed generations {pruned:?}")
            }
        );
    }
}

/// Points secretsDir at the new generation in one rename.
fn swap(m: &Manifest, link: &SecretsDir, number: u64) -> Result<()> {
    let target = Path::new(&m.secrets_mount_point).join(number.to_string());
    fs::swap_directory_link(target.as_os_str(), &link.parent, &link.name)
}

/// Custom paths with `symlink = true` become links into secretsDir (after the swap, so they
/// never dangle).
fn link_custom_paths(entries: &[Entry], failures: &mut Vec<String>) {
    for e in entries {
        if !e.symlink || e.has_default_path() {
            continue;
        }
        let result = Dir::open_parent(Path::new(&e.path), Some(0o755))
            .and_then(|(dir, name)| fs::symlink_atomic(OsStr::new(&e.default_path), &dir, &name));
        if let Err(err) = result {
            failures.push(format!("{}: {err:#}", e.what()));
        }
    }
}

/// Gives every installed file its owner and group, now that users exist, then hands the
/// units of changed secrets to systemd.
fn chown(
    m: &Manifest,
    entries: &[Entry],
    mount_dir: &Dir,
    opts: &Options,
    outcome: &mut Outcome,
) -> Result<()> {
    let generation = current_generation(m, mount_dir).context("finding the current generation")?;
    if m.mode == Mode::System {
        let owners = Owners::load().context("reading users and groups")?;
        chown_dirs(m, &owners, mount_dir, &generation)
            .context("giving the secret directories their group")?;
        let state = State::read(&generation).with_context(|| {
            format!(
                "{} has no readable {}: without it the installed files cannot be told from others (run the install phase again)",
                generation.path().display(),
                restart::STATE_FILE
            )
        })?;
        chown_entries(entries, &owners, &generation, &state, outcome);
    }
    restart_detection(m, opts, &generation, outcome).context("restarting changed units")
}

fn current_generation(m: &Manifest, mount_dir: &Dir) -> Result<Dir> {
    let link = SecretsDir::open(m)?;
    match link.linked() {
        Some(n) => mount_dir.open_sub(Path::new(&n.to_string()), None),
        None => bail!(
            "{} is not a link to a generation (run the install phase first)",
            m.secrets_dir
        ),
    }
}

/// The mount point and generation get the `keys` group, as with agenix.
fn chown_dirs(m: &Manifest, owners: &Owners, mount_dir: &Dir, generation: &Dir) -> Result<()> {
    let Some(group) = m.dir_group.as_deref().filter(|g| owners.has_group(g)) else {
        return Ok(());
    };
    let gid = owners.gid(group)?;
    fs::chown_dir(mount_dir, (0, gid))?;
    fs::chown_dir(generation, (0, gid))?;
    if let Ok(templates) = generation.open_sub(Path::new("templates"), None) {
        fs::chown_dir(&templates, (0, gid))?;
    }
    Ok(())
}

/// Chowns each entry's file, reached by the same safe walk, and only if it is the inode the
/// install phase recorded: users exist only now, seconds later, and whatever a user changed
/// on the way meanwhile makes that entry fail instead of redirecting the chown.
fn chown_entries(
    entries: &[Entry],
    owners: &Owners,
    generation: &Dir,
    state: &State,
    outcome: &mut Outcome,
) {
    for e in entries {
        let Some(&expected) = state.files.get(&e.key()) else {
            // Failed to install: already reported by that phase.
            if state.entries.contains_key(&e.key()) {
                continue;
            }
            // Unknown to the install phase: whatever is there is not ours.
            let found = e
                .locate(generation, false)
                .ok()
                .and_then(|(dir, name)| fs::stat_at(&dir, &name).ok().flatten());
            if found.is_some() {
                outcome.failures.push(format!(
                    "{}: {} was not written by the install phase: not chowned",
                    e.what(),
                    e.path
                ));
            }
            continue;
        };
        let result = (|| {
            let ids = owners.resolve(&e.owner, &e.group)?;
            let (dir, name) = e.locate(generation, false)?;
            // Generation files may share their inode with the previous generation (a kept
            // version is linked, not copied); a file at a custom path never does.
            let single_link = !e.lives_in_generation();
            fs::chown_if_same(&dir, &name, expected, ids, e.mode, single_link)
        })();
        if let Err(err) = result {
            outcome.failures.push(format!("{}: {err:#}", e.what()));
        }
    }
}

/// Hands the units queued by the install phase to systemd, once.
fn restart_detection(
    m: &Manifest,
    opts: &Options,
    generation: &Dir,
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
