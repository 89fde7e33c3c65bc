//! The installer's use of age: the machine's identities, loaded through [`crate::keys`] without
//! prompts (this runs at boot), and one file decrypted into a writer through
//! [`crate::age_io`]. Only the unattended policy lives here: unusable keys are warnings.

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use age::armor::ArmoredReader;
use anyhow::{anyhow, Context, Result};

use crate::keys::{self, Identities};

/// Loads every usable identity from `paths`. A missing, unreadable, passphrase-protected or
/// unsupported key is not fatal (the others may suffice): it comes back as a warning.
pub fn load_identities(paths: &[String]) -> (Identities, Vec<String>) {
    let mut list = Vec::new();
    let mut files = Vec::new();
    let mut warnings = Vec::new();
    for path in paths {
        match keys::read_identity_file_unattended(Path::new(path)) {
            Ok(found) if found.is_empty() => warnings.push(format!(
                "skipping identity {path}: the file holds no identity"
            )),
            Ok(found) => {
                list.extend(found);
                files.push(PathBuf::from(path));
            }
            Err(e) => warnings.push(format!("skipping identity {path}: {e:#}")),
        }
    }
    (Identities::new(list, files), warnings)
}

/// Checks that `path` exists and starts with a valid age header (used by `--check`).
pub fn check_header(path: &Path) -> Result<()> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    age::Decryptor::new_buffered(ArmoredReader::new(BufReader::new(file)))
        .map(drop)
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("{} is not an age file", path.display()))
}

/// Decrypts `path` with `identities` into `out`.
pub fn decrypt_file(path: &Path, identities: &Identities, out: &mut impl Write) -> Result<()> {
    if identities.list.is_empty() {
        anyhow::bail!("no identity could be loaded to decrypt {}", path.display());
    }
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    crate::age_io::decrypt(identities, &mut file, out)
        .with_context(|| format!("cannot decrypt {}", path.display()))
}
