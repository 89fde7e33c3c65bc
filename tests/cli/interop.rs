//! Interop with Go `age`: what ragenix writes, `age -d` reads, and what `age -r`/`-R` writes,
//! ragenix reads; for X25519, ssh-ed25519 and ssh-rsa keys, armored and binary.

use std::fs;
use std::process::Command;

use super::Project;
use crate::util::require_program;

fn payloads() -> Vec<(&'static str, Vec<u8>)> {
    // Deterministic pseudo-random bytes: incompressible and full of invalid UTF-8.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let big: Vec<u8> = (0..10 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    vec![
        ("empty", Vec::new()),
        ("one", b"\x00".to_vec()),
        (
            "binary",
            b"\xff\xfe\x00\x80 not \xc3\x28 utf-8 \n\r\x1b".to_vec(),
        ),
        ("10mib", big),
    ]
}

/// Generates a key of `kind` in the project; returns (identity file, public key).
fn keygen(p: &Project, kind: &str) -> (String, String) {
    match kind {
        "x25519" => {
            let out = Command::new("age-keygen")
                .args(["-o", "x25519.key"])
                .current_dir(p.path(""))
                .output()
                .unwrap();
            assert!(out.status.success());
            let public = Command::new("age-keygen")
                .args(["-y", "x25519.key"])
                .current_dir(p.path(""))
                .output()
                .unwrap();
            (
                "x25519.key".into(),
                String::from_utf8(public.stdout).unwrap().trim().into(),
            )
        }
        ssh => {
            let mut c = Command::new("ssh-keygen");
            c.args(["-q", "-N", "", "-C", "", "-t", ssh]);
            if ssh == "rsa" {
                c.args(["-b", "2048"]);
            }
            let file = format!("id_{ssh}");
            assert!(c
                .arg("-f")
                .arg(&file)
                .current_dir(p.path(""))
                .status()
                .unwrap()
                .success());
            let public = fs::read_to_string(p.path(format!("{file}.pub"))).unwrap();
            (file, public.trim().into())
        }
    }
}

fn interop(kind: &str) {
    let test = format!("interop_{kind}");
    if !require_program(&test, "age")
        || !require_program(&test, "age-keygen")
        || !require_program(&test, "ssh-keygen")
    {
        return;
    }
    let p = Project::new();
    let (identity, public) = keygen(&p, kind);
    fs::write(p.path("recipients.txt"), format!("{public}\n")).unwrap();
    let payloads = payloads();
    let keys = [public.as_str()];
    let mut cases: Vec<(String, bool, &[u8])> = Vec::new();
    for (label, plain) in &payloads {
        for armor in [false, true] {
            let name = format!("{label}-{}.age", if armor { "armor" } else { "bin" });
            cases.push((name, armor, plain));
        }
    }
    let rules: Vec<(&str, &[&str], bool)> = cases
        .iter()
        .map(|(n, a, _)| (n.as_str(), &keys[..], *a))
        .collect();
    p.rules_at("secrets.nix", &rules);

    for (i, (name, armor, plain)) in cases.iter().enumerate() {
        let name = name.as_str();
        let what = format!("{kind} {name}");

        // ragenix writes, age reads (`--editor -`: the empty payload is meant).
        p.cmd()
            .args(["--editor", "-", "-e", name])
            .write_stdin(plain.to_vec())
            .assert()
            .success();
        let sealed = fs::read(p.path(name)).unwrap();
        assert_eq!(
            sealed.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"),
            *armor,
            "{what}"
        );
        let out = age(&p)
            .args(["-d", "-i", &identity, name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "age -d {what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout == *plain, "age -d {what}: content differs");

        // age writes (alternately with -r and -R), ragenix reads.
        fs::write(p.path("plain"), plain).unwrap();
        let mut c = age(&p);
        if *armor {
            c.arg("-a");
        }
        if i % 2 == 0 {
            c.args(["-r", &public]);
        } else {
            c.args(["-R", "recipients.txt"]);
        }
        let out = c.args(["-o", name, "plain"]).output().unwrap();
        assert!(
            out.status.success(),
            "age -e {what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = p
            .cmd()
            .args(["-i", &identity, "-d", name])
            .output()
            .unwrap();
        assert!(
            got.status.success(),
            "ragenix -d {what}: {}",
            String::from_utf8_lossy(&got.stderr)
        );
        assert!(got.stdout == *plain, "ragenix -d {what}: content differs");
    }

    // age-written files rekeyed by ragenix stay readable by age, armor as the rules say.
    p.cmd().args(["-i", &identity, "-r"]).assert().success();
    for (name, armor, plain) in &cases {
        let sealed = fs::read(p.path(name)).unwrap();
        assert_eq!(
            sealed.starts_with(b"-----BEGIN AGE"),
            *armor,
            "{kind} {name} after -r"
        );
        let out = age(&p)
            .args(["-d", "-i", &identity, name])
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stdout == *plain,
            "{kind} {name} after -r"
        );
    }
}

fn age(p: &Project) -> Command {
    let mut c = Command::new("age");
    c.current_dir(p.path(""));
    c
}

#[test]
fn interop_with_go_age_for_x25519() {
    interop("x25519");
}

#[test]
fn interop_with_go_age_for_ssh_ed25519() {
    interop("ed25519");
}

#[test]
fn interop_with_go_age_for_ssh_rsa() {
    interop("rsa");
}
