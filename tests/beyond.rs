//! Beyond agenix: `check` against files written by Go `age`, generators against `ssh-keygen`,
//! and the rules schema against the real-world corpus; the submodules drive the same features
//! through the `ragenix` command line.

mod check_cmd;
mod generate_cmd;
mod git_diff;
mod manual;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ragenix::check::{check, stale, Finding};
use ragenix::generate;
use ragenix::rules::Generator;
use ragenix::rules::{LoadOptions, Rules};
use ragenix::schema::rules_schema;
use serde_json::{json, Value as Json};

use crate::util::{corpus_dir, require_program};

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// An ssh key pair made by `ssh-keygen`; returns the public key line.
fn ssh_keygen(dir: &Path, kind: &str, name: &str) -> String {
    let key = dir.join(name);
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", kind, "-N", "", "-C", name, "-f"])
        .arg(&key);
    if kind == "rsa" {
        cmd.args(["-b", "2048"]);
    }
    run(&mut cmd);
    std::fs::read_to_string(key.with_extension("pub"))
        .unwrap()
        .trim()
        .to_owned()
}

fn age_keygen(dir: &Path, name: &str) -> String {
    let key = dir.join(name);
    run(Command::new("age-keygen").arg("-o").arg(&key));
    let out = run(Command::new("age-keygen").arg("-y").arg(&key));
    String::from_utf8(out).unwrap().trim().to_owned()
}

/// Encrypts with Go `age` to `recipients` into `dir/name`.
fn go_age(dir: &Path, name: &str, recipients: &[&str], armor: bool) {
    let out = dir.join(name);
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let mut cmd = Command::new("age");
    for r in recipients {
        cmd.arg("-r").arg(r);
    }
    if armor {
        cmd.arg("-a");
    }
    cmd.arg("-o").arg(&out).stdin(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"hunter2").unwrap();
    assert!(child.wait().unwrap().success());
}

fn rules_in(dir: &Path, json: Json) -> Rules {
    Rules::from_json(&dir.join("secrets.nix"), &json).unwrap()
}

#[test]
fn check_accepts_a_tree_written_by_go_age_for_every_recipient_kind() {
    let test = "check_accepts_a_tree_written_by_go_age_for_every_recipient_kind";
    if !require_program(test, "age")
        || !require_program(test, "age-keygen")
        || !require_program(test, "ssh-keygen")
    {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let ed = ssh_keygen(keys.path(), "ed25519", "ed");
    let rsa = ssh_keygen(keys.path(), "rsa", "rsa");
    let x = age_keygen(keys.path(), "x.txt");
    let tree = tempfile::tempdir().unwrap();
    go_age(tree.path(), "all.age", &[&ed, &rsa, &x], false);
    go_age(tree.path(), "nested/armored.age", &[&rsa], true);
    let rules = rules_in(
        tree.path(),
        json!({
            "all.age": {"publicKeys": [x, ed, rsa]},
            "nested/armored.age": {"publicKeys": [rsa], "armor": true},
        }),
    );
    let report = check(&rules);
    assert!(report.ok, "{}", report.render_human());
    assert!(stale(&rules).is_empty());
}

#[test]
fn check_tells_apart_rsa_keys_by_tag_in_go_age_files() {
    let test = "check_tells_apart_rsa_keys_by_tag_in_go_age_files";
    if !require_program(test, "age") || !require_program(test, "ssh-keygen") {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let old = ssh_keygen(keys.path(), "rsa", "old");
    let new = ssh_keygen(keys.path(), "rsa", "new");
    let tree = tempfile::tempdir().unwrap();
    go_age(tree.path(), "db.age", &[&old], false);
    let rules = rules_in(tree.path(), json!({"db.age": {"publicKeys": [new]}}));
    let report = check(&rules);
    let findings = &report.secrets[0].findings;
    let [Finding::Recipients {
        missing,
        unexpected,
        counts,
    }] = findings.as_slice()
    else {
        panic!("{findings:?}");
    };
    assert_eq!(missing, &[new]);
    assert_eq!(unexpected.len(), 1);
    assert!(
        unexpected[0].starts_with("an ssh-rsa key with tag "),
        "{unexpected:?}"
    );
    assert!(counts.is_empty());
    assert_eq!(stale(&rules).len(), 1);
}

#[test]
fn check_reads_rules_from_a_real_secrets_nix() {
    let test = "check_reads_rules_from_a_real_secrets_nix";
    if !require_program(test, "age") || !require_program(test, "nix-instantiate") {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let x = age_keygen(keys.path(), "x.txt");
    let tree = tempfile::tempdir().unwrap();
    go_age(tree.path(), "ok.age", &[&x], false);
    go_age(tree.path(), "orphan.age", &[&x], false);
    go_age(tree.path(), "wrong-armor.age", &[&x], false);
    let nix = format!(
        r#"let k = "{x}"; in {{
  "ok.age".publicKeys = [ k ];
  "wrong-armor.age" = {{ publicKeys = [ k ]; armor = true; }};
  "todo.age" = {{ publicKeys = [ k ]; generator = "passphrase:5"; }};
}}"#
    );
    let file = tree.path().join("secrets.nix");
    std::fs::write(&file, nix).unwrap();
    let rules = Rules::load(&file, &LoadOptions::default()).unwrap();
    let report = check(&rules);
    let lines = report.render_human();
    assert_eq!(
        lines,
        "todo.age: declared in the rules but the file does not exist (ragenix --generate can create it)\n\
         wrong-armor.age: armor is true in the rules but the file is binary\n\
         orphan.age: no rule names this file\n"
    );
    assert_eq!(
        stale(&rules)
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["wrong-armor.age"]
    );
    let todo = rules.secrets.iter().find(|s| s.name == "todo.age").unwrap();
    let generated = generate::generate(todo, &rules.dir).unwrap().unwrap();
    assert_eq!(
        String::from_utf8(generated.secret.to_vec())
            .unwrap()
            .split('-')
            .count(),
        5
    );
}

#[test]
fn the_ssh_ed25519_generator_makes_a_key_ssh_keygen_loads() {
    let test = "the_ssh_ed25519_generator_makes_a_key_ssh_keygen_loads";
    if !require_program(test, "ssh-keygen") {
        return;
    }
    let generated = Generator::from_json("hosts/web.age", &json!("ssh-ed25519"))
        .unwrap()
        .generate("hosts/web.age", Path::new("."))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        // ssh-keygen refuses keys that others can read.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key)
            .unwrap();
        f.write_all(&generated.secret).unwrap();
    }
    let derived = run(Command::new("ssh-keygen").arg("-y").arg("-f").arg(&key));
    let derived = String::from_utf8(derived).unwrap();
    let public = generated.public.unwrap();
    // ssh-keygen -y prints the key and the comment stored in the private key.
    assert_eq!(derived.trim(), public.trim());
    assert!(public.starts_with("ssh-ed25519 "), "{public}");
    assert_eq!(
        generate::public_key_path(Path::new("/s/hosts/web.age")),
        PathBuf::from("/s/hosts/web.pub")
    );
}

fn corpus_cases(corpus: &Path, set: &str) -> Vec<(PathBuf, Json)> {
    let mut cases = Vec::new();
    for case in std::fs::read_dir(corpus.join(set)).unwrap() {
        let expected = case.unwrap().path().join("expected.json");
        if let Ok(text) = std::fs::read_to_string(&expected) {
            cases.push((expected, serde_json::from_str(&text).unwrap()));
        }
    }
    cases.sort_by(|a, b| a.0.cmp(&b.0));
    cases
}

fn compiled_schema() -> (boon::Schemas, boon::SchemaIndex) {
    let mut compiler = boon::Compiler::new();
    compiler.add_resource("rules.json", rules_schema()).unwrap();
    let mut schemas = boon::Schemas::new();
    let index = compiler.compile("rules.json", &mut schemas).unwrap();
    (schemas, index)
}

#[test]
fn the_schema_accepts_every_open_corpus_case() {
    let Some(corpus) = corpus_dir("the_schema_accepts_every_open_corpus_case") else {
        return;
    };
    let (schemas, index) = compiled_schema();
    let cases = corpus_cases(&corpus, "open");
    assert!(
        cases.len() >= 81,
        "only {} cases in {}",
        cases.len(),
        corpus.display()
    );
    for (file, value) in &cases {
        if let Err(e) = schemas.validate(value, index) {
            panic!("{}: schema rejects it: {e}", file.display());
        }
    }
}

#[test]
fn the_schema_and_rules_validation_agree_on_every_corpus_case() {
    let Some(corpus) = corpus_dir("the_schema_and_rules_validation_agree_on_every_corpus_case")
    else {
        return;
    };
    let (schemas, index) = compiled_schema();
    for set in ["open", "open-multi"] {
        for (file, value) in corpus_cases(&corpus, set) {
            let schema_ok = schemas.validate(&value, index).is_ok();
            let rules = Rules::from_json(Path::new("secrets.nix"), &value);
            let rules_ok = rules
                .as_ref()
                .is_ok_and(|r| r.secrets.iter().all(|s| Generator::of(s).is_ok()));
            assert_eq!(
                schema_ok,
                rules_ok,
                "{}: schema says {schema_ok}, rules validation says {:?}",
                file.display(),
                rules.err().map(|e| e.to_string())
            );
        }
    }
}

#[test]
fn a_python_script_generator_runs_under_python3() {
    if !require_program("a_python_script_generator_runs_under_python3", "python3") {
        return;
    }
    let spec = json!({
        "script": "import secrets, string\nprint(''.join(secrets.choice(string.digits) for _ in range(12)), end='')",
        "interpreter": "python3",
    });
    let generated = Generator::from_json("pin.age", &spec)
        .unwrap()
        .generate("pin.age", Path::new("."))
        .unwrap();
    assert_eq!(generated.secret.len(), 12);
    assert!(generated.secret.iter().all(u8::is_ascii_digit));
}
