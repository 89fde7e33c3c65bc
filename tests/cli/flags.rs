//! Flags, exit codes, rules lookup, identities and error messages.

use std::fs;
use std::io::Read;
use std::process::Stdio;

use predicates::prelude::*;
use predicates::str::contains;

use super::Project;

#[test]
fn no_action_is_a_usage_error_with_exit_2() {
    let p = Project::new();
    p.cmd().assert().code(2).stderr(contains("Usage:"));
}

#[test]
fn an_unknown_flag_is_a_usage_error_with_exit_2() {
    let p = Project::new();
    p.cmd()
        .args(["-d", "x.age", "--frobnicate"])
        .assert()
        .code(2)
        .stderr(contains("Usage:"));
}

#[test]
fn two_actions_are_refused_before_any_io() {
    let p = Project::new();
    // Neither file exists: the refusal must come from the flags, not from opening a file.
    p.cmd()
        .args(["-e", "a.age", "-r"])
        .assert()
        .code(2)
        .stderr(contains("cannot be used with"));
    p.cmd()
        .args(["-d", "a.age", "-e", "b.age"])
        .assert()
        .code(2);
}

#[test]
fn editor_is_only_accepted_with_edit() {
    let p = Project::new();
    p.cmd().args(["-r", "--editor", "vi"]).assert().code(2);
}

#[test]
fn help_and_version_go_to_stdout_and_succeed() {
    let p = Project::new();
    p.cmd().arg("-h").assert().success().stdout(
        contains("--edit")
            .and(contains("--rekey"))
            .and(contains("--identity")),
    );
    p.cmd()
        .arg("-V")
        .assert()
        .success()
        .stdout(contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn decrypt_needs_no_rule_and_no_rules_file() {
    let p = Project::new();
    p.rules(&["a.age"]);
    p.create("a.age", b"textconv me");
    fs::remove_file(p.path("secrets.nix")).unwrap();
    p.cmd()
        .args(["-i", "key.txt", "-d", "a.age"])
        .assert()
        .success()
        .stdout("textconv me");
}

#[test]
fn decrypt_of_a_missing_file_names_it() {
    let p = Project::new();
    p.cmd()
        .args(["-i", "key.txt", "-d", "gone.age"])
        .assert()
        .code(1)
        .stderr(contains("ragenix: cannot open gone.age"));
}

#[test]
fn decrypt_with_the_wrong_identity_says_which_were_tried() {
    let p = Project::new();
    p.rules(&["a.age"]);
    p.create("a.age", b"x");
    let other = age::x25519::Identity::generate();
    use age::secrecy::ExposeSecret;
    fs::write(p.path("other.txt"), other.to_string().expose_secret()).unwrap();
    p.cmd()
        .args(["-i", "other.txt", "-d", "a.age"])
        .assert()
        .code(1)
        .stderr(contains(
            "cannot decrypt a.age: no identity matched (tried other.txt)",
        ))
        .stderr(contains("hint: "));
}

#[test]
fn decrypt_of_a_non_age_file_says_so() {
    let p = Project::new();
    fs::write(p.path("plain.age"), "just text, not age\n").unwrap();
    p.cmd()
        .args(["-i", "key.txt", "-d", "plain.age"])
        .assert()
        .code(1)
        .stderr(contains("not an age file"));
}

#[test]
fn decrypt_into_a_closed_pipe_is_success() {
    let p = Project::new();
    p.rules(&["big.age"]);
    p.create("big.age", &vec![b'x'; 4 << 20]);
    let mut child = p
        .std_cmd()
        .args(["-i", "key.txt", "-d", "big.age"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 1];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", super::stderr_of(&out));
    assert!(out.stderr.is_empty(), "{}", super::stderr_of(&out));
}

#[test]
fn without_identity_flags_the_default_ssh_keys_are_used() {
    let p = Project::new();
    if !crate::util::require_program("default_ssh_keys", "ssh-keygen") {
        return;
    }
    fs::create_dir(p.path("home/.ssh")).unwrap();
    let key = p.path("home/.ssh/id_ed25519");
    assert!(std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "", "-f"])
        .arg(&key)
        .status()
        .unwrap()
        .success());
    let public = fs::read_to_string(key.with_extension("pub")).unwrap();
    p.rules_at("secrets.nix", &[("a.age", &[public.trim()], false)]);
    p.cmd()
        .args(["-e", "a.age"])
        .write_stdin("via default key")
        .assert()
        .success();
    p.cmd()
        .args(["-d", "a.age"])
        .assert()
        .success()
        .stdout("via default key");
}

#[test]
fn no_identity_found_lists_the_paths_tried() {
    let p = Project::new();
    p.rules(&["a.age"]);
    p.create("a.age", b"x");
    let home = p.path("home");
    p.cmd()
        .args(["-d", "a.age"])
        .assert()
        .code(1)
        .stderr(contains(format!(
            "no identity found (tried {0}/.ssh/id_ed25519, {0}/.ssh/id_rsa)",
            home.display()
        )))
        .stderr(contains("hint: pass"));
}

#[test]
fn identity_is_repeatable_and_any_one_may_match() {
    let p = Project::new();
    p.rules(&["a.age"]);
    p.create("a.age", b"second key works");
    let other = age::x25519::Identity::generate();
    use age::secrecy::ExposeSecret;
    fs::write(p.path("other.txt"), other.to_string().expose_secret()).unwrap();
    p.cmd()
        .args(["-i", "other.txt", "--identity", "key.txt", "-d", "a.age"])
        .assert()
        .success()
        .stdout("second key works");
}

#[test]
fn identity_takes_several_paths_without_eating_the_file_of_the_action() {
    let p = Project::new();
    p.rules(&["a.age"]);
    p.create("a.age", b"k");
    let other = age::x25519::Identity::generate();
    use age::secrecy::ExposeSecret;
    fs::write(p.path("other.txt"), other.to_string().expose_secret()).unwrap();
    super::script(&p.path("ed.sh"), "printf x >> \"$1\"");
    // The editor needs the old content, so only key.txt (never first) makes the edit work.
    let forms: [&[&str]; 3] = [
        &["-i", "other.txt", "-i", "key.txt", "-e", "a.age"],
        &["-i", "other.txt", "key.txt", "-e", "a.age"],
        &["-e", "a.age", "-i", "other.txt", "key.txt"],
    ];
    let mut want = b"k".to_vec();
    for args in forms {
        p.cmd()
            .args(["--editor", "sh ed.sh"])
            .args(args)
            .assert()
            .success();
        want.push(b'x');
        assert_eq!(p.open("a.age").unwrap(), want, "{args:?}");
    }
    for args in [
        &["-i", "other.txt", "key.txt", "-d", "a.age"][..],
        &["-d", "a.age", "-i", "other.txt", "key.txt"][..],
    ] {
        p.cmd().args(args).assert().success().stdout("kxxx");
    }
    p.cmd()
        .args(["-i", "other.txt", "key.txt", "-r", "a.age"])
        .assert()
        .success();
    assert_eq!(p.open("a.age").unwrap(), b"kxxx");
    // -i never takes the place of the file of -e: without one it is still a usage error.
    p.cmd().args(["-i", "key.txt", "-e"]).assert().code(2);
    p.cmd()
        .args(["-i", "key.txt", "other.txt", "-d"])
        .assert()
        .code(2);
}

#[test]
fn an_unreadable_identity_names_the_file() {
    let p = Project::new();
    p.rules(&["a.age"]);
    p.create("a.age", b"x");
    fs::write(p.path("junk.key"), "not a key\n").unwrap();
    p.cmd()
        .args(["-i", "junk.key", "-d", "a.age"])
        .assert()
        .code(1)
        .stderr(contains("cannot read identity junk.key"));
    fs::write(p.path("key.pub"), format!("{}\n", p.public)).unwrap();
    p.cmd()
        .args(["-i", "key.pub", "-d", "a.age"])
        .assert()
        .code(1)
        .stderr(contains(
            "cannot read identity key.pub: this is a public key",
        ))
        .stderr(contains("hint: -i takes the private key"));
    p.cmd()
        .args(["-i", "missing.key", "-d", "a.age"])
        .assert()
        .code(1)
        .stderr(contains("cannot read identity missing.key"));
}

#[test]
fn rules_come_from_the_flag_then_the_environment_then_the_default() {
    let p = Project::new();
    p.rules(&["a.age"]);
    fs::rename(p.path("secrets.nix"), p.path("other.nix")).unwrap();
    p.cmd()
        .args(["-i", "key.txt", "-e", "a.age"])
        .write_stdin("x")
        .assert()
        .code(1)
        .stderr(contains("rules file ./secrets.nix does not exist"));
    p.cmd()
        .env("RULES", "other.nix")
        .args(["-i", "key.txt", "-e", "a.age"])
        .write_stdin("from env")
        .assert()
        .success();
    p.cmd()
        .env("RULES", "nonexistent.nix")
        .args(["--rules", "other.nix", "-i", "key.txt", "-d", "a.age"])
        .assert()
        .success()
        .stdout("from env");
}

#[test]
fn file_arguments_match_rules_relative_to_the_rules_directory() {
    let p = Project::new();
    let pk = p.public.as_str();
    p.rules_at("secrets/secrets.nix", &[("x.age", &[pk], false)]);
    p.cmd()
        .args([
            "-i",
            "key.txt",
            "--rules",
            "secrets/secrets.nix",
            "-e",
            "secrets/x.age",
        ])
        .write_stdin("one")
        .assert()
        .success();
    p.cmd()
        .current_dir(p.path("secrets"))
        .args(["-i", "../key.txt", "-e", "./x.age"])
        .write_stdin("two")
        .assert()
        .success();
    p.cmd()
        .args(["-i", "key.txt", "-d", "secrets/./x.age"])
        .assert()
        .stdout("two");
}

#[test]
fn a_file_without_a_rule_is_refused_naming_it() {
    let p = Project::new();
    p.rules(&["a.age", "b.age"]);
    p.cmd()
        .args(["-i", "key.txt", "-e", "c.age"])
        .write_stdin("x")
        .assert()
        .code(1)
        .stderr(contains("ragenix: c.age has no rule in ./secrets.nix"))
        .stderr(contains("it declares: a.age, b.age"));
    assert!(!p.path("c.age").exists());
    p.cmd()
        .args(["-i", "key.txt", "-r", "c.age"])
        .assert()
        .code(1)
        .stderr(contains("c.age has no rule"));
}

#[test]
fn an_invalid_recipient_names_the_secret_and_the_string_and_writes_nothing() {
    let p = Project::new();
    p.rules_at(
        "secrets.nix",
        &[(
            "bad.age",
            &["age1notarealkey", "ssh-ed25519 AAAAC3broken"],
            false,
        )],
    );
    p.cmd()
        .args(["-i", "key.txt", "-e", "bad.age"])
        .write_stdin("x")
        .assert()
        .code(1)
        .stderr(contains(
            "secret \"bad.age\": invalid recipient \"age1notarealkey\"",
        ));
    assert!(!p.path("bad.age").exists());
}

#[test]
fn empty_public_keys_are_refused_when_encrypting() {
    let p = Project::new();
    p.rules_at("secrets.nix", &[("nobody.age", &[], false)]);
    p.cmd()
        .args(["-i", "key.txt", "-e", "nobody.age"])
        .write_stdin("x")
        .assert()
        .code(1)
        .stderr(contains("secret \"nobody.age\" has no publicKeys"));
    assert!(!p.path("nobody.age").exists());
}

#[test]
fn armor_in_the_rules_gives_ascii_armor() {
    let p = Project::new();
    let pk = p.public.as_str();
    p.rules_at(
        "secrets.nix",
        &[("a.age", &[pk], true), ("b.age", &[pk], false)],
    );
    p.create("a.age", b"armored");
    p.create("b.age", b"binary");
    assert!(fs::read(p.path("a.age"))
        .unwrap()
        .starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"));
    assert!(fs::read(p.path("b.age"))
        .unwrap()
        .starts_with(b"age-encryption.org/v1\n"));
    assert_eq!(p.open("a.age").unwrap(), b"armored");
}

#[test]
fn dump_rules_prints_the_evaluated_json() {
    let p = Project::new();
    p.rules(&["a.age"]);
    let out = p
        .cmd()
        .arg("--dump-rules")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(json["a.age"]["publicKeys"][0], p.public.as_str());
}

#[test]
fn verbose_says_what_was_done() {
    let p = Project::new();
    p.rules(&["a.age", "b.age"]);
    p.create("a.age", b"x");
    p.create("b.age", b"y");
    p.cmd()
        .args(["-v", "-i", "key.txt", "-r"])
        .assert()
        .success()
        .stderr(
            contains("rekeyed")
                .and(contains("a.age"))
                .and(contains("b.age")),
        );
}

#[test]
fn any_file_name_works_spaces_leading_dash_unicode_subdirectories() {
    let p = Project::new();
    let names = [
        "with space.age",
        "-dash.age",
        "ünïcødé 秘密.age",
        "sub/dir/deep.age",
    ];
    p.rules(&names);
    // sub/dir does not exist yet: -e creates it for a new secret.
    for (i, name) in names.iter().enumerate() {
        p.cmd()
            .args(["-i", "key.txt", "-e", name])
            .write_stdin(format!("secret {i}"))
            .assert()
            .success();
    }
    p.cmd().args(["-i", "key.txt", "-r"]).assert().success();
    for (i, name) in names.iter().enumerate() {
        p.cmd()
            .args(["-i", "key.txt", "-d", name])
            .assert()
            .success()
            .stdout(format!("secret {i}"));
        assert_eq!(p.open(name).unwrap(), format!("secret {i}").as_bytes());
    }
    p.cmd()
        .args(["-i", "key.txt", "-r", "-dash.age"])
        .assert()
        .code(2);
    p.cmd()
        .args(["-i", "key.txt", "-r", "./-dash.age", "with space.age"])
        .assert()
        .success();
}

#[test]
fn rules_warnings_are_printed_on_stderr() {
    let p = Project::new();
    fs::write(
        p.path("secrets.nix"),
        format!("{{ \"a.age\".publicKeys = [ [ \"{}\" ] ]; }}\n", p.public),
    )
    .unwrap();
    p.cmd()
        .args(["-i", "key.txt", "-e", "a.age"])
        .write_stdin("x")
        .assert()
        .success()
        .stderr(contains("ragenix: warning: ").and(contains("\"a.age\"")));
    assert_eq!(p.open("a.age").unwrap(), b"x");
}
