//! The shipped example: the README's first command works, and the example rules match the files.

use std::fs;
use std::path::Path;

use assert_cmd::Command;
use predicates::str::contains;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn the_readme_starts_with_the_example_command_and_it_works() {
    let readme = fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let args = [
        "--rules",
        "example/secrets.nix",
        "-d",
        "example/hello.age",
        "-i",
        "example/keys/EXAMPLE-ONLY-age-identity.txt",
    ];
    let first_block = readme.split("```").nth(1).unwrap();
    assert!(
        first_block.contains(&format!("cargo run --release -- {}", args.join(" "))),
        "{first_block}"
    );
    assert!(first_block.contains("cargo test --locked"), "{first_block}");
    Command::new(super::bin())
        .current_dir(ROOT)
        .args(args)
        .env("PATH", "/nonexistent") // -d must not need nix or anything else
        .assert()
        .success()
        .stdout(contains("Hello from ragenix!"));
}

#[test]
fn every_example_secret_opens_with_the_example_keys_and_rekeys() {
    let p = super::Project::new();
    let src = Path::new(ROOT).join("example");
    for e in walkdir::WalkDir::new(&src)
        .into_iter()
        .filter_map(Result::ok)
    {
        let rel = e.path().strip_prefix(&src).unwrap();
        let dst = p.path("example").join(rel);
        if e.file_type().is_dir() {
            fs::create_dir_all(&dst).unwrap();
        } else {
            fs::copy(e.path(), &dst).unwrap();
        }
    }
    let age_key = "keys/EXAMPLE-ONLY-age-identity.txt";
    let ssh_key = "keys/EXAMPLE-ONLY-ssh_host_ed25519_key";
    let mut c = p.cmd();
    c.current_dir(p.path("example")).args(["-i", age_key, "-r"]);
    c.assert().success().stderr(contains("rekeyed 3 secret(s)"));
    for (file, key, want) in [
        ("hello.age", ssh_key, "Hello from ragenix!"),
        ("db-password.age", ssh_key, "example-db-password-not-secret"),
        (
            "services/api-token.json.age",
            age_key,
            "example-token-not-secret",
        ),
    ] {
        let mut c = p.cmd();
        c.current_dir(p.path("example"))
            .args(["-i", key, "-d", file]);
        c.assert().success().stdout(contains(want));
    }
}
