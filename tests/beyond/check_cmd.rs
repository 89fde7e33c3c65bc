//! `ragenix --check` (human and JSON) on trees with each kind of drift, and `-r --stale`.

use std::fs;

use predicates::str::contains;
use serde_json::Value as Json;

use crate::cli::Project;

fn ssh_ed25519_public() -> String {
    ssh_key::PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519)
        .unwrap()
        .public_key()
        .to_openssh()
        .unwrap()
}

fn x25519_public() -> String {
    age::x25519::Identity::generate().to_public().to_string()
}

/// Runs `--check` expecting findings; returns the human lines and the parsed JSON report.
fn check_fails(p: &Project) -> (String, Json) {
    let out = p.cmd().arg("--check").assert().code(1).get_output().clone();
    let human = String::from_utf8(out.stdout).unwrap();
    let out = p
        .cmd()
        .args(["--check", "--json"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let json: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["ok"], false);
    (human, json)
}

fn kinds_of(json: &Json, name: &str) -> Vec<String> {
    json["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == name)
        .flat_map(|s| s["findings"].as_array().unwrap().iter())
        .map(|f| f["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn check_on_a_clean_tree_exits_0_without_an_identity() {
    let p = Project::new();
    let pk = p.public.as_str();
    p.rules_at(
        "secrets.nix",
        &[("a.age", &[pk], false), ("sub/b.age", &[pk], true)],
    );
    p.create("a.age", b"a");
    p.create("sub/b.age", b"b");
    p.cmd()
        .arg("--check")
        .assert()
        .success()
        .stdout("./secrets.nix: 2 secret(s) match the rules\n");
    let out = p.cmd().args(["--check", "--json"]).assert().success();
    let json: Json = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["checked"], 2);
    assert_eq!(json["secrets"], Json::Array(vec![]));
}

#[test]
fn check_reports_a_missing_file_an_orphan_and_a_bad_header() {
    let p = Project::new();
    p.rules(&["here.age", "gone.age", "junk.age"]);
    p.create("here.age", b"x");
    fs::write(p.path("junk.age"), "this is not age\n").unwrap();
    fs::create_dir(p.path("old")).unwrap();
    fs::copy(p.path("here.age"), p.path("old/forgotten.age")).unwrap();
    // Version-control metadata is never searched for orphans.
    fs::create_dir(p.path(".git")).unwrap();
    fs::copy(p.path("here.age"), p.path(".git/x.age")).unwrap();
    let (human, json) = check_fails(&p);
    assert!(
        human.contains("gone.age: declared in the rules but the file does not exist\n"),
        "{human}"
    );
    assert!(
        human.contains("junk.age: the age header does not parse"),
        "{human}"
    );
    assert!(
        human.contains("old/forgotten.age: no rule names this file\n"),
        "{human}"
    );
    assert!(
        human.ends_with("./secrets.nix: 3 finding(s) in 3 file(s)\n"),
        "{human}"
    );
    assert!(
        !human.contains("here.age:") && !human.contains(".git"),
        "{human}"
    );
    assert_eq!(kinds_of(&json, "gone.age"), ["missing"]);
    assert_eq!(kinds_of(&json, "junk.age"), ["bad-header"]);
    assert_eq!(kinds_of(&json, "old/forgotten.age"), ["orphan"]);
}

/// Writes rules `before`, creates the file, rewrites the rules to `after`, and returns what
/// `--check` says about it.
fn drift(before: (&[&str], bool), after: (&[&str], bool)) -> (String, Json) {
    let p = Project::new();
    p.rules_at("secrets.nix", &[("s.age", before.0, before.1)]);
    p.create("s.age", b"secret");
    p.cmd().arg("--check").assert().success();
    p.rules_at("secrets.nix", &[("s.age", after.0, after.1)]);
    check_fails(&p)
}

#[test]
fn check_reports_an_ssh_key_added_to_the_rules() {
    let (old, new) = (ssh_ed25519_public(), ssh_ed25519_public());
    let (human, json) = drift((&[&old], false), (&[&old, &new], false));
    let tail = &new.split_whitespace().nth(1).unwrap()[56..];
    assert!(
        human
            .starts_with("s.age: recipients differ from the rules: not encrypted to ssh-ed25519 …"),
        "{human}"
    );
    assert!(human.contains(tail), "{human}");
    assert_eq!(kinds_of(&json, "s.age"), ["recipients"]);
    assert_eq!(
        json["secrets"][0]["findings"][0]["missing"][0],
        new.as_str()
    );
}

#[test]
fn check_reports_an_ssh_key_removed_from_the_rules() {
    let (keep, gone) = (ssh_ed25519_public(), ssh_ed25519_public());
    let (human, json) = drift((&[&keep, &gone], false), (&[&keep], false));
    assert!(
        human.contains("encrypted to an ssh-ed25519 key with tag "),
        "{human}"
    );
    assert!(human.contains("that the rules do not list"), "{human}");
    let finding = &json["secrets"][0]["findings"][0];
    assert_eq!(finding["kind"], "recipients");
    assert_eq!(finding["missing"], Json::Array(vec![]));
    assert_eq!(finding["unexpected"].as_array().unwrap().len(), 1);
}

#[test]
fn check_reports_a_different_number_of_x25519_recipients() {
    let (a, b) = (x25519_public(), x25519_public());
    let (human, json) = drift((&[&a], false), (&[&a, &b], false));
    assert!(
        human.contains("2 X25519 recipient(s) in the rules, 1 in the file"),
        "{human}"
    );
    assert_eq!(
        json["secrets"][0]["findings"][0]["counts"][0],
        serde_json::json!({"kind": "X25519", "rules": 2, "file": 1})
    );
}

#[test]
fn check_reports_armor_that_differs_from_the_rules() {
    let a = x25519_public();
    let (human, json) = drift((&[&a], false), (&[&a], true));
    assert!(
        human.starts_with("s.age: armor is true in the rules but the file is binary\n"),
        "{human}"
    );
    assert_eq!(kinds_of(&json, "s.age"), ["armor"]);
    let (human, _) = drift((&[&a], true), (&[&a], false));
    assert!(human.contains("armor is false in the rules but the file is armored"));
}

#[test]
fn rekey_stale_rewrites_exactly_the_stale_files() {
    let p = Project::new();
    let names = ["a.age", "b.age", "c.age", "d.age"];
    p.rules(&names);
    for n in names {
        p.create(n, n.as_bytes());
    }
    let before: Vec<Vec<u8>> = names.iter().map(|n| fs::read(p.path(n)).unwrap()).collect();
    let extra = x25519_public();
    let pk = p.public.as_str();
    p.rules_at(
        "secrets.nix",
        &[
            ("a.age", &[pk, &extra], false),
            ("b.age", &[pk], true),
            ("c.age", &[pk], false),
            ("d.age", &[pk], false),
        ],
    );
    p.cmd()
        .args(["-i", "key.txt", "-r", "--stale"])
        .assert()
        .success()
        .stderr(contains("rekeyed 2 secret(s)"));
    let after: Vec<Vec<u8>> = names.iter().map(|n| fs::read(p.path(n)).unwrap()).collect();
    assert_ne!(after[0], before[0]);
    assert_ne!(after[1], before[1]);
    assert!(after[1].starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"));
    assert_eq!(after[2], before[2], "c.age was not stale");
    assert_eq!(after[3], before[3], "d.age was not stale");
    for n in names {
        assert_eq!(p.open(n).unwrap(), n.as_bytes());
    }
    p.cmd().arg("--check").assert().success();
    // Nothing stale: no identity is needed and nothing is touched.
    p.cmd()
        .args(["-r", "--lazy"])
        .assert()
        .success()
        .stderr(contains("no stale secrets"));
    let again: Vec<Vec<u8>> = names.iter().map(|n| fs::read(p.path(n)).unwrap()).collect();
    assert_eq!(again, after);
    assert!(p.temp_files().is_empty());
}

#[test]
fn rekey_stale_with_files_rekeys_only_those_named_that_are_stale() {
    let p = Project::new();
    p.rules(&["a.age", "b.age"]);
    p.create("a.age", b"a");
    p.create("b.age", b"b");
    let pk = p.public.as_str();
    p.rules_at(
        "secrets.nix",
        &[("a.age", &[pk], true), ("b.age", &[pk], true)],
    );
    let b = fs::read(p.path("b.age")).unwrap();
    p.cmd()
        .args(["-i", "key.txt", "-r", "a.age", "--stale"])
        .assert()
        .success()
        .stderr(contains("rekeyed 1 secret(s)"));
    assert!(fs::read(p.path("a.age"))
        .unwrap()
        .starts_with(b"-----BEGIN AGE"));
    assert_eq!(fs::read(p.path("b.age")).unwrap(), b);
}
