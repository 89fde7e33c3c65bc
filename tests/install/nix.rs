//! The Nix side: every `.nix` file parses, and `nix/manifest.nix` evaluated by real Nix yields
//! manifests the installer accepts and installs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use ragenix::install::manifest::{Manifest, PLACEHOLDER_PREFIX, PLACEHOLDER_SUFFIX};
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
        "nix/tests/vm.nix",
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
    let m = Manifest::from_json(&json.to_string()).unwrap();
    assert!(m.validate().is_empty(), "{:?}", m.validate());
    assert_eq!(m.secrets_dir, "/run/agenix");
    assert_eq!(m.secrets_mount_point, "/run/agenix.d");
    assert_eq!(m.identity_paths, ["/etc/ssh/ssh_host_ed25519_key"]);
    assert_eq!(m.dir_group.as_deref(), Some("keys"));
    let db = &m.secrets[0];
    assert_eq!(
        (
            db.name.as_str(),
            db.path.as_str(),
            db.mode.as_str(),
            db.owner.as_str(),
            db.group.as_str(),
            db.symlink
        ),
        ("db", "/run/agenix/db", "0400", "0", "0", true)
    );
    assert_eq!(
        (m.secrets[1].name.as_str(), m.secrets[1].path.as_str()),
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

/// Evaluates `module` (relative to the repository) against the stub lib with `config`, and
/// returns `select` applied to `{ options, config, secret, template }` (the submodules'
/// options for an entry named "x").
fn eval_module(module: &str, config: &str, select: &str) -> Value {
    let repo = repo();
    eval(&format!(
        r#"let
          lib = import {stub};
          config = {config};
          pkgs = {{
            age = "/nix/store/age"; stdenv.hostPlatform.isLinux = true;
            callPackage = _: _: {{ outPath = "/nix/store/ragenix"; }};
            writeTextFile = a: {{ outPath = "/nix/store/manifest-" + a.name; inherit (a) text checkPhase; }};
          }};
          m = import {repo}/{module} {{ inherit config lib pkgs; }};
          sub = t: (t.elem.fn {{ config = {{ name = "x"; owner = "alice"; }}; name = "x"; }}).options;
          it = {{
            options = m.options.age;
            config = m.config;
            imports = m.imports or [ ];
            secret = sub m.options.age.secrets.type;
            template = sub m.options.age.templates.type;
          }};
        in {select}"#,
        stub = repo.join("tests/data/install/stub-lib.nix").display(),
        repo = repo.display(),
    ))
}

const NIXOS_CONFIG: &str = r#"{
  age = { secretsDir = "/run/agenix"; secrets.db = { name = "db"; file = "/s/db.age"; mode = "0400"; };
          templates = { }; identityPaths = [ "/k" ]; plugins = [ ];
          secretsMountPoint = "/run/agenix.d"; ragenix = { package = "/nix/store/ragenix"; keepGenerations = 1; checkFiles = true; }; };
  users.users.alice.group = "users";
  services.openssh = { enable = true; hostKeys = [
    { type = "rsa"; path = "/etc/ssh/ssh_host_rsa_key"; }
    { type = "ed25519"; path = "/etc/ssh/ssh_host_ed25519_key"; }
    { type = "ecdsa"; path = "/etc/ssh/ssh_host_ecdsa_key"; } ]; };
  systemd.sysusers.enable = false;
}"#;

#[test]
fn the_nixos_module_declares_every_agenix_option_with_agenix_defaults() {
    if !require_program(
        "the_nixos_module_declares_every_agenix_option_with_agenix_defaults",
        "nix-instantiate",
    ) {
        return;
    }
    let got = eval_module(
        "module.nix",
        NIXOS_CONFIG,
        r#"{
          top = builtins.attrNames it.options;
          secret = builtins.attrNames it.secret;
          template = builtins.attrNames it.template;
          renamed = map (i: i.renamed) it.imports;
          defaults = {
            secretsDir = it.options.secretsDir.default;
            secretsMountPoint = it.options.secretsMountPoint.default;
            identityPaths = it.options.identityPaths.default;
            path = it.secret.path.default; mode = it.secret.mode.default; owner = it.secret.owner.default;
            group = it.secret.group.default; symlink = it.secret.symlink.default;
            templatePath = it.template.path.default;
            placeholder = it.options.placeholder.default;
          };
        }"#,
    );
    let names = |v: &Value| -> Vec<String> { serde_json::from_value(v.clone()).unwrap() };
    let top = names(&got["top"]);
    for agenix in [
        "ageBin",
        "identityPaths",
        "secrets",
        "secretsDir",
        "secretsMountPoint",
    ] {
        assert!(
            top.contains(&agenix.to_string()),
            "age.{agenix} missing: {top:?}"
        );
    }
    for ours in ["templates", "placeholder", "plugins", "ragenix"] {
        assert!(
            top.contains(&ours.to_string()),
            "age.{ours} missing: {top:?}"
        );
    }
    assert_eq!(
        names(&got["secret"]),
        [
            "file",
            "group",
            "mode",
            "name",
            "owner",
            "path",
            "reloadUnits",
            "restartUnits",
            "symlink"
        ]
    );
    assert_eq!(
        names(&got["template"]),
        [
            "content",
            "group",
            "mode",
            "name",
            "owner",
            "path",
            "reloadUnits",
            "restartUnits",
            "symlink"
        ]
    );
    assert_eq!(
        got["renamed"],
        serde_json::json!([{"from": ["age", "sshKeyPaths"], "to": ["age", "identityPaths"]}])
    );
    assert_eq!(
        got["defaults"],
        serde_json::json!({
            "secretsDir": "/run/agenix", "secretsMountPoint": "/run/agenix.d",
            "identityPaths": ["/etc/ssh/ssh_host_rsa_key", "/etc/ssh/ssh_host_ed25519_key"],
            "path": "/run/agenix/x", "mode": "0400", "owner": "0", "group": "users", "symlink": true,
            "templatePath": "/run/agenix/templates/x",
            "placeholder": {"db": "<RAGENIX:PLACEHOLDER:db>"},
        })
    );
}

#[test]
fn the_nixos_module_orders_activation_like_agenix_or_uses_a_service_with_sysusers() {
    if !require_program(
        "the_nixos_module_orders_activation_like_agenix_or_uses_a_service_with_sysusers",
        "nix-instantiate",
    ) {
        return;
    }
    let select = r#"let
        parts = it.config.content.contents;
        scripts = (builtins.elemAt parts 1);
        service = (builtins.elemAt parts 2);
      in {
        enabled = it.config.condition;
        assertions = map (a: a.message) (builtins.elemAt parts 0).assertions;
        activation = scripts.condition;
        deps = builtins.mapAttrs (_: s: s.deps) scripts.content.system.activationScripts;
        texts = builtins.mapAttrs (_: s: s.text or "") scripts.content.system.activationScripts;
        service = service.condition;
        exec = service.content.systemd.services.agenix-install-secrets.serviceConfig.ExecStart;
        after = service.content.systemd.services.agenix-install-secrets.after;
        # Only text and checkPhase: JSON turns a value with outPath into its path.
        manifest = {
          inherit (builtins.head service.content.systemd.services.agenix-install-secrets.restartTriggers)
            text checkPhase;
        };
      }"#;
    let got = eval_module("module.nix", NIXOS_CONFIG, select);
    assert_eq!(got["enabled"], true);
    assert_eq!(got["activation"], true);
    assert_eq!(got["service"], false);
    assert_eq!(got["assertions"][0], "age.identityPaths must be set.");
    assert_eq!(
        got["deps"],
        serde_json::json!({
            "agenixNewGeneration": ["specialfs"],
            "agenixInstall": ["agenixNewGeneration", "specialfs"],
            "users": ["agenixInstall"],
            "agenixChown": ["users", "groups"],
            "agenix": ["agenixChown"],
        })
    );
    let manifest = "/nix/store/manifest-ragenix-manifest.json";
    let installer = "/nix/store/ragenix/bin/ragenix-install";
    assert_eq!(
        got["texts"]["agenixNewGeneration"],
        format!("{installer} --phase mount {manifest}")
    );
    assert_eq!(
        got["texts"]["agenixInstall"],
        format!("{installer} --phase install {manifest}")
    );
    assert_eq!(
        got["texts"]["agenixChown"],
        format!("{installer} --phase chown {manifest}")
    );
    assert_eq!(got["exec"], format!("{installer} {manifest}"));
    let check = got["manifest"]["checkPhase"].as_str().unwrap();
    assert!(check.contains(&format!("{installer} --check")), "{check}");
    let written = Manifest::from_json(got["manifest"]["text"].as_str().unwrap()).unwrap();
    assert!(written.validate().is_empty(), "{:?}", written.validate());
    assert_eq!(
        written.restart_list_file.as_deref(),
        Some("/run/nixos/activation-restart-list")
    );
    assert_eq!(written.identity_paths, ["/k"]);
    assert_eq!(
        (
            written.secrets[0].name.as_str(),
            written.secrets[0].file.as_str()
        ),
        ("db", "/s/db.age")
    );

    let sysusers = NIXOS_CONFIG.replace(
        "systemd.sysusers.enable = false;",
        "systemd.sysusers.enable = true;",
    );
    let got = eval_module("module.nix", &sysusers, select);
    assert_eq!(
        (got["activation"].clone(), got["service"].clone()),
        (false.into(), true.into())
    );
    let userborn = NIXOS_CONFIG.replace(
        "systemd.sysusers.enable = false;",
        "services.userborn.enable = true;",
    );
    let got = eval_module("module.nix", &userborn, select);
    assert_eq!(
        (got["activation"].clone(), got["service"].clone()),
        (false.into(), true.into())
    );
    assert_eq!(
        got["after"],
        serde_json::json!(["systemd-sysusers.service", "userborn.service"])
    );

    let bad_mode = NIXOS_CONFIG.replace("mode = \"0400\";", "mode = \"u=r\";");
    let got = eval_module("module.nix", &bad_mode, "map (a: a.message) (builtins.filter (a: !a.assertion) (builtins.elemAt it.config.content.contents 0).assertions)");
    assert_eq!(
        got,
        serde_json::json!([
            "age.secrets.\"db\".mode = \"u=r\" is not an octal mode such as \"0400\"."
        ])
    );
}

#[test]
fn the_home_manager_module_keeps_agenix_options_and_runtime_dir_defaults() {
    if !require_program(
        "the_home_manager_module_keeps_agenix_options_and_runtime_dir_defaults",
        "nix-instantiate",
    ) {
        return;
    }
    let config = r#"{
      age = { secretsDir = "\${XDG_RUNTIME_DIR}/agenix"; secretsMountPoint = "\${XDG_RUNTIME_DIR}/agenix.d";
              secrets = { }; templates = { }; identityPaths = [ ]; plugins = [ ];
              ragenix = { package = "/nix/store/ragenix"; keepGenerations = 1; checkFiles = true; }; };
      home.homeDirectory = "/home/alice";
    }"#;
    let got = eval_module(
        "hm-module.nix",
        config,
        r#"{
          top = builtins.attrNames it.options;
          secret = builtins.attrNames it.secret;
          identityPaths = it.options.identityPaths.default;
          secretsDir = it.options.secretsDir.default;
          secretsMountPoint = it.options.secretsMountPoint.default;
          path = it.secret.path.default;
          service = it.config.content.systemd.user.services.agenix.Service;
        }"#,
    );
    let top: Vec<String> = serde_json::from_value(got["top"].clone()).unwrap();
    for name in [
        "identityPaths",
        "package",
        "secrets",
        "secretsDir",
        "secretsMountPoint",
        "templates",
        "placeholder",
    ] {
        assert!(
            top.contains(&name.to_string()),
            "age.{name} missing: {top:?}"
        );
    }
    let secret: Vec<String> = serde_json::from_value(got["secret"].clone()).unwrap();
    for name in ["file", "mode", "name", "path", "symlink"] {
        assert!(
            secret.contains(&name.to_string()),
            "age.secrets.<n>.{name} missing: {secret:?}"
        );
    }
    assert_eq!(
        got["identityPaths"],
        serde_json::json!(["/home/alice/.ssh/id_ed25519", "/home/alice/.ssh/id_rsa"])
    );
    assert_eq!(got["secretsDir"], "${XDG_RUNTIME_DIR}/agenix");
    assert_eq!(got["secretsMountPoint"], "${XDG_RUNTIME_DIR}/agenix.d");
    assert_eq!(got["path"], "${XDG_RUNTIME_DIR}/agenix/x");
    assert_eq!(got["service"]["Type"], "oneshot");
    assert_eq!(
        got["service"]["ExecStart"],
        "/nix/store/ragenix/bin/ragenix-install /nix/store/manifest-ragenix-home-manifest.json"
    );
}
