//! Benchmark: reading rules files, ours against `nix-instantiate --eval --strict --json`.
//! Figures are printed, never asserted (the machine is shared): for a generated 10,000-secret
//! file (let-bound keys, `++`, imports) and for the corpus case with the largest output, the
//! whole-process wall time and peak RSS of `ragenix --dump-rules` to /dev/null and of
//! `nix-instantiate`, with their ratios; `-e` with an editor that changes nothing on the 10k
//! and a 1,000-rule file; the in-process `Rules::load` time; and where the bytes go, phase by
//! phase; and the floors no change of ours moves: process start, and `rnix::Root::parse`
//! alone. Targets (issue 13): on the 10k file wall <= 0.5x and peak RSS <= nix-instantiate's;
//! `-e` <= 40 ms (10k) and <= 10 ms (1,000). Run with `cargo bench --bench rules`.

use std::alloc::{GlobalAlloc, Layout};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ragenix::rules::{self, LoadOptions, Rules};

/// The `ragenix` binary's allocator, counted: allocations and bytes per evaluation phase.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { mimalloc::MiMalloc.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Relaxed);
            grew(new_size);
        }
        p
    }
}

fn grew(size: usize) {
    ALLOCS.fetch_add(1, Relaxed);
    ALLOCATED.fetch_add(size, Relaxed);
    let live = LIVE.fetch_add(size, Relaxed) + size;
    PEAK.fetch_max(live, Relaxed);
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A phase: its name, allocations, bytes allocated, live bytes at its end, peak live bytes,
/// and when it ended.
type Phase = (&'static str, usize, usize, usize, usize, Instant);

static PHASES: Mutex<Vec<Phase>> = Mutex::new(Vec::new());

fn mark(phase: &'static str) {
    let now = Instant::now();
    let allocs = ALLOCS.swap(0, Relaxed);
    let bytes = ALLOCATED.swap(0, Relaxed);
    let live = LIVE.load(Relaxed);
    let peak = PEAK.swap(live, Relaxed);
    PHASES
        .lock()
        .unwrap()
        .push((phase, allocs, bytes, live, peak, now));
}

const SECRETS: usize = 10_000;
const RUNS: usize = 11;
/// Runs of `-e` and its floors: each takes milliseconds, and more runs make it likelier that the
/// fastest fell in a moment when the shared machine was quiet.
const EDIT_RUNS: usize = 31;

/// A rules file of `secrets` rules in `dir`; the first rule also names `extra` (a real
/// recipient, so that `-e` can open that secret).
fn write_rules(dir: &Path, secrets: usize, extra: &str) {
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
    writeln!(rules, "  \"secrets/s0.age\".publicKeys = [ \"{extra}\" ];").unwrap();
    for i in 1..secrets {
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
    // The rules root, as a repository would have it.
    std::fs::create_dir_all(dir.join(".git")).unwrap();
}

/// `secrets/s0.age`, encrypted to `identity`, and the identity file `id`.
fn write_secret(dir: &Path, identity: &age::x25519::Identity) {
    use age::secrecy::ExposeSecret;
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    let recipient: Box<dyn age::Recipient + Send + Sync> = Box::new(identity.to_public());
    let mut out = Vec::new();
    ragenix::age_io::encrypt(&[recipient], false, &mut &b"s0"[..], &mut out).unwrap();
    std::fs::write(dir.join("secrets/s0.age"), out).unwrap();
    std::fs::write(dir.join("id"), identity.to_string().expose_secret()).unwrap();
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Wall time of a number of runs: the median, and the fastest (this machine is shared: other load
/// only ever adds time, so the fastest run is the closest to what the program itself costs).
#[derive(Clone, Copy)]
struct Wall {
    median: Duration,
    min: Duration,
}

impl std::fmt::Display for Wall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (fastest {})", ms(self.median), ms(self.min))
    }
}

/// Wall time (of `RUNS`, after one warm-up) and peak RSS in KiB (by `/usr/bin/time`, when
/// installed) of a whole process, stdout to /dev/null.
fn measure(make: impl Fn() -> Command) -> (Wall, Option<u64>) {
    measure_side_by_side(RUNS, &[&make]).remove(0)
}

/// [`measure`] for several commands whose runs alternate, so that a change of load on this
/// shared machine weighs on each of them alike and their ratio holds.
fn measure_side_by_side(runs: usize, makes: &[&dyn Fn() -> Command]) -> Vec<(Wall, Option<u64>)> {
    let run = |c: &mut Command| {
        let out = c.stdout(Stdio::null()).stdin(Stdio::null()).output();
        let out = out.unwrap_or_else(|e| panic!("{c:?}: {e}"));
        assert!(
            out.status.success(),
            "{c:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    for make in makes {
        run(&mut make());
    }
    let mut times = vec![Vec::with_capacity(runs); makes.len()];
    for _ in 0..runs {
        for (make, times) in makes.iter().zip(&mut times) {
            let mut c = make();
            let start = Instant::now();
            run(&mut c);
            times.push(start.elapsed());
        }
    }
    let rss = |c: Command| {
        Path::new("/usr/bin/time").exists().then(|| {
            let mut timed = Command::new("/usr/bin/time");
            timed
                .args(["-f", "%M"])
                .arg(c.get_program())
                .args(c.get_args());
            if let Some(d) = c.get_current_dir() {
                timed.current_dir(d);
            }
            for (k, v) in c.get_envs() {
                match v {
                    Some(v) => timed.env(k, v),
                    None => timed.env_remove(k),
                };
            }
            let out = run(&mut timed);
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .and_then(|l| l.trim().parse().ok())
                .expect("/usr/bin/time -f %M prints the peak RSS in KiB")
        })
    };
    makes
        .iter()
        .zip(times)
        .map(|(make, times)| {
            let min = *times.iter().min().expect("runs > 0");
            let wall = Wall {
                median: median(times),
                min,
            };
            (wall, rss(make()))
        })
        .collect()
}

/// The binary measured: this build's, or `RAGENIX_BIN` (e.g. an older build to compare with).
fn ragenix(dir: &Path) -> Command {
    let bin = std::env::var_os("RAGENIX_BIN").unwrap_or(env!("CARGO_BIN_EXE_ragenix").into());
    let mut c = Command::new(bin);
    c.current_dir(dir)
        .env("HOME", dir)
        .env("XDG_RUNTIME_DIR", dir)
        .env_remove("RULES");
    c
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("? (no /usr/bin/time)".to_owned(), |k| {
        format!("{:.1} MiB", k as f64 / 1024.0)
    })
}

/// Ours against nix-instantiate on `entry` (relative to `dir`), printed with ratios.
fn compare(label: &str, dir: &Path, entry: &str, nix: bool) -> Option<Duration> {
    let ours = || {
        let mut c = ragenix(dir);
        c.args(["--dump-rules", "--rules", entry]);
        c
    };
    let theirs = || {
        let mut c = Command::new("nix-instantiate");
        c.current_dir(dir)
            .args(["--eval", "--strict", "--json", entry]);
        c
    };
    let measured = if nix {
        measure_side_by_side(RUNS, &[&ours, &theirs])
    } else {
        measure_side_by_side(RUNS, &[&ours])
    };
    let (ours, ours_rss) = measured[0];
    println!("{label}");
    println!(
        "  ragenix --dump-rules:          wall {ours}  peak RSS {}",
        mib(ours_rss)
    );
    let &(theirs, theirs_rss) = measured.get(1)?;
    println!(
        "  nix-instantiate --eval --strict --json: wall {theirs}  peak RSS {}",
        mib(theirs_rss)
    );
    let rss_ratio = match (ours_rss, theirs_rss) {
        (Some(o), Some(t)) => format!("{:.2}x", o as f64 / t as f64),
        _ => "?".to_owned(),
    };
    println!(
        "  ours / nix: wall {:.2}x (fastest runs {:.2}x)  peak RSS {rss_ratio}",
        ours.median.as_secs_f64() / theirs.median.as_secs_f64(),
        ours.min.as_secs_f64() / theirs.min.as_secs_f64()
    );
    Some(theirs.median)
}

/// In-process median of 21 (after a warm-up) of `rnix::Root::parse` alone on `file`: the part
/// of every run that rnix owns and no change of ours can shorten.
fn rnix_parse(file: &Path) -> Duration {
    let text = std::fs::read_to_string(file).unwrap();
    std::hint::black_box(rnix::Root::parse(&text));
    median(
        (0..21)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(rnix::Root::parse(&text));
                start.elapsed()
            })
            .collect(),
    )
}

/// The corpus case whose evaluated rules are the largest, copied as a repository of its own.
fn largest_corpus_case() -> Option<(tempfile::TempDir, String, String)> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    let mut best: Option<(u64, PathBuf, String)> = None;
    for set in ["open", "open-multi"] {
        let Ok(cases) = std::fs::read_dir(corpus.join(set)) else {
            continue;
        };
        for case in cases.flatten() {
            let case = case.path();
            let entry = std::fs::read_to_string(case.join("entry.txt"))
                .map(|e| e.trim().to_owned())
                .unwrap_or_else(|_| "secrets.nix".to_owned());
            let size = std::fs::metadata(case.join("expected.json")).map_or(0, |m| m.len());
            if best.as_ref().is_none_or(|(s, ..)| size > *s) {
                best = Some((size, case, entry));
            }
        }
    }
    let (_, case, entry) = best?;
    let tmp = tempfile::tempdir().unwrap();
    for item in walkdir::WalkDir::new(&case) {
        let item = item.unwrap();
        let to = tmp.path().join(item.path().strip_prefix(&case).unwrap());
        if item.file_type().is_dir() {
            std::fs::create_dir_all(&to).unwrap();
        } else {
            std::fs::copy(item.path(), &to).unwrap();
        }
    }
    std::fs::create_dir_all(tmp.path().join(".git")).unwrap();
    let name = case.strip_prefix(&corpus).unwrap().display().to_string();
    Some((tmp, entry, name))
}

fn main() {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let big = tempfile::tempdir().unwrap();
    write_rules(big.path(), SECRETS, &recipient);
    write_secret(big.path(), &identity);
    let small = tempfile::tempdir().unwrap();
    write_rules(small.path(), 1000, &recipient);
    write_secret(small.path(), &identity);
    let file = big.path().join("secrets.nix");
    let opts = LoadOptions::default();
    let nix = Command::new("nix-instantiate")
        .arg("--version")
        .output()
        .is_ok();

    // Where the bytes go: one in-process evaluation of the 10k file, phase by phase.
    // Warmed up once, so that the page cache and the allocator's first growth are not counted.
    rules::evaluate_phases(&file, |_| {}).expect("the generated rules evaluate");
    PHASES.lock().unwrap().clear();
    mark("start");
    rules::evaluate_phases(&file, mark).expect("the generated rules evaluate");
    let phases = std::mem::take(&mut *PHASES.lock().unwrap());
    println!(
        "10k file ({} KiB), allocations by phase (one in-process --dump-rules):",
        std::fs::metadata(&file).unwrap().len() / 1024
    );
    println!(
        "  {:<12} {:>10} {:>12} {:>12} {:>12} {:>10}",
        "phase", "allocs", "allocated", "live after", "peak live", "time"
    );
    for pair in phases.windows(2) {
        let (phase, allocs, bytes, live, peak, end) = pair[1];
        let m = |b: usize| format!("{:.1} MiB", b as f64 / (1 << 20) as f64);
        println!(
            "  {phase:<12} {allocs:>10} {:>12} {:>12} {:>12} {:>10}",
            m(bytes),
            m(live),
            m(peak),
            ms(end - pair[0].5)
        );
    }

    // In process: full load (parse, evaluate, validate), warmed up once.
    let rules = Rules::load(&file, &opts).expect("the generated rules load");
    assert_eq!(rules.secrets.len(), SECRETS);
    let load = median(
        (0..21)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(Rules::load(&file, &opts).unwrap());
                start.elapsed()
            })
            .collect(),
    );
    println!(
        "Rules::load in process ({SECRETS} secrets): {} (median of 21)",
        ms(load)
    );

    if nix {
        let out = Command::new("nix-instantiate")
            .args(["--eval", "--strict", "--json"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let out = ragenix(big.path()).arg("--dump-rules").output().unwrap();
        let ours: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(theirs == ours, "ours and nix-instantiate disagree");
    } else {
        println!("nix-instantiate: not installed, no comparison");
    }

    let nix_wall = compare(
        &format!("10k file, whole process, median of {RUNS}:"),
        big.path(),
        "secrets.nix",
        nix,
    );
    match largest_corpus_case() {
        Some((dir, entry, name)) => {
            compare(
                &format!(
                    "corpus {name} ({entry}, largest output), whole process, median of {RUNS}:"
                ),
                dir.path(),
                &entry,
                nix,
            );
        }
        None => println!("corpus: ../shared/corpus not present, SKIPPED"),
    }

    // What no change of ours can go below: a process that starts and exits, and rnix's parse.
    let (start, _) = measure(|| {
        let mut c = ragenix(big.path());
        c.arg("--version");
        c
    });
    // The editor `-e` runs below, on its own.
    let (editor, _) = measure(|| Command::new("true"));
    let parse_big = rnix_parse(&file);
    let parse_small = rnix_parse(&small.path().join("secrets.nix"));
    println!(
        "floor: process start and exit (ragenix --version): {start}; the editor of -e (true): {editor}"
    );
    match nix_wall {
        Some(theirs) => println!(
            "floor: rnix::Root::parse alone, 10k file: {} in process = {:.2}x nix-instantiate's whole run (wall target 0.5x)",
            ms(parse_big),
            parse_big.as_secs_f64() / theirs.as_secs_f64()
        ),
        None => println!("floor: rnix::Root::parse alone, 10k file: {} in process", ms(parse_big)),
    }
    println!(
        "floor: rnix::Root::parse alone, 1,000-rule file: {} in process",
        ms(parse_small)
    );

    // Alternating with the two floors it contains (starting ragenix, running the editor), so
    // that what is left, the work `-e` itself does, is read at one moment's load.
    for (label, dir, target) in [("10k", big.path(), 40), ("1,000-rule", small.path(), 10)] {
        let edit = || {
            let mut c = ragenix(dir);
            c.args(["-i", "id", "--editor", "true", "-e", "secrets/s0.age"]);
            c
        };
        let start = || {
            let mut c = ragenix(dir);
            c.arg("--version");
            c
        };
        let editor = || Command::new("true");
        let measured = measure_side_by_side(EDIT_RUNS, &[&edit, &start, &editor]);
        let [(wall, rss), (start, _), (editor, _)] = measured[..] else {
            unreachable!("three commands measured")
        };
        println!(
            "-e with an editor that changes nothing, {label} file, {EDIT_RUNS} runs: wall {wall} (target <= {target} ms), peak RSS {}",
            mib(rss)
        );
        println!(
            "  at the same moment: start {}, editor {}; fastest runs less both: {}",
            ms(start.min),
            ms(editor.min),
            ms(wall.min.saturating_sub(start.min + editor.min))
        );
    }
}
