//! The Nix side: every `.nix` file parses, and `nix/manifest.nix` evaluated by real Nix yields
//! manifests the installer accepts and installs. The modules themselves are tested inside the
//! real module systems, in `modules.rs`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use ragenix::install::manifest::{Manifest, Source, Stage, PLACEHOLDER_PREFIX, PLACEHOLDER_SUFFIX};
use serde_json::Value;

use super::{meta, ns_test, stderr};
use crate::util::require_program;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `nix-instantiate --eval --strict --json` of `expr`, with `nix/` reachable as `<repo>/nix`.
fn eval(expr: &str) -> Value {
    let out = Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json", "--expr", expr])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nix-instantiate failed on:\n{expr}\n{}",
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn manifest_nix(args: &str) -> Value {
    eval(&format!(
        "import {}/nix/manifest.nix {args}",
        repo().display()
    ))
}

/// A Nix string literal.
fn lit(s: impl AsRef<Path>) -> String {
    serde_json::to_string(s.as_ref().to_str().unwrap())
        .unwrap()
        .replace('$', "\\$")
}

#[test]
fn every_nix_file_in_the_repository_parses() {
    if !require_program("every_nix_file_in_the_repository_parses", "nix-instantiate") {
        return;
    }
    let mut parsed = Vec::new();
    let walk = walkdir::WalkDir::new(repo()).into_iter().filter_entry(|e| {
        // Rules fixtures under errors/ are broken on purpose (the evaluator's error tests),
        // and fuzz inputs are not ours to keep valid.
        let rel = e.path().strip_prefix(repo()).unwrap_or(e.path());
        !matches!(e.file_name().to_str(), Some("target" | ".git"))
            && rel != Path::new("tests/data/rules/errors")
            && rel != Path::new("fuzz/corpus")
            && rel != Path::new("fuzz/artifacts")
    });
    for entry in walk {
        let entry = entry.unwrap();
        if entry.path().extension().is_some_and(|x| x == "nix") {
            let out = Command::new("nix-instantiate")
                .arg("--parse")
                .arg(entry.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                entry.path().display(),
                stderr(&out)
            );
            parsed.push(entry.path().strip_prefix(repo()).unwrap().to_owned());
        }
    }
    for expected in [
        "flake.nix",
        "module.nix",
        "hm-module.nix",
        "package.nix",
        "nix/manifest.nix",
        "nix/manifest-file.nix",
        "nix/entry-options.nix",
        "nix/tests/vm.nix",
        "nix/tests/pkgs.nix",
        "nix/tests/cases.nix",
    ] {
        assert!(
            parsed.contains(&PathBuf::from(expected)),
            "{expected} not found in {parsed:?}"
        );
    }
}

#[test]
fn the_nix_placeholder_is_the_one_the_installer_replaces() {
    if !require_program(
        "the_nix_placeholder_is_the_one_the_installer_replaces",
        "nix-instantiate",
    ) {
        return;
    }
    let got = eval(&format!(
        "import {}/nix/placeholder.nix \"db/pass\"",
        repo().display()
    ));
    assert_eq!(
        got,
        Value::String(format!("{PLACEHOLDER_PREFIX}db/pass{PLACEHOLDER_SUFFIX}"))
    );
}

#[test]
fn manifest_nix_fills_agenix_defaults_and_passes_validation() {
    if !require_program(
        "manifest_nix_fills_agenix_defaults_and_passes_validation",
        "nix-instantiate",
    ) {
        return;
    }
    let json = manifest_nix(
        r#"{ secrets.db = { file = "/s/db.age"; }; secrets.other = { name = "renamed"; file = "/s/o.age"; };
             identityPaths = [ /etc/ssh/ssh_host_ed25519_key ]; }"#,
    );
    // Reading validates: a manifest breaking any rule is an error listing the problems.
    let m =
        Manifest::from_json(&json.to_string(), Stage::Build).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(m.secrets_dir, "/run/agenix");
    assert_eq!(m.secrets_mount_point, "/run/agenix.d");
    assert_eq!(m.identity_paths, ["/etc/ssh/ssh_host_ed25519_key"]);
    assert_eq!(m.dir_group.as_deref(), Some("keys"));
    assert_eq!(m.counts(), (2, 0));
    let db = &m.entries[0];
    assert_eq!(
        (
            db.name.as_str(),
            db.path.as_str(),
            db.mode,
            db.owner.as_str(),
            db.group.as_str(),
            db.symlink
        ),
        ("db", "/run/agenix/db", 0o400, "0", "0", true)
    );
    assert!(
        matches!(&db.source, Source::Secret { file, structured: None } if file == "/s/db.age"),
        "{:?}",
        db.source
    );
    assert_eq!(
        (m.entries[1].name.as_str(), m.entries[1].path.as_str()),
        ("renamed", "/run/agenix/renamed")
    );
}

ns_test!(nix_manifests_install_end_to_end, |env| {
    if !require_program("nix_manifests_install_end_to_end", "nix-instantiate") {
        return;
    }
    let db = env.encrypt("db", b"db-pass");
    let api = env.encrypt("api", b"api-key");
    let etc = env.root.join("etc");
    let config = format!(
        r#"{{
          secretsDir = {dir}; secretsMountPoint = {mp}; identityPaths = [ {key} ];
          keepGenerations = 2;
          secrets.db = {{ file = {db}; owner = "nobody"; group = "1000"; mode = "0440"; }};
          secrets.api = {{ file = {api}; path = {api_path}; symlink = false; restartUnits = [ "api.service" ]; }};
          secrets.linked = {{ name = "linked-name"; file = {db}; path = {linked}; }};
          templates."app.conf" = {{ content = "db=${{import {ph} "db"}} api=${{import {ph} "api"}}"; mode = "0404"; }};
        }}"#,
        dir = lit(&env.secrets_dir),
        mp = lit(&env.mount_point),
        key = lit(&env.key),
        db = lit(&db),
        api = lit(&api),
        api_path = lit(etc.join("api.key")),
        linked = lit(etc.join("linked")),
        ph = repo().join("nix/placeholder.nix").display(),
    );
    let manifest = manifest_nix(&config);
    env.install(&manifest);
    env.install(&manifest);
    env.install(&manifest);

    assert_eq!(env.generations(), vec![2, 3], "keepGenerations = 2");
    let d = &env.secrets_dir;
    assert_eq!(fs::read(d.join("db")).unwrap(), b"db-pass");
    assert_eq!(meta(&d.join("db")), (0o440, 65534, 1000));
    assert_eq!(fs::read(etc.join("api.key")).unwrap(), b"api-key");
    assert_eq!(meta(&etc.join("api.key")), (0o400, 0, 0));
    assert_eq!(
        fs::read_link(etc.join("linked")).unwrap(),
        d.join("linked-name")
    );
    assert_eq!(fs::read(etc.join("linked")).unwrap(), b"db-pass");
    let conf = d.join("templates/app.conf");
    assert_eq!(fs::read_to_string(&conf).unwrap(), "db=db-pass api=api-key");
    assert_eq!(meta(&conf).0, 0o404);

    // The same files checked at build time pass --check.
    let path = env.write_manifest(&manifest);
    let out = Command::new(env!("CARGO_BIN_EXE_ragenix-install"))
        .arg("--check")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
});

#[test]
fn home_manifest_from_nix_is_expanded_and_installed_at_run_time() {
    let name = "home_manifest_from_nix_is_expanded_and_installed_at_run_time";
    if !require_program(name, "nix-instantiate") || !require_program(name, "ssh-keygen") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    fs::create_dir_all(home.join(".ssh")).unwrap();
    let recipient = super::ssh_keygen(&home.join(".ssh/id_ed25519"));
    let file = dir.path().join("tok.age");
    fs::write(&file, super::encrypt(b"tok", &recipient)).unwrap();
    // The home-manager module's defaults, spelled as it passes them.
    let manifest = manifest_nix(&format!(
        r#"{{ mode = "home"; secretsDir = "\${{XDG_RUNTIME_DIR}}/agenix"; secretsMountPoint = "\${{XDG_RUNTIME_DIR}}/agenix.d";
             identityPaths = [ "~/.ssh/id_ed25519" "~/.ssh/id_rsa" ];
             secrets.tok = {{ file = {file}; path = "\${{XDG_RUNTIME_DIR}}/agenix/tok"; }}; }}"#,
        file = lit(&file)
    ));
    assert_eq!(manifest["dirGroup"], Value::Null);
    let path = dir.path().join("m.json");
    fs::write(&path, manifest.to_string()).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_ragenix-install"))
        .arg("--check")
        .arg(&path)
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "build-time check of an unexpanded manifest: {}",
        stderr(&check)
    );
    let runtime = dir.path().join("runtime");
    fs::create_dir(&runtime).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ragenix-install"))
        .arg(&path)
        .env("XDG_RUNTIME_DIR", &runtime)
        .env("HOME", &home)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("skipping identity") && stderr(&out).contains("id_rsa"));
    assert_eq!(fs::read(runtime.join("agenix/tok")).unwrap(), b"tok");
}
