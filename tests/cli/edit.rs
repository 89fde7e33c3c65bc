//! `-e`: editors, stdin, unchanged files, failures, and no plaintext left behind.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use predicates::str::contains;

use super::{script, Project};

/// An editor that appends a line and records how the plaintext file looked.
fn appending_editor(p: &Project) -> String {
    let log = p.path("editor.log");
    script(
        &p.path("append.sh"),
        &format!(
            "stat -c '%a %n' \"$1\" \"$(dirname \"$1\")\" >> '{}'\nprintf ' appended' >> \"$1\"",
            log.display()
        ),
    );
    format!("sh '{}'", p.path("append.sh").display())
}

#[test]
fn edit_runs_the_editor_on_a_private_0600_file_named_after_the_secret() {
    let p = Project::new();
    p.rules(&["config.json.age"]);
    p.create("config.json.age", b"plaintext-A1");
    p.cmd()
        .args([
            "-i",
            "key.txt",
            "--editor",
            &appending_editor(&p),
            "-e",
            "config.json.age",
        ])
        .assert()
        .success();
    assert_eq!(p.open("config.json.age").unwrap(), b"plaintext-A1 appended");
    let log = fs::read_to_string(p.path("editor.log")).unwrap();
    let mut lines = log.lines();
    let file = lines.next().unwrap();
    let dir = lines.next().unwrap();
    assert!(
        file.starts_with("600 ") && file.ends_with("/config.json"),
        "{log}"
    );
    assert!(dir.starts_with("700 "), "{log}");
    // XDG_RUNTIME_DIR is preferred.
    assert!(file.contains(&p.path("run").display().to_string()), "{log}");
    assert!(p.plaintext_copies(b"plaintext-A1").is_empty());
    assert!(p.leftover_private_dirs().is_empty());
    assert!(p.temp_files().is_empty());
}

#[test]
fn an_unchanged_edit_leaves_the_file_byte_for_byte_untouched() {
    let p = Project::new();
    p.rules(&["a.age"]);
    p.create("a.age", b"plaintext-B2");
    let before = fs::read(p.path("a.age")).unwrap();
    let mtime = fs::metadata(p.path("a.age")).unwrap().modified().unwrap();
    p.cmd()
        .args(["-i", "key.txt", "--editor", "true", "-e", "a.age"])
        .assert()
        .success()
        .stderr(contains("a.age wasn't changed, skipping re-encryption."));
    assert_eq!(fs::read(p.path("a.age")).unwrap(), before);
    assert_eq!(
        fs::metadata(p.path("a.age")).unwrap().modified().unwrap(),
        mtime
    );
    assert!(p.plaintext_copies(b"plaintext-B2").is_empty());
    assert!(p.leftover_private_dirs().is_empty());
}

#[test]
fn a_secret_named_above_the_rules_directory_is_found_from_either_directory() {
    let p = Project::new();
    fs::create_dir(p.path(".git")).unwrap();
    let pk = p.public.as_str();
    p.rules_at("sub/secrets.nix", &[("../x.age", &[pk], false)]);
    // From the project: the rules named with --rules, the file by its own path.
    p.cmd()
        .args([
            "--rules",
            "sub/secrets.nix",
            "-i",
            "key.txt",
            "--editor",
            "-",
        ])
        .args(["-e", "x.age"])
        .write_stdin(&b"first"[..])
        .assert()
        .success();
    assert_eq!(p.open("x.age").unwrap(), b"first");
    // From the rules directory, by the name the rule gives it.
    p.cmd()
        .current_dir(p.path("sub"))
        .args(["-i", "../key.txt", "--editor", "-", "-e", "../x.age"])
        .write_stdin(&b"second"[..])
        .assert()
        .success();
    assert_eq!(p.open("x.age").unwrap(), b"second");
}

#[test]
fn edit_evaluates_only_the_edited_rule_but_checks_every_name() {
    // As agenix: a mistake in another rule's value does not stop the editing of this one.
    let p = Project::new();
    let pk = &p.public;
    let write_rules = |other: &str| {
        fs::write(
            p.path("secrets.nix"),
            format!("{{\n  \"a.age\".publicKeys = [ {pk:?} ];\n  {other}\n}}\n"),
        )
        .unwrap()
    };
    for other in [
        "\"b.age\" = throw \"b is broken\";",
        "\"b.age\".publicKeys = import ./missing.nix;",
        "\"b.age\".publicKeys = [ 1 ];",
        "\"b.age\" = 42;",
    ] {
        write_rules(other);
        p.create("a.age", b"fine");
        assert_eq!(p.open("a.age").unwrap(), b"fine", "{other}");
        // Every other action still reads every rule, and fails on this one.
        p.cmd()
            .args(["-i", "key.txt", "-r"])
            .assert()
            .code(1)
            .stderr(contains("secrets.nix:3:"));
        // The edited rule itself is checked in full.
        p.cmd()
            .args(["-i", "key.txt", "--editor", "-", "-e", "b.age"])
            .write_stdin(&b"never"[..])
            .assert()
            .code(1)
            .stderr(contains("secrets.nix:3:"));
        assert!(!p.path("b.age").exists(), "{other}");
    }
    // A name is checked whichever file is edited: this rules file is refused.
    write_rules("\"./a.age\".publicKeys = [ ];");
    p.cmd()
        .args(["-i", "key.txt", "--editor", "-", "-e", "a.age"])
        .write_stdin(&b"changed"[..])
        .assert()
        .code(1)
        .stderr(contains(
            "secrets.nix:3:3: secret \"./a.age\" names the same file as secret \"a.age\" (./secrets.nix:2:3)",
        ));
    assert_eq!(p.open("a.age").unwrap(), b"fine");
}

#[test]
fn a_failing_editor_aborts_and_leaves_everything_as_it_was() {
    let p = Project::new();
    p.rules(&["a.age"]);
    p.create("a.age", b"plaintext-C3");
    let before = fs::read(p.path("a.age")).unwrap();
    script(&p.path("fail.sh"), "printf edited-Zq7 > \"$1\"; exit 3");
    p.cmd()
        .args(["-i", "key.txt", "--editor", "sh fail.sh", "-e", "a.age"])
        .assert()
        .code(1)
        .stderr(contains("failed").and(contains("a.age was left unchanged")));
    assert_eq!(fs::read(p.path("a.age")).unwrap(), before);
    assert!(p.plaintext_copies(b"plaintext-C3").is_empty());
    assert!(p.plaintext_copies(b"edited-Zq7").is_empty());
    assert!(p.leftover_private_dirs().is_empty());
    assert!(p.temp_files().is_empty());
}

use predicates::prelude::PredicateBooleanExt;

#[test]
fn an_editor_that_cannot_be_run_is_a_clear_error() {
    let p = Project::new();
    p.rules(&["a.age"]);
    p.cmd()
        .args([
            "-i",
            "key.txt",
            "--editor",
            "/nonexistent/editor --flag",
            "-e",
            "a.age",
        ])
        .assert()
        .code(1)
        .stderr(contains(
            "cannot run the editor `/nonexistent/editor --flag`",
        ));
    assert!(!p.path("a.age").exists());
    assert!(p.leftover_private_dirs().is_empty());
}

#[test]
fn a_new_file_the_editor_never_saves_writes_nothing() {
    let p = Project::new();
    p.rules(&["new.age"]);
    p.cmd()
        .args(["-i", "key.txt", "--editor", "true", "-e", "new.age"])
        .assert()
        .success()
        .stderr(contains("new.age wasn't created"));
    assert!(!p.path("new.age").exists());
    assert!(p.temp_files().is_empty());
}

#[test]
fn a_new_file_needs_no_identity() {
    let p = Project::new();
    p.rules(&["new.age"]);
    script(&p.path("w.sh"), "printf fresh > \"$1\"");
    p.cmd()
        .args(["--editor", "sh w.sh", "-e", "new.age"])
        .assert()
        .success();
    assert_eq!(p.open("new.age").unwrap(), b"fresh");
}

#[test]
fn the_editor_command_is_split_like_a_shell_would() {
    let p = Project::new();
    p.rules(&["a.age"]);
    fs::create_dir(p.path("dir with space")).unwrap();
    script(
        &p.path("dir with space/ed.sh"),
        "printf '%s' \"$1\" > /dev/null; printf \"$0:$#\" > \"$2\"",
    );
    p.cmd()
        .args([
            "--editor",
            "sh 'dir with space/ed.sh' \"one arg\"",
            "-e",
            "a.age",
        ])
        .assert()
        .success();
    assert_eq!(p.open("a.age").unwrap(), b"dir with space/ed.sh:2");
}

#[test]
fn stdin_that_is_not_a_terminal_is_the_new_content() {
    let p = Project::new();
    p.rules(&["pw.age"]);
    p.cmd()
        .env("EDITOR", "false")
        .args(["-e", "pw.age"])
        .write_stdin("hunter2")
        .assert()
        .success();
    assert_eq!(p.open("pw.age").unwrap(), b"hunter2");
    // Same content again: unchanged, untouched.
    let before = fs::read(p.path("pw.age")).unwrap();
    p.cmd()
        .args(["-i", "key.txt", "--editor", "-", "-e", "pw.age"])
        .write_stdin("hunter2")
        .assert()
        .success()
        .stderr(contains("wasn't changed"));
    assert_eq!(fs::read(p.path("pw.age")).unwrap(), before);
    p.cmd()
        .args(["-i", "key.txt", "--editor", "-", "-e", "pw.age"])
        .write_stdin("hunter3")
        .assert()
        .success();
    assert_eq!(p.open("pw.age").unwrap(), b"hunter3");
}

#[test]
fn an_empty_secret_is_a_valid_secret() {
    let p = Project::new();
    p.rules(&["empty.age"]);
    p.create("empty.age", b"");
    assert!(fs::metadata(p.path("empty.age")).unwrap().len() > 0);
    assert_eq!(p.open("empty.age").unwrap(), b"");
    p.cmd()
        .args(["-i", "key.txt", "-d", "empty.age"])
        .assert()
        .success()
        .stdout("");
    script(&p.path("empty.sh"), ": > \"$1\"");
    p.rules(&["empty2.age"]);
    p.cmd()
        .args(["--editor", "sh empty.sh", "-e", "empty2.age"])
        .assert()
        .success();
    assert_eq!(p.open("empty2.age").unwrap(), b"");
}

#[test]
fn edit_keeps_the_permission_bits_of_the_existing_file() {
    let p = Project::new();
    p.rules(&["a.age"]);
    p.create("a.age", b"one");
    fs::set_permissions(p.path("a.age"), fs::Permissions::from_mode(0o640)).unwrap();
    p.cmd()
        .args(["-i", "key.txt", "-e", "a.age"])
        .write_stdin("two")
        .assert()
        .success();
    let mode = fs::metadata(p.path("a.age")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
}

/// Runs an edit whose editor waits, delivers `signal` while it waits (to ragenix alone, or to
/// its whole process group as a terminal's Ctrl-C would), and checks nothing is left behind.
fn signal_during_the_editor(signal: rustix::process::Signal, to_group: bool) -> Option<i32> {
    use std::os::unix::process::CommandExt;
    let p = Project::new();
    p.rules(&["a.age"]);
    p.create("a.age", b"plaintext-D4");
    let before = fs::read(p.path("a.age")).unwrap();
    let marker = p.path("editor-started");
    script(
        &p.path("slow.sh"),
        &format!(
            "printf edited-Zq7 > \"$1\"\ntouch '{}'\nexec sleep 30",
            marker.display()
        ),
    );
    let child = p
        .std_cmd()
        .args(["-i", "key.txt", "--editor", "sh slow.sh", "-e", "a.age"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !marker.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "editor never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The edited plaintext exists while the editor runs...
    assert_eq!(p.plaintext_copies(b"edited-Zq7").len(), 1);
    let pid = rustix::process::Pid::from_child(&child);
    if to_group {
        rustix::process::kill_process_group(pid, signal).unwrap();
    } else {
        rustix::process::kill_process(pid, signal).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "{}", super::stderr_of(&out));
    // ...and not after.
    assert!(p.plaintext_copies(b"plaintext-D4").is_empty());
    assert!(p.plaintext_copies(b"edited-Zq7").is_empty());
    assert!(p.leftover_private_dirs().is_empty());
    assert_eq!(fs::read(p.path("a.age")).unwrap(), before);
    assert!(p.temp_files().is_empty());
    out.status.code()
}

#[test]
fn sigterm_during_the_editor_removes_the_plaintext() {
    let code = signal_during_the_editor(rustix::process::Signal::TERM, false);
    assert_eq!(code, Some(128 + 15));
}

#[test]
fn sighup_during_the_editor_removes_the_plaintext() {
    let code = signal_during_the_editor(rustix::process::Signal::HUP, false);
    assert_eq!(code, Some(128 + 1));
}

#[test]
fn ctrl_c_during_the_editor_is_the_editors_and_removes_the_plaintext() {
    // The whole group gets SIGINT and the editor dies of it. ragenix leaves SIGINT to a running
    // editor, but may read the signal just after the editor exited: it then either aborts as
    // for a failed editor (1) or exits as interrupted (130). Both remove the plaintext.
    let code = signal_during_the_editor(rustix::process::Signal::INT, true);
    assert!(code == Some(1) || code == Some(130), "{code:?}");
}

#[test]
fn visual_wins_over_editor_and_vi_is_the_last_resort_on_a_terminal() {
    if !crate::util::require_program("visual_wins_over_editor", "script") {
        return;
    }
    let p = Project::new();
    p.rules(&["a.age"]);
    fs::create_dir(p.path("bin")).unwrap();
    for name in ["visual", "editor", "vi"] {
        script(
            &p.path(format!("bin/{name}")),
            &format!("printf {name} > \"$1\""),
        );
    }
    let path = format!(
        "{}:{}",
        p.path("bin").display(),
        std::env::var("PATH").unwrap()
    );
    // `script` gives ragenix a terminal on stdin, so the editor is used instead of stdin.
    let run = |visual: Option<&str>, editor: Option<&str>| {
        let inner = shell_words::join([super::bin(), "-i", "key.txt", "-e", "a.age"]);
        let mut s = std::process::Command::new("script");
        p.prepare(&mut s);
        s.args(["-qec", &inner, "/dev/null"]).env("PATH", &path);
        if let Some(v) = visual {
            s.env("VISUAL", v);
        }
        if let Some(e) = editor {
            s.env("EDITOR", e);
        }
        let out = s.stdin(Stdio::null()).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(p.open("a.age").unwrap()).unwrap()
    };
    assert_eq!(run(Some("visual"), Some("editor")), "visual");
    assert_eq!(run(None, Some("editor")), "editor");
    assert_eq!(run(None, None), "vi");
}
