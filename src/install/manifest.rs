//! The installer's input: the JSON manifest written by `nix/manifest.nix`, read into one typed
//! [`Manifest`] (settings plus a `Vec<Entry>`). The serde wire types stay private here: they
//! are expanded (home-manager's `$VAR` / `~` paths, at activation), validated — every problem
//! reported at once, naming its option, before any file is touched — and only then converted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::restart::Units;
use crate::platform::Os;
use crate::structured::{Format, Key};

/// The only manifest version this installer reads.
pub const VERSION: u32 = 1;

// The placeholder syntax belongs to templates; re-exported for the module's Nix-side tests.
pub use super::template::{PLACEHOLDER_PREFIX, PLACEHOLDER_SUFFIX};

/// Secret and template names starting with this are reserved for the installer's own files.
pub const RESERVED_PREFIX: &str = ".ragenix";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// NixOS: ramfs mount, ownership, the keys group.
    System,
    /// home-manager: plain directories, no ownership changes, `$VAR` expansion.
    Home,
}

/// The system the manifest was written for (its module): it decides the secrets filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// NixOS: a ramfs.
    #[default]
    Linux,
    /// nix-darwin: an HFS+ RAM disk made with `hdiutil`.
    Darwin,
}

impl From<Platform> for Os {
    fn from(p: Platform) -> Os {
        match p {
            Platform::Linux => Os::Linux,
            Platform::Darwin => Os::MacOs,
        }
    }
}

/// When the manifest is read: by `--check` at build time, where home-manager paths are still
/// `$VAR`s and are only checked for shape, or at activation, where they are expanded first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Build,
    Activation,
}

/// The manifest as the installer uses it: validated, home paths expanded at activation, every
/// secret and template one [`Entry`].
#[derive(Debug, Clone)]
pub struct Manifest {
    pub mode: Mode,
    pub platform: Platform,
    pub secrets_dir: String,
    pub secrets_mount_point: String,
    pub identity_paths: Vec<String>,
    pub keep_generations: u32,
    /// Group given to the mount point and generation directories in the chown phase, if it
    /// exists (NixOS's `keys`).
    pub dir_group: Option<String>,
    /// Directories holding `age-plugin-*` programs, put in front of `PATH`.
    pub plugin_paths: Vec<String>,
    /// NixOS's activation restart/reload lists; when unset, units go to `systemctl`.
    pub restart_list_file: Option<String>,
    pub reload_list_file: Option<String>,
    /// The secrets, then the templates.
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Wire {
    version: u32,
    mode: Mode,
    /// Absent in manifests from before nix-darwin support: NixOS.
    #[serde(default)]
    platform: Platform,
    secrets_dir: String,
    secrets_mount_point: String,
    identity_paths: Vec<String>,
    #[serde(default = "one")]
    keep_generations: u32,
    /// Group given to the mount point and generation directories in the chown phase, if it
    /// exists (NixOS's `keys`).
    #[serde(default)]
    dir_group: Option<String>,
    /// Directories holding `age-plugin-*` programs, put in front of `PATH`.
    #[serde(default)]
    plugin_paths: Vec<String>,
    /// NixOS's activation restart/reload lists; when unset, units go to `systemctl`.
    #[serde(default)]
    restart_list_file: Option<String>,
    #[serde(default)]
    reload_list_file: Option<String>,
    #[serde(default)]
    secrets: Vec<WireSecret>,
    #[serde(default)]
    templates: Vec<WireTemplate>,
}

fn one() -> u32 {
    1
}

fn default_mode() -> String {
    "0400".into()
}

fn default_id() -> String {
    "0".into()
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WireSecret {
    name: String,
    file: String,
    path: String,
    #[serde(default = "default_mode")]
    mode: String,
    #[serde(default = "default_id")]
    owner: String,
    #[serde(default = "default_id")]
    group: String,
    #[serde(default = "yes")]
    symlink: bool,
    #[serde(default)]
    restart_units: Vec<String>,
    #[serde(default)]
    reload_units: Vec<String>,
    /// How the decrypted file is read: `binary` (all of it) or a document format whose value
    /// at `key` is the secret. Parsed in `validate`, so a bad one names the secret.
    #[serde(default = "binary")]
    format: String,
    #[serde(default)]
    key: Option<String>,
}

fn binary() -> String {
    Format::Binary.name().into()
}

impl WireSecret {
    /// The format and key of a structured secret, `None` for a binary one. The error starts
    /// with the option it is about (`format: …`, `key: …`).
    fn structured(&self) -> Result<Option<(Format, Key)>, String> {
        let format: Format = self.format.parse().map_err(|e| format!("format: {e}"))?;
        match (format, &self.key) {
            (Format::Binary, None) => Ok(None),
            (Format::Binary, Some(_)) => Err(
                "key: only a secret with format json, yaml, dotenv or ini has a key (format is binary)"
                    .into(),
            ),
            (_, None) => Err(format!(
                "key must be set with format {format}: the path of the value in the document, such as \"github/oauth_token\""
            )),
            (_, Some(key)) => {
                let key: Key = key.parse().map_err(|e| format!("key: {e}"))?;
                key.check_for(format).map_err(|e| format!("key: {e}"))?;
                Ok(Some((format, key)))
            }
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WireTemplate {
    name: String,
    content: String,
    path: String,
    #[serde(default = "default_mode")]
    mode: String,
    #[serde(default = "default_id")]
    owner: String,
    #[serde(default = "default_id")]
    group: String,
    #[serde(default = "yes")]
    symlink: bool,
    #[serde(default)]
    restart_units: Vec<String>,
    #[serde(default)]
    reload_units: Vec<String>,
}

/// Where an entry's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Decrypted from this `.age` file; with a key, the value at that key of the document.
    Secret {
        file: String,
        structured: Option<(Format, Key)>,
    },
    /// Rendered from this text, placeholders replaced by secrets.
    Template { content: String },
}

/// One secret or template as the installer uses it: the manifest's fields, checked, with the
/// mode parsed once.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub path: String,
    pub mode: u32,
    pub owner: String,
    pub group: String,
    pub symlink: bool,
    pub units: Units,
    pub source: Source,
    /// `secretsDir/<name>` for a secret, `secretsDir/templates/<name>` for a template.
    pub default_path: String,
}

impl Entry {
    pub fn is_secret(&self) -> bool {
        matches!(self.source, Source::Secret { .. })
    }

    /// The key of the entry in the generation's state file.
    pub fn key(&self) -> String {
        match self.source {
            Source::Secret { .. } => format!("secret:{}", self.name),
            Source::Template { .. } => format!("template:{}", self.name),
        }
    }

    /// How messages name it.
    pub fn what(&self) -> String {
        match self.source {
            Source::Secret { .. } => format!("secret `{}`", self.name),
            Source::Template { .. } => format!("template `{}`", self.name),
        }
    }

    /// Its path relative to a generation directory.
    pub fn in_generation(&self) -> String {
        match self.source {
            Source::Secret { .. } => self.name.clone(),
            Source::Template { .. } => format!("templates/{}", self.name),
        }
    }

    /// Whether the file lives in the generation: always with the default path, whatever
    /// `symlink` says (agenix wrote `symlink = false` secrets with the default path through
    /// the old generation's link and lost them at the next one).
    pub fn lives_in_generation(&self) -> bool {
        self.symlink || self.has_default_path()
    }

    pub fn has_default_path(&self) -> bool {
        Manifest::is_default(&self.path, &self.default_path)
    }
}

impl Manifest {
    /// Reads, (at activation) expands, validates and types the manifest at `path`. A manifest
    /// that breaks any rule is refused with every problem listed, each naming its option.
    pub fn read(path: &Path, stage: Stage) -> Result<Manifest> {
        let wire = Wire::read(path).context("reading the manifest")?;
        wire.checked(stage)
    }

    /// [`Manifest::read`] of a manifest's text.
    pub fn from_json(text: &str, stage: Stage) -> Result<Manifest> {
        Wire::from_json(text)?.checked(stage)
    }

    /// How many secrets and how many templates it declares.
    pub fn counts(&self) -> (usize, usize) {
        let secrets = self.entries.iter().filter(|e| e.is_secret()).count();
        (secrets, self.entries.len() - secrets)
    }

    /// Whether `path` is the default place of the entry whose default is `default`, however
    /// either is spelled.
    pub fn is_default(path: &str, default: &str) -> bool {
        normalise(path) == normalise(default)
    }
}

impl Wire {
    fn from_json(text: &str) -> Result<Wire> {
        let wire: Wire = serde_json::from_str(text).context("invalid manifest JSON")?;
        if wire.version != VERSION {
            bail!(
                "manifest version {} is not supported (this installer reads version {VERSION})",
                wire.version
            );
        }
        Ok(wire)
    }

    fn read(path: &Path) -> Result<Wire> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read manifest {}", path.display()))?;
        Wire::from_json(&text).with_context(|| format!("in manifest {}", path.display()))
    }

    /// Expands (at activation), validates and converts: the one way to a [`Manifest`].
    fn checked(mut self, stage: Stage) -> Result<Manifest> {
        if stage == Stage::Activation {
            self.expand().context("expanding home paths")?;
        }
        let errors = self.validate();
        if !errors.is_empty() {
            let doing = match stage {
                Stage::Build => "checking the manifest",
                Stage::Activation => "validating the manifest",
            };
            return Err(anyhow::anyhow!("{}", errors.join("\n  ")).context(doing));
        }
        self.into_manifest()
    }

    /// The typed manifest. Only called on a validated one, so the parses below cannot fail;
    /// they still name the option rather than panic.
    fn into_manifest(self) -> Result<Manifest> {
        let mode =
            |m: &str, who: &str| parse_mode(m).map_err(|e| anyhow::anyhow!("{who}.mode: {e}"));
        let mut entries = Vec::with_capacity(self.secrets.len() + self.templates.len());
        for s in &self.secrets {
            let who = format!("age.secrets.\"{}\"", s.name);
            entries.push(Entry {
                name: s.name.clone(),
                path: s.path.clone(),
                mode: mode(&s.mode, &who)?,
                owner: s.owner.clone(),
                group: s.group.clone(),
                symlink: s.symlink,
                units: Units::from_lists(&s.restart_units, &s.reload_units),
                source: Source::Secret {
                    file: s.file.clone(),
                    structured: s.structured().map_err(|e| anyhow::anyhow!("{who}.{e}"))?,
                },
                default_path: self.default_path(&s.name),
            });
        }
        for t in &self.templates {
            entries.push(Entry {
                name: t.name.clone(),
                path: t.path.clone(),
                mode: mode(&t.mode, &format!("age.templates.\"{}\"", t.name))?,
                owner: t.owner.clone(),
                group: t.group.clone(),
                symlink: t.symlink,
                units: Units::from_lists(&t.restart_units, &t.reload_units),
                source: Source::Template {
                    content: t.content.clone(),
                },
                default_path: self.default_template_path(&t.name),
            });
        }
        Ok(Manifest {
            mode: self.mode,
            platform: self.platform,
            secrets_dir: self.secrets_dir,
            secrets_mount_point: self.secrets_mount_point,
            identity_paths: self.identity_paths,
            keep_generations: self.keep_generations,
            dir_group: self.dir_group,
            plugin_paths: self.plugin_paths,
            restart_list_file: self.restart_list_file,
            reload_list_file: self.reload_list_file,
            entries,
        })
    }

    /// Expands `$VAR`, `${VAR}` and a leading `~` in every path of a home-manager manifest;
    /// system manifests are left alone (their paths are literal).
    fn expand(&mut self) -> Result<()> {
        if self.mode != Mode::Home {
            return Ok(());
        }
        let expand = |s: &mut String, what: &str| -> Result<()> {
            *s = expand_vars(s, |v| std::env::var(v).ok())
                .with_context(|| format!("cannot expand {what} `{s}`"))?;
            Ok(())
        };
        expand(&mut self.secrets_dir, "secretsDir")?;
        expand(&mut self.secrets_mount_point, "secretsMountPoint")?;
        for p in &mut self.identity_paths {
            expand(p, "identity path")?;
        }
        for s in &mut self.secrets {
            expand(&mut s.path, &format!("path of secret `{}`", s.name))?;
            expand(&mut s.file, &format!("file of secret `{}`", s.name))?;
        }
        for t in &mut self.templates {
            expand(&mut t.path, &format!("path of template `{}`", t.name))?;
        }
        Ok(())
    }

    fn default_path(&self, name: &str) -> String {
        format!("{}/{}", self.secrets_dir, name)
    }

    fn default_template_path(&self, name: &str) -> String {
        format!("{}/templates/{}", self.secrets_dir, name)
    }

    /// Every check that needs no file: names, modes, paths, units, placeholders. All problems
    /// are returned, not just the first, each naming the option it is about.
    fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        // Unexpanded home-manager paths (checked at build time) are only checked for shape.
        let unexpanded =
            |p: &str| self.mode == Mode::Home && (p.contains('$') || p.starts_with('~'));
        let abs = |p: &str, option: &str, errors: &mut Vec<String>| {
            if !unexpanded(p) && !p.starts_with('/') {
                errors.push(format!("{option}: `{p}` is not an absolute path"));
            }
        };
        // The installer's own directories must be spelled exactly: what is mounted and linked
        // is compared with them.
        for (p, option) in [
            (&self.secrets_dir, "age.secretsDir"),
            (&self.secrets_mount_point, "age.secretsMountPoint"),
        ] {
            abs(p, option, &mut errors);
            if let Some(why) = not_normalised(p) {
                errors.push(format!(
                    "{option}: `{p}` is not a normalised path ({why}); write it without `//`, `.`, `..` or a trailing `/`"
                ));
            } else if p == "/" {
                errors.push(format!("{option}: `/` cannot be used"));
            }
        }
        let secrets_dir = normalise(&self.secrets_dir);
        let mount_point = normalise(&self.secrets_mount_point);
        if overlaps(&secrets_dir, &mount_point) {
            errors.push(format!(
                "age.secretsDir `{}` and age.secretsMountPoint `{}` must not contain one another",
                self.secrets_dir, self.secrets_mount_point
            ));
        }
        if self.keep_generations == 0 {
            errors.push(
                "age.ragenix.keepGenerations must be at least 1 (the current generation)".into(),
            );
        }
        for p in &self.identity_paths {
            abs(p, "age.identityPaths", &mut errors);
        }
        for f in [&self.restart_list_file, &self.reload_list_file]
            .into_iter()
            .flatten()
        {
            abs(f, "unit list file", &mut errors);
        }

        let mut names = BTreeSet::new();
        let mut claimed: Vec<(String, String)> = Vec::new();
        for s in &self.secrets {
            let who = format!("age.secrets.\"{}\"", s.name);
            check_name(&s.name, &who, &mut errors);
            if !names.insert(s.name.as_str()) {
                errors.push(format!("{who} is declared twice"));
            }
            if !self.templates.is_empty()
                && (s.name == "templates" || s.name.starts_with("templates/"))
            {
                errors.push(format!(
                    "{who}.name: collides with the templates directory `{}/templates`",
                    self.secrets_dir
                ));
            }
            if s.file.is_empty() {
                errors.push(format!("{who}.file is empty"));
            }
            if let Err(e) = s.structured() {
                errors.push(format!("{who}.{e}"));
            }
            check_common(&s.path, &s.mode, &s.owner, &s.group, &who, &mut errors);
            abs(&s.path, &format!("{who}.path"), &mut errors);
            self.check_custom_path(&s.path, &self.default_path(&s.name), &who, &mut errors);
            check_units(&s.restart_units, &s.reload_units, &who, &mut errors);
            claimed.push((normalise(&s.path), format!("{who}.path")));
        }
        let mut template_names = BTreeSet::new();
        for t in &self.templates {
            let who = format!("age.templates.\"{}\"", t.name);
            check_name(&t.name, &who, &mut errors);
            if !template_names.insert(t.name.as_str()) {
                errors.push(format!("{who} is declared twice"));
            }
            check_common(&t.path, &t.mode, &t.owner, &t.group, &who, &mut errors);
            abs(&t.path, &format!("{who}.path"), &mut errors);
            let default = self.default_template_path(&t.name);
            self.check_custom_path(&t.path, &default, &who, &mut errors);
            check_units(&t.restart_units, &t.reload_units, &who, &mut errors);
            for name in crate::install::template::referenced(&t.content, &names) {
                if let Err(unknown) = name {
                    errors.push(format!(
                        "{who}.content uses placeholder `{PLACEHOLDER_PREFIX}{unknown}` but no secret is named `{unknown}`"
                    ));
                }
            }
            claimed.push((normalise(&t.path), format!("{who}.path")));
        }
        check_prefixes(&names, "age.secrets", &mut errors);
        check_prefixes(&template_names, "age.templates", &mut errors);
        check_claims(&claimed, &mut errors);
        errors
    }

    fn check_custom_path(&self, path: &str, default: &str, who: &str, errors: &mut Vec<String>) {
        if let Some(why) = not_normalised(path).filter(|w| *w != DOUBLE_SLASH) {
            errors.push(format!(
                "{who}.path: `{path}` is not a normalised path ({why})"
            ));
            return;
        }
        if Manifest::is_default(path, default) {
            return;
        }
        let path = normalise(path);
        for (dir, option) in [
            (&self.secrets_mount_point, "age.secretsMountPoint"),
            (&self.secrets_dir, "age.secretsDir"),
        ] {
            let dir = normalise(dir);
            if overlaps(&path, &dir) {
                errors.push(format!(
                    "{who}.path: `{path}` is inside, or contains, {option} `{dir}`, which the installer manages (a custom path must lie outside it; leave `path` unset for the default)"
                ));
            }
        }
    }
}

const DOUBLE_SLASH: &str = "an empty component `//`";

/// Why `p` is not written the one way the kernel would name it, if it is not.
fn not_normalised(p: &str) -> Option<&'static str> {
    if p.contains("//") {
        return Some(DOUBLE_SLASH);
    }
    if p.len() > 1 && p.ends_with('/') {
        return Some("a trailing `/`");
    }
    // Split by hand: `Path::components` silently drops inner `.` components.
    p.split('/').find_map(|c| match c {
        "." => Some("a `.` component"),
        ".." => Some("a `..` component"),
        _ => None,
    })
}

/// `p` with repeated and trailing slashes removed (`.` and `..` are rejected, not resolved).
pub fn normalise(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for part in p.split('/') {
        if part.is_empty() {
            continue;
        }
        out.push('/');
        out.push_str(part);
    }
    if out.is_empty() || !p.starts_with('/') {
        // Relative paths keep their first component unprefixed.
        return if p.starts_with('/') {
            "/".into()
        } else {
            out.trim_start_matches('/').into()
        };
    }
    out
}

/// Whether one of two normalised paths is the other or lies below it.
fn overlaps(a: &str, b: &str) -> bool {
    Path::new(a).starts_with(b) || Path::new(b).starts_with(a)
}

/// A name that is a directory of another name (`x` and `x/y`) cannot be both a file and a
/// directory of the same generation.
fn check_prefixes(names: &BTreeSet<&str>, option: &str, errors: &mut Vec<String>) {
    for name in names {
        let mut prefix = String::new();
        for part in name
            .split('/')
            .collect::<Vec<_>>()
            .iter()
            .rev()
            .skip(1)
            .rev()
        {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if names.contains(prefix.as_str()) {
                errors.push(format!(
                    "{option}.\"{prefix}\" and {option}.\"{name}\": `{prefix}` cannot be both a file and the directory holding `{name}`"
                ));
            }
        }
    }
}

/// Two entries at the same path, or one at a directory of another's path.
fn check_claims(claimed: &[(String, String)], errors: &mut Vec<String>) {
    let mut by_path: BTreeMap<&str, &str> = BTreeMap::new();
    for (path, who) in claimed {
        if let Some(other) = by_path.insert(path, who) {
            errors.push(format!("{other} and {who} both install to `{path}`"));
        }
    }
    for (path, who) in &by_path {
        for dir in Path::new(path).ancestors().skip(1) {
            if let Some(other) = dir.to_str().and_then(|d| by_path.get(d)) {
                errors.push(format!(
                    "{other} `{}` is a directory of {who} `{path}`: one of them cannot be installed",
                    dir.display()
                ));
            }
        }
    }
}

fn check_name(name: &str, who: &str, errors: &mut Vec<String>) {
    // Split by hand: `Path::components` would hide `a/./b` and `a//b`.
    let bad = name.is_empty()
        || name.contains('\0')
        || name
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        errors.push(format!(
            "{who}.name: the name must be a relative path without `.`, `..` or empty components"
        ));
    } else if name.starts_with(RESERVED_PREFIX) {
        errors.push(format!(
            "{who}.name: names starting with `{RESERVED_PREFIX}` are reserved"
        ));
    }
}

fn check_common(
    path: &str,
    mode: &str,
    owner: &str,
    group: &str,
    who: &str,
    errors: &mut Vec<String>,
) {
    if path.is_empty() {
        errors.push(format!("{who}.path is empty"));
    }
    if let Err(e) = parse_mode(mode) {
        errors.push(format!("{who}.mode: {e}"));
    }
    for (what, id) in [("owner", owner), ("group", group)] {
        if id.is_empty() || id.contains(':') || id.contains(char::is_whitespace) {
            errors.push(format!(
                "{who}.{what}: `{id}` is not a user/group name or numeric id"
            ));
        }
    }
}

fn check_units(restart: &[String], reload: &[String], who: &str, errors: &mut Vec<String>) {
    for (option, units) in [("restartUnits", restart), ("reloadUnits", reload)] {
        for unit in units {
            if unit.is_empty() || unit.contains(char::is_whitespace) || unit.contains('/') {
                errors.push(format!(
                    "{who}.{option}: `{unit}` is not a systemd unit name"
                ));
            }
        }
    }
}

/// Parses an octal permission string such as `0400` or `440`.
pub fn parse_mode(mode: &str) -> Result<u32, String> {
    let digits = mode.strip_prefix("0o").unwrap_or(mode);
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return Err(format!(
            "mode `{mode}` is not an octal mode such as \"0400\" (symbolic chmod modes are not supported)"
        ));
    }
    u32::from_str_radix(digits, 8).map_err(|e| format!("mode `{mode}`: {e}"))
}

/// Expands `$VAR`, `${VAR}` and a leading `~` (as `$HOME`); an unset variable is an error.
pub fn expand_vars(s: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String> {
    let get = |name: &str| -> Result<String> {
        match lookup(name) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => bail!("environment variable `{name}` is not set"),
        }
    };
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    if rest == "~" || rest.starts_with("~/") {
        out.push_str(&get("HOME")?);
        rest = &rest[1..];
    }
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        let (name, after) = if let Some(braced) = rest.strip_prefix('{') {
            let end = braced
                .find('}')
                .with_context(|| format!("unterminated `${{` in `{s}`"))?;
            (&braced[..end], &braced[end + 1..])
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        if name.is_empty() {
            bail!("a lone `$` in `{s}`");
        }
        out.push_str(&get(name)?);
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(json: &str) -> Wire {
        Wire::from_json(json).unwrap()
    }

    const BASE: &str = r#"{"version":1,"mode":"system","secretsDir":"/run/agenix",
        "secretsMountPoint":"/run/agenix.d","identityPaths":["/etc/ssh/k"],"secrets":[SECRETS],
        "templates":[TEMPLATES]}"#;

    #[test]
    fn the_platform_defaults_to_linux_and_only_known_ones_parse() {
        let base = BASE.replace("SECRETS", "").replace("TEMPLATES", "");
        assert_eq!(manifest(&base).platform, Platform::Linux);
        let darwin = base.replace(r#""version":1"#, r#""version":1,"platform":"darwin""#);
        assert_eq!(Os::from(manifest(&darwin).platform), Os::MacOs);
        let bsd = base.replace(r#""version":1"#, r#""version":1,"platform":"freebsd""#);
        let err = format!("{:#}", Manifest::from_json(&bsd, Stage::Build).unwrap_err());
        assert!(err.contains("unknown variant `freebsd`"), "{err}");
    }

    fn with(secrets: &str, templates: &str) -> Wire {
        manifest(
            &BASE
                .replace("SECRETS", secrets)
                .replace("TEMPLATES", templates),
        )
    }

    #[test]
    fn octal_modes_parse_and_symbolic_ones_are_rejected() {
        assert_eq!(parse_mode("0400"), Ok(0o400));
        assert_eq!(parse_mode("440"), Ok(0o440));
        assert_eq!(parse_mode("0o640"), Ok(0o640));
        assert!(parse_mode("u=r").unwrap_err().contains("not an octal mode"));
        assert!(parse_mode("0800").is_err());
        assert!(parse_mode("17777").is_err());
    }

    #[test]
    fn defaults_match_agenix() {
        let json = BASE
            .replace(
                "SECRETS",
                r#"{"name":"a","file":"/s/a.age","path":"/run/agenix/a"}"#,
            )
            .replace("TEMPLATES", "");
        let m = Manifest::from_json(&json, Stage::Build).unwrap();
        let s = &m.entries[0];
        assert_eq!(
            (s.mode, s.owner.as_str(), s.group.as_str()),
            (0o400, "0", "0")
        );
        assert!(s.symlink && s.has_default_path());
        assert_eq!(m.keep_generations, 1);
    }

    #[test]
    fn reading_types_secrets_then_templates_with_parsed_modes() {
        let json = BASE
            .replace(
                "SECRETS",
                r#"{"name":"k","file":"/s/k.age","path":"/etc/k","mode":"0o640","format":"json","key":"a/b"}"#,
            )
            .replace(
                "TEMPLATES",
                r#"{"name":"t","content":"x","path":"/run/agenix/templates/t","mode":"440"}"#,
            );
        let m = Manifest::from_json(&json, Stage::Build).unwrap();
        assert_eq!(m.counts(), (1, 1));
        let [k, t] = &m.entries[..] else {
            panic!("{:?}", m.entries)
        };
        assert_eq!(
            (k.mode, k.key(), k.has_default_path()),
            (0o640, "secret:k".into(), false)
        );
        assert!(
            matches!(&k.source, Source::Secret { file, structured: Some((Format::Json, _)) } if file == "/s/k.age")
        );
        assert_eq!((t.mode, t.in_generation()), (0o440, "templates/t".into()));
        assert!(matches!(&t.source, Source::Template { content } if content == "x"));
    }

    #[test]
    fn reading_refuses_an_invalid_manifest_listing_every_problem() {
        let json = BASE
            .replace(
                "SECRETS",
                r#"{"name":"a","file":"/s/a.age","path":"/p","mode":"rw"},{"name":"a","file":"","path":"/q"}"#,
            )
            .replace("TEMPLATES", "");
        for (stage, doing) in [
            (Stage::Build, "checking the manifest"),
            (Stage::Activation, "validating the manifest"),
        ] {
            let err = format!("{:#}", Manifest::from_json(&json, stage).unwrap_err());
            assert_eq!(
                err,
                format!(
                    "{doing}: age.secrets.\"a\".mode: mode `rw` is not an octal mode such as \"0400\" (symbolic chmod modes are not supported)\n  \
                     age.secrets.\"a\" is declared twice\n  age.secrets.\"a\".file is empty"
                )
            );
        }
    }

    #[test]
    fn unknown_fields_and_versions_are_rejected() {
        let e = Manifest::from_json(
            &BASE
                .replace("SECRETS", "")
                .replace("TEMPLATES", "")
                .replace("\"version\":1", "\"version\":2"),
            Stage::Build,
        );
        assert!(format!("{:#}", e.unwrap_err()).contains("version 2 is not supported"));
        let e = Manifest::from_json(
            &BASE
                .replace(
                    "SECRETS",
                    r#"{"name":"a","file":"f","path":"/p","mood":"0400"}"#,
                )
                .replace("TEMPLATES", ""),
            Stage::Build,
        );
        assert!(format!("{:#}", e.unwrap_err()).contains("unknown field `mood`"));
    }

    #[test]
    fn duplicate_names_and_paths_are_each_reported() {
        let m = with(
            r#"{"name":"a","file":"/s/a.age","path":"/etc/x"},{"name":"a","file":"/s/b.age","path":"/etc/x"}"#,
            "",
        );
        let errors = m.validate();
        assert!(
            errors
                .iter()
                .any(|e| e == "age.secrets.\"a\" is declared twice"),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("both install to `/etc/x`")),
            "{errors:?}"
        );
    }

    #[test]
    fn bad_names_modes_owners_and_units_are_reported() {
        let m = with(
            r#"{"name":"a/./b","file":"/s/c.age","path":"/run/agenix/a/./b"},
               {"name":"../x","file":"/s/a.age","path":"/run/agenix/../x","mode":"rw","owner":"a:b","restartUnits":["a b"]},
               {"name":".ragenix-state.json","file":"/s/b.age","path":"rel"}"#,
            "",
        );
        let errors = m.validate().join("\n");
        for needle in [
            "age.secrets.\"../x\".name: the name must be a relative path",
            "age.secrets.\"a/./b\".name: the name must be a relative path",
            "age.secrets.\"../x\".mode: mode `rw` is not an octal mode",
            "age.secrets.\"../x\".owner: `a:b` is not",
            "age.secrets.\"../x\".restartUnits: `a b` is not a systemd unit name",
            "age.secrets.\".ragenix-state.json\".name: names starting with `.ragenix` are reserved",
            "age.secrets.\".ragenix-state.json\".path: `rel` is not an absolute path",
        ] {
            assert!(errors.contains(needle), "missing {needle:?} in:\n{errors}");
        }
    }

    #[test]
    fn templates_must_reference_declared_secrets() {
        let m = with(
            r#"{"name":"key","file":"/s/a.age","path":"/run/agenix/key"}"#,
            r#"{"name":"conf","content":"a=<RAGENIX:PLACEHOLDER:key> b=<RAGENIX:PLACEHOLDER:nope>","path":"/run/agenix/templates/conf"}"#,
        );
        assert_eq!(
            m.validate(),
            vec!["age.templates.\"conf\".content uses placeholder `<RAGENIX:PLACEHOLDER:nope` but no secret is named `nope`"]
        );
    }

    #[test]
    fn custom_paths_may_not_point_into_the_mount_point() {
        let m = with(
            r#"{"name":"a","file":"/s/a.age","path":"/run/agenix.d/5/a"}"#,
            "",
        );
        let errors = m.validate();
        assert!(
            errors[0].starts_with("age.secrets.\"a\".path: `/run/agenix.d/5/a` is inside, or contains, age.secretsMountPoint"),
            "{errors:?}"
        );
    }

    fn errors_of(manifest: &Wire) -> String {
        manifest.validate().join("\n")
    }

    #[test]
    fn secrets_dir_and_mount_point_must_be_written_normalised() {
        for (bad, why) in [
            ("/run//agenix.d", "an empty component `//`"),
            ("/run/agenix.d/", "a trailing `/`"),
            ("/run/./agenix.d", "a `.` component"),
            ("/run/x/../agenix.d", "a `..` component"),
        ] {
            let mut m = with("", "");
            m.secrets_mount_point = bad.into();
            let errors = errors_of(&m);
            assert!(
                errors.contains(&format!(
                    "age.secretsMountPoint: `{bad}` is not a normalised path ({why})"
                )),
                "{errors}"
            );
            let mut m = with("", "");
            m.secrets_dir = bad.replace("agenix.d", "agenix");
            assert!(
                errors_of(&m).starts_with("age.secretsDir: `"),
                "{}",
                errors_of(&m)
            );
        }
        let mut m = with("", "");
        m.secrets_dir = "run/agenix".into();
        assert!(errors_of(&m).contains("age.secretsDir: `run/agenix` is not an absolute path"));
    }

    #[test]
    fn a_name_that_is_the_directory_of_another_name_is_rejected() {
        let m = with(
            r#"{"name":"x","file":"/s/a.age","path":"/run/agenix/x"},
               {"name":"x/y/z","file":"/s/b.age","path":"/run/agenix/x/y/z"}"#,
            "",
        );
        let errors = errors_of(&m);
        assert!(
            errors.contains("age.secrets.\"x\" and age.secrets.\"x/y/z\": `x` cannot be both a file and the directory holding `x/y/z`"),
            "{errors}"
        );
        assert!(
            errors.contains("age.secrets.\"x\".path `/run/agenix/x` is a directory of age.secrets.\"x/y/z\".path"),
            "{errors}"
        );
    }

    #[test]
    fn a_custom_path_inside_secrets_dir_is_rejected_however_spelled() {
        // `b` at `/run/agenix//a` would silently replace `a`.
        for path in ["/run/agenix//a", "/run/agenix/other", "/run", "/run/agenix"] {
            for symlink in [true, false] {
                let m = with(
                    &format!(
                        r#"{{"name":"a","file":"/s/a.age","path":"/run/agenix/a"}},
                           {{"name":"b","file":"/s/b.age","path":"{path}","symlink":{symlink}}}"#
                    ),
                    "",
                );
                let errors = errors_of(&m);
                assert!(
                    errors.contains("age.secrets.\"b\".path: `")
                        && errors.contains("which the installer manages"),
                    "{path} {symlink}: {errors}"
                );
            }
        }
        // Its own default path, spelled with `//`, is its default path.
        let m = with(
            r#"{"name":"a","file":"/s/a.age","path":"/run//agenix/a"}"#,
            "",
        );
        assert!(m.validate().is_empty(), "{:?}", m.validate());
    }

    #[test]
    fn two_entries_at_the_same_normalised_path_are_rejected() {
        let m = with(
            r#"{"name":"a","file":"/s/a.age","path":"/etc/app/key"},
               {"name":"b","file":"/s/b.age","path":"/etc//app/key"}"#,
            "",
        );
        assert_eq!(
            m.validate(),
            vec![
                "age.secrets.\"a\".path and age.secrets.\"b\".path both install to `/etc/app/key`"
            ]
        );
    }

    #[test]
    fn home_paths_expand_variables_braces_and_tilde() {
        let env = |v: &str| match v {
            "XDG_RUNTIME_DIR" => Some("/run/user/1000".to_string()),
            "HOME" => Some("/home/u".to_string()),
            _ => None,
        };
        assert_eq!(
            expand_vars("${XDG_RUNTIME_DIR}/agenix", env).unwrap(),
            "/run/user/1000/agenix"
        );
        assert_eq!(
            expand_vars("$XDG_RUNTIME_DIR/agenix.d", env).unwrap(),
            "/run/user/1000/agenix.d"
        );
        assert_eq!(
            expand_vars("~/.ssh/id_ed25519", env).unwrap(),
            "/home/u/.ssh/id_ed25519"
        );
        let e = expand_vars("$NOPE/x", env).unwrap_err();
        assert_eq!(e.to_string(), "environment variable `NOPE` is not set");
        assert!(expand_vars("${X", env).is_err());
    }

    #[test]
    fn unexpanded_home_paths_pass_the_build_time_check() {
        let m = manifest(
            r#"{"version":1,"mode":"home","secretsDir":"${XDG_RUNTIME_DIR}/agenix",
            "secretsMountPoint":"${XDG_RUNTIME_DIR}/agenix.d","identityPaths":["~/.ssh/id_ed25519"],
            "secrets":[{"name":"a","file":"/s/a.age","path":"${XDG_RUNTIME_DIR}/agenix/a"}]}"#,
        );
        assert!(m.validate().is_empty(), "{:?}", m.validate());
    }
}
