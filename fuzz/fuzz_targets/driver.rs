//! A small mutation fuzzer for stable Rust, used when libFuzzer (nightly) is not available:
//! mutates seed rules files (our fixtures and the shared corpus), runs each mutant through the
//! target, and records panics and hangs in `fuzz/artifacts/`.
//!
//! Usage: `cargo run --release --no-default-features -- [MINUTES] [SEED_DIR...]`.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DICTIONARY: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    ";",
    ":",
    "=",
    ".",
    ",",
    "@",
    "?",
    "...",
    "${",
    "''",
    "\"",
    "let ",
    " in ",
    "rec ",
    "with ",
    "inherit ",
    "if ",
    " then ",
    " else ",
    "assert ",
    "or ",
    "import ",
    "./keys",
    "./keys/admin.pub",
    "./.",
    "<nixpkgs>",
    "builtins.",
    "throw \"x\"",
    "++",
    "//",
    "+",
    "-",
    "*",
    "/",
    "==",
    "!=",
    "<",
    "<=",
    "&&",
    "||",
    "->",
    "!",
    "x: ",
    "{ a ? 1, ... }@s: ",
    "null",
    "true",
    "1.5",
    "-1",
    "9223372036854775807",
    "0",
    "builtins.readFile ./keys/admin.pub",
    "builtins.readDir ./.",
    "builtins.genList (i: i) 3",
    "builtins.foldl' (a: b: a + b) 0",
    "map (x: x)",
    "builtins.fetchGit",
    "__curPos",
    "let x = x; in x",
    "rec { a = b; b = a; }.a",
    "(let f = n: f (n + 1); in f 0)",
    "\"${toString 1}\"",
    "builtins.match \"(a)|b+\" \"ab\"",
    "builtins.split \",\" \"a,b\"",
    "builtins.tryEval (throw \"t\")",
    "builtins.hashString \"sha256\" \"\"",
    "./keys/admin.pub",
    "''\n  a\n  ${\"b\"}\n''",
    "a.b.c",
    "a.${\"b\"}",
    "#c\n",
    "/* c */",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn collect(dir: &Path, out: &mut Vec<Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "nix") {
            if let Ok(bytes) = std::fs::read(&path) {
                out.push(bytes);
            }
        }
    }
}

fn mutate(rng: &mut Rng, input: &[u8], pool: &[Vec<u8>]) -> Vec<u8> {
    let mut data = input.to_vec();
    for _ in 0..1 + rng.below(6) {
        let len = data.len();
        let at = rng.below(len + 1);
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 | 2 => {
                let tok = DICTIONARY[rng.below(DICTIONARY.len())].as_bytes();
                data.splice(at..at, tok.iter().copied());
            }
            3 if len > 0 => {
                let end = (at + 1 + rng.below(32)).min(len);
                data.drain(at.min(end)..end);
            }
            4 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(64)).min(len);
                let chunk = data[start..end].to_vec();
                data.splice(at..at, chunk);
            }
            5 => {
                let other = &pool[rng.below(pool.len())];
                if !other.is_empty() {
                    let start = rng.below(other.len());
                    let end = (start + 1 + rng.below(256)).min(other.len());
                    data.splice(at..at, other[start..end].iter().copied());
                }
            }
            6 => {
                // Deep nesting: the evaluator must report it, not overflow the stack.
                let depth = 1 + rng.below(3000);
                let (open, close) =
                    [("[", "]"), ("(", ")"), ("{a=", ";}"), ("x: ", "")][rng.below(4)];
                let mut wrapped = open.repeat(depth).into_bytes();
                wrapped.extend_from_slice(&data);
                wrapped.extend_from_slice(close.repeat(depth).as_bytes());
                data = wrapped;
            }
            7 if len > 0 => {
                let i = rng.below(len);
                data[i] = b"{}[]();:=.\"'$ \n"[rng.below(15)];
            }
            _ => {
                let n = ["0", "-1", "1000000", "3.0", "\"\"", "[]", "{}", "null"];
                let tok = n[rng.below(n.len())].as_bytes();
                data.splice(at..at, tok.iter().copied());
            }
        }
    }
    data.truncate(1 << 16);
    data
}

pub fn run(check: fn(&[u8], &Path) -> bool, dir: &Path) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let minutes: f64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(10.0);
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seed_dirs: Vec<PathBuf> = if args.len() > 1 {
        args[1..].iter().map(PathBuf::from).collect()
    } else {
        vec![
            manifest.join("../tests/data/rules"),
            manifest.join("../../shared/corpus"),
        ]
    };
    let mut seeds = Vec::new();
    for d in &seed_dirs {
        collect(d, &mut seeds);
    }
    assert!(!seeds.is_empty(), "no seed files in {seed_dirs:?}");
    let artifacts = manifest.join("artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    println!(
        "fuzz: {} seeds, {minutes} minutes, rng seed {seed}",
        seeds.len()
    );

    // Silence the default panic message; panics are recorded as artifacts instead.
    std::panic::set_hook(Box::new(|_| {}));

    let execs = Arc::new(AtomicU64::new(0));
    let last_input = artifacts.join("last-input.nix");
    {
        let execs = execs.clone();
        let last_input = last_input.clone();
        let artifacts = artifacts.clone();
        std::thread::spawn(move || {
            let mut seen = 0;
            let mut stuck = 0;
            loop {
                std::thread::sleep(Duration::from_secs(1));
                let now = execs.load(Ordering::Relaxed);
                stuck = if now == seen { stuck + 1 } else { 0 };
                seen = now;
                if stuck >= 20 {
                    let hang = artifacts.join(format!("hang-{now}.nix"));
                    let _ = std::fs::copy(&last_input, &hang);
                    println!(
                        "fuzz: HANG (no progress for 20 s) after {now} execs; input in {}",
                        hang.display()
                    );
                    std::process::exit(2);
                }
            }
        });
    }

    let mut rng = Rng(seed);
    let mut pool = seeds.clone();
    let (mut panics, mut evaluated, mut errors) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(minutes * 60.0);
    let mut next_report = start + Duration::from_secs(60);
    while Instant::now() < deadline {
        let base = &pool[rng.below(pool.len())];
        let input = mutate(&mut rng, base, &pool);
        // Kept on disk so that a crash (which kills this process) leaves its input behind.
        let _ = std::fs::write(&last_input, &input);
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| check(&input, dir)));
        match outcome {
            Ok(ok) => {
                if ok {
                    evaluated += 1;
                    if pool.len() < seeds.len() + 2000 {
                        pool.push(input.clone());
                    }
                } else {
                    errors += 1;
                }
            }
            Err(_) => {
                panics += 1;
                let path = artifacts.join(format!("panic-{panics}.nix"));
                let _ = std::fs::write(&path, &input);
                println!("fuzz: PANIC, input in {}", path.display());
            }
        }
        execs.fetch_add(1, Ordering::Relaxed);
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(60);
            report(start, &execs, evaluated, errors, panics);
        }
    }
    report(start, &execs, evaluated, errors, panics);
    let _ = std::fs::remove_file(&last_input);
    if panics > 0 {
        std::process::exit(1);
    }
}

fn report(start: Instant, execs: &AtomicU64, evaluated: u64, errors: u64, panics: u64) {
    let n = execs.load(Ordering::Relaxed);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "fuzz: {secs:.0} s, {n} execs ({:.0}/s), {evaluated} evaluated, {errors} errors, {panics} panics",
        n as f64 / secs
    );
}
