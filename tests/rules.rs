//! The rules evaluator against real Nix: the shared corpus of real-world rules files, and
//! differential tests over our own fixtures in `tests/data/rules/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as Json;

use ragenix::rules;

use crate::util::{copy_as_repository, corpus_dir, require_program};

fn cases(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

fn read_json(path: &Path) -> Json {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Evaluates every case of a corpus folder with our evaluator only; returns the failures.
fn check_open_cases(folder: &str) -> (usize, Vec<String>) {
    let Some(corpus) = corpus_dir(&format!("corpus_{folder}")) else {
        return (0, Vec::new());
    };
    let mut failures = Vec::new();
    let all = cases(&corpus.join(folder));
    for case in &all {
        let entry = std::fs::read_to_string(case.join("entry.txt"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "secrets.nix".to_owned());
        let expected = read_json(&case.join("expected.json"));
        // The case folder plays the repository, so confinement is what a user would get.
        let repo = copy_as_repository(case);
        match rules::evaluate_own(&repo.path().join(&entry)) {
            Ok(got) if got == expected => {}
            Ok(got) => failures.push(format!(
                "{}: got {}\nexpected {}",
                case.display(),
                got,
                expected
            )),
            Err(e) => failures.push(format!("{}: {e}", case.display())),
        }
    }
    (all.len(), failures)
}

#[test]
fn corpus_open_cases_match_real_nix() {
    let (n, failures) = check_open_cases("open");
    assert!(
        failures.is_empty(),
        "{} of {n} failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn corpus_open_multi_cases_match_real_nix() {
    let (n, failures) = check_open_cases("open-multi");
    assert!(
        failures.is_empty(),
        "{} of {n} failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn corpus_error_cases_fail_at_the_position_nix_names() {
    let Some(corpus) = corpus_dir("corpus_error_cases") else {
        return;
    };
    let mut failures = Vec::new();
    for case in cases(&corpus.join("errors")) {
        let expected = std::fs::read_to_string(case.join("expected-error.txt")).unwrap();
        let at = expected
            .lines()
            .find_map(|l| l.strip_prefix("at: "))
            .expect("expected-error.txt has an at: line");
        let (file, rest) = at.split_once(':').unwrap();
        let line = rest.split(':').next().unwrap();
        let repo = copy_as_repository(&case);
        match rules::evaluate_own(&repo.path().join(file)) {
            Ok(v) => failures.push(format!("{}: evaluated to {v:?}", case.display())),
            Err(e) => {
                let msg = e.to_string();
                let wanted = format!("{file}:{line}:");
                let first = msg.lines().next().unwrap_or("");
                if !first.contains(&wanted) {
                    failures.push(format!("{}: wanted {at}, got:\n{msg}", case.display()));
                } else {
                    eprintln!("{}: {first} (Nix: {at})", case.display());
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn fixtures(kind: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/rules")
        .join(kind)
}

/// What real Nix says about `file`: its JSON, or its error text.
fn nix_instantiate(file: &Path) -> Result<Json, String> {
    // `nix-instantiate` only calls a top-level function when given some `--arg`; ragenix always
    // calls one whose arguments all have defaults (as `nix eval --file` does), so such fixtures
    // name an argument in `nix-args.txt`, as the corpus's `cmd.txt` does.
    let extra = std::fs::read_to_string(file.with_file_name("nix-args.txt")).unwrap_or_default();
    let out = Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json"])
        .args(extra.split_whitespace())
        .arg(file.file_name().unwrap())
        .current_dir(file.parent().unwrap())
        .env("NIX_PATH", "")
        .output()
        .expect("nix-instantiate runs");
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).expect("nix-instantiate prints JSON"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The first `FILE:LINE:COL` position in Nix's error text, as (file name, line).
fn nix_error_line(stderr: &str) -> Option<(String, String)> {
    stderr.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("at ")?;
        let rest = rest.trim_end_matches(':');
        let mut parts = rest.rsplitn(3, ':');
        let _col = parts.next()?;
        let line = parts.next()?;
        let file = parts.next()?;
        let name = Path::new(file.trim_start_matches('«').trim_end_matches('»'))
            .file_name()?
            .to_string_lossy()
            .into_owned();
        Some((name, line.to_owned()))
    })
}

#[test]
fn fixtures_evaluate_as_real_nix_does() {
    if !require_program("fixtures_evaluate_as_real_nix_does", "nix-instantiate") {
        return;
    }
    let mut failures = Vec::new();
    let all = cases(&fixtures("ok"));
    assert!(all.len() >= 10, "fixtures are missing");
    for case in &all {
        let file = case.join("secrets.nix");
        let theirs = nix_instantiate(&file);
        let ours = rules::evaluate_own(&file);
        match (theirs, ours) {
            (Ok(t), Ok(o)) if t == o => {}
            (t, o) => failures.push(format!(
                "{}:\n  nix:  {t:?}\n  ours: {:?}",
                case.display(),
                o
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn fixture_errors_are_reported_where_real_nix_reports_them() {
    if !require_program(
        "fixture_errors_are_reported_where_real_nix_reports_them",
        "nix-instantiate",
    ) {
        return;
    }
    let mut failures = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures("errors"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "nix"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "error fixtures are missing");
    for file in &files {
        let theirs = match nix_instantiate(file) {
            Ok(v) => {
                failures.push(format!("{}: real Nix accepts it: {v}", file.display()));
                continue;
            }
            Err(e) => e,
        };
        let ours = match rules::evaluate_own(file) {
            Ok(v) => {
                failures.push(format!("{}: we accept it: {v}", file.display()));
                continue;
            }
            Err(e) => e.to_string(),
        };
        let first = ours.lines().next().unwrap_or("");
        // Where Nix points somewhere odd, `NAME.at` gives where the broken construct starts,
        // which is where we must point instead.
        if let Ok(at) = std::fs::read_to_string(file.with_extension("at")) {
            let name = file.file_name().unwrap().to_string_lossy();
            let at = at.lines().next().unwrap_or("").trim();
            if !first.contains(&format!("{name}:{at}:")) {
                failures.push(format!("{}: wanted {at}, got {first}", file.display()));
            }
            continue;
        }
        match nix_error_line(&theirs) {
            Some((name, line)) if !first.contains(&format!("{name}:{line}:")) => failures.push(
                format!("{}:\n  nix:  {theirs}\n  ours: {ours}", file.display()),
            ),
            // Nix gives no position for some errors (e.g. a `throw` at the top); ours must
            // still name the file.
            None if !first.contains(&*file.file_name().unwrap().to_string_lossy()) => {
                failures.push(format!("{}: no file in {first}", file.display()))
            }
            _ => eprintln!("{}: {first}", file.display()),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn write_rules(dir: &Path, text: &str) -> PathBuf {
    let file = dir.join("secrets.nix");
    std::fs::write(&file, text).unwrap();
    file
}

#[test]
fn validation_errors_point_at_the_attribute_in_the_rules_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_rules(
        dir.path(),
        "let k = \"age1x\"; in\n{\n  \"a.age\".publicKeys = [ k ];\n  \"a.age\".armor = \"yes\";\n}\n",
    );
    let err = rules::Rules::load(&file, &rules::LoadOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("secrets.nix:4:3: secret \"a.age\": armor must be a boolean"),
        "{msg}"
    );

    let file = write_rules(dir.path(), "{\n  b = { armor = true; };\n}\n");
    let msg = rules::Rules::load(&file, &rules::LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("secrets.nix:2:3: secret \"b\" has no publicKeys"),
        "{msg}"
    );

    let file = write_rules(dir.path(), "{\n  c.publicKeys = [ [ \"k\" ] ];\n}\n");
    let rules = rules::Rules::load(&file, &rules::LoadOptions::default()).unwrap();
    assert!(
        rules.warnings[0].contains("secrets.nix:2:3: secret \"c\""),
        "{:?}",
        rules.warnings
    );
}

#[test]
fn keys_read_with_read_file_keep_their_newline_until_validation() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("k.pub"), "age1key\n").unwrap();
    let file = write_rules(
        dir.path(),
        "{ \"a.age\".publicKeys = [ (builtins.readFile ./k.pub) ]; }",
    );
    let json = rules::evaluate(&file, &rules::LoadOptions::default()).unwrap();
    assert_eq!(json["a.age"]["publicKeys"][0], "age1key\n");
    let rules = rules::Rules::load(&file, &rules::LoadOptions::default()).unwrap();
    assert_eq!(rules.secrets[0].public_keys, ["age1key"]);
}

#[test]
fn unsupported_constructs_fall_back_to_nix_instantiate() {
    let test = "unsupported_constructs_fall_back_to_nix_instantiate";
    let dir = tempfile::tempdir().unwrap();
    let file = write_rules(
        dir.path(),
        "{ \"a.age\".publicKeys = [ (builtins.hashString \"md5\" \"k\") ]; }",
    );
    let own = rules::evaluate_own(&file).unwrap_err().to_string();
    assert!(
        own.contains(
            "secrets.nix:1:27: error: builtins.hashString \"md5\" is unsupported in ragenix's evaluator"
        ),
        "{own}"
    );
    if !require_program(test, "nix-instantiate") {
        return;
    }
    let json = rules::evaluate(
        &file,
        &rules::LoadOptions {
            verbose: true,
            impure: false,
        },
    )
    .unwrap();
    assert_eq!(
        json["a.age"]["publicKeys"][0],
        "8ce4b16b22b58894aa86c421e8759df3"
    );
}

#[test]
fn ordinary_errors_never_fall_back() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_rules(
        dir.path(),
        "{ \"a.age\".publicKeys = [ (throw \"no key\") ]; }",
    );
    let msg = rules::evaluate(
        &file,
        &rules::LoadOptions {
            verbose: true,
            impure: false,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        msg.starts_with(&format!("{}:1:27: error: no key", file.display())),
        "{msg}"
    );
    assert!(!msg.contains("nix-instantiate"), "{msg}");
}

#[test]
fn store_paths_of_trees_links_and_the_root_match_real_nix() {
    let test = "store_paths_of_trees_links_and_the_root_match_real_nix";
    if !require_program(test, "nix-instantiate") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join(".git")).unwrap();
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::write(root.join("sub/a"), "a\n").unwrap();
    std::fs::write(root.join("sub/deeper/run"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        root.join("sub/deeper/run"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("a", root.join("sub/link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/outside", root.join("sub/dangling")).unwrap();
    let file = write_rules(
        root,
        "[ ./sub ./sub/link \"${./sub/deeper}\" ./. (builtins.toString ./.) ]",
    );
    let theirs = nix_instantiate(&file).expect("real Nix evaluates it");
    let ours = rules::evaluate_own(&file).unwrap();
    assert_eq!(ours, theirs);
}
