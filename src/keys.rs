//! Keys: turning `publicKeys` strings into age recipients and `-i` files into age identities.
//!
//! Owns the passphrase policy for encrypted ssh keys (asked at most once per run, only when a
//! file actually has a stanza for that key) and the default identity paths. Does not read or
//! write secrets; see `age_io` for that.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use age::secrecy::{ExposeSecret, SecretString};
use age::{plugin, ssh, Callbacks, DecryptError, IdentityFile};
use age_core::format::{FileKey, Stanza};
use anyhow::{anyhow, bail, Context, Result};
use base64::prelude::{Engine, BASE64_STANDARD_NO_PAD};

use crate::error::UserError;
use crate::rules::{escape_for_display, Recipient};

/// A recipient we can encrypt to, shareable across rekey threads.
pub type BoxRecipient = Box<dyn age::Recipient + Send + Sync>;
/// An identity we can decrypt with, shareable across rekey threads.
pub type BoxIdentity = Box<dyn age::Identity + Send + Sync>;

/// Program that prints a passphrase on stdout, like `SSH_ASKPASS`; used instead of the tty
/// prompt when set (GUI front-ends, scripts, tests).
pub const ASKPASS_ENV: &str = "RAGENIX_ASKPASS";

/// Asks the user things: the passphrase of an encrypted ssh key, and what age plugins (a
/// yubikey's PIN or touch) want to know. The terminal implementation is in
/// [`crate::prompt`]; the plugin defaults are for where nobody can be asked (messages to
/// stderr, no answers).
pub trait Prompt: Send + Sync {
    /// `Ok(None)` means the user declined; `Err` means we could not ask at all.
    fn passphrase(&self, key_file: &str) -> Result<Option<SecretString>>;

    /// A message from an age plugin.
    fn plugin_message(&self, message: &str) {
        eprintln!("{message}");
    }

    /// A plugin's yes/no question; `None`: nobody to ask.
    fn plugin_confirm(&self, _message: &str, _yes: &str, _no: Option<&str>) -> Option<bool> {
        None
    }

    /// A plugin's request for a value that is not secret; `None`: nobody to ask.
    fn plugin_public_string(&self, _description: &str) -> Option<String> {
        None
    }

    /// A plugin's request for a secret such as a PIN; `None`: nobody to ask.
    fn plugin_passphrase(&self, _description: &str) -> Option<SecretString> {
        None
    }
}

/// Where nobody can be asked anything (the installer at boot): no passphrase, no plugin
/// answers.
pub struct Unattended;

impl Prompt for Unattended {
    fn passphrase(&self, _key_file: &str) -> Result<Option<SecretString>> {
        Ok(None)
    }
}

/// age's plugin callbacks, answered by a [`Prompt`].
#[derive(Clone)]
pub struct PromptCallbacks(pub Arc<dyn Prompt>);

impl Callbacks for PromptCallbacks {
    fn display_message(&self, message: &str) {
        self.0.plugin_message(message);
    }
    fn confirm(&self, message: &str, yes: &str, no: Option<&str>) -> Option<bool> {
        self.0.plugin_confirm(message, yes, no)
    }
    fn request_public_string(&self, description: &str) -> Option<String> {
        self.0.plugin_public_string(description)
    }
    fn request_passphrase(&self, description: &str) -> Option<SecretString> {
        self.0.plugin_passphrase(description)
    }
}

/// Parses the `publicKeys` of secret `name`. An empty list is refused, because an age file
/// without recipients cannot exist.
pub fn recipients(name: &str, keys: &[String]) -> Result<Vec<BoxRecipient>> {
    if keys.is_empty() {
        return Err(UserError::with_hint(
            format!("secret \"{name}\" has no publicKeys: nobody could decrypt it"),
            "add at least one public key to the rule in the rules file",
        )
        .into());
    }
    let mut out: Vec<BoxRecipient> = Vec::with_capacity(keys.len());
    let mut plugins: BTreeMap<String, Vec<plugin::Recipient>> = BTreeMap::new();
    for key in keys {
        match Recipient::parse(key) {
            Ok(Recipient::X25519(r)) => out.push(Box::new(r)),
            Ok(Recipient::Ssh { recipient, .. }) => out.push(Box::new(recipient)),
            Ok(Recipient::Plugin(r)) => plugins.entry(r.plugin().to_owned()).or_default().push(r),
            // The key is the rules author's string: escaped, so it stays on this one line.
            Err(why) => bail!(escape_for_display(&format!(
                "secret \"{name}\": invalid recipient \"{key}\": {why}"
            ))),
        }
    }
    for (plugin_name, list) in plugins {
        // Only the command line encrypts, so plugins may ask at the terminal.
        let callbacks = PromptCallbacks(Arc::new(crate::prompt::TerminalPrompt));
        let p = plugin::RecipientPluginV1::new(&plugin_name, &list, &[], callbacks)
            .map_err(|_| {
                UserError::with_hint(
                    format!("secret \"{name}\": recipient {} needs the plugin age-plugin-{plugin_name}, which is not on PATH", list[0]),
                    format!("install age-plugin-{plugin_name}"),
                )
            })?;
        out.push(Box::new(p));
    }
    Ok(out)
}

/// The identities given with `-i`, or agenix's defaults.
pub struct Identities {
    pub list: Vec<BoxIdentity>,
    /// The files they came from, for error messages.
    pub files: Vec<PathBuf>,
    /// Why a passphrase-protected key could not be unlocked, once it was tried; age itself
    /// only reports "failed to decrypt an encrypted key".
    pub unlock_error: Arc<OnceLock<String>>,
}

impl Identities {
    pub fn new(list: Vec<BoxIdentity>, files: Vec<PathBuf>) -> Identities {
        Identities {
            list,
            files,
            unlock_error: Arc::default(),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.list.iter().map(|i| i.as_ref() as &dyn age::Identity)
    }
}

/// agenix's default identities: `~/.ssh/id_ed25519` and `~/.ssh/id_rsa`.
pub fn default_identity_paths() -> Vec<PathBuf> {
    match std::env::var_os("HOME") {
        Some(home) => ["id_ed25519", "id_rsa"]
            .iter()
            .map(|n| Path::new(&home).join(".ssh").join(n))
            .collect(),
        None => Vec::new(),
    }
}

/// Loads the `-i` files, or the existing defaults when none were given.
pub fn load_identities(given: &[PathBuf], prompt: Arc<dyn Prompt>) -> Result<Identities> {
    let files: Vec<PathBuf> = if given.is_empty() {
        let tried = default_identity_paths();
        let found: Vec<PathBuf> = tried.iter().filter(|p| p.exists()).cloned().collect();
        if found.is_empty() {
            let shown: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
            return Err(UserError::with_hint(
                format!(
                    "no identity found (tried {})",
                    if shown.is_empty() {
                        "nothing: $HOME is not set".to_owned()
                    } else {
                        shown.join(", ")
                    }
                ),
                "pass an age identity file or ssh private key with -i",
            )
            .kind(crate::error::Kind::NoIdentity)
            .into());
        }
        found
    } else {
        given.to_vec()
    };
    let mut list = Vec::new();
    let unlock_error: Arc<OnceLock<String>> = Arc::default();
    for file in &files {
        load_identity_file(file, Some((&prompt, &unlock_error)), &mut list)
            .with_context(|| format!("cannot read identity {}", file.display()))?;
    }
    Ok(Identities {
        list,
        files,
        unlock_error,
    })
}

/// How a passphrase-protected ssh key is unlocked: the prompt, and where the reason for a failed
/// unlock is kept for error messages.
type Unlock<'a> = (&'a Arc<dyn Prompt>, &'a Arc<OnceLock<String>>);

/// Reads one identity file where nobody can be asked anything (the installer at boot): a
/// passphrase-protected ssh key is an error instead of a prompt.
pub fn read_identity_file_unattended(file: &Path) -> Result<Vec<BoxIdentity>> {
    let mut out = Vec::new();
    load_identity_file(file, None, &mut out)?;
    Ok(out)
}

/// Appends the identities in `file` to `out`. `unlock` is how a passphrase-protected ssh key
/// gets its passphrase; without it such a key is refused.
fn load_identity_file(
    file: &Path,
    unlock: Option<Unlock<'_>>,
    out: &mut Vec<BoxIdentity>,
) -> Result<()> {
    let data = std::fs::read(file)?;
    let shown = file.display().to_string();
    if data.windows(11).any(|w| w == b"-----BEGIN ") {
        let identity = ssh::Identity::from_buffer(&data[..], Some(shown.clone()))
            .map_err(|e| anyhow!("{e}"))?;
        match identity {
            ssh::Identity::Unencrypted(_) => out.push(Box::new(identity)),
            ssh::Identity::Encrypted(key) => {
                let Some((prompt, unlock_error)) = unlock else {
                    bail!("the SSH key is passphrase-protected, which cannot be unlocked here");
                };
                let tag = ssh_stanza_tag(&data)
                    .ok_or_else(|| anyhow!("cannot read the public half of the ssh key"))?;
                out.push(Box::new(LockedSshKey {
                    file: shown,
                    key,
                    tag,
                    prompt: prompt.clone(),
                    unlocked: OnceLock::new(),
                    unlock_error: unlock_error.clone(),
                }));
            }
            ssh::Identity::Unsupported(k) => {
                struct Shown<'a>(&'a ssh::UnsupportedKey, &'a str);
                impl fmt::Display for Shown<'_> {
                    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        self.0.display(f, Some(self.1))
                    }
                }
                bail!("{}", Shown(&k, &shown).to_string().trim());
            }
        }
    } else {
        if data.starts_with(b"ssh-") || data.starts_with(b"age1") {
            return Err(UserError::with_hint(
                "this is a public key",
                "-i takes the private key (e.g. ~/.ssh/id_ed25519, not id_ed25519.pub)",
            )
            .into());
        }
        let parsed = IdentityFile::from_buffer(&data[..])
            .map_err(|e| anyhow!("{e}"))?
            .with_callbacks(PromptCallbacks(match unlock {
                Some((prompt, _)) => prompt.clone(),
                None => Arc::new(Unattended),
            }))
            .into_identities()
            .map_err(|e| anyhow!("{e}"))?;
        if parsed.is_empty() {
            bail!("no identities in the file");
        }
        out.extend(parsed);
    }
    Ok(())
}

/// The `args[0]` age puts in ssh stanzas: the first 4 bytes of SHA-256 of the public key in
/// wire format. Lets a locked key ignore stanzas that are not for it without asking.
fn ssh_stanza_tag(private_key_file: &[u8]) -> Option<String> {
    let key = ssh_key::PrivateKey::from_openssh(private_key_file).ok()?;
    let fp = key.public_key().fingerprint(ssh_key::HashAlg::Sha256);
    Some(BASE64_STANDARD_NO_PAD.encode(&fp.as_bytes()[..4]))
}

/// A passphrase-protected ssh key, unlocked on first use and then kept unlocked for the rest of
/// the run, so that rekeying many files asks once. `OnceLock` makes concurrent rekey threads
/// wait for the single prompt instead of asking in parallel.
struct LockedSshKey {
    file: String,
    key: ssh::EncryptedKey,
    tag: String,
    prompt: Arc<dyn Prompt>,
    unlocked: OnceLock<Result<ssh::Identity, String>>,
    unlock_error: Arc<OnceLock<String>>,
}

const PASSPHRASE_ATTEMPTS: usize = 3;

impl LockedSshKey {
    fn unlock(&self) -> Result<ssh::Identity, String> {
        for _ in 0..PASSPHRASE_ATTEMPTS {
            let pass = match self.prompt.passphrase(&self.file) {
                Ok(Some(p)) => p,
                Ok(None) => return Err(format!("no passphrase given for {}", self.file)),
                Err(e) => {
                    return Err(
                        match e.downcast_ref::<UserError>().and_then(|u| u.hint.as_ref()) {
                            Some(hint) => format!("{e:#}\nhint: {hint}"),
                            None => format!("{e:#}"),
                        },
                    )
                }
            };
            if pass.expose_secret().is_empty() {
                continue;
            }
            match self.key.decrypt(pass) {
                Ok(k) => return Ok(ssh::Identity::from(k)),
                Err(_) => eprintln!("ragenix: wrong passphrase for {}", self.file),
            }
        }
        Err(format!(
            "wrong passphrase for {} ({PASSPHRASE_ATTEMPTS} attempts)",
            self.file
        ))
    }
}

impl age::Identity for LockedSshKey {
    fn unwrap_stanza(&self, stanza: &Stanza) -> Option<Result<FileKey, DecryptError>> {
        let ours = (stanza.tag == "ssh-ed25519" || stanza.tag == "ssh-rsa")
            && stanza.args.first() == Some(&self.tag);
        if !ours {
            return None;
        }
        match self.unlocked.get_or_init(|| self.unlock()) {
            Ok(identity) => identity.unwrap_stanza(stanza),
            Err(why) => {
                self.unlock_error.get_or_init(|| why.clone());
                Some(Err(DecryptError::KeyDecryptionFailed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn empty_public_keys_are_refused_naming_the_secret() {
        let err = recipients("db.age", &[]).err().unwrap();
        assert!(
            format!("{err:#}").contains("\"db.age\" has no publicKeys"),
            "{err:#}"
        );
    }

    #[test]
    fn an_invalid_recipient_names_the_secret_and_the_string() {
        for bad in ["age1notakey", "ssh-ed25519 AAAAbroken", "hello"] {
            let err = recipients("x/y.age", &[bad.to_owned()]).err().unwrap();
            let msg = format!("{err:#}");
            assert!(msg.contains("\"x/y.age\"") && msg.contains(bad), "{msg}");
        }
    }

    #[test]
    fn a_plugin_recipient_without_its_plugin_names_the_plugin() {
        let id = age::x25519::Identity::generate();
        // A syntactically valid plugin recipient for a plugin that cannot exist on PATH.
        let r = bech32_plugin_recipient("ragenixnosuchplugin", id.to_public().to_string());
        let err = recipients("p.age", &[r]).err().unwrap();
        assert!(
            format!("{err:#}").contains("age-plugin-ragenixnosuchplugin"),
            "{err:#}"
        );
    }

    fn bech32_plugin_recipient(plugin: &str, x25519_recipient: String) -> String {
        // Re-encode the X25519 recipient's data under the plugin's human-readable part.
        use bech32::{Bech32, Hrp};
        let (_, data) = bech32::decode(&x25519_recipient).unwrap();
        bech32::encode::<Bech32>(Hrp::parse(&format!("age1{plugin}")).unwrap(), &data).unwrap()
    }

    struct Counting(AtomicUsize, &'static str);
    impl Prompt for Counting {
        fn passphrase(&self, _: &str) -> Result<Option<SecretString>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(Some(SecretString::from(self.1.to_owned())))
        }
    }

    #[test]
    fn a_locked_ssh_key_asks_once_across_many_decryptions_and_threads() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id");
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "sesame", "-C", "", "-f"])
            .arg(&key)
            .status();
        if !status.map(|s| s.success()).unwrap_or(false) {
            eprintln!("SKIPPED a_locked_ssh_key_asks_once: ssh-keygen unavailable");
            assert!(
                std::env::var("CI").is_err(),
                "ssh-keygen is required under CI"
            );
            return;
        }
        let pubkey = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let recips = recipients("s", &[pubkey.trim().to_owned()]).unwrap();
        let sealed: Vec<Vec<u8>> = (0..16)
            .map(|i| {
                let mut out = Vec::new();
                crate::age_io::encrypt(&recips, false, &mut &[i as u8][..], &mut out).unwrap();
                out
            })
            .collect();
        let prompt = Arc::new(Counting(AtomicUsize::new(0), "sesame"));
        let ids = load_identities(&[key], prompt.clone()).unwrap();
        use rayon::prelude::*;
        sealed.par_iter().enumerate().for_each(|(i, file)| {
            let mut out = Vec::new();
            crate::age_io::decrypt(&ids, &mut &file[..], &mut out).unwrap();
            assert_eq!(out, [i as u8]);
        });
        assert_eq!(prompt.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_wrong_passphrase_fails_without_asking_forever() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id");
        let ok = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "right", "-C", "", "-f"])
            .arg(&key)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            return;
        }
        let pubkey = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let recips = recipients("s", &[pubkey.trim().to_owned()]).unwrap();
        let mut sealed = Vec::new();
        crate::age_io::encrypt(&recips, false, &mut &b"x"[..], &mut sealed).unwrap();
        let prompt = Arc::new(Counting(AtomicUsize::new(0), "wrong"));
        let ids = load_identities(&[key], prompt.clone()).unwrap();
        for _ in 0..3 {
            assert!(crate::age_io::decrypt(&ids, &mut &sealed[..], &mut Vec::new()).is_err());
        }
        assert_eq!(prompt.0.load(Ordering::SeqCst), PASSPHRASE_ATTEMPTS);
    }
}
