//! `-r`: re-encrypt secrets to their current recipients, all or nothing.
//!
//! Phase 1 decrypts and re-encrypts every file into a synced temp file beside it (in parallel);
//! phase 2 renames them into place only if phase 1 succeeded for every file. A crash at any
//! moment leaves each file either old or new, both decryptable to the same plaintext.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use rayon::prelude::*;

use crate::keys::{self, BoxRecipient, Identities};
use crate::rules::{Rules, Secret};
use crate::{age_io, atomic, progress};

/// Threads for staging; see the comment at its use.
const IO_THREADS: usize = 16;

/// Rekeys `selected` secrets of `rules`, decrypting with `ids`.
pub fn rekey(rules: &Rules, selected: &[&Secret], ids: &Identities, verbose: bool) -> Result<()> {
    let mut work: Vec<(&Secret, PathBuf)> = Vec::with_capacity(selected.len());
    // Leftovers of a killed run, one directory listing per directory.
    let mut by_dir: BTreeMap<PathBuf, HashSet<OsString>> = BTreeMap::new();
    for secret in selected {
        let file = rules.secret_file(secret);
        if let (Some(dir), Some(name)) = (file.parent(), file.file_name()) {
            by_dir
                .entry(dir.to_path_buf())
                .or_default()
                .insert(name.to_owned());
        }
    }
    for (dir, names) in &by_dir {
        atomic::remove_stale_in(dir, names)?;
    }

    for secret in selected {
        let file = rules.secret_file(secret);
        if file.exists() {
            work.push((secret, file));
        } else {
            eprintln!(
                "ragenix: skipping {}: {} does not exist",
                secret.name,
                file.display()
            );
        }
    }
    // Parsing a recipient costs about as much as wrapping a key to it, and most secrets share
    // their key list: parse each distinct list once.
    let mut parsed: HashMap<&[String], Result<Arc<Vec<BoxRecipient>>, ()>> = HashMap::new();
    for (secret, _) in &work {
        parsed.entry(&secret.public_keys[..]).or_insert_with(|| {
            keys::recipients(&secret.name, &secret.public_keys)
                .map(Arc::new)
                .map_err(|_| ())
        });
    }
    let started = Instant::now();
    let bar = progress::start("rekeying", work.len());
    let staged_count = AtomicUsize::new(0);
    // Each file ends in an fsync that waits for the disk, not the CPU: more threads than cores
    // let those waits overlap (and the filesystem batch them into fewer journal commits).
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(IO_THREADS.max(rayon::current_num_threads()))
        .build()
        .context("starting rekey threads")?;
    let results: Vec<Result<atomic::Staged, (String, anyhow::Error)>> = pool.install(|| {
        work.par_iter()
            .map(|(secret, file)| {
                let staged = match &parsed[&secret.public_keys[..]] {
                    Ok(recipients) => stage_one(secret, recipients, file, ids),
                    // The cached message names the first secret with this key list; parse again
                    // (errors are rare) so that each secret's message names itself.
                    Err(_) => keys::recipients(&secret.name, &secret.public_keys)
                        .and_then(|_| Err(anyhow!("invalid recipients"))),
                }
                .map_err(|e| (secret.name.clone(), e));
                let n = staged_count.fetch_add(1, Ordering::SeqCst) + 1;
                test_pause("staged", n);
                if let Some(bar) = &bar {
                    bar.inc(1);
                }
                staged
            })
            .collect()
    });
    progress::finish(bar);
    let (staged, failed): (Vec<_>, Vec<_>) = results.into_iter().partition(|r| r.is_ok());
    if !failed.is_empty() {
        let total = work.len();
        let n = failed.len();
        for (name, err) in failed.into_iter().filter_map(Result::err) {
            eprintln!("ragenix: cannot rekey {name}: {err:#}");
        }
        // `staged` drops here, removing every temp file.
        return Err(anyhow!(
            "{n} of {total} secrets could not be rekeyed; nothing was changed"
        ));
    }
    let staged: Vec<atomic::Staged> = staged.into_iter().filter_map(Result::ok).collect();
    let dirs: BTreeSet<PathBuf> = staged
        .iter()
        .filter_map(|s| s.target().parent().map(Path::to_path_buf))
        .collect();
    let count = staged.len();
    if verbose {
        eprintln!(
            "ragenix: {count} file(s) re-encrypted and synced in {:?}",
            started.elapsed()
        );
    }
    let renaming = Instant::now();
    // Renaming over a file frees the old one, which waits on the filesystem journal; in
    // parallel these waits overlap (measured: 1000 renames 1.2 s sequential, 0.25 s on 16).
    let renamed = AtomicUsize::new(0);
    let failures: Vec<String> = pool.install(|| {
        staged
            .into_par_iter()
            .filter_map(|s| {
                test_wait_if_paused();
                let target = s.target().to_path_buf();
                if let Err(e) = s.commit_nosync() {
                    return Some(format!("{e:#}"));
                }
                if verbose {
                    eprintln!("ragenix: rekeyed {}", target.display());
                }
                test_pause("renamed", renamed.fetch_add(1, Ordering::SeqCst) + 1);
                None
            })
            .collect()
    });
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("ragenix: {f}");
        }
        // Every file is still either its old or its new version, both readable.
        return Err(anyhow!(
            "{} of {count} rekeyed files could not be renamed into place; those keep their old content",
            failures.len()
        ));
    }
    for dir in dirs {
        atomic::sync_dir(&dir)?;
    }
    if verbose {
        eprintln!("ragenix: renamed into place in {:?}", renaming.elapsed());
    }
    eprintln!("ragenix: rekeyed {count} secret(s)");
    Ok(())
}

static TEST_PAUSED: AtomicBool = AtomicBool::new(false);

/// Debug builds only: stop forever at a named point (`RAGENIX_TEST_PAUSE=renamed:150`) so the
/// crash-safety test can SIGKILL us at that moment. Other threads stop at their next
/// [`test_wait_if_paused`], so a few more files than `n` may be past the point.
fn test_pause(point: &str, n: usize) {
    if cfg!(debug_assertions) {
        if let Some(want) = std::env::var_os("RAGENIX_TEST_PAUSE") {
            if want.to_str() == Some(&format!("{point}:{n}")) {
                TEST_PAUSED.store(true, Ordering::SeqCst);
                eprintln!("ragenix-test: paused at {point}:{n}");
                test_wait_if_paused();
            }
        }
    }
}

fn test_wait_if_paused() {
    if cfg!(debug_assertions) && TEST_PAUSED.load(Ordering::SeqCst) {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

fn stage_one(
    secret: &Secret,
    recipients: &[BoxRecipient],
    file: &Path,
    ids: &Identities,
) -> Result<atomic::Staged> {
    let mut input = File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    // Decrypt into memory: secrets are small and a pipe between two threads per file would cost
    // more than it saves; the plaintext never touches the disk either way.
    // Sized so no reallocation leaves an unzeroed copy of the plaintext behind.
    let size = input.metadata().map_or(0, |m| m.len() as usize);
    let mut plain = zeroize::Zeroizing::new(Vec::with_capacity(size));
    age_io::decrypt(ids, &mut input, &mut *plain)
        .with_context(|| format!("cannot decrypt {}", file.display()))?;
    atomic::stage(file, |w| {
        age_io::encrypt(recipients, secret.armor, &mut &plain[..], w)
    })
}
