//! Benchmark: reading a 10,000-secret rules file (let-bound keys, `++`, imports) with our
//! evaluator versus `nix-instantiate --eval --strict --json` on the same file. Target: ours
//! ≤ 20 ms and at least 3× faster. Run with `cargo bench --bench rules`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ragenix::rules::{self, LoadOptions, Rules};

// The same allocator as the `ragenix` binary, so the figures are the program's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SECRETS: usize = 10_000;

fn write_rules(dir: &Path) {
    let mut keys = String::from("{\n");
    for i in 0..50 {
        writeln!(
            keys,
            "  user{i} = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{i:040} user{i}\";"
        )
        .unwrap();
    }
    keys.push_str("}\n");
    std::fs::write(dir.join("keys.nix"), keys).unwrap();

    let mut hosts = String::from("[\n");
    for i in 0..4 {
        writeln!(hosts, "  \"age1{i:058}\"").unwrap();
    }
    hosts.push_str("]\n");
    std::fs::write(dir.join("hosts.nix"), hosts).unwrap();

    let mut rules = String::from(
        "let\n  keys = import ./keys.nix;\n  hosts = import ./hosts.nix;\n  admins = [ keys.user0 keys.user1 ];\n  everyone = admins ++ hosts ++ [ keys.user2 ];\nin\n{\n",
    );
    for i in 0..SECRETS {
        match i % 3 {
            0 => writeln!(
                rules,
                "  \"secrets/s{i}.age\".publicKeys = admins ++ [ keys.user{} ];",
                i % 50
            ),
            1 => writeln!(
                rules,
                "  \"secrets/s{i}.age\" = {{ publicKeys = everyone; armor = true; }};"
            ),
            _ => writeln!(
                rules,
                "  \"secrets/s{i}.age\".publicKeys = [ keys.user{} ] ++ hosts;",
                i % 50
            ),
        }
        .unwrap();
    }
    rules.push_str("}\n");
    std::fs::write(dir.join("secrets.nix"), rules).unwrap();
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    write_rules(dir.path());
    let file = dir.path().join("secrets.nix");
    let opts = LoadOptions::default();

    // Ours: full load (parse, evaluate, validate), warmed up once.
    let rules = Rules::load(&file, &opts).expect("the generated rules load");
    assert_eq!(rules.secrets.len(), SECRETS);
    let ours = median(
        (0..21)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(Rules::load(&file, &opts).unwrap());
                start.elapsed()
            })
            .collect(),
    );
    println!(
        "ragenix Rules::load ({SECRETS} secrets): {:.2} ms (median of 21)",
        ours.as_secs_f64() * 1e3
    );

    let found = Command::new("nix-instantiate")
        .arg("--version")
        .output()
        .is_ok();
    if !found {
        println!("nix-instantiate: not installed, no comparison");
        return;
    }
    let mut nix_json = None;
    let theirs = median(
        (0..5)
            .map(|_| {
                let start = Instant::now();
                let out = Command::new("nix-instantiate")
                    .args(["--eval", "--strict", "--json"])
                    .arg(&file)
                    .output()
                    .unwrap();
                let elapsed = start.elapsed();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                nix_json = Some(serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap());
                elapsed
            })
            .collect(),
    );
    let ours_json = rules::evaluate(&file, &opts).unwrap();
    assert!(
        nix_json.as_ref() == Some(&ours_json),
        "ours and nix-instantiate disagree"
    );
    println!(
        "nix-instantiate --eval --strict --json: {:.2} ms (median of 5)",
        theirs.as_secs_f64() * 1e3
    );
    println!(
        "ragenix is {:.1}x faster (target: <= 20 ms and >= 3x)",
        theirs.as_secs_f64() / ours.as_secs_f64()
    );
}
