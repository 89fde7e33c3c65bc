//! One writer at a time (issue 9 item 4): `-e`, `-r` and `--generate` take an exclusive lock
//! on the rules file for their write phase; a second run waits (and says so) or times out with
//! nothing changed; readers never wait; no lock file appears in the repository.

use std::fs;
use std::os::fd::AsFd;
use std::process::Stdio;
use std::time::{Duration, Instant};

use age::secrecy::ExposeSecret;
use predicates::prelude::*;
use predicates::str::contains;

use super::{stderr_of, Project};

/// Holds the writer lock as another ragenix run would.
fn hold_lock(p: &Project) -> fs::File {
    let f = fs::File::open(p.path("secrets.nix")).unwrap();
    rustix::fs::flock(f.as_fd(), rustix::fs::FlockOperation::LockExclusive).unwrap();
    f
}

fn entries(p: &Project) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(p.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// 2 MiB of bytes that differ per secret, made again when checking instead of kept (300 MiB).
fn plaintext(i: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (i as u64 + 1);
    (0..2 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn two_concurrent_rekeys_of_150_2mb_files_leave_every_file_whole_and_decryptable() {
    const FILES: usize = 150;
    let p = Project::new();
    let list: Vec<String> = (0..FILES).map(|i| format!("s{i:03}.age")).collect();
    let refs: Vec<&str> = list.iter().map(String::as_str).collect();
    p.rules(&refs);
    let recipient: ragenix::keys::BoxRecipient =
        Box::new(p.public.parse::<age::x25519::Recipient>().unwrap());
    for (i, name) in refs.iter().enumerate() {
        let mut out = Vec::new();
        ragenix::age_io::encrypt(
            std::slice::from_ref(&recipient),
            false,
            &mut &plaintext(i)[..],
            &mut out,
        )
        .unwrap();
        fs::write(p.path(name), out).unwrap();
    }
    // A second recipient, so that a rekeyed file differs from an old one.
    let new = age::x25519::Identity::generate();
    fs::write(p.path("new.txt"), new.to_string().expose_secret()).unwrap();
    let new_pub = new.to_public().to_string();
    let keys: [&str; 2] = [p.public.as_str(), new_pub.as_str()];
    let rules: Vec<(&str, &[&str], bool)> = refs.iter().map(|n| (*n, &keys[..], false)).collect();
    p.rules_at("secrets.nix", &rules);
    let before = entries(&p);

    let spawn = || {
        p.std_cmd()
            .args(["-i", "key.txt", "-r"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = spawn();
    // Start the second once the first is writing its temp files, so that they overlap.
    let start = Instant::now();
    while p.temp_files().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the first rekey never staged a file"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let second = spawn();
    let first = first.wait_with_output().unwrap();
    let second = second.wait_with_output().unwrap();
    for (which, out) in [("first", &first), ("second", &second)] {
        let err = stderr_of(out);
        assert!(out.status.success(), "{which} rekey failed: {err}");
        assert!(!err.contains("could not be renamed"), "{which}: {err}");
        assert!(err.contains("rekeyed 150 secret(s)"), "{which}: {err}");
    }
    assert!(
        stderr_of(&second).contains("ragenix: waiting for another ragenix run on ./secrets.nix"),
        "{}",
        stderr_of(&second)
    );
    let ids = ragenix::keys::load_identities(
        &[p.path("key.txt"), p.path("new.txt")],
        std::sync::Arc::new(super::NoPrompt),
    )
    .unwrap();
    let only_new =
        ragenix::keys::load_identities(&[p.path("new.txt")], std::sync::Arc::new(super::NoPrompt))
            .unwrap();
    for (i, name) in refs.iter().enumerate() {
        let sealed = fs::read(p.path(name)).unwrap();
        let mut got = Vec::new();
        ragenix::age_io::decrypt(&ids, &mut &sealed[..], &mut got)
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert!(got == plaintext(i), "{name}: content differs");
        // Both runs finished, so every file is the new version.
        ragenix::age_io::decrypt(&only_new, &mut &sealed[..], &mut Vec::new())
            .unwrap_or_else(|e| panic!("{name} not rekeyed: {e:#}"));
    }
    assert!(p.temp_files().is_empty());
    assert_eq!(
        entries(&p),
        before,
        "a lock file was left in the repository"
    );
}

#[test]
fn a_held_lock_makes_every_writer_time_out_with_nothing_changed() {
    let p = Project::new();
    let pk = p.public.clone();
    p.rules(&["a.age"]);
    p.create("a.age", b"old");
    fs::write(
        p.path("secrets.nix"),
        format!(
            "{{ \"a.age\".publicKeys = [ \"{pk}\" ]; \"g.age\" = {{ publicKeys = [ \"{pk}\" ]; generator = \"hex:8\"; }}; }}"
        ),
    )
    .unwrap();
    let sealed = fs::read(p.path("a.age")).unwrap();
    let lock = hold_lock(&p);
    let refused = || {
        contains("ragenix: waiting for another ragenix run on ./secrets.nix")
            .and(contains(
                "another ragenix run is still writing the secrets of ./secrets.nix after 1 s; nothing was changed",
            ))
            .and(contains("hint: wait for it to finish, or set RAGENIX_LOCK_TIMEOUT"))
    };
    for args in [
        &["-i", "key.txt", "-r"][..],
        &["-i", "key.txt", "--editor", "-", "-e", "a.age"][..],
        &["--generate"][..],
    ] {
        let start = Instant::now();
        p.cmd()
            .env("RAGENIX_LOCK_TIMEOUT", "1")
            .args(args)
            .write_stdin("new")
            .assert()
            .code(1)
            .stderr(refused());
        assert!(start.elapsed() >= Duration::from_secs(1), "{args:?}");
        assert_eq!(fs::read(p.path("a.age")).unwrap(), sealed, "{args:?}");
        assert!(!p.path("g.age").exists(), "{args:?}");
        assert!(p.temp_files().is_empty(), "{args:?}");
    }
    // Readers do not wait.
    p.cmd()
        .env("RAGENIX_LOCK_TIMEOUT", "1")
        .args(["-i", "key.txt", "-d", "a.age"])
        .assert()
        .success()
        .stdout("old")
        .stderr("");
    p.cmd()
        .env("RAGENIX_LOCK_TIMEOUT", "1")
        .arg("--check")
        .assert()
        .code(1)
        .stdout(contains("g.age"))
        .stderr("");
    drop(lock);
    p.cmd()
        .args(["-i", "key.txt", "--editor", "-", "-e", "a.age"])
        .write_stdin("new")
        .assert()
        .success()
        .stderr("");
    assert_eq!(p.open("a.age").unwrap(), b"new");
}

#[test]
fn a_waiting_run_goes_on_once_the_lock_is_released() {
    let p = Project::new();
    p.rules(&["a.age"]);
    p.create("a.age", b"x");
    let lock = hold_lock(&p);
    let child = p
        .std_cmd()
        .args(["-i", "key.txt", "-r"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    drop(lock);
    let out = child.wait_with_output().unwrap();
    let err = stderr_of(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("waiting for another ragenix run"), "{err}");
    assert!(err.contains("rekeyed 1 secret(s)"), "{err}");
}

#[test]
fn a_lock_timeout_that_is_not_a_number_is_named() {
    let p = Project::new();
    p.rules(&["a.age"]);
    p.create("a.age", b"x");
    p.cmd()
        .env("RAGENIX_LOCK_TIMEOUT", "soon")
        .args(["-i", "key.txt", "-r"])
        .assert()
        .code(1)
        .stderr(contains(
            "$RAGENIX_LOCK_TIMEOUT is \"soon\", not a number of seconds",
        ));
}
