//! Completions, man page and `--schema` as printed by the binary.

use predicates::prelude::*;
use predicates::str::contains;

use crate::cli::Project;
use crate::util::require_program;

#[test]
fn completions_for_bash_zsh_and_fish_name_the_flags() {
    let p = Project::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = p.cmd().args(["--completions", shell]).assert().success();
        let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
        assert!(text.len() > 500, "{shell}: {text}");
        for flag in ["--rekey", "--check", "--generate", "--identity"] {
            let bare = flag.trim_start_matches('-');
            assert!(
                text.contains(flag) || text.contains(&format!("-l {bare}")),
                "{shell} lacks {flag}"
            );
        }
    }
}

#[test]
fn the_man_page_is_roff_describing_the_flags() {
    let p = Project::new();
    p.cmd().arg("--man").assert().success().stdout(
        contains(".TH ragenix 1")
            .and(contains("\\-\\-generate"))
            .and(contains("\\-\\-check")),
    );
}

#[test]
fn schema_prints_a_valid_json_schema_that_accepts_a_generator_rule() {
    let p = Project::new();
    let out = p.cmd().arg("--schema").assert().success();
    let schema: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let mut compiler = boon::Compiler::new();
    compiler.add_resource("rules.json", schema).unwrap();
    let mut schemas = boon::Schemas::new();
    let index = compiler.compile("rules.json", &mut schemas).unwrap();
    let good = serde_json::json!({"a.age": {"publicKeys": ["age1x"], "generator": "hex:32"}});
    let bad = serde_json::json!({"a.age": {"publicKeys": ["age1x"], "generator": "hex:0"}});
    assert!(schemas.validate(&good, index).is_ok());
    assert!(schemas.validate(&bad, index).is_err());
}

/// package.nix's postInstall, evaluated with stub arguments, run by bash against the built
/// binary with `installShellCompletion` / `installManPage` replaced by functions that copy what
/// they are given: every file must arrive non-empty.
#[test]
fn the_nix_package_installs_completions_and_the_man_page() {
    let test = "the_nix_package_installs_completions_and_the_man_page";
    if !require_program(test, "nix-instantiate") || !require_program(test, "bash") {
        return;
    }
    let repo = env!("CARGO_MANIFEST_DIR");
    let expr = format!(
        r#"(import {repo}/package.nix {{
  lib = {{
    importTOML = _: {{ package = {{ version = "0"; description = ""; }}; }};
    optionalString = c: s: if c then s else "";
    cleanSourceWith = x: x.src;
    licenses.mit = null;
    platforms.unix = [ ];
  }};
  stdenv = {{ buildPlatform.canExecute = _: true; hostPlatform = {{ }}; }};
  rustPlatform.buildRustPackage = attrs: attrs;
  installShellFiles = null;
  age = null;
  openssh = null;
}}).postInstall"#
    );
    let out = std::process::Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json", "--expr", &expr])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script: String = serde_json::from_slice(&out.stdout).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(out_dir.join("bin")).unwrap();
    std::os::unix::fs::symlink(crate::cli::bin(), out_dir.join("bin/ragenix")).unwrap();
    let prelude = r#"set -euo pipefail
installShellCompletion() {
  local cmd=
  while [ $# -gt 0 ]; do
    case "$1" in
      --cmd) cmd=$2; shift 2 ;;
      --bash|--zsh|--fish) cat "$2" > "$out/share/$cmd.${1#--}"; shift 2 ;;
      *) echo "unexpected $1" >&2; exit 1 ;;
    esac
  done
}
installManPage() { cp "$1" "$out/share/"; }
mkdir -p "$out/share"
"#;
    let status = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("{prelude}{script}"))
        .current_dir(dir.path())
        .env("out", &out_dir)
        .status()
        .unwrap();
    assert!(status.success());
    for file in ["ragenix.bash", "ragenix.zsh", "ragenix.fish", "ragenix.1"] {
        let text = std::fs::read_to_string(out_dir.join("share").join(file)).unwrap();
        assert!(text.contains("generate"), "{file}: {text}");
    }
    assert!(out_dir.join("bin/agenix").symlink_metadata().is_ok());
}
