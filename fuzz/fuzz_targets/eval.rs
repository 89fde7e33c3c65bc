//! Fuzz target: parse and evaluate arbitrary text with the rules evaluator. Any panic, hang or
//! stack overflow is a bug; errors are fine. Under `cargo fuzz` libFuzzer drives it; built with
//! `--no-default-features` it is a stable-Rust mutation fuzzer over seed files (see `driver`).
#![cfg_attr(feature = "libfuzzer", no_main)]

use std::path::Path;

/// Evaluates one input (whether it evaluated); panics only if the evaluator itself reported an
/// internal failure.
fn check(data: &[u8], dir: &Path) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    match ragenix::rules::evaluate_source(text, dir) {
        Ok(_) => true,
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains("internal error"), "{msg}");
            false
        }
    }
}

#[cfg(feature = "libfuzzer")]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = check(data, &driver_dir());
});

#[cfg(not(feature = "libfuzzer"))]
mod driver;

#[cfg(not(feature = "libfuzzer"))]
fn main() {
    driver::run(check, &driver_dir());
}

/// Where inputs are evaluated: a fixture folder, so `import`/`readFile` of its files work.
fn driver_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/rules/ok/imports")
}
