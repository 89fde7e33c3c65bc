//! `-e`: decrypt a secret into a private temp file, run the editor, re-encrypt if it changed.
//!
//! Owns where plaintext may live (a fresh 0700 directory, tmpfs preferred, file 0600) and its
//! removal on every exit path, including SIGINT/SIGTERM/SIGHUP. Encryption itself is `age_io`.

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use anyhow::{anyhow, Context, Result};
use zeroize::Zeroizing;

use crate::error::{self, UserError};
use crate::keys::{self, Identities};
use crate::lock::WriterLock;
use crate::platform::plaintext;
use crate::rules::Secret;
use crate::{age_io, atomic, signals};

mod source;

use source::{Console, Source};

pub struct EditOptions {
    /// `--editor`; wins over stdin and the environment because it was asked for.
    pub editor: Option<String>,
    pub verbose: bool,
}

/// Edits `file`, whose rule is `secret`. Identities are loaded only when there is something
/// to decrypt; `lock` is taken for the write only, not while the editor is open.
pub fn edit(
    file: &Path,
    secret: &Secret,
    opts: &EditOptions,
    load_ids: impl FnOnce() -> Result<Identities>,
    lock: impl FnOnce() -> Result<WriterLock>,
) -> Result<()> {
    // Refuse bad recipients before the user spends time in the editor.
    let recipients = keys::recipients(&secret.name, &secret.public_keys)?;
    let shown = file.display();
    let exists = file.exists();
    let mut read = || source::read_stdin(file);
    let source = source::choose(
        file,
        exists,
        Console::real(opts.editor.as_deref(), &mut read),
    )?;
    let new = match source {
        Source::Stdin(new) => {
            // The old content only serves to leave an unchanged file untouched, so someone who
            // holds no key for it (rotating a token encrypted only to hosts) may replace it.
            let old = if exists {
                match decrypt_existing(file, load_ids) {
                    Ok(old) => Some(old),
                    Err(e) if error::is_no_identity(&e) => {
                        let why = format!("{e:#}");
                        let why = why.lines().next().unwrap_or_default();
                        eprintln!(
                            "ragenix: note: {why}; the \"unchanged\" check was skipped and {shown} is replaced"
                        );
                        None
                    }
                    Err(e) => return Err(e),
                }
            } else {
                None
            };
            if old.as_deref() == Some(&new) {
                eprintln!("{shown} wasn't changed, skipping re-encryption.");
                return Ok(());
            }
            new
        }
        Source::Editor(cmd) => {
            // The editor shows the old content, so here an identity is required.
            let old = if exists {
                Some(decrypt_existing(file, load_ids)?)
            } else {
                None
            };
            match run_editor(file, old.as_deref().map(|v| &v[..]), &cmd, opts.verbose)? {
                Some(new) if old.as_deref() == Some(&new) => {
                    eprintln!("{shown} wasn't changed, skipping re-encryption.");
                    return Ok(());
                }
                Some(new) => new,
                None => {
                    eprintln!("ragenix: {shown} wasn't created: the editor saved nothing, nothing was written.");
                    return Ok(());
                }
            }
        }
    };
    if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
        // A new secret in a new subdirectory, as agenix allows.
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let _lock = lock()?;
    atomic::remove_stale(file)?;
    atomic::write(file, |w| {
        age_io::encrypt(&recipients, secret.armor, &mut &new[..], w)
    })
    .with_context(|| format!("cannot write {shown}"))?;
    if opts.verbose {
        eprintln!(
            "ragenix: {shown} encrypted to {} recipient(s)",
            secret.public_keys.len()
        );
    }
    Ok(())
}

/// The plaintext of the existing `file`.
fn decrypt_existing(
    file: &Path,
    load_ids: impl FnOnce() -> Result<Identities>,
) -> Result<Zeroizing<Vec<u8>>> {
    let shown = file.display();
    let ids = load_ids().with_context(|| format!("cannot decrypt {shown}"))?;
    let mut input = fs::File::open(file).with_context(|| format!("cannot open {shown}"))?;
    // Sized up front (plaintext is shorter than its age file) so that no reallocation
    // leaves an unzeroed copy behind.
    let size = input.metadata().map_or(0, |m| m.len() as usize);
    let mut plain = Zeroizing::new(Vec::with_capacity(size));
    age_io::decrypt(&ids, &mut input, &mut *plain)
        .with_context(|| format!("cannot decrypt {shown}"))?;
    Ok(plain)
}

/// Writes `old` (if any) into a private file, runs the editor on it and returns what it left,
/// or `None` if there was no old content and the editor saved nothing.
fn run_editor(
    file: &Path,
    old: Option<&[u8]>,
    cmd: &str,
    verbose: bool,
) -> Result<Option<Zeroizing<Vec<u8>>>> {
    let words = shell_words::split(cmd)
        .map_err(|e| anyhow!("cannot parse the editor command `{cmd}`: {e}"))?;
    let (program, args) = words.split_first().ok_or_else(|| {
        UserError::with_hint(
            "the editor command is empty",
            "set --editor, VISUAL or EDITOR",
        )
    })?;
    let private = PrivateDir::create()?;
    let plain = private.path().join(plaintext_name(file));
    if verbose {
        eprintln!("ragenix: editing in {}", private.path().display());
    }
    if let Some(old) = old {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&plain)
            .with_context(|| format!("creating {}", plain.display()))?;
        f.write_all(old)
            .and_then(|()| f.flush())
            .with_context(|| format!("writing {}", plain.display()))?;
    }
    let mut child = Command::new(program)
        .args(args)
        .arg(&plain)
        .spawn()
        .map_err(|e| {
            UserError::with_hint(
                format!("cannot run the editor `{cmd}`: {e}"),
                "set --editor, VISUAL or EDITOR to an installed editor",
            )
        })?;
    signals::set_child(child.id());
    let status = child.wait();
    signals::set_child(0);
    let status = status.context("waiting for the editor")?;
    if !status.success() {
        return Err(anyhow!(
            "the editor `{cmd}` failed ({status}); {} was left unchanged",
            file.display()
        ));
    }
    match fs::read(&plain) {
        Ok(new) => Ok(Some(Zeroizing::new(new))),
        Err(e) if e.kind() == io::ErrorKind::NotFound && old.is_none() => Ok(None),
        Err(e) => Err(e).with_context(|| {
            format!(
                "the editor left no readable {}; {} was left unchanged",
                plain.display(),
                file.display()
            )
        }),
    }
}

/// `db.json.age` → `db.json`, so the editor sees the content's real extension.
fn plaintext_name(file: &Path) -> OsString {
    let name = file.file_name().unwrap_or_default();
    match Path::new(name).extension() {
        Some(ext) if ext == "age" && Path::new(name).file_stem().is_some() => {
            Path::new(name).file_stem().unwrap_or_default().to_owned()
        }
        _ => name.to_owned(),
    }
}

/// A fresh 0700 directory for plaintext, removed on drop and on a fatal signal.
struct PrivateDir {
    dir: Option<tempfile::TempDir>,
    _on_signal: Option<signals::Registration>,
}

impl PrivateDir {
    /// In the platform's private place for plaintext (see [`plaintext`]), warning when only a
    /// disk-backed fallback is left.
    fn create() -> Result<PrivateDir> {
        let bases = plaintext::current();
        let mut last_err = None;
        for (i, base) in bases.iter().enumerate() {
            if !base.usable() {
                continue;
            }
            match tempfile::Builder::new()
                .prefix("ragenix-")
                .permissions(fs::Permissions::from_mode(0o700))
                .tempdir_in(&base.path)
            {
                Ok(dir) => {
                    if let Some(warning) = base.warning(&bases[..i]) {
                        eprintln!("ragenix: warning: {warning}");
                    }
                    let path = dir.path().to_path_buf();
                    // Registered before anything is written into it.
                    let on_signal = signals::on_fatal_signal(move || {
                        let _ = fs::remove_dir_all(&path);
                    })?;
                    return Ok(PrivateDir {
                        dir: Some(dir),
                        _on_signal: Some(on_signal),
                    });
                }
                Err(e) => last_err = Some((&base.path, e)),
            }
        }
        Err(match last_err {
            Some((base, e)) => anyhow!(
                "cannot create a private directory in {}: {e}",
                base.display()
            ),
            None => anyhow!("no directory for plaintext: set TMPDIR"),
        })
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().map(|d| d.path()).unwrap_or(Path::new(""))
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            if let Err(e) = dir.close() {
                eprintln!("ragenix: warning: cannot remove the plaintext directory: {e}");
            }
        }
        // `_on_signal` is dropped after this, so a signal during removal still removes.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plaintext_keeps_the_inner_extension() {
        assert_eq!(plaintext_name(Path::new("a/db.json.age")), "db.json");
        assert_eq!(plaintext_name(Path::new("token.age")), "token");
        assert_eq!(plaintext_name(Path::new("noext")), "noext");
        assert_eq!(plaintext_name(Path::new(".age")), ".age");
    }

    #[test]
    fn the_private_dir_is_0700_and_removed_on_drop() {
        let dir = PrivateDir::create().unwrap();
        let path = dir.path().to_path_buf();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        fs::write(path.join("x"), "secret").unwrap();
        drop(dir);
        assert!(!path.exists());
    }
}
