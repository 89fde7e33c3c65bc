//! Completions, man page and `--schema` as printed by the binary.

use predicates::prelude::*;
use predicates::str::contains;

use crate::cli::Project;

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
