//! `-r`: re-encryption to current recipients, all or nothing, and the once-per-run passphrase.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use age::secrecy::ExposeSecret;
use predicates::prelude::*;
use predicates::str::contains;

use super::{script, Project};

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("s{i:03}.age")).collect()
}

#[test]
fn rekey_re_encrypts_every_secret_to_the_current_recipients() {
    let p = Project::new();
    let list = names(5);
    let refs: Vec<&str> = list.iter().map(String::as_str).collect();
    p.rules(&refs);
    for n in &refs {
        p.create(n, n.as_bytes());
    }
    let new = age::x25519::Identity::generate();
    fs::write(p.path("new.txt"), new.to_string().expose_secret()).unwrap();
    let new_pub = new.to_public().to_string();
    let keys: [&str; 2] = [p.public.as_str(), new_pub.as_str()];
    let rules: Vec<(&str, &[&str], bool)> = refs.iter().map(|n| (*n, &keys[..], false)).collect();
    p.rules_at("secrets.nix", &rules);
    for n in &refs {
        p.cmd().args(["-i", "new.txt", "-d", n]).assert().code(1);
    }
    p.cmd()
        .args(["-i", "key.txt", "-r"])
        .assert()
        .success()
        .stderr(contains("rekeyed 5 secret(s)"));
    for n in &refs {
        p.cmd()
            .args(["-i", "new.txt", "-d", n])
            .assert()
            .success()
            .stdout(n.to_string());
    }
    assert!(p.temp_files().is_empty());
}

#[test]
fn rekey_with_files_touches_only_the_named_ones() {
    let p = Project::new();
    p.rules(&["a.age", "b.age", "c.age"]);
    for n in ["a.age", "b.age", "c.age"] {
        p.create(n, b"x");
    }
    let before: Vec<Vec<u8>> = ["a.age", "b.age", "c.age"]
        .iter()
        .map(|n| fs::read(p.path(n)).unwrap())
        .collect();
    p.cmd()
        .args(["-i", "key.txt", "-r", "a.age", "./c.age"])
        .assert()
        .success();
    assert_ne!(fs::read(p.path("a.age")).unwrap(), before[0]);
    assert_eq!(fs::read(p.path("b.age")).unwrap(), before[1]);
    assert_ne!(fs::read(p.path("c.age")).unwrap(), before[2]);
}

#[test]
fn one_undecryptable_file_changes_nothing_and_every_failure_is_listed() {
    let p = Project::new();
    let list = names(12);
    let refs: Vec<&str> = list.iter().map(String::as_str).collect();
    p.rules(&refs);
    for n in &refs {
        p.create(n, n.as_bytes());
    }
    // One file nobody here can decrypt, one that is not age at all.
    let stranger = age::x25519::Identity::generate().to_public();
    let mut sealed = Vec::new();
    let r: ragenix::keys::BoxRecipient = Box::new(stranger);
    ragenix::age_io::encrypt(&[r], false, &mut &b"theirs"[..], &mut sealed).unwrap();
    fs::write(p.path("s003.age"), sealed).unwrap();
    fs::write(p.path("s007.age"), "garbage").unwrap();
    let before: Vec<Vec<u8>> = refs.iter().map(|n| fs::read(p.path(n)).unwrap()).collect();
    p.cmd()
        .args(["-i", "key.txt", "-r"])
        .assert()
        .code(1)
        .stderr(contains("cannot rekey s003.age").and(contains("no identity matched")))
        .stderr(contains("cannot rekey s007.age").and(contains("not an age file")))
        .stderr(contains(
            "2 of 12 secrets could not be rekeyed; nothing was changed",
        ));
    for (n, b) in refs.iter().zip(&before) {
        assert_eq!(&fs::read(p.path(n)).unwrap(), b, "{n} changed");
    }
    assert!(p.temp_files().is_empty(), "{:?}", p.temp_files());
}

#[test]
fn an_invalid_recipient_fails_the_whole_rekey() {
    let p = Project::new();
    let pk = p.public.as_str();
    p.rules(&["a.age", "b.age"]);
    p.create("a.age", b"a");
    p.create("b.age", b"b");
    let before = fs::read(p.path("a.age")).unwrap();
    p.rules_at(
        "secrets.nix",
        &[
            ("a.age", &[pk], false),
            ("b.age", &[pk, "ssh-ed25519 nonsense"], false),
        ],
    );
    p.cmd()
        .args(["-i", "key.txt", "-r"])
        .assert()
        .code(1)
        .stderr(contains(
            "secret \"b.age\": invalid recipient \"ssh-ed25519 nonsense\"",
        ));
    assert_eq!(fs::read(p.path("a.age")).unwrap(), before);
}

#[test]
fn secrets_sharing_a_bad_key_list_are_each_named() {
    let p = Project::new();
    p.rules(&["a.age", "b.age"]);
    p.create("a.age", b"a");
    p.create("b.age", b"b");
    let keys = [p.public.as_str(), "age1bogus"];
    p.rules_at(
        "secrets.nix",
        &[("a.age", &keys, false), ("b.age", &keys, false)],
    );
    p.cmd()
        .args(["-i", "key.txt", "-r"])
        .assert()
        .code(1)
        .stderr(contains(
            "cannot rekey a.age: secret \"a.age\": invalid recipient \"age1bogus\"",
        ))
        .stderr(contains(
            "cannot rekey b.age: secret \"b.age\": invalid recipient \"age1bogus\"",
        ))
        .stderr(contains("2 of 2 secrets could not be rekeyed"));
}

#[test]
fn secrets_whose_file_is_missing_are_skipped_with_a_note() {
    let p = Project::new();
    p.rules(&["here.age", "not yet.age"]);
    p.create("here.age", b"x");
    p.cmd()
        .args(["-i", "key.txt", "-r"])
        .assert()
        .success()
        .stderr(contains("skipping not yet.age").and(contains("rekeyed 1 secret(s)")));
    assert!(!p.path("not yet.age").exists());
}

#[test]
fn rekey_keeps_permission_bits_and_armor() {
    let p = Project::new();
    let pk = p.public.as_str();
    p.rules_at("secrets.nix", &[("a.age", &[pk], true)]);
    p.create("a.age", b"x");
    fs::set_permissions(p.path("a.age"), fs::Permissions::from_mode(0o600)).unwrap();
    p.cmd().args(["-i", "key.txt", "-r"]).assert().success();
    assert_eq!(
        fs::metadata(p.path("a.age")).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(fs::read(p.path("a.age"))
        .unwrap()
        .starts_with(b"-----BEGIN AGE"));
}

/// An ssh key protected by a passphrase, its public key, and an askpass script that counts
/// how often it was asked.
/// A project with `count` secrets (each containing its own name) encrypted only to a
/// passphrase-protected ssh key `locked`; also the askpass program and the secret names.
fn secrets_for_a_locked_key(count: usize) -> Option<(Project, String, Vec<String>)> {
    let p = Project::new();
    let (public, askpass) = locked_key(&p)?;
    let list = names(count);
    let keys = [public.as_str()];
    let rules: Vec<(&str, &[&str], bool)> = list
        .iter()
        .map(|n| (n.as_str(), &keys[..], false))
        .collect();
    p.rules_at("secrets.nix", &rules);
    for n in &list {
        p.cmd()
            .args(["-e", n])
            .write_stdin(n.clone())
            .assert()
            .success();
    }
    Some((p, askpass, list))
}

fn locked_key(p: &Project) -> Option<(String, String)> {
    if !crate::util::require_program("locked_ssh_key", "ssh-keygen") {
        return None;
    }
    let key = p.path("locked");
    assert!(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "open sesame", "-C", "", "-f"])
        .arg(&key)
        .status()
        .unwrap()
        .success());
    let count = p.path("asked");
    script(
        &p.path("askpass.sh"),
        &format!("echo x >> '{}'\necho 'open sesame'", count.display()),
    );
    Some((
        fs::read_to_string(key.with_extension("pub"))
            .unwrap()
            .trim()
            .to_owned(),
        p.path("askpass.sh").display().to_string(),
    ))
}

#[test]
fn a_passphrase_protected_ssh_key_is_asked_for_once_while_rekeying_many_files() {
    let Some((p, askpass, list)) = secrets_for_a_locked_key(40) else {
        return;
    };
    p.cmd()
        .env("RAGENIX_ASKPASS", &askpass)
        .args(["-i", "locked", "-r"])
        .assert()
        .success()
        .stderr(contains("rekeyed 40 secret(s)"));
    assert_eq!(
        fs::read_to_string(p.path("asked")).unwrap().lines().count(),
        1
    );
    for n in &list {
        p.cmd()
            .env("RAGENIX_ASKPASS", &askpass)
            .args(["-i", "locked", "-d", n])
            .assert()
            .success()
            .stdout(n.clone());
    }
}

#[test]
fn a_passphrase_protected_key_without_a_terminal_is_a_clear_error() {
    let p = Project::new();
    let Some((public, _)) = locked_key(&p) else {
        return;
    };
    p.rules_at("secrets.nix", &[("a.age", &[public.as_str()], false)]);
    p.cmd()
        .args(["-e", "a.age"])
        .write_stdin("x")
        .assert()
        .success();
    p.cmd()
        .args(["-i", "locked", "-d", "a.age"])
        .assert()
        .code(1)
        .stderr(contains("passphrase-protected and there is no terminal"));
}

#[test]
fn a_locked_key_is_not_asked_for_files_it_cannot_open() {
    let p = Project::new();
    let Some((_, askpass)) = locked_key(&p) else {
        return;
    };
    p.rules(&["a.age"]);
    p.create("a.age", b"x");
    // Both identities are given; the file is for key.txt, so the locked key stays locked.
    p.cmd()
        .env("RAGENIX_ASKPASS", &askpass)
        .args(["-i", "locked", "-i", "key.txt", "-d", "a.age"])
        .assert()
        .success()
        .stdout("x");
    assert!(!p.path("asked").exists());
}

#[test]
fn on_a_terminal_the_passphrase_prompt_appears_once_for_many_files() {
    if !crate::util::require_program("passphrase_prompt_on_a_terminal", "script") {
        return;
    }
    use std::io::{Read, Write};
    let Some((p, _, list)) = secrets_for_a_locked_key(30) else {
        return;
    };
    let inner = shell_words::join([super::bin(), "-i", "locked", "-r"]);
    let mut c = Command::new("script");
    p.prepare(&mut c);
    let mut child = c
        .args(["-qec", &inner, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let shown = || String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    let mut stdin = child.stdin.take().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // Answer once the prompt is on the terminal, as a person would. The prompt flushes input
    // typed before it turned echo off (TCSAFLUSH), so an early answer is retyped.
    while !shown().contains("[hidden]") {
        assert!(
            std::time::Instant::now() < deadline,
            "no prompt answered: {}",
            shown()
        );
        if shown().contains("Passphrase for") {
            stdin.write_all(b"open sesame\r").unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("ragenix did not finish: {}", shown());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{}", shown());
    drop(stdin);
    reader.join().unwrap();
    let seen = seen.lock().unwrap().clone();
    let shown = String::from_utf8_lossy(&seen);
    assert!(shown.contains("rekeyed 30 secret(s)"), "{shown}");
    // dialoguer redraws the prompt once answered, as "Passphrase for KEY: [hidden]".
    assert_eq!(shown.matches("[hidden]").count(), 1, "{shown}");
    for n in list.iter().take(3) {
        assert_eq!(
            p.cmd()
                .env("RAGENIX_ASKPASS", p.path("askpass.sh"))
                .args(["-i", "locked", "-d", n])
                .output()
                .unwrap()
                .stdout,
            n.as_bytes()
        );
    }
}
