//! Crash safety: SIGKILL during `-r` never leaves a secret unreadable or changed in content.

use std::fs;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStderr, Stdio};
use std::time::{Duration, Instant};

use super::Project;

const FILES: usize = 300;

#[test]
fn sigkill_at_any_moment_of_a_rekey_of_300_files_loses_nothing() {
    let p = Project::new();
    let list: Vec<String> = (0..FILES)
        .map(|i| format!("d{}/secret {i}.age", i % 3))
        .collect();
    let refs: Vec<&str> = list.iter().map(String::as_str).collect();
    p.rules(&refs);
    let originals: Vec<Vec<u8>> = (0..FILES)
        .map(|i| format!("original content {i} \u{1F511}").into_bytes())
        .collect();
    let recipient: ragenix::keys::BoxRecipient =
        Box::new(p.public.parse::<age::x25519::Recipient>().unwrap());
    let recipients = [recipient];
    for (name, plain) in refs.iter().zip(&originals) {
        let path = p.path(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut out = Vec::new();
        ragenix::age_io::encrypt(&recipients, false, &mut &plain[..], &mut out).unwrap();
        fs::write(path, out).unwrap();
    }
    let check_all = |when: &str| {
        for (name, plain) in refs.iter().zip(&originals) {
            match p.open(name) {
                Ok(got) => assert_eq!(&got, plain, "{name} has other content {when}"),
                Err(e) => panic!("{name} cannot be decrypted {when}: {e:#}"),
            }
        }
    };
    let snapshot =
        || -> Vec<Vec<u8>> { refs.iter().map(|n| fs::read(p.path(n)).unwrap()).collect() };

    // How long a whole rekey takes here, so the kills can be spread over all of its phases
    // (rules evaluation, decrypt/encrypt into temps, renames).
    let start = Instant::now();
    p.cmd().args(["-i", "key.txt", "-r"]).assert().success();
    let full = start.elapsed();
    check_all("after a complete rekey");

    let fractions = [0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.97];
    for f in fractions {
        let before = snapshot();
        let delay = full.mul_f64(f);
        let mut child = p
            .std_cmd()
            .args(["-i", "key.txt", "-r"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL; the process may already have finished
        let status = child.wait().unwrap();
        let after = snapshot();
        let replaced = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        eprintln!(
            "killed after {delay:?} ({f} of {full:?}): {status}, {replaced}/{FILES} files replaced, {} temp files",
            p.temp_files().len()
        );
        check_all(&format!("after SIGKILL at {delay:?}"));
    }

    // Exact moments, through the debug build's pause points: mid-staging, everything staged but
    // nothing renamed, and part-way through the renames.
    // Renames run on several threads; the others stop at their next file, so a few more than
    // N may be renamed when the process is killed at "renamed:N".
    let slack = std::thread::available_parallelism().map_or(16, |n| n.get().max(16));
    let points = [
        ("staged:1", 0..=0),
        ("staged:150", 0..=0),
        ("staged:300", 0..=0),
        ("renamed:1", 1..=1 + slack),
        ("renamed:150", 150..=150 + slack),
        ("renamed:300", 300..=300),
    ];
    for (point, expect_replaced) in points {
        let before = snapshot();
        let (mut child, _stderr) = rekey_paused_at(&p, point);
        child.kill().unwrap();
        child.wait().unwrap();
        let after = snapshot();
        let replaced = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        eprintln!(
            "killed at {point}: {replaced}/{FILES} files replaced, {} temp files",
            p.temp_files().len()
        );
        assert!(
            expect_replaced.contains(&replaced),
            "{replaced} replaced at {point}"
        );
        check_all(&format!("after SIGKILL at {point}"));
    }

    p.cmd().args(["-i", "key.txt", "-r"]).assert().success();
    check_all("after the final rekey");
    assert!(
        p.temp_files().is_empty(),
        "left behind: {:?}",
        p.temp_files()
    );

    // SIGTERM, SIGINT and SIGHUP can be caught: the process removes its own temp files.
    for (point, signal) in [
        ("staged:150", rustix::process::Signal::TERM),
        ("staged:300", rustix::process::Signal::INT),
        ("staged:10", rustix::process::Signal::HUP),
    ] {
        let before = snapshot();
        let (mut child, _stderr) = rekey_paused_at(&p, point);
        rustix::process::kill_process(rustix::process::Pid::from_child(&child), signal).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(128 + signal.as_raw()), "{point}");
        assert_eq!(
            snapshot(),
            before,
            "a file changed after {signal:?} at {point}"
        );
        assert!(
            p.temp_files().is_empty(),
            "after {signal:?}: {:?}",
            p.temp_files()
        );
    }
    assert!(
        p.temp_files().is_empty(),
        "left behind: {:?}",
        p.temp_files()
    );
    assert!(start.elapsed() < Duration::from_secs(600));
}

/// Starts `-r` with the debug build's pause hook at `point` and returns once it is paused
/// there. The stderr pipe is returned so it stays open while the child still writes to it.
// The child is handed to the caller, which kills and waits on it; clippy cannot see that.
#[allow(clippy::zombie_processes)]
fn rekey_paused_at(p: &Project, point: &str) -> (Child, BufReader<ChildStderr>) {
    let mut child = p
        .std_cmd()
        .env("RAGENIX_TEST_PAUSE", point)
        .args(["-i", "key.txt", "-r"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        if stderr.read_line(&mut line).unwrap() == 0 {
            let status = child.wait().unwrap();
            panic!("rekey ended ({status}) without reaching {point}");
        }
        if line.contains("ragenix-test: paused at") {
            return (child, stderr);
        }
    }
}
