//! The installer's input: the JSON manifest written by `nix/manifest.nix`, its serde types and
//! `validate()`, which rejects everything the installer could not honour before any file is
//! touched. Home-manager manifests carry `$VAR` / `~` paths, expanded here at run time.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The only manifest version this installer reads.
pub const VERSION: u32 = 1;

/// Prefix of the string `age.placeholder.<name>` yields; a template holds
/// `<RAGENIX:PLACEHOLDER:name>` where the secret's plaintext goes.
pub const PLACEHOLDER_PREFIX: &str = "<RAGENIX:PLACEHOLDER:";
pub const PLACEHOLDER_SUFFIX: &str = ">";

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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    pub version: u32,
    pub mode: Mode,
    pub secrets_dir: String,
    pub secrets_mount_point: String,
    pub identity_paths: Vec<String>,
    #[serde(default = "one")]
    pub keep_generations: u32,
    /// Group given to the mount point and generation directories in the chown phase, if it
    /// exists (NixOS's `keys`).
    #[serde(default)]
    pub dir_group: Option<String>,
    /// Directories holding `age-plugin-*` programs, put in front of `PATH`.
    #[serde(default)]
    pub plugin_paths: Vec<String>,
    /// NixOS's activation restart/reload lists; when unset, units go to `systemctl`.
    #[serde(default)]
    pub restart_list_file: Option<String>,
    #[serde(default)]
    pub reload_list_file: Option<String>,
    #[serde(default)]
    pub secrets: Vec<Secret>,
    #[serde(default)]
    pub templates: Vec<Template>,
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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Secret {
    pub name: String,
    pub file: String,
    pub path: String,
    #[serde(default = "default_mode")]
    pub mode: String,
    #[serde(default = "default_id")]
    pub owner: String,
    #[serde(default = "default_id")]
    pub group: String,
    #[serde(default = "yes")]
    pub symlink: bool,
    #[serde(default)]
    pub restart_units: Vec<String>,
    #[serde(default)]
    pub reload_units: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Template {
    pub name: String,
    pub content: String,
    pub path: String,
    #[serde(default = "default_mode")]
    pub mode: String,
    #[serde(default = "default_id")]
    pub owner: String,
    #[serde(default = "default_id")]
    pub group: String,
    #[serde(default = "yes")]
    pub symlink: bool,
    #[serde(default)]
    pub restart_units: Vec<String>,
    #[serde(default)]
    pub reload_units: Vec<String>,
}

impl Manifest {
    pub fn from_json(text: &str) -> Result<Manifest> {
        let manifest: Manifest = serde_json::from_str(text).context("invalid manifest JSON")?;
        if manifest.version != VERSION {
            bail!(
                "manifest version {} is not supported (this installer reads version {VERSION})",
                manifest.version
            );
        }
        Ok(manifest)
    }

    pub fn read(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read manifest {}", path.display()))?;
        Manifest::from_json(&text).with_context(|| format!("in manifest {}", path.display()))
    }

    /// Expands `$VAR`, `${VAR}` and a leading `~` in every path of a home-manager manifest;
    /// system manifests are left alone (their paths are literal).
    pub fn expand(&mut self) -> Result<()> {
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

    pub fn default_path(&self, name: &str) -> String {
        format!("{}/{}", self.secrets_dir, name)
    }

    pub fn default_template_path(&self, name: &str) -> String {
        format!("{}/templates/{}", self.secrets_dir, name)
    }

    /// Every check that needs no file: names, modes, paths, units, placeholders. All problems
    /// are returned, not just the first.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        // Unexpanded home-manager paths (checked at build time) are only checked for shape.
        let unexpanded =
            |p: &str| self.mode == Mode::Home && (p.contains('$') || p.starts_with('~'));
        let abs = |p: &str, what: &str, errors: &mut Vec<String>| {
            if !unexpanded(p) && !p.starts_with('/') {
                errors.push(format!("{what} `{p}` is not an absolute path"));
            }
        };
        abs(&self.secrets_dir, "secretsDir", &mut errors);
        abs(&self.secrets_mount_point, "secretsMountPoint", &mut errors);
        if self.secrets_mount_point.ends_with('/') && self.secrets_mount_point.len() > 1 {
            errors.push(format!(
                "secretsMountPoint `{}` must not end with a slash",
                self.secrets_mount_point
            ));
        }
        if self.secrets_dir.trim_end_matches('/') == self.secrets_mount_point.trim_end_matches('/')
            || Path::new(&self.secrets_dir).starts_with(&self.secrets_mount_point)
        {
            errors.push(format!(
                "secretsDir `{}` must lie outside secretsMountPoint `{}`",
                self.secrets_dir, self.secrets_mount_point
            ));
        }
        if self.keep_generations == 0 {
            errors.push("keepGenerations must be at least 1 (the current generation)".into());
        }
        for p in &self.identity_paths {
            abs(p, "identity path", &mut errors);
        }
        for f in [&self.restart_list_file, &self.reload_list_file]
            .into_iter()
            .flatten()
        {
            abs(f, "unit list file", &mut errors);
        }

        let mut names = BTreeSet::new();
        let mut paths: BTreeMap<String, String> = BTreeMap::new();
        let mut claim_path = |path: &str, who: String, errors: &mut Vec<String>| {
            let key = path.trim_end_matches('/').to_string();
            if let Some(other) = paths.insert(key, who.clone()) {
                errors.push(format!("{who} and {other} both install to `{path}`"));
            }
        };
        for s in &self.secrets {
            let who = format!("secret `{}`", s.name);
            check_name(&s.name, &who, &mut errors);
            if !names.insert(s.name.as_str()) {
                errors.push(format!("{who} is declared twice"));
            }
            if !self.templates.is_empty()
                && (s.name == "templates" || s.name.starts_with("templates/"))
            {
                errors.push(format!(
                    "{who} collides with the templates directory `{}/templates`",
                    self.secrets_dir
                ));
            }
            if s.file.is_empty() {
                errors.push(format!("{who} has an empty `file`"));
            }
            check_common(&s.path, &s.mode, &s.owner, &s.group, &who, &mut errors);
            abs(&s.path, &format!("path of {who}"), &mut errors);
            self.check_custom_path(&s.path, &self.default_path(&s.name), &who, &mut errors);
            check_units(&s.restart_units, &s.reload_units, &who, &mut errors);
            claim_path(&s.path, who, &mut errors);
        }
        let mut template_names = BTreeSet::new();
        for t in &self.templates {
            let who = format!("template `{}`", t.name);
            check_name(&t.name, &who, &mut errors);
            if !template_names.insert(t.name.as_str()) {
                errors.push(format!("{who} is declared twice"));
            }
            check_common(&t.path, &t.mode, &t.owner, &t.group, &who, &mut errors);
            abs(&t.path, &format!("path of {who}"), &mut errors);
            let default = self.default_template_path(&t.name);
            self.check_custom_path(&t.path, &default, &who, &mut errors);
            check_units(&t.restart_units, &t.reload_units, &who, &mut errors);
            for name in crate::install::template::referenced(&t.content, &names) {
                if let Err(unknown) = name {
                    errors.push(format!(
                        "{who} uses placeholder `{PLACEHOLDER_PREFIX}{unknown}` but no secret is named `{unknown}`"
                    ));
                }
            }
            claim_path(&t.path, who, &mut errors);
        }
        errors
    }

    fn check_custom_path(&self, path: &str, default: &str, who: &str, errors: &mut Vec<String>) {
        if path == default {
            return;
        }
        let p = Path::new(path);
        if p.starts_with(&self.secrets_mount_point) {
            errors.push(format!(
                "{who}: path `{path}` lies inside secretsMountPoint `{}`, which the installer manages",
                self.secrets_mount_point
            ));
        }
        if path.trim_end_matches('/') == self.secrets_dir.trim_end_matches('/') {
            errors.push(format!("{who}: path `{path}` is secretsDir itself"));
        }
    }
}

fn check_name(name: &str, who: &str, errors: &mut Vec<String>) {
    let path = Path::new(name);
    let bad = name.is_empty()
        || name.contains('\0')
        || name.starts_with('/')
        || name.ends_with('/')
        || name.contains("//")
        || path
            .components()
            .any(|c| !matches!(c, Component::Normal(_)));
    if bad {
        errors.push(format!(
            "{who}: the name must be a relative path without `.`, `..` or empty components"
        ));
    } else if name.starts_with(RESERVED_PREFIX) {
        errors.push(format!(
            "{who}: names starting with `{RESERVED_PREFIX}` are reserved"
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
        errors.push(format!("{who} has an empty `path`"));
    }
    if let Err(e) = parse_mode(mode) {
        errors.push(format!("{who}: {e}"));
    }
    for (what, id) in [("owner", owner), ("group", group)] {
        if id.is_empty() || id.contains(':') || id.contains(char::is_whitespace) {
            errors.push(format!(
                "{who}: {what} `{id}` is not a user/group name or numeric id"
            ));
        }
    }
}

fn check_units(restart: &[String], reload: &[String], who: &str, errors: &mut Vec<String>) {
    for unit in restart.iter().chain(reload) {
        if unit.is_empty() || unit.contains(char::is_whitespace) || unit.contains('/') {
            errors.push(format!("{who}: `{unit}` is not a systemd unit name"));
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

    fn manifest(json: &str) -> Manifest {
        Manifest::from_json(json).unwrap()
    }

    const BASE: &str = r#"{"version":1,"mode":"system","secretsDir":"/run/agenix",
        "secretsMountPoint":"/run/agenix.d","identityPaths":["/etc/ssh/k"],"secrets":[SECRETS],
        "templates":[TEMPLATES]}"#;

    fn with(secrets: &str, templates: &str) -> Manifest {
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
        let m = with(
            r#"{"name":"a","file":"/s/a.age","path":"/run/agenix/a"}"#,
            "",
        );
        let s = &m.secrets[0];
        assert_eq!(
            (s.mode.as_str(), s.owner.as_str(), s.group.as_str()),
            ("0400", "0", "0")
        );
        assert!(s.symlink);
        assert_eq!(m.keep_generations, 1);
        assert!(m.validate().is_empty(), "{:?}", m.validate());
    }

    #[test]
    fn unknown_fields_and_versions_are_rejected() {
        let e = Manifest::from_json(
            &BASE
                .replace("SECRETS", "")
                .replace("TEMPLATES", "")
                .replace("\"version\":1", "\"version\":2"),
        );
        assert!(format!("{:#}", e.unwrap_err()).contains("version 2 is not supported"));
        let e = Manifest::from_json(
            &BASE
                .replace(
                    "SECRETS",
                    r#"{"name":"a","file":"f","path":"/p","mood":"0400"}"#,
                )
                .replace("TEMPLATES", ""),
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
            errors.iter().any(|e| e == "secret `a` is declared twice"),
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
            r#"{"name":"../x","file":"/s/a.age","path":"/run/agenix/../x","mode":"rw","owner":"a:b","restartUnits":["a b"]},
               {"name":".ragenix-state.json","file":"/s/b.age","path":"rel"}"#,
            "",
        );
        let errors = m.validate().join("\n");
        for needle in [
            "secret `../x`: the name must be a relative path",
            "mode `rw` is not an octal mode",
            "owner `a:b` is not",
            "`a b` is not a systemd unit name",
            "names starting with `.ragenix` are reserved",
            "path of secret `.ragenix-state.json` `rel` is not an absolute path",
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
            vec!["template `conf` uses placeholder `<RAGENIX:PLACEHOLDER:nope` but no secret is named `nope`"]
        );
    }

    #[test]
    fn custom_paths_may_not_point_into_the_mount_point() {
        let m = with(
            r#"{"name":"a","file":"/s/a.age","path":"/run/agenix.d/5/a"}"#,
            "",
        );
        assert!(m.validate()[0].contains("lies inside secretsMountPoint"));
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
