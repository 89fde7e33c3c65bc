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

/// Why no identity could be loaded, path by path: a missing file, and whether its directory
/// exists (a directory missing too is usually a file system not mounted yet, such as an
/// impermanence `/persist` that is not `neededForBoot`).
pub fn no_identity(paths: &[String]) -> String {
    if paths.is_empty() {
        return "no identity could be loaded: age.identityPaths is empty".into();
    }
    let each: Vec<String> = paths.iter().map(|p| describe(Path::new(p))).collect();
    format!(
        "no identity could be loaded from age.identityPaths: {}",
        each.join("; ")
    )
}

/// Only looks: nothing is opened or acted on, so a planted symlink can change the words of
/// the message and nothing else.
fn describe(path: &Path) -> String {
    let shown = path.display();
    match (path.symlink_metadata(), path.metadata()) {
        (Ok(_), Ok(_)) => {
            format!("{shown} exists but holds no usable identity (see the warning above)")
        }
        (Ok(_), Err(_)) => format!("{shown} is a symlink to nothing"),
        (Err(_), _) => {
            let Some(dir) = path.parent() else {
                return format!("{shown} does not exist");
            };
            if dir.is_dir() {
                return format!(
                    "{shown} does not exist (its directory {} does)",
                    dir.display()
                );
            }
            let nearest = dir
                .ancestors()
                .find(|a| a.is_dir())
                .map_or_else(|| "/".into(), |a| a.display().to_string());
            format!(
                "{shown} does not exist, nor does its directory {} (only {nearest} does: a file system not mounted yet?)",
                dir.display()
            )
        }
    }
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
