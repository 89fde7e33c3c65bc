//! The installer's use of age: load the machine's identities (age identity files, unencrypted
//! ssh-ed25519/ssh-rsa keys, plugin identities) and decrypt one file into a writer. No prompts:
//! this runs at boot. Kept narrow so it can be unified with the CLI's key loading.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;

use age::armor::ArmoredReader;
use anyhow::{anyhow, bail, Context, Result};

/// An identity that can unwrap file keys; shared by the decrypting threads.
pub type Identity = Box<dyn age::Identity + Send + Sync>;

/// Loads every usable identity from `paths`. A missing, unreadable, passphrase-protected or
/// unsupported key is not fatal (the others may suffice): it comes back as a warning.
pub fn load_identities(paths: &[String]) -> (Vec<Identity>, Vec<String>) {
    let mut identities = Vec::new();
    let mut warnings = Vec::new();
    for path in paths {
        match load_identity_file(Path::new(path)) {
            Ok(mut found) => identities.append(&mut found),
            Err(e) => warnings.push(format!("skipping identity {path}: {e:#}")),
        }
    }
    (identities, warnings)
}

fn load_identity_file(path: &Path) -> Result<Vec<Identity>> {
    let mut reader = BufReader::new(File::open(path)?);
    let is_pem = reader.fill_buf()?.starts_with(b"-----BEGIN");
    if is_pem {
        let name = path.display().to_string();
        return match age::ssh::Identity::from_buffer(reader, Some(name))? {
            age::ssh::Identity::Unencrypted(key) => {
                Ok(vec![Box::new(age::ssh::Identity::Unencrypted(key))])
            }
            age::ssh::Identity::Encrypted(_) => {
                bail!("the SSH key is passphrase-protected, which cannot be unlocked here")
            }
            age::ssh::Identity::Unsupported(key) => {
                bail!("unsupported SSH key: {}", UnsupportedDisplay(&key))
            }
        };
    }
    let file = age::IdentityFile::from_buffer(reader)?.with_callbacks(BootCallbacks);
    let identities = file
        .into_identities()
        .map_err(|e| anyhow!("{e}"))
        .context("not an age identity file")?;
    if identities.is_empty() {
        bail!("the file holds no identity");
    }
    Ok(identities)
}

struct UnsupportedDisplay<'a>(&'a age::ssh::UnsupportedKey);

impl std::fmt::Display for UnsupportedDisplay<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.display(f, None)
    }
}

/// Plugins (e.g. age-plugin-yubikey) may talk to the user; at boot nobody answers, so messages
/// are logged and questions declined.
#[derive(Clone, Copy)]
struct BootCallbacks;

impl age::Callbacks for BootCallbacks {
    fn display_message(&self, message: &str) {
        eprintln!("ragenix-install: plugin: {message}");
    }
    fn confirm(&self, _: &str, _: &str, _: Option<&str>) -> Option<bool> {
        None
    }
    fn request_public_string(&self, _: &str) -> Option<String> {
        None
    }
    fn request_passphrase(&self, _: &str) -> Option<age::secrecy::SecretString> {
        None
    }
}

/// Opens `path` and parses its age header (armored or binary) without decrypting anything.
fn open_encrypted(path: &Path) -> Result<age::Decryptor<ArmoredReader<BufReader<File>>>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    age::Decryptor::new_buffered(ArmoredReader::new(file))
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("{} is not an age file", path.display()))
}

/// Checks that `path` exists and starts with a valid age header (used by `--check`).
pub fn check_header(path: &Path) -> Result<()> {
    open_encrypted(path).map(|_| ())
}

/// Decrypts `path` with `identities` into `out`.
pub fn decrypt_file(path: &Path, identities: &[Identity], out: &mut impl Write) -> Result<()> {
    let decryptor = open_encrypted(path)?;
    if decryptor.is_scrypt() {
        bail!(
            "{} is encrypted with a passphrase, which cannot be entered here",
            path.display()
        );
    }
    if identities.is_empty() {
        bail!("no identity could be loaded to decrypt {}", path.display());
    }
    let mut reader = decryptor
        .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("cannot decrypt {}", path.display()))?;
    io::copy(&mut reader, out)
        .map(drop)
        .with_context(|| format!("cannot decrypt {}", path.display()))
}
