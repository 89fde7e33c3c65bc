//! `ragenix --generate` through the CLI: every generator kind, sources and their failures,
//! `--force`, and flag combinations refused before any I/O.

use std::collections::BTreeSet;
use std::fs;
use std::process::Command;

use base64::prelude::{Engine, BASE64_STANDARD};
use predicates::prelude::*;
use predicates::str::contains;

use crate::cli::Project;
use crate::util::require_program;

/// `secrets.nix` giving every `(name, generator, armor)` this project's key; the generator is
/// Nix source (`"hex:8"` must be passed with its quotes).
fn rules_with(p: &Project, secrets: &[(&str, &str, bool)]) {
    let mut s = String::from("{\n");
    for (name, generator, armor) in secrets {
        s += &format!(
            "  {name:?} = {{ publicKeys = [ {:?} ]; armor = {armor}; generator = {generator}; }};\n",
            p.public
        );
    }
    s += "}\n";
    fs::write(p.path("secrets.nix"), s).unwrap();
}

/// Every file under the project except the scratch directories and the key.
fn files(p: &Project) -> BTreeSet<String> {
    walkdir::WalkDir::new(p.dir.path())
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            e.path()
                .strip_prefix(p.dir.path())
                .unwrap()
                .display()
                .to_string()
        })
        .filter(|n| n != "key.txt" && n != "secrets.nix")
        .collect()
}

fn text(p: &Project, name: &str) -> String {
    String::from_utf8(p.open(name).unwrap()).unwrap()
}

#[test]
fn generate_creates_each_builtin_kind_encrypted_to_the_rules() {
    let p = Project::new();
    rules_with(
        &p,
        &[
            ("alnum.age", "\"alnum:20\"", false),
            ("hex.age", "\"hex:8\"", true),
            ("b64.age", "\"base64:12\"", false),
            ("words.age", "\"passphrase:5\"", false),
        ],
    );
    p.cmd()
        .arg("--generate")
        .assert()
        .success()
        .stderr(contains("generated alnum.age").and(contains("generated words.age")));
    let alnum = text(&p, "alnum.age");
    assert_eq!(alnum.len(), 20);
    assert!(alnum.bytes().all(|b| b.is_ascii_alphanumeric()), "{alnum}");
    let hex = text(&p, "hex.age");
    assert_eq!(hex.len(), 16);
    assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{hex}");
    assert!(fs::read(p.path("hex.age"))
        .unwrap()
        .starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"));
    assert!(!fs::read(p.path("alnum.age")).unwrap().starts_with(b"-----"));
    assert_eq!(
        BASE64_STANDARD.decode(text(&p, "b64.age")).unwrap().len(),
        12
    );
    let words = text(&p, "words.age");
    assert_eq!(words.split('-').count(), 5, "{words}");
    p.cmd().arg("--check").assert().success();
    assert!(p.temp_files().is_empty());
    assert!(p.plaintext_copies(alnum.as_bytes()).is_empty());
}

#[test]
fn the_ssh_ed25519_generator_writes_the_key_and_its_pub_file() {
    let test = "the_ssh_ed25519_generator_writes_the_key_and_its_pub_file";
    if !require_program(test, "ssh-keygen") {
        return;
    }
    let p = Project::new();
    rules_with(&p, &[("hosts/web.age", "\"ssh-ed25519\"", false)]);
    p.cmd()
        .arg("--generate")
        .assert()
        .success()
        .stderr(contains("generated hosts/web.age (public key in "));
    let public = fs::read_to_string(p.path("hosts/web.pub")).unwrap();
    assert!(
        public.starts_with("ssh-ed25519 ") && public.ends_with(" web\n"),
        "{public}"
    );
    let key = p.path("run/id");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key)
            .unwrap();
        f.write_all(&p.open("hosts/web.age").unwrap()).unwrap();
    }
    let out = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), public);
}

#[test]
fn command_and_script_sources_run_in_the_rules_directory() {
    let p = Project::new();
    fs::create_dir(p.path("secrets")).unwrap();
    fs::write(p.path("secrets/seed"), "seeded").unwrap();
    rules_with(
        &p,
        &[
            (
                "cmd.age",
                r#"{ command = [ "printf" "%s|%s" "a b" "$HOME" ]; }"#,
                false,
            ),
            (
                "script.age",
                r#"{ script = "printf '%s' \"$((6 * 7))\""; }"#,
                false,
            ),
            (
                "bash.age",
                r#"{ script = "cat seed"; interpreter = "bash"; }"#,
                false,
            ),
        ],
    );
    fs::rename(p.path("secrets.nix"), p.path("secrets/secrets.nix")).unwrap();
    p.cmd()
        .args(["--rules", "secrets/secrets.nix", "--generate"])
        .assert()
        .success();
    assert_eq!(text(&p, "secrets/cmd.age"), "a b|$HOME");
    assert_eq!(text(&p, "secrets/script.age"), "42");
    assert_eq!(text(&p, "secrets/bash.age"), "seeded");
}

#[test]
fn a_failing_generator_leaves_nothing_behind_and_names_the_secret_and_status() {
    let p = Project::new();
    rules_with(
        &p,
        &[
            ("a-first.age", "\"hex:4\"", false),
            (
                "b-fails.age",
                r#"{ script = "echo leaked-secret; echo 'vault sealed' >&2; exit 3"; }"#,
                false,
            ),
            (
                "c-after.age",
                r#"{ command = [ "touch" "c-ran" ]; }"#,
                false,
            ),
        ],
    );
    p.cmd().arg("--generate").assert().code(1).stderr(
        contains("secret \"b-fails.age\": generator \"sh\" failed (exit status: 3)")
            .and(contains("vault sealed"))
            .and(contains("leaked-secret").not()),
    );
    assert_eq!(files(&p), BTreeSet::new(), "nothing may be left behind");
    p.cmd()
        .args(["--generate", "c-after.age"])
        .assert()
        .success();
    // Only the named secret ran.
    assert_eq!(
        files(&p),
        ["c-after.age", "c-ran"]
            .map(String::from)
            .into_iter()
            .collect()
    );
}

#[test]
fn a_missing_program_or_bad_recipient_writes_nothing() {
    let p = Project::new();
    rules_with(
        &p,
        &[
            ("a.age", "\"hex:4\"", false),
            (
                "b.age",
                r#"{ command = [ "/nonexistent/pass" "show" ]; }"#,
                false,
            ),
        ],
    );
    p.cmd().arg("--generate").assert().code(1).stderr(contains(
        "secret \"b.age\": cannot run generator \"/nonexistent/pass\"",
    ));
    assert!(files(&p).is_empty());
    fs::write(
        p.path("secrets.nix"),
        format!(
            "{{ \"a.age\" = {{ publicKeys = [ {:?} ]; generator = \"hex:4\"; }};\n   \"b.age\" = {{ publicKeys = [ \"age1bogus\" ]; generator = {{ command = [ \"touch\" \"ran\" ]; }}; }}; }}",
            p.public
        ),
    )
    .unwrap();
    p.cmd().arg("--generate").assert().code(1).stderr(
        contains("secret \"b.age\": invalid recipient \"age1bogus\"")
            .and(contains("nothing was generated")),
    );
    assert!(
        files(&p).is_empty(),
        "no generator may run before recipients are valid"
    );
}

#[test]
fn existing_secrets_are_kept_unless_force() {
    let p = Project::new();
    rules_with(
        &p,
        &[
            ("a.age", "\"alnum:24\"", false),
            ("b.age", "\"alnum:24\"", false),
        ],
    );
    p.cmd().arg("--generate").assert().success();
    let (a, b) = (
        fs::read(p.path("a.age")).unwrap(),
        fs::read(p.path("b.age")).unwrap(),
    );
    p.cmd()
        .arg("--generate")
        .assert()
        .success()
        .stderr(contains(
            "keeping a.age: the file exists (--force replaces it)",
        ));
    p.cmd().args(["--generate", "a.age"]).assert().success();
    assert_eq!(fs::read(p.path("a.age")).unwrap(), a);
    assert_eq!(fs::read(p.path("b.age")).unwrap(), b);
    let old_a = text(&p, "a.age");
    p.cmd()
        .args(["--generate", "a.age", "--force"])
        .assert()
        .success()
        .stderr(contains("generated a.age"));
    assert_ne!(text(&p, "a.age"), old_a);
    assert_eq!(fs::read(p.path("b.age")).unwrap(), b, "only the named one");
    assert!(p.temp_files().is_empty());
}

#[test]
fn generate_refuses_a_named_secret_without_generator() {
    let p = Project::new();
    p.rules(&["plain.age"]);
    p.cmd()
        .args(["--generate", "plain.age"])
        .assert()
        .code(1)
        .stderr(contains(
            "secret \"plain.age\" has no generator in the rules",
        ));
    assert!(files(&p).is_empty());
}

#[test]
fn contradictory_flags_are_usage_errors_before_any_io() {
    let p = Project::new();
    // No rules file exists: exit 2 must come from the flags.
    for args in [
        &["--force"][..],
        &["-r", "--force"],
        &["--check", "--force"],
        &["--json"],
        &["-r", "--json"],
        &["--stale"],
        &["--check", "--stale"],
        &["--check", "-r"],
        &["--check", "--generate"],
        &["--generate", "-e", "x.age"],
        &["--schema", "--check"],
        &["--textconv", "--check"],
        &["--man", "--schema"],
    ] {
        p.cmd()
            .args(args)
            .assert()
            .code(2)
            .stderr(contains("Usage:"));
    }
    p.cmd()
        .args(["--completions", "tcsh"])
        .assert()
        .code(2)
        .stderr(contains("invalid value 'tcsh'"));
}
