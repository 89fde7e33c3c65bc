//! `--check`: does every `.age` file match what the rules say about it?
//!
//! Reads only age headers (no identity needed) and compares their recipient stanzas and armor
//! with the rules; also finds declared-but-missing and undeclared `.age` files. Rendering for
//! humans and JSON lives here; choosing the exit code is the CLI's job.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use age::armor::ArmoredReader;
use rayon::prelude::*;
use serde::Serialize;

use crate::keys::Identities;
use crate::rules::Generator;
use crate::rules::{escape_for_display, normalize, Recipient, Rules, Secret};
use crate::structured::{self, Format, Key};

/// Directories that hold version-control metadata, never secrets.
const VCS_DIRS: &[&str] = &[".git", ".hg", ".jj", ".svn", ".bzr", "_darcs", ".pijul"];

/// age's own stanza types; every other non-grease stanza was written by a plugin.
const NATIVE_STANZAS: &[&str] = &["X25519", "ssh-ed25519", "ssh-rsa", "scrypt"];

/// Everything `--check` found, grouped by secret. Serialises to the `--json` output.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The rules file that was checked.
    pub rules: PathBuf,
    /// How many rules were checked (orphans not included).
    pub checked: usize,
    /// True when there are no findings.
    pub ok: bool,
    /// Only the secrets (and orphan files) with at least one finding: rules order, then orphans.
    pub secrets: Vec<SecretReport>,
    /// Whether the `keys` that rules declare for structured secrets were looked up.
    pub keys: KeyCheck,
}

/// Looking up declared keys needs the plaintext, so it happens only when identities are given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyCheck {
    /// No rule declares `keys`.
    NoneDeclared,
    /// Every declared key was looked up in its decrypted document.
    Checked,
    /// Keys are declared but no identity was given to decrypt with.
    Skipped { declared: usize },
}

/// The findings for one rule, or for one `.age` file that no rule names.
#[derive(Debug, Clone, Serialize)]
pub struct SecretReport {
    /// The rule's attribute name, or the orphan's path relative to the rules directory.
    pub name: String,
    /// The file, relative to the rules directory.
    pub file: PathBuf,
    #[serde(serialize_with = "findings_with_messages")]
    pub findings: Vec<Finding>,
}

/// One way a secret file and its rule disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Finding {
    /// The rules declare the secret but its file does not exist.
    Missing { has_generator: bool },
    /// An `.age` file under the rules directory that no rule names.
    Orphan,
    /// The file exists but cannot be read.
    Unreadable { error: String },
    /// The file is not an age file, or its header is damaged.
    BadHeader { error: String },
    /// A `publicKeys` entry that is not a usable age or ssh recipient.
    BadRecipient { recipient: String, error: String },
    /// The rule's `generator` cannot be used.
    BadGenerator { error: String },
    /// The file is encrypted to other recipients than the rules list.
    Recipients {
        /// Rules recipients (ssh keys) the file is not encrypted to.
        missing: Vec<String>,
        /// Stanzas in the file that match no rules recipient, described.
        unexpected: Vec<String>,
        /// Recipient kinds without key tags whose counts differ.
        counts: Vec<CountDiff>,
    },
    /// ASCII armor in the file differs from `armor` in the rules.
    Armor { rules: bool, file: bool },
    /// The rule's `format` or `keys` cannot be used.
    BadKeys { error: String },
    /// Keys are declared but the file could not be decrypted with the identities given.
    Undecryptable { error: String },
    /// A declared key is not in the decrypted document (or the document does not parse).
    MissingKey {
        format: String,
        key: String,
        error: String,
    },
}

/// For recipient kinds whose stanzas do not identify the key: how many the rules list and how
/// many stanzas the file has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CountDiff {
    /// `"X25519"` or `"plugin"`.
    pub kind: String,
    pub rules: usize,
    pub file: usize,
}

impl Finding {
    /// Whether re-keying (decrypt, re-encrypt to the rules) would fix this finding.
    pub fn is_stale(&self) -> bool {
        matches!(self, Finding::Recipients { .. } | Finding::Armor { .. })
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Missing { has_generator } => {
                f.write_str("declared in the rules but the file does not exist")?;
                if *has_generator {
                    f.write_str(" (ragenix --generate can create it)")?;
                }
                Ok(())
            }
            Finding::Orphan => f.write_str("no rule names this file"),
            Finding::Unreadable { error } => write!(f, "cannot read the file: {error}"),
            Finding::BadHeader { error } => write!(f, "the age header does not parse: {error}"),
            Finding::BadRecipient { recipient, error } => {
                write!(f, "invalid recipient in the rules: {recipient:?}: {error}")
            }
            Finding::BadGenerator { error } => write!(f, "{error}"),
            Finding::Recipients {
                missing,
                unexpected,
                counts,
            } => {
                f.write_str("recipients differ from the rules")?;
                let mut sep = ": ";
                for key in missing {
                    write!(f, "{sep}not encrypted to {}", shorten_key(key))?;
                    sep = "; ";
                }
                for stanza in unexpected {
                    write!(f, "{sep}encrypted to {stanza} that the rules do not list")?;
                    sep = "; ";
                }
                for c in counts {
                    write!(
                        f,
                        "{sep}{} {} recipient(s) in the rules, {} in the file",
                        c.rules, c.kind, c.file
                    )?;
                    sep = "; ";
                }
                Ok(())
            }
            Finding::Armor { rules, file } => write!(
                f,
                "armor is {} in the rules but the file is {}",
                rules,
                if *file { "armored" } else { "binary" }
            ),
            Finding::BadKeys { error } => write!(f, "{error}"),
            Finding::Undecryptable { error } => {
                write!(f, "cannot decrypt the file to check its keys: {error}")
            }
            Finding::MissingKey { format, key, error } => {
                write!(f, "{format} key `{key}`: {error}")
            }
        }
    }
}

/// Keeps the key type and comment readable and shows the end of the base64, which is where
/// keys of one type differ (the start encodes the type and is the same for all of them).
fn shorten_key(key: &str) -> String {
    let mut parts = key.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(kind), Some(body)) if body.len() > 16 && body.is_ascii() => {
            let mut out = format!("{kind} …{}", &body[body.len() - 12..]);
            for rest in parts {
                out.push(' ');
                out.push_str(rest);
            }
            out
        }
        _ => key.to_owned(),
    }
}

fn findings_with_messages<S: serde::Serializer>(
    findings: &[Finding],
    ser: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct WithMessage<'a> {
        #[serde(flatten)]
        finding: &'a Finding,
        message: String,
    }
    ser.collect_seq(findings.iter().map(|finding| WithMessage {
        finding,
        message: finding.to_string(),
    }))
}

impl Report {
    /// One line per finding, `NAME: message`, grouped by secret, ending with a newline
    /// (empty when there is nothing to report).
    pub fn render_human(&self) -> String {
        let mut out = String::new();
        for s in &self.secrets {
            for f in &s.findings {
                out.push_str(&escape_for_display(&format!("{}: {f}", s.name)));
                out.push('\n');
            }
        }
        out
    }

    /// A one-line summary for the end of the human output.
    pub fn summary(&self) -> String {
        let findings: usize = self.secrets.iter().map(|s| s.findings.len()).sum();
        if findings == 0 {
            format!(
                "{}: {} secret(s) match the rules",
                self.rules.display(),
                self.checked
            )
        } else {
            format!(
                "{}: {findings} finding(s) in {} file(s)",
                self.rules.display(),
                self.secrets.len()
            )
        }
    }
}

/// Checks every rule's file and looks for `.age` files no rule names.
pub fn check(rules: &Rules) -> Report {
    check_with_keys(rules, None)
}

/// [`check`], and with `ids` also decrypts each file whose rule declares `keys` and looks
/// every key up in it.
pub fn check_with_keys(rules: &Rules, ids: Option<&Identities>) -> Report {
    let declared: usize = rules
        .secrets
        .iter()
        .filter_map(|s| declared_keys(s).ok().flatten())
        .map(|(_, keys)| keys.len())
        .sum();
    let mut secrets: Vec<SecretReport> = rules
        .secrets
        .par_iter()
        .map(|secret| {
            let mut findings = check_secret(rules, secret);
            if let Some(ids) = ids {
                findings.extend(check_keys(rules, secret, ids, &findings));
            }
            SecretReport {
                name: secret.name.clone(),
                file: secret.path.clone(),
                findings,
            }
        })
        .filter(|s| !s.findings.is_empty())
        .collect();
    for file in orphans(rules) {
        secrets.push(SecretReport {
            name: file.display().to_string(),
            file,
            findings: vec![Finding::Orphan],
        });
    }
    Report {
        rules: rules.file.clone(),
        checked: rules.secrets.len(),
        ok: secrets.is_empty(),
        secrets,
        keys: match (declared, ids) {
            (0, _) => KeyCheck::NoneDeclared,
            (_, Some(_)) => KeyCheck::Checked,
            (n, None) => KeyCheck::Skipped { declared: n },
        },
    }
}

/// A structured secret's rule: `format` (default: from the file name, as `ragenix -d --key`
/// guesses it) and `keys`, the paths that must exist in the document. `None` without `keys`.
pub fn declared_keys(secret: &Secret) -> Result<Option<(Format, Vec<Key>)>, String> {
    let format = match secret.extra.get("format") {
        None => None,
        Some(serde_json::Value::String(f)) => Some(f.parse::<Format>()?),
        Some(_) => return Err("format must be a string".into()),
    };
    let Some(keys) = secret.extra.get("keys") else {
        return Ok(None);
    };
    let format = match format {
        Some(f) => f,
        None => Format::from_file_name(&secret.path.to_string_lossy()).ok_or_else(|| {
            "keys are declared but the format cannot be told from the file name; set format = \"json\" (or yaml, dotenv, ini)".to_string()
        })?,
    };
    let serde_json::Value::Array(list) = keys else {
        return Err("keys must be a list of strings".into());
    };
    let mut parsed = Vec::with_capacity(list.len());
    for k in list {
        let serde_json::Value::String(k) = k else {
            return Err("keys must be a list of strings".into());
        };
        let key: Key = k.parse()?;
        key.check_for(format)?;
        parsed.push(key);
    }
    Ok(Some((format, parsed)))
}

/// Decrypts `secret`'s file and looks up each declared key; nothing when it declares none or
/// its file already has a finding that stops reading it.
fn check_keys(
    rules: &Rules,
    secret: &Secret,
    ids: &Identities,
    so_far: &[Finding],
) -> Vec<Finding> {
    let unreadable = so_far.iter().any(|f| {
        matches!(
            f,
            Finding::Missing { .. } | Finding::Unreadable { .. } | Finding::BadHeader { .. }
        )
    });
    let Ok(Some((format, keys))) = declared_keys(secret) else {
        return Vec::new();
    };
    if unreadable || keys.is_empty() {
        return Vec::new();
    }
    let mut document = zeroize::Zeroizing::new(Vec::new());
    let decrypted = File::open(rules.secret_file(secret))
        .map_err(anyhow::Error::from)
        .and_then(|mut f| crate::age_io::decrypt(ids, &mut f, &mut *document));
    if let Err(e) = decrypted {
        return vec![Finding::Undecryptable {
            error: format!("{e:#}"),
        }];
    }
    keys.iter()
        .filter_map(|key| {
            structured::extract(format, &document, key)
                .err()
                .map(|e| Finding::MissingKey {
                    format: format.to_string(),
                    key: key.to_string(),
                    error: e.to_string(),
                })
        })
        .collect()
}

/// Secrets whose file exists and is encrypted to other recipients or with other armor than the
/// rules say: what `-r --stale` re-keys. Files that are missing or unreadable are not stale.
pub fn stale(rules: &Rules) -> Vec<&Secret> {
    rules
        .secrets
        .par_iter()
        .filter(|secret| check_secret(rules, secret).iter().any(Finding::is_stale))
        .collect()
}

/// All findings for one rule (empty when its file matches).
pub fn check_secret(rules: &Rules, secret: &Secret) -> Vec<Finding> {
    let mut findings = Vec::new();
    if let Err(error) = declared_keys(secret) {
        findings.push(Finding::BadKeys { error });
    }
    if let Some(spec) = secret.extra.get("generator") {
        if let Err(e) = Generator::from_json(&secret.name, spec) {
            findings.push(Finding::BadGenerator {
                error: e.to_string(),
            });
        }
    }
    let mut expected = Vec::with_capacity(secret.public_keys.len());
    for key in &secret.public_keys {
        match Expected::parse(key) {
            Ok(e) => expected.push(e),
            Err(error) => findings.push(Finding::BadRecipient {
                recipient: key.clone(),
                error,
            }),
        }
    }
    let file = rules.secret_file(secret);
    let header = match read_header(&file) {
        Ok(h) => h,
        Err(HeaderError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {
            findings.push(Finding::Missing {
                has_generator: secret.extra.contains_key("generator"),
            });
            return findings;
        }
        Err(HeaderError::Io(e)) => {
            findings.push(Finding::Unreadable {
                error: e.to_string(),
            });
            return findings;
        }
        Err(HeaderError::Invalid(error)) => {
            findings.push(Finding::BadHeader { error });
            return findings;
        }
    };
    // With an unusable rules key we cannot tell which stanza was meant for it; the
    // BadRecipient finding already says what to fix.
    if findings
        .iter()
        .all(|f| !matches!(f, Finding::BadRecipient { .. }))
    {
        if let Some(diff) = compare_recipients(&expected, &header.stanzas) {
            findings.push(diff);
        }
    }
    if header.armored != secret.armor {
        findings.push(Finding::Armor {
            rules: secret.armor,
            file: header.armored,
        });
    }
    findings
}

/// `.age` files under the rules directory that no rule names, relative and sorted.
fn orphans(rules: &Rules) -> Vec<PathBuf> {
    let declared: BTreeSet<PathBuf> = rules.secrets.iter().map(|s| s.path.clone()).collect();
    let mut found: Vec<PathBuf> = walkdir::WalkDir::new(&rules.dir)
        .into_iter()
        .filter_entry(|e| !(e.file_type().is_dir() && VCS_DIRS.iter().any(|d| e.file_name() == *d)))
        // An unreadable subdirectory cannot hold a file we could compare anyway.
        .filter_map(Result::ok)
        .filter(|e| !e.file_type().is_dir())
        .filter(|e| e.path().extension().is_some_and(|x| x == "age"))
        .filter_map(|e| e.path().strip_prefix(&rules.dir).ok().map(normalize))
        .filter(|rel| !declared.contains(rel))
        .collect();
    found.sort();
    found
}

/// What the rules expect to find in the header for one `publicKeys` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expected {
    /// ssh stanzas name their key by tag, so they can be matched exactly.
    Ssh {
        stanza: &'static str,
        tag: String,
        key: String,
    },
    X25519,
    Plugin,
}

impl Expected {
    fn parse(key: &str) -> Result<Expected, String> {
        Ok(match Recipient::parse(key)? {
            Recipient::Ssh { stanza, tag, .. } => Expected::Ssh {
                stanza,
                tag,
                key: key.to_owned(),
            },
            Recipient::X25519(_) => Expected::X25519,
            Recipient::Plugin(_) => Expected::Plugin,
        })
    }
}

/// Plugins pick their own stanza types (age-plugin-yubikey writes `piv-p256`, not `yubikey`),
/// so plugin recipients are matched to non-native stanzas by count alone.
fn compare_recipients(expected: &[Expected], stanzas: &[Stanza]) -> Option<Finding> {
    let mut want_ssh: BTreeMap<(&str, &str), &str> = BTreeMap::new();
    let (mut want_x25519, mut want_plugin) = (0, 0);
    for e in expected {
        match e {
            Expected::Ssh { stanza, tag, key } => {
                want_ssh.insert((stanza, tag), key);
            }
            Expected::X25519 => want_x25519 += 1,
            Expected::Plugin => want_plugin += 1,
        }
    }
    let mut have_ssh: BTreeSet<(&str, &str)> = BTreeSet::new();
    let (mut have_x25519, mut have_plugin) = (0, 0);
    let mut unexpected = Vec::new();
    for s in stanzas {
        match s.tag.as_str() {
            "ssh-ed25519" | "ssh-rsa" => {
                let tag = s.args.first().map(String::as_str).unwrap_or("");
                have_ssh.insert((s.tag.as_str(), tag));
            }
            "X25519" => have_x25519 += 1,
            "scrypt" => unexpected.push("a passphrase (scrypt)".to_owned()),
            // Random stanzas the age crate adds to keep parsers honest.
            t if t.ends_with("-grease") => {}
            t if NATIVE_STANZAS.contains(&t) => {}
            _ => have_plugin += 1,
        }
    }
    let missing: Vec<String> = want_ssh
        .iter()
        .filter(|(k, _)| !have_ssh.contains(*k))
        .map(|(_, key)| (*key).to_owned())
        .collect();
    unexpected.extend(
        have_ssh
            .iter()
            .filter(|k| !want_ssh.contains_key(*k))
            .map(|(stanza, tag)| format!("an {stanza} key with tag {tag}")),
    );
    let mut counts = Vec::new();
    for (kind, rules, file) in [
        ("X25519", want_x25519, have_x25519),
        ("plugin", want_plugin, have_plugin),
    ] {
        if rules != file {
            counts.push(CountDiff {
                kind: kind.to_owned(),
                rules,
                file,
            });
        }
    }
    if missing.is_empty() && unexpected.is_empty() && counts.is_empty() {
        None
    } else {
        Some(Finding::Recipients {
            missing,
            unexpected,
            counts,
        })
    }
}

/// A recipient stanza's type and arguments (the body is of no interest without an identity).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stanza {
    tag: String,
    args: Vec<String>,
}

#[derive(Debug)]
struct Header {
    armored: bool,
    stanzas: Vec<Stanza>,
}

#[derive(Debug)]
enum HeaderError {
    Io(io::Error),
    Invalid(String),
}

/// Reads an age file's header through the age crate: `Decryptor` decides whether it is valid,
/// then `age_core`'s stanza parser lists the recipients.
fn read_header(path: &Path) -> Result<Header, HeaderError> {
    let open = || -> Result<ArmoredReader<BufReader<File>>, HeaderError> {
        Ok(ArmoredReader::new(
            File::open(path).map_err(HeaderError::Io)?,
        ))
    };
    if let Err(e) = age::Decryptor::new_buffered(open()?) {
        return Err(match e {
            age::DecryptError::Io(e) if e.kind() != io::ErrorKind::UnexpectedEof => {
                if e.kind() == io::ErrorKind::InvalidData {
                    HeaderError::Invalid(e.to_string())
                } else {
                    HeaderError::Io(e)
                }
            }
            other => HeaderError::Invalid(other.to_string()),
        });
    }

    let mut reader = open()?;
    let mut bytes = Vec::new();
    loop {
        let start = bytes.len();
        let n = reader
            .read_until(b'\n', &mut bytes)
            .map_err(|e| HeaderError::Invalid(e.to_string()))?;
        if n == 0 || bytes[start..].starts_with(b"---") {
            break;
        }
    }

    // A binary file's raw bytes are its header; armor changes them.
    let mut raw = Vec::with_capacity(bytes.len());
    File::open(path)
        .map_err(HeaderError::Io)?
        .take(bytes.len() as u64)
        .read_to_end(&mut raw)
        .map_err(HeaderError::Io)?;
    let armored = raw != bytes;

    let invalid = || HeaderError::Invalid("malformed recipient stanza".into());
    let first_newline = bytes.iter().position(|&b| b == b'\n').ok_or_else(invalid)?;
    let mut rest = &bytes[first_newline + 1..];
    let mut stanzas = Vec::new();
    while !rest.starts_with(b"---") {
        let (tail, stanza) =
            age_core::format::read::legacy_age_stanza(rest).map_err(|_| invalid())?;
        stanzas.push(Stanza {
            tag: stanza.tag.to_owned(),
            args: stanza.args.iter().map(|a| (*a).to_owned()).collect(),
        });
        rest = tail;
    }
    Ok(Header { armored, stanzas })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::Write;
    use std::str::FromStr;

    /// The tag `--check` expects for an ssh key, from the one classifier.
    fn ssh_tag(key: &str) -> String {
        match Recipient::parse(key) {
            Ok(Recipient::Ssh { tag, .. }) => tag,
            _ => panic!("{key} is not an ssh recipient"),
        }
    }

    const SSH_ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJO1EooC9qN60aRmgQ3QwbS86222xNOXqF2bW5L6Td4W root@default";

    struct Tree {
        dir: tempfile::TempDir,
        x1: age::x25519::Identity,
        x2: age::x25519::Identity,
        ssh: String,
    }

    fn ssh_public() -> String {
        let key = ssh_key::PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519)
            .unwrap();
        key.public_key().to_openssh().unwrap()
    }

    impl Tree {
        fn new() -> Tree {
            Tree {
                dir: tempfile::tempdir().unwrap(),
                x1: age::x25519::Identity::generate(),
                x2: age::x25519::Identity::generate(),
                ssh: ssh_public(),
            }
        }

        fn x(&self, n: u8) -> String {
            let id = if n == 1 { &self.x1 } else { &self.x2 };
            id.to_public().to_string()
        }

        /// Encrypts `plaintext` to `keys` into `name` under the tree.
        fn write(&self, name: &str, keys: &[&str], armor: bool) {
            let recipients: Vec<Box<dyn age::Recipient + Send>> = keys
                .iter()
                .map(|k| -> Box<dyn age::Recipient + Send> {
                    if k.starts_with("ssh-") {
                        Box::new(age::ssh::Recipient::from_str(k).unwrap())
                    } else {
                        Box::new(age::x25519::Recipient::from_str(k).unwrap())
                    }
                })
                .collect();
            let enc =
                age::Encryptor::with_recipients(recipients.iter().map(|r| &**r as _)).unwrap();
            let path = self.dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let file = File::create(path).unwrap();
            let format = if armor {
                age::armor::Format::AsciiArmor
            } else {
                age::armor::Format::Binary
            };
            let out = age::armor::ArmoredWriter::wrap_output(file, format).unwrap();
            let mut w = enc.wrap_output(out).unwrap();
            w.write_all(b"hunter2").unwrap();
            w.finish().unwrap().finish().unwrap();
        }

        fn rules(&self, json: serde_json::Value) -> Rules {
            Rules::from_json(&self.dir.path().join("secrets.nix"), &json).unwrap()
        }
    }

    fn kinds(report: &Report) -> Vec<(String, Finding)> {
        report
            .secrets
            .iter()
            .flat_map(|s| s.findings.iter().map(|f| (s.name.clone(), f.clone())))
            .collect()
    }

    #[test]
    fn a_tree_that_matches_its_rules_has_no_findings() {
        let t = Tree::new();
        t.write("a.age", &[&t.x(1), &t.ssh], false);
        t.write("sub/b.age", &[&t.ssh, &t.x(2)], true);
        let rules = t.rules(json!({
            "a.age": {"publicKeys": [t.x(1), t.ssh]},
            "./sub/b.age": {"publicKeys": [t.x(2), t.ssh], "armor": true},
        }));
        let report = check(&rules);
        assert!(report.ok, "{}", report.render_human());
        assert_eq!(report.checked, 2);
        assert_eq!(report.render_human(), "");
        assert!(stale(&rules).is_empty());
    }

    #[test]
    fn a_declared_secret_without_a_file_is_missing() {
        let t = Tree::new();
        let rules = t.rules(json!({
            "gone.age": {"publicKeys": [t.x(1)]},
            "gen.age": {"publicKeys": [t.x(1)], "generator": "hex:16"},
        }));
        let report = check(&rules);
        assert_eq!(
            kinds(&report),
            [
                (
                    "gen.age".into(),
                    Finding::Missing {
                        has_generator: true
                    }
                ),
                (
                    "gone.age".into(),
                    Finding::Missing {
                        has_generator: false
                    }
                ),
            ]
        );
        assert!(!report.ok);
        assert!(stale(&rules).is_empty(), "a missing file is not stale");
    }

    #[test]
    fn an_age_file_no_rule_names_is_an_orphan_and_vcs_dirs_are_skipped() {
        let t = Tree::new();
        t.write("a.age", &[&t.x(1)], false);
        t.write("old/orphan.age", &[&t.x(1)], false);
        t.write(".git/objects/x.age", &[&t.x(1)], false);
        t.write(".jj/y.age", &[&t.x(1)], false);
        std::fs::write(t.dir.path().join("notes.txt"), "not a secret").unwrap();
        let rules = t.rules(json!({"./a.age": {"publicKeys": [t.x(1)]}}));
        let report = check(&rules);
        assert_eq!(kinds(&report), [("old/orphan.age".into(), Finding::Orphan)]);
        assert_eq!(
            report.render_human(),
            "old/orphan.age: no rule names this file\n"
        );
    }

    #[test]
    fn a_file_that_is_not_age_has_a_bad_header() {
        let t = Tree::new();
        std::fs::write(t.dir.path().join("junk.age"), "hunter2 in the clear\n").unwrap();
        std::fs::write(t.dir.path().join("empty.age"), "").unwrap();
        t.write("cut.age", &[&t.x(1)], false);
        let cut = t.dir.path().join("cut.age");
        let bytes = std::fs::read(&cut).unwrap();
        std::fs::write(&cut, &bytes[..40]).unwrap();
        let rules = t.rules(json!({
            "junk.age": {"publicKeys": [t.x(1)]},
            "empty.age": {"publicKeys": [t.x(1)]},
            "cut.age": {"publicKeys": [t.x(1)]},
        }));
        let report = check(&rules);
        let found = kinds(&report);
        assert_eq!(found.len(), 3, "{found:?}");
        for (name, f) in found {
            assert!(matches!(f, Finding::BadHeader { .. }), "{name}: {f:?}");
        }
        assert!(stale(&rules).is_empty());
    }

    #[test]
    fn an_ssh_key_added_to_the_rules_is_reported_by_name() {
        let t = Tree::new();
        t.write("a.age", &[&t.x(1)], false);
        let rules = t.rules(json!({"a.age": {"publicKeys": [t.x(1), SSH_ED]}}));
        let report = check(&rules);
        assert_eq!(
            kinds(&report),
            [(
                "a.age".into(),
                Finding::Recipients {
                    missing: vec![SSH_ED.into()],
                    unexpected: vec![],
                    counts: vec![],
                }
            )]
        );
        assert!(
            report
                .render_human()
                .contains("not encrypted to ssh-ed25519 …qF2bW5L6Td4W root@default"),
            "{}",
            report.render_human()
        );
        assert_eq!(stale(&rules).len(), 1);
    }

    #[test]
    fn an_ssh_key_removed_from_the_rules_is_an_unexpected_stanza_with_its_tag() {
        let t = Tree::new();
        t.write("a.age", &[&t.x(1), SSH_ED], false);
        let rules = t.rules(json!({"a.age": {"publicKeys": [t.x(1)]}}));
        let tag = ssh_tag(SSH_ED);
        let report = check(&rules);
        assert_eq!(
            kinds(&report),
            [(
                "a.age".into(),
                Finding::Recipients {
                    missing: vec![],
                    unexpected: vec![format!("an ssh-ed25519 key with tag {tag}")],
                    counts: vec![],
                }
            )]
        );
    }

    #[test]
    fn swapping_one_ssh_key_for_another_is_caught_by_tags() {
        let t = Tree::new();
        t.write("a.age", &[SSH_ED], false);
        let rules = t.rules(json!({"a.age": {"publicKeys": [t.ssh]}}));
        let Finding::Recipients {
            missing,
            unexpected,
            counts,
        } = &check_secret(&rules, &rules.secrets[0])[0]
        else {
            panic!("expected a recipients finding");
        };
        assert_eq!(missing, std::slice::from_ref(&t.ssh));
        assert_eq!(unexpected.len(), 1);
        assert!(counts.is_empty());
    }

    #[test]
    fn x25519_recipients_are_compared_by_count() {
        let t = Tree::new();
        t.write("a.age", &[&t.x(1)], false);
        t.write("b.age", &[&t.x(1)], false);
        let rules = t.rules(json!({
            "a.age": {"publicKeys": [t.x(1), t.x(2)]},
            // Same count, other key: without a tag this cannot be told apart.
            "b.age": {"publicKeys": [t.x(2)]},
        }));
        let report = check(&rules);
        assert_eq!(
            kinds(&report),
            [(
                "a.age".into(),
                Finding::Recipients {
                    missing: vec![],
                    unexpected: vec![],
                    counts: vec![CountDiff {
                        kind: "X25519".into(),
                        rules: 2,
                        file: 1
                    }],
                }
            )]
        );
        assert_eq!(
            stale(&rules).iter().map(|s| &s.name).collect::<Vec<_>>(),
            ["a.age"]
        );
    }

    #[test]
    fn plugin_recipients_are_counted_against_non_native_stanzas() {
        // A real yubikey recipient string; no plugin binary is needed to check headers.
        let yubikey = "age1yubikey1qwt50d05nh5vutpdzmlg5wn80xq5negm4uj9ghv0snvdd3yysf5yw3rhl3t";
        assert_eq!(Expected::parse(yubikey), Ok(Expected::Plugin));
        let stanza = |tag: &str| Stanza {
            tag: tag.into(),
            args: vec![],
        };
        let want = [Expected::Plugin, Expected::X25519];
        assert_eq!(
            compare_recipients(
                &want,
                &[stanza("piv-p256"), stanza("X25519"), stanza("x-grease")]
            ),
            None
        );
        assert_eq!(
            compare_recipients(&want, &[stanza("X25519")]),
            Some(Finding::Recipients {
                missing: vec![],
                unexpected: vec![],
                counts: vec![CountDiff {
                    kind: "plugin".into(),
                    rules: 1,
                    file: 0
                }],
            })
        );
    }

    #[test]
    fn a_passphrase_encrypted_file_is_reported_as_unexpected() {
        let t = Tree::new();
        let enc =
            age::Encryptor::with_user_passphrase(age::secrecy::SecretString::from("pw".to_owned()));
        let mut w = enc
            .wrap_output(File::create(t.dir.path().join("p.age")).unwrap())
            .unwrap();
        w.write_all(b"x").unwrap();
        w.finish().unwrap();
        let rules = t.rules(json!({"p.age": {"publicKeys": []}}));
        let found = check_secret(&rules, &rules.secrets[0]);
        assert_eq!(
            found,
            [Finding::Recipients {
                missing: vec![],
                unexpected: vec!["a passphrase (scrypt)".into()],
                counts: vec![],
            }]
        );
    }

    #[test]
    fn armor_that_differs_from_the_rules_is_reported_both_ways() {
        let t = Tree::new();
        t.write("armored.age", &[&t.x(1)], true);
        t.write("binary.age", &[&t.x(1)], false);
        let rules = t.rules(json!({
            "armored.age": {"publicKeys": [t.x(1)]},
            "binary.age": {"publicKeys": [t.x(1)], "armor": true},
        }));
        let report = check(&rules);
        assert_eq!(
            kinds(&report),
            [
                (
                    "armored.age".into(),
                    Finding::Armor {
                        rules: false,
                        file: true
                    }
                ),
                (
                    "binary.age".into(),
                    Finding::Armor {
                        rules: true,
                        file: false
                    }
                ),
            ]
        );
        assert_eq!(stale(&rules).len(), 2);
    }

    #[test]
    fn an_invalid_rules_key_is_named_and_not_called_stale() {
        let t = Tree::new();
        t.write("a.age", &[&t.x(1)], false);
        let rules = t.rules(
            json!({"a.age": {"publicKeys": [t.x(1), "age1notakey", "ecdsa-sha2-nistp256 AAAA"]}}),
        );
        let found = check_secret(&rules, &rules.secrets[0]);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            matches!(&found[0], Finding::BadRecipient { recipient, .. } if recipient == "age1notakey")
        );
        assert!(
            matches!(&found[1], Finding::BadRecipient { recipient, .. } if recipient.starts_with("ecdsa"))
        );
        assert!(stale(&rules).is_empty());
    }

    #[test]
    fn a_bad_generator_is_a_finding_naming_the_secret() {
        let t = Tree::new();
        t.write("a.age", &[&t.x(1)], false);
        let rules = t.rules(json!({"a.age": {"publicKeys": [t.x(1)], "generator": "hex:lots"}}));
        let found = check_secret(&rules, &rules.secrets[0]);
        let [Finding::BadGenerator { error }] = found.as_slice() else {
            panic!("{found:?}");
        };
        assert!(
            error.contains("a.age") && error.contains("hex:lots"),
            "{error}"
        );
    }

    #[test]
    fn json_output_carries_kind_fields_and_message() {
        let t = Tree::new();
        t.write("a.age", &[&t.x(1)], true);
        let rules =
            t.rules(json!({"a.age": {"publicKeys": [t.x(1)]}, "b.age": {"publicKeys": []}}));
        let value = serde_json::to_value(check(&rules)).unwrap();
        assert_eq!(value["ok"], json!(false));
        assert_eq!(value["checked"], json!(2));
        assert_eq!(
            value["secrets"][0]["findings"][0],
            json!({"kind": "armor", "rules": false, "file": true,
                   "message": "armor is false in the rules but the file is armored"})
        );
        assert_eq!(value["secrets"][1]["name"], json!("b.age"));
        assert_eq!(value["secrets"][1]["findings"][0]["kind"], json!("missing"));
    }

    #[test]
    fn ssh_tags_match_what_age_writes() {
        // Encrypt to a known key and read the tag back out of the real header.
        let t = Tree::new();
        t.write("a.age", &[SSH_ED], false);
        let header = read_header(&t.dir.path().join("a.age")).unwrap();
        let ssh: Vec<&Stanza> = header
            .stanzas
            .iter()
            .filter(|s| s.tag == "ssh-ed25519")
            .collect();
        assert_eq!(ssh.len(), 1);
        let tag = ssh_tag(SSH_ED);
        assert_eq!(ssh[0].args[0], tag);
        assert!(!header.armored);
    }

    #[test]
    fn a_directory_where_a_secret_should_be_is_unreadable_not_an_orphan() {
        let t = Tree::new();
        std::fs::create_dir(t.dir.path().join("d.age")).unwrap();
        let rules = t.rules(json!({"d.age": {"publicKeys": [t.x(1)]}}));
        let report = check(&rules);
        let found = kinds(&report);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            matches!(&found[0], (n, Finding::Unreadable { .. }) if n == "d.age"),
            "{found:?}"
        );
    }

    #[test]
    fn stale_is_what_a_rekey_would_fix_and_nothing_else() {
        let t = Tree::new();
        t.write("ok.age", &[&t.x(1)], false);
        t.write("armor.age", &[&t.x(1)], false);
        t.write("keys.age", &[&t.x(1)], false);
        std::fs::write(t.dir.path().join("junk.age"), "junk").unwrap();
        let rules = t.rules(json!({
            "ok.age": {"publicKeys": [t.x(1)]},
            "armor.age": {"publicKeys": [t.x(1)], "armor": true},
            "keys.age": {"publicKeys": [t.x(1), t.ssh]},
            "junk.age": {"publicKeys": [t.x(1)]},
            "missing.age": {"publicKeys": [t.x(1)]},
        }));
        let stale: Vec<&str> = stale(&rules).iter().map(|s| s.name.as_str()).collect();
        assert_eq!(stale, ["armor.age", "keys.age"]);
    }

    #[test]
    fn long_keys_are_shortened_to_their_distinctive_end() {
        assert_eq!(
            shorten_key("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQC7xyz0123456789ab me@host"),
            "ssh-rsa …0123456789ab me@host"
        );
        assert_eq!(shorten_key("ssh-ed25519 short c"), "ssh-ed25519 short c");
        assert_eq!(shorten_key("garbage"), "garbage");
    }
}
