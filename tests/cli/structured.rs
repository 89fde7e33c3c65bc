//! Structured secrets on the command line: a JSON/YAML/dotenv document edited with `-e` stays a
//! plain age file (Go `age` reads the same document back), `-d --key` prints one value, and
//! `--check -i` looks up the keys a rule declares.

use std::fs;
use std::process::Command;

use predicates::str::contains;

use super::{stderr_of, Project};
use crate::util::require_program;

const YAML: &str = "db:\n  password: hunter2\n  user: app\nsmtp: 'mail: pw'\n";

/// `secrets.nix` with a YAML document declaring its keys, and a JSON one named without a
/// format in its file name.
fn project() -> Project {
    let p = Project::new();
    fs::write(
        p.path("secrets.nix"),
        format!(
            r#"let k = [ "{pk}" ]; in {{
  "db.yaml.age" = {{ publicKeys = k; keys = [ "db/password" "smtp" ]; }};
  "api.age" = {{ publicKeys = k; format = "json"; keys = [ "github/token" ]; }};
}}
"#,
            pk = p.public
        ),
    )
    .unwrap();
    p
}

#[test]
fn a_structured_secret_edited_with_ragenix_is_the_same_document_for_go_age() {
    let name = "a_structured_secret_edited_with_ragenix_is_the_same_document_for_go_age";
    if !require_program(name, "age") {
        return;
    }
    let p = project();
    p.create("db.yaml.age", YAML.as_bytes());
    let out = Command::new("age")
        .args(["-d", "-i", "key.txt", "db.yaml.age"])
        .current_dir(p.path(""))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), YAML);
    // And one value of it, by key.
    p.cmd()
        .args(["-i", "key.txt", "-d", "db.yaml.age", "--key", "smtp"])
        .assert()
        .success()
        .stdout("mail: pw");
}

#[test]
fn decrypt_with_key_prints_one_value_of_a_json_yaml_or_dotenv_document() {
    let p = project();
    p.create("db.yaml.age", YAML.as_bytes());
    p.create("api.age", br#"{"github": {"token": "gho_1", "n": 2}}"#);
    fs::write(
        p.path("secrets.nix"),
        format!("{{ \"app.env.age\".publicKeys = [ \"{}\" ]; }}\n", p.public),
    )
    .unwrap();
    p.create(
        "app.env.age",
        b"export TOKEN='t$1'\nOTHER=\"x$PATH${PATH}\"\n",
    );
    for (file, args, want) in [
        ("db.yaml.age", &["--key", "db/password"][..], "hunter2"),
        (
            "api.age",
            &["--key", "github/token", "--format", "json"],
            "gho_1",
        ),
        ("api.age", &["--key", "github/n", "--format", "json"], "2"),
        ("app.env.age", &["--key", "TOKEN"], "t$1"),
        ("app.env.age", &["--key", "OTHER"], "x$PATH${PATH}"),
    ] {
        p.cmd()
            .args(["-i", "key.txt", "-d", file])
            .args(args)
            .assert()
            .success()
            .stdout(want.to_string());
    }
}

#[test]
fn a_missing_key_fails_naming_file_format_and_key_but_not_the_document() {
    let p = project();
    p.create("db.yaml.age", YAML.as_bytes());
    let out = p
        .cmd()
        .args(["-i", "key.txt", "-d", "db.yaml.age", "--key", "db/nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = stderr_of(&out);
    assert_eq!(
        err,
        "ragenix: db.yaml.age: yaml key `db/nope`: the key is not in the document (`db` is, but nothing below it by that name)\n"
    );
    // A document that does not parse: a position, never its text.
    p.create("db.yaml.age", b"db: [hunter2\n");
    let out = p
        .cmd()
        .args(["-i", "key.txt", "-d", "db.yaml.age", "--key", "db"])
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("yaml key `db`: the document does not parse (line "),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn key_and_format_flags_are_checked_before_any_file_is_opened() {
    let p = Project::new();
    for (args, message) in [
        (
            &["--key", "a", "--check"][..],
            "--key only applies to --decrypt",
        ),
        (
            &["-d", "x.yaml.age", "--format", "yaml"],
            "--format only applies to --key",
        ),
        (
            &["-d", "token.age", "--key", "a"],
            "cannot tell the format of token.age from its name; pass --format json|yaml|dotenv|ini",
        ),
        (
            &["-d", "x.env.age", "--key", "a/b"],
            "a dotenv variable name has no `/`",
        ),
        (
            &["-d", "x.json.age", "--key", "a//b"],
            "has an empty segment",
        ),
        (
            &["-d", "x.age", "--key", "a", "--format", "binary"],
            "not binary",
        ),
        (
            &["-d", "x.age", "--key", "a", "--format", "xml"],
            "invalid value 'xml'",
        ),
    ] {
        p.cmd()
            .args(args)
            .assert()
            .code(2)
            .stderr(contains(message));
    }
}

#[test]
fn check_looks_up_declared_keys_only_when_given_an_identity() {
    let p = project();
    p.create("db.yaml.age", YAML.as_bytes());
    p.create("api.age", br#"{"github": {"user": "bot"}}"#);
    // Without -i: header checks only, and a note that the keys were not looked up.
    p.cmd().arg("--check").assert().success().stdout(contains(
        "note: 3 declared key(s) not checked: pass -i to decrypt the files and look them up",
    ));
    let out = p.cmd().args(["--check", "--json"]).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["keys"],
        serde_json::json!({"skipped": {"declared": 3}})
    );

    // With -i: the key missing from the JSON document is a finding; the YAML one is fine.
    let out = p.cmd().args(["--check", "-i", "key.txt"]).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert_eq!(
        stdout.lines().next().unwrap(),
        "api.age: json key `github/token`: the key is not in the document (`github` is, but nothing below it by that name)"
    );
    assert!(
        !stdout.contains("note:") && !stdout.contains("db.yaml.age"),
        "{stdout}"
    );
    assert!(!stdout.contains("bot"), "{stdout}");

    // Bad key declarations are findings even without -i.
    fs::write(
        p.path("secrets.nix"),
        format!(
            "{{ \"db.age\" = {{ publicKeys = [ \"{}\" ]; keys = [ \"a\" ]; }}; }}\n",
            p.public
        ),
    )
    .unwrap();
    p.create("db.age", b"{}");
    p.cmd().arg("--check").assert().code(1).stdout(contains(
        "db.age: keys are declared but the format cannot be told from the file name",
    ));
}
