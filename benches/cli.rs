//! Figures for the issue's speed targets, printed rather than asserted (run: `cargo bench`):
//! W1000 `-r` wall time against the single-threaded in-memory floor, `-e` with an editor that
//! changes nothing on a 1000-rule file, and peak memory of `-d` on a 1 GiB secret.

use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ragenix::keys::{self, Prompt};

const SECRETS: usize = 1000;
const RUNS: usize = 7;

struct NoPrompt;
impl Prompt for NoPrompt {
    fn passphrase(&self, _: &str) -> anyhow::Result<Option<age::secrecy::SecretString>> {
        Ok(None)
    }
}

fn ragenix(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ragenix"));
    c.current_dir(dir)
        .env("HOME", dir)
        .env_remove("RULES")
        .env("XDG_RUNTIME_DIR", dir)
        .stdin(Stdio::null());
    c
}

fn run_ok(c: &mut Command) {
    let out = c.output().expect("running ragenix");
    assert!(
        out.status.success(),
        "{:?}: {}",
        c,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn timed(runs: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    let times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    let min = *times.iter().min().unwrap();
    (median(times), min)
}

fn ssh_keygen(path: &Path) -> String {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "", "-f"])
        .arg(path)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "the benchmark needs ssh-keygen");
    fs::read_to_string(path.with_extension("pub"))
        .unwrap()
        .trim()
        .to_owned()
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful. Either way run.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ssh1 = ssh_keygen(&d.join("id1"));
    let ssh2 = ssh_keygen(&d.join("id2"));
    let x = age::x25519::Identity::generate().to_public().to_string();
    let recipients_list = vec![ssh1.clone(), ssh2, x];

    let mut rules = String::from("let keys = [\n");
    for k in &recipients_list {
        rules += &format!("  {k:?}\n");
    }
    rules += "]; in {\n";
    for i in 0..SECRETS {
        rules += &format!("  \"s{i:04}.age\".publicKeys = keys;\n");
    }
    rules += "}\n";
    fs::write(d.join("secrets.nix"), rules).unwrap();

    let recipients = keys::recipients("bench", &recipients_list).unwrap();
    let mut sealed_all = Vec::with_capacity(SECRETS);
    for i in 0..SECRETS {
        let plain = format!("{i:04}:{}", "s3cr3t-".repeat(28)).into_bytes(); // ~200 bytes
        let mut out = Vec::new();
        ragenix::age_io::encrypt(&recipients, false, &mut &plain[..], &mut out).unwrap();
        fs::write(d.join(format!("s{i:04}.age")), &out).unwrap();
        sealed_all.push(out);
    }

    println!(
        "working directory: {} (set TMPDIR to choose the filesystem)",
        d.display()
    );
    println!("W1000: {SECRETS} secrets of ~200 bytes, 3 recipients (2 ssh-ed25519, 1 X25519), identity ssh-ed25519");

    // Rules evaluation is part of every command; show its share separately.
    let (eval, _) = timed(RUNS, || {
        run_ok(ragenix(d).arg("--dump-rules").stdout(Stdio::null()))
    });
    println!("  rules evaluation (--dump-rules), median of {RUNS}: {eval:?}");

    run_ok(ragenix(d).args(["-i", "id1", "-r"])); // warm the page cache
    let (rekey, rekey_min) = timed(RUNS, || run_ok(ragenix(d).args(["-i", "id1", "-r"])));
    println!("  ragenix -r, wall, median of {RUNS}: {rekey:?} (min {rekey_min:?})");

    let ids = keys::load_identities(&[d.join("id1")], Arc::new(NoPrompt)).unwrap();
    let (floor, floor_min) = timed(RUNS, || {
        let recipients = keys::recipients("bench", &recipients_list).unwrap();
        for sealed in &sealed_all {
            let mut plain = Vec::new();
            ragenix::age_io::decrypt(&ids, &mut &sealed[..], &mut plain).unwrap();
            let mut out = Vec::new();
            ragenix::age_io::encrypt(&recipients, false, &mut &plain[..], &mut out).unwrap();
        }
    });
    println!("  in-memory floor, one thread, median of {RUNS}: {floor:?} (min {floor_min:?})");
    println!(
        "  ratio -r / floor: {:.2}",
        rekey.as_secs_f64() / floor.as_secs_f64()
    );

    let (edit, edit_min) = timed(RUNS, || {
        run_ok(ragenix(d).args(["-i", "id1", "--editor", "true", "-e", "s0500.age"]))
    });
    println!(
        "  ragenix -e s0500.age --editor true (1000-rule file), median of {RUNS}: {edit:?} (min {edit_min:?})"
    );

    // The same file with -d: no rules evaluation, no editor; the floor under -e.
    let (dec, dec_min) = timed(RUNS, || {
        run_ok(
            ragenix(d)
                .args(["-i", "id1", "-d", "s0500.age"])
                .stdout(Stdio::null()),
        )
    });
    println!("  ragenix -d s0500.age, median of {RUNS}: {dec:?} (min {dec_min:?})");

    // 1 GiB secret: peak memory of -d.
    let big = d.join("big.age");
    {
        let mut file = io::BufWriter::new(fs::File::create(&big).unwrap());
        let mut input = io::repeat(0x5a).take(1 << 30);
        ragenix::age_io::encrypt(&recipients[..1], false, &mut input, &mut file).unwrap();
        io::Write::flush(&mut file).unwrap();
    }
    if Path::new("/usr/bin/time").exists() {
        let t = Instant::now();
        let out = Command::new("/usr/bin/time")
            .args(["-f", "%M"])
            .arg(env!("CARGO_BIN_EXE_ragenix"))
            .args(["-i", "id1", "-d", "big.age"])
            .current_dir(d)
            .env("HOME", d)
            .stdout(Stdio::null())
            .output()
            .unwrap();
        let wall = t.elapsed();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let kib: u64 = String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .expect("/usr/bin/time -f %M prints the peak RSS in KiB");
        println!(
            "  ragenix -d of a 1 GiB secret: peak RSS {:.1} MiB, wall {wall:?}",
            kib as f64 / 1024.0
        );
    } else {
        println!("  ragenix -d of a 1 GiB secret: SKIPPED (/usr/bin/time not installed)");
    }
}
