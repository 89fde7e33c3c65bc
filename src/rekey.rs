//! `-r`: re-encrypt secrets to their current recipients, all or nothing.
//!
//! Phase 1 decrypts and re-encrypts every file into a temp file beside it (in parallel), then
//! flushes them all to disk at once; phase 2 renames them into place only if phase 1 succeeded
//! for every file. A crash at any moment leaves each file either old or new, both decryptable
//! to the same plaintext.

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

/// Threads for staging and renaming. Each rename frees the old file and waits on the disk's
/// journal, not the CPU, so more threads than cores let the waits overlap (measured under
/// load: 1000 renames take 1.2 s on one thread, 0.25 s on 16).
const IO_THREADS: usize = 16;

type Failure = (String, anyhow::Error);

/// Rekeys `selected` secrets of `rules`, decrypting with `ids`.
pub fn rekey(rules: &Rules, selected: &[&Secret], ids: &Identities, verbose: bool) -> Result<()> {
    remove_stale(rules, selected)?;
    let work = existing_files(rules, selected);
    let recipients = parse_recipients(&work);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(IO_THREADS.max(rayon::current_num_threads()))
        .build()
        .context("starting rekey threads")?;

    let started = Instant::now();
    let staged = stage_all(&pool, &work, &recipients, ids)?;
    if verbose {
        eprintln!(
            "ragenix: {} file(s) re-encrypted and synced in {:?}",
            staged.len(),
            started.elapsed()
        );
    }
    let renaming = Instant::now();
    let count = commit_all(&pool, staged, verbose)?;
    if verbose {
        eprintln!("ragenix: renamed into place in {:?}", renaming.elapsed());
    }
    eprintln!("ragenix: rekeyed {count} secret(s)");
    Ok(())
}

/// Removes temp files a killed run left beside the selected secrets (one listing per directory).
fn remove_stale(rules: &Rules, selected: &[&Secret]) -> Result<()> {
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
    Ok(())
}

/// The selected secrets whose file exists; the others are skipped with a note.
fn existing_files<'r>(rules: &Rules, selected: &[&'r Secret]) -> Vec<(&'r Secret, PathBuf)> {
    let mut work = Vec::with_capacity(selected.len());
    for secret in selected {
        let file = rules.secret_file(secret);
        if file.exists() {
            work.push((*secret, file));
        } else {
            eprintln!(
                "ragenix: skipping {}: {} does not exist",
                secret.name,
                file.display()
            );
        }
    }
    work
}

/// Recipients for each distinct key list. Parsing a recipient costs about as much as wrapping a
/// key to it, and most secrets share their list. `None`: the list is invalid.
fn parse_recipients<'s>(
    work: &[(&'s Secret, PathBuf)],
) -> HashMap<&'s [String], Option<Arc<Vec<BoxRecipient>>>> {
    let mut parsed = HashMap::new();
    for (secret, _) in work {
        parsed.entry(&secret.public_keys[..]).or_insert_with(|| {
            keys::recipients(&secret.name, &secret.public_keys)
                .ok()
                .map(Arc::new)
        });
    }
    parsed
}

/// Phase 1: every file decrypted and re-encrypted into a synced temp file beside it. If any
/// fails, every failure is listed, the temp files are removed and nothing changes.
fn stage_all(
    pool: &rayon::ThreadPool,
    work: &[(&Secret, PathBuf)],
    recipients: &HashMap<&[String], Option<Arc<Vec<BoxRecipient>>>>,
    ids: &Identities,
) -> Result<Vec<atomic::Staged>> {
    let bar = progress::start("rekeying", work.len());
    let staged_count = AtomicUsize::new(0);
    let results: Vec<Result<atomic::Staged, Failure>> = pool.install(|| {
        work.par_iter()
            .map(|(secret, file)| {
                let staged = match &recipients[&secret.public_keys[..]] {
                    Some(recipients) => stage_one(secret, recipients, file, ids),
                    // Parsed again (errors are rare) so that the message names this secret,
                    // not the first one sharing the key list.
                    None => keys::recipients(&secret.name, &secret.public_keys)
                        .and_then(|_| Err(anyhow!("invalid recipients"))),
                }
                .map_err(|e| (secret.name.clone(), e));
                test_pause("staged", staged_count.fetch_add(1, Ordering::SeqCst) + 1);
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
        let n = failed.len();
        for (name, err) in failed.into_iter().filter_map(Result::err) {
            eprintln!("ragenix: cannot rekey {name}: {err:#}");
        }
        // `staged` drops here, removing every temp file.
        return Err(anyhow!(
            "{n} of {} secrets could not be rekeyed; nothing was changed",
            work.len()
        ));
    }
    let staged: Vec<atomic::Staged> = staged.into_iter().filter_map(Result::ok).collect();
    // One flush for the whole batch instead of an fsync per file; on failure `staged` drops
    // and removes every temp file.
    atomic::sync_staged(&staged)?;
    Ok(staged)
}

/// Phase 2: every temp file renamed over its original, then each directory synced once.
fn commit_all(
    pool: &rayon::ThreadPool,
    staged: Vec<atomic::Staged>,
    verbose: bool,
) -> Result<usize> {
    let count = staged.len();
    let dirs: BTreeSet<PathBuf> = staged
        .iter()
        .filter_map(|s| s.target().parent().map(Path::to_path_buf))
        .collect();
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
    Ok(count)
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
    // Decrypted into memory (never to disk): secrets are small, and a pipe between two threads
    // per file would cost more than it saves. Sized so that no reallocation leaves an unzeroed
    // copy behind.
    let size = input.metadata().map_or(0, |m| m.len() as usize);
    let mut plain = zeroize::Zeroizing::new(Vec::with_capacity(size));
    age_io::decrypt(ids, &mut input, &mut *plain)
        .with_context(|| format!("cannot decrypt {}", file.display()))?;
    atomic::stage_unsynced(file, |w| {
        age_io::encrypt(recipients, secret.armor, &mut &plain[..], w)
    })
}
