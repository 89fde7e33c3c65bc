//! module.nix and hm-module.nix inside the real NixOS and home-manager module systems (the
//! snapshots in `../shared/nix-trees`, with the stand-in package set `nix/tests/pkgs.nix`), and
//! then what those evaluations generated, run against the freshly built installer. The cases
//! and their expected values live in `nix/tests/{cases,home-cases}.nix`, shared with the
//! flake's `checks`; these tests assert they hold and add what only running can show.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

use super::{meta, ns_test, stderr};
use crate::util::{require_program, skip};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The unpacked module systems: nixpkgs trees (`lib/`, `nixos/`, and our stand-in as
/// `default.nix`) for NixOS and for home-manager, and home-manager itself.
pub struct Trees {
    pub nixos: PathBuf,
    pub hm_nixpkgs: PathBuf,
    pub home_manager: PathBuf,
    /// nix-darwin, used with `hm_nixpkgs` (lib-2606) as its nixpkgs.
    pub nix_darwin: PathBuf,
}

const TARBALLS: [&str; 4] = ["nixos-2408", "lib-2606", "home-manager", "nix-darwin"];

/// The trees, unpacked once per build into the test target's temp dir (never the repository);
/// `None` after reporting a skip when they or `nix-instantiate` are missing.
pub fn trees(test: &str) -> Option<&'static Trees> {
    if !require_program(test, "nix-instantiate") {
        return None;
    }
    let shared = repo().join("../shared/nix-trees");
    if let Some(missing) = TARBALLS
        .iter()
        .find(|t| !shared.join(format!("{t}.tar.gz")).is_file())
    {
        skip(
            test,
            &format!("../shared/nix-trees/{missing}.tar.gz is missing"),
        );
        return None;
    }
    static TREES: OnceLock<Trees> = OnceLock::new();
    Some(TREES.get_or_init(|| unpack(&shared)))
}

fn unpack(shared: &Path) -> Trees {
    // Keyed by the tarballs' sizes and times, so a changed snapshot is unpacked afresh.
    let stamp: String = TARBALLS
        .iter()
        .map(|t| {
            let m = fs::metadata(shared.join(format!("{t}.tar.gz"))).unwrap();
            let modified = m.modified().unwrap();
            let secs = modified
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            format!("{}.{secs}", m.len())
        })
        .collect::<Vec<_>>()
        .join("-");
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = base.join(format!("nix-trees-{stamp}"));
    let trees = Trees {
        nixos: dir.join("nixos-2408/nixpkgs"),
        hm_nixpkgs: dir.join("hm-nixpkgs"),
        home_manager: dir.join("home-manager"),
        nix_darwin: dir.join("nix-darwin"),
    };
    if dir.join(".complete").exists() {
        return trees;
    }
    // Unpacked beside the final place and renamed into it, so a test process never sees a
    // half-unpacked tree (the namespace tests re-run this binary).
    fs::create_dir_all(base).unwrap();
    let tmp = tempfile::Builder::new()
        .prefix(".nix-trees-")
        .tempdir_in(base)
        .unwrap();
    for t in TARBALLS {
        let out = Command::new("tar")
            .arg("-xzf")
            .arg(shared.join(format!("{t}.tar.gz")))
            .arg("-C")
            .arg(tmp.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "unpacking {t}: {}", stderr(&out));
    }
    let standin = |lib: &str| {
        format!(
            "import {}/nix/tests/pkgs.nix {{ lib = import {lib}; path = ./.; }}\n",
            repo().display()
        )
    };
    fs::write(
        tmp.path().join("nixos-2408/nixpkgs/default.nix"),
        standin("./lib"),
    )
    .unwrap();
    // home-manager (2026) needs a 2026 lib, and reads nixos/modules/misc from `pkgs.path`.
    let hm = tmp.path().join("hm-nixpkgs");
    fs::create_dir(&hm).unwrap();
    symlink("../lib-2606/lib", hm.join("lib")).unwrap();
    symlink("../nixos-2408/nixpkgs/nixos", hm.join("nixos")).unwrap();
    fs::write(hm.join("default.nix"), standin("./lib")).unwrap();
    fs::write(tmp.path().join(".complete"), "").unwrap();
    let tmp = tmp.keep();
    if fs::rename(&tmp, &dir).is_err() {
        // Another test process got there first.
        let _ = fs::remove_dir_all(&tmp);
    }
    trees
}

/// `nix-instantiate --eval --strict --json` of `expr`; store writes allowed, so that the
/// manifest the modules write is a real file.
pub fn nix_eval(expr: &str) -> Result<Value, String> {
    let out = Command::new("nix-instantiate")
        .args([
            "--eval",
            "--strict",
            "--json",
            "--read-write-mode",
            "--expr",
            expr,
        ])
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(stderr(&out));
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap())
}

/// A Nix string literal.
pub fn lit(s: impl AsRef<str>) -> String {
    serde_json::to_string(s.as_ref())
        .unwrap()
        .replace("${", "\\${")
}

/// Evaluates the NixOS cases (`args` is extra attributes for eval-nixos.nix) with `module`.
pub fn eval_nixos(trees: &Trees, module: &Path, args: &str) -> Value {
    let expr = format!(
        "import {}/nix/tests/eval-nixos.nix {{ nixpkgs = {}; module = {}; {args} }}",
        repo().display(),
        trees.nixos.display(),
        module.display()
    );
    nix_eval(&expr).unwrap_or_else(|e| panic!("evaluating the NixOS cases failed:\n{e}"))
}

/// Evaluates the home-manager cases with `module`.
pub fn eval_home(trees: &Trees, module: &Path, args: &str) -> Value {
    let expr = format!(
        "import {}/nix/tests/eval-home.nix {{ homeManager = {}; pkgs = import {} {{ }}; module = {}; {args} }}",
        repo().display(),
        trees.home_manager.display(),
        trees.hm_nixpkgs.display(),
        module.display()
    );
    nix_eval(&expr).unwrap_or_else(|e| panic!("evaluating the home-manager cases failed:\n{e}"))
}

/// Every case's mismatches, as `case: message` lines.
pub fn failures(evaluated: &Value) -> Vec<String> {
    let mut all = Vec::new();
    for (case, v) in evaluated.as_object().unwrap() {
        for f in v["failures"].as_array().unwrap() {
            all.push(format!("{case}: {}", f.as_str().unwrap()));
        }
    }
    all
}

/// Runs the manifest's build-time check (its `checkPhase`) as the build would.
pub fn run_check_phase(result: &Value) -> Output {
    Command::new("bash")
        .args(["-euc", result["manifest"]["checkPhase"].as_str().unwrap()])
        .env("target", result["manifest"]["path"].as_str().unwrap())
        .output()
        .unwrap()
}

/// `nix/`, package.nix and both modules copied to a temp dir, `edit` applied to `file`: a
/// deliberately broken module, to show the tests can fail.
pub fn broken_copy(file: &str, edit: impl Fn(&str) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "module.nix",
        "hm-module.nix",
        "darwin-module.nix",
        "package.nix",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        fs::copy(repo().join(f), dir.path().join(f)).unwrap();
    }
    let copy = Command::new("cp")
        .arg("-r")
        .arg(repo().join("nix"))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(copy.success());
    let text = fs::read_to_string(dir.path().join(file)).unwrap();
    let edited = edit(&text);
    assert_ne!(edited, text, "the edit of {file} changed nothing");
    fs::write(dir.path().join(file), edited).unwrap();
    dir
}

/// A flake's evaluation checks, as `{ failures = { <check> = <failures>; ... }; }` gives them:
/// exactly `names`, each without a failure.
pub fn assert_flake_checks_pass(evaluated: &Value, names: &[&str]) {
    let failures = evaluated["failures"].as_object().unwrap();
    assert_eq!(failures.keys().collect::<Vec<_>>(), names);
    for (check, f) in failures {
        assert_eq!(f, "[]", "{check}");
    }
}

/// Asserts that the evaluation holds exactly `cases`, none with a failed assertion, and that the
/// manifest each wrote passes the installer's build-time check, except the cases in `refused`
/// (stopped by an assertion of their own). The `.age` files of these cases do not exist: only
/// the end-to-end tests have real ones. `unset`, the variable home paths expand from, is removed
/// from the installer's environment: the check must not need it.
pub fn assert_cases_pass(evaluated: &Value, cases: &[&str], refused: &[&str], unset: Option<&str>) {
    assert_eq!(failures(evaluated), Vec::<String>::new());
    let names: Vec<&String> = evaluated.as_object().unwrap().keys().collect();
    assert_eq!(names, cases);
    for (case, v) in evaluated.as_object().unwrap() {
        if refused.contains(&case.as_str()) {
            continue;
        }
        let mut check = Command::new(env!("CARGO_BIN_EXE_ragenix-install"));
        check
            .args(["--check", "--skip-files"])
            .arg(v["result"]["manifest"]["path"].as_str().unwrap());
        if let Some(var) = unset {
            check.env_remove(var);
        }
        let out = check.output().unwrap();
        assert!(out.status.success(), "{case}: {}", stderr(&out));
    }
}

#[test]
fn nixos_cases_hold_in_the_real_nixos_module_system() {
    let name = "nixos_cases_hold_in_the_real_nixos_module_system";
    let Some(trees) = trees(name) else { return };
    let evaluated = eval_nixos(trees, &repo().join("module.nix"), "");
    let cases = [
        "badCredentials",
        "credentials",
        "defaults",
        "full",
        "persistBindMounts",
        "persistFixed",
        "persistNeededForBoot",
        "persistNotNeededForBoot",
        "persistService",
        "sshKeyPaths",
        "structured",
        "sysusers",
        "userborn",
    ];
    assert_cases_pass(&evaluated, &cases, &[], None);
}

#[test]
fn home_manager_cases_hold_in_home_managers_module_system() {
    let name = "home_manager_cases_hold_in_home_managers_module_system";
    let Some(trees) = trees(name) else { return };
    let evaluated = eval_home(trees, &repo().join("hm-module.nix"), "");
    assert_cases_pass(
        &evaluated,
        &["defaults", "full"],
        &[],
        Some("XDG_RUNTIME_DIR"),
    );
}

#[test]
fn a_nixos_module_with_the_install_step_emptied_fails_the_cases() {
    let name = "a_nixos_module_with_the_install_step_emptied_fails_the_cases";
    let Some(trees) = trees(name) else { return };
    let broken = broken_copy("module.nix", |t| {
        t.replace(
            r#"text = "${installer} --phase install ${manifest}";"#,
            r#"text = "";"#,
        )
    });
    let evaluated = eval_nixos(
        trees,
        &broken.path().join("module.nix"),
        r#"only = [ "defaults" "full" ];"#,
    );
    let found = failures(&evaluated);
    for case in ["defaults", "full"] {
        assert!(
            found
                .iter()
                .any(|f| f.starts_with(&format!("{case}: agenixInstall: \"\" does not run"))),
            "{case} did not notice: {found:?}"
        );
    }
}

#[test]
fn a_nixos_module_that_does_not_order_users_after_install_fails_the_cases() {
    let name = "a_nixos_module_that_does_not_order_users_after_install_fails_the_cases";
    let Some(trees) = trees(name) else { return };
    let broken = broken_copy("module.nix", |t| {
        t.replace(r#"users.deps = [ "agenixInstall" ];"#, "")
    });
    let evaluated = eval_nixos(
        trees,
        &broken.path().join("module.nix"),
        r#"only = [ "full" ];"#,
    );
    let found = failures(&evaluated);
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("full: activation order")),
        "{found:?}"
    );
}

#[test]
fn a_home_module_whose_service_runs_nothing_fails_the_cases() {
    let name = "a_home_module_whose_service_runs_nothing_fails_the_cases";
    let Some(trees) = trees(name) else { return };
    let broken = broken_copy("hm-module.nix", |t| {
        t.replace(
            r#"ExecStart = "${installer} ${manifest}";"#,
            r#"ExecStart = "true";"#,
        )
    });
    let evaluated = eval_home(trees, &broken.path().join("hm-module.nix"), "");
    let found = failures(&evaluated);
    for case in ["defaults", "full"] {
        assert!(
            found
                .iter()
                .any(|f| f.starts_with(&format!("{case}: ExecStart runs no installer"))),
            "{case} did not notice: {found:?}"
        );
    }
}

/// Modes, each with whether the installer's `parse_mode` accepts it.
const MODES: [(&str, bool); 8] = [
    ("0400", true),
    ("440", true),
    ("0o640", true),
    ("7777", true),
    ("00400", false),
    ("o400", false),
    ("u=r", false),
    ("0800", false),
];

/// Nix has no opinion on modes; the manifest's build-time check (the installer) rejects
/// exactly what the installer cannot use, naming each secret, in both modules.
#[test]
fn modes_are_judged_only_by_the_installer_at_build_time_in_both_modules() {
    let name = "modes_are_judged_only_by_the_installer_at_build_time_in_both_modules";
    let Some(trees) = trees(name) else { return };
    for (mode, ok) in MODES {
        assert_eq!(
            ragenix::install::manifest::parse_mode(mode).is_ok(),
            ok,
            "{mode}"
        );
    }
    let secrets: String = MODES
        .iter()
        .enumerate()
        .map(|(i, (mode, _))| {
            format!(
                r#"age.secrets.s{i} = {{ file = "/s/{i}.age"; mode = {}; }};"#,
                lit(mode)
            )
        })
        .collect();
    let case = |extra: &str| {
        format!(
            r#"cases.modes = {{
              configuration = {{ age.identityPaths = [ "/k" ]; age.ragenix.checkFiles = false; {secrets} {extra} }};
              expect = _: [ ];
            }};"#
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let package = format!("params.package = {};", built_package(dir.path()));
    let nixos = eval_nixos(trees, &repo().join("module.nix"), &(case("") + &package));
    let home = eval_home(trees, &repo().join("hm-module.nix"), &(case("") + &package));
    for (module, evaluated) in [("NixOS", nixos), ("home-manager", home)] {
        let result = &evaluated["modes"]["result"];
        assert_eq!(
            result["failedAssertions"],
            serde_json::json!([]),
            "{module}"
        );
        let out = run_check_phase(result);
        assert!(
            !out.status.success(),
            "{module}: the check accepted bad modes"
        );
        let err = stderr(&out);
        for (i, (mode, ok)) in MODES.iter().enumerate() {
            assert_eq!(
                !err.contains(&format!("age.secrets.\"s{i}\".mode: mode `{mode}`")),
                *ok,
                "{module}: mode {mode}:\n{err}"
            );
        }
    }
}

/// The parts of the generated activation script that are ours, in its order, with the
/// `users` step replaced by `users` (a shell snippet); everything else NixOS would run is left
/// out (it needs a real system).
fn agenix_activation(script: &str, users: &str) -> String {
    let mut parts = script.split("#### Activation script snippet ");
    let mut out = parts.next().unwrap().to_string();
    let mut kept = Vec::new();
    for part in parts {
        let (name, body) = part.split_once(":\n").unwrap();
        let body = body
            .split("\n# Make this configuration the current configuration.")
            .next()
            .unwrap();
        match name {
            "agenixNewGeneration" | "agenixInstall" | "agenixChown" | "agenix" => {
                out.push_str(&format!("#### {name}\n{body}\n"));
            }
            "users" => out.push_str(&format!("#### users (test stand-in)\n{users}\n")),
            _ => continue,
        }
        kept.push(name);
    }
    assert_eq!(
        kept,
        [
            "agenixNewGeneration",
            "agenixInstall",
            "users",
            "agenixChown",
            "agenix"
        ]
    );
    out.push_str("exit $_status\n");
    out
}

/// Users the `full` case needs, with ids free on this machine: `/etc/passwd` and `/etc/group`
/// copies to bind-mount (inside the test's namespace only) when the activation creates users.
fn user_db(root: &Path) -> (PathBuf, PathBuf) {
    let passwd = root.join("passwd");
    let group = root.join("group");
    let mut p = fs::read_to_string("/etc/passwd").unwrap();
    p.push_str("alice:x:4101:100::/home/alice:/bin/sh\napp:x:4102:4102::/var/empty:/bin/false\n");
    let mut g = fs::read_to_string("/etc/group").unwrap();
    g.push_str("app:x:4102:\n");
    if !g.lines().any(|l| l.starts_with("keys:")) {
        g.push_str("keys:x:4103:\n");
    }
    fs::write(&passwd, p).unwrap();
    fs::write(&group, g).unwrap();
    (passwd, group)
}

/// A package whose `bin/ragenix-install` is the installer this build produced.
pub fn built_package(root: &Path) -> String {
    let pkg = root.join("pkg");
    fs::create_dir_all(pkg.join("bin")).unwrap();
    symlink(
        env!("CARGO_BIN_EXE_ragenix-install"),
        pkg.join("bin/ragenix-install"),
    )
    .unwrap();
    package_at(&pkg)
}

/// Like [`built_package`], with the binary copied in: a systemd booted by boot.sh does not see
/// a checkout under `/tmp`.
pub fn built_package_copied(root: &Path) -> String {
    let pkg = root.join("pkg");
    fs::create_dir_all(pkg.join("bin")).unwrap();
    let bin = pkg.join("bin/ragenix-install");
    if fs::hard_link(env!("CARGO_BIN_EXE_ragenix-install"), &bin).is_err() {
        fs::copy(env!("CARGO_BIN_EXE_ragenix-install"), &bin).unwrap();
    }
    package_at(&pkg)
}

fn package_at(pkg: &Path) -> String {
    format!(
        r#"{{ type = "derivation"; name = "ragenix"; outPath = {}; }}"#,
        lit(pkg.to_str().unwrap())
    )
}

pub fn mount_tmpfs_on_run() {
    rustix::mount::mount(
        "tmpfs",
        "/run",
        "tmpfs",
        rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
        c"mode=0755",
    )
    .unwrap();
}

fn run_bash(script: &str) -> Output {
    let out = Command::new("bash").arg("-c").arg(script).output().unwrap();
    eprintln!(
        "activation -> {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    out
}

fn read_list(path: &str) -> Vec<String> {
    fs::read_to_string(path)
        .map(|s| s.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

ns_test!(
    nixos_activation_from_the_real_evaluation_installs_and_switches,
    |env| {
        let Some(trees) = trees("nixos_activation_from_the_real_evaluation_installs_and_switches")
        else {
            return;
        };
        let plain = [
            ("alice-password", b"$6$hash".as_slice()),
            ("for-alice", b"alice-db"),
            ("linked", b"linked-1"),
            ("copied", b"copied-1"),
            ("nested", b"nested-1"),
        ];
        for (name, text) in plain {
            env.encrypt(name, text);
        }
        let store = env.root.join("store");
        let params = format!(
            r#"only = [ "full" ]; params = {{ files = n: {}+ "/${{n}}.age"; identity = {}; package = {}; }};"#,
            lit(store.to_str().unwrap()),
            lit(env.key.to_str().unwrap()),
            built_package(&env.root)
        );
        let evaluated = eval_nixos(trees, &repo().join("module.nix"), &params);
        assert_eq!(failures(&evaluated), Vec::<String>::new());
        let result = &evaluated["full"]["result"];

        // The build of the manifest: its checkPhase, with the real .age files.
        let check = run_check_phase(result);
        assert!(check.status.success(), "checkPhase: {}", stderr(&check));

        let (passwd, group) = user_db(&env.root);
        let seen = env.root.join("seen-by-users-step");
        // NixOS's users step creates users; here they appear by bind mount, and the step records
        // whether the password file was already there (agenixInstall runs before it).
        let users = format!(
        "/bin/cat /run/agenix/alice-password > {seen}\n/bin/mount --bind {passwd} /etc/passwd\n/bin/mount --bind {group} /etc/group",
        seen = seen.display(),
        passwd = passwd.display(),
        group = group.display()
    );
        let script = agenix_activation(result["activation"]["script"].as_str().unwrap(), &users);
        mount_tmpfs_on_run();

        let out = run_bash(&script);
        assert!(out.status.success());
        assert_eq!(fs::read(&seen).unwrap(), b"$6$hash");
        assert_eq!(
            fs::read_link("/run/agenix").unwrap(),
            Path::new("/run/agenix.d/1")
        );
        let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(mounts.contains(" /run/agenix.d ramfs "), "{mounts}");
        let (alice, app, users_gid) = (4101, 4102, 100);
        let check_file = |path: &str, content: &[u8], want: (u32, u32, u32)| {
            assert_eq!(fs::read(path).unwrap(), content, "{path}");
            let resolved = fs::canonicalize(path).unwrap();
            assert_eq!(meta(&resolved), want, "{path}");
        };
        check_file("/run/agenix/alice-password", b"$6$hash", (0o400, 0, 0));
        check_file(
            "/run/agenix/for-alice",
            b"alice-db",
            (0o440, alice, users_gid),
        );
        check_file("/run/app/linked.conf", b"linked-1", (0o400, app, users_gid));
        assert_eq!(
            fs::read_link("/run/app/linked.conf").unwrap(),
            Path::new("/run/agenix/linked")
        );
        check_file("/run/app/copied.key", b"copied-1", (0o600, app, app));
        assert!(fs::symlink_metadata("/run/app/copied.key")
            .unwrap()
            .is_file());
        check_file("/run/agenix/app/nested/token", b"nested-1", (0o400, 0, 0));
        check_file(
            "/run/agenix/templates/app.env",
            b"DB=alice-db TOKEN=nested-1\n",
            (0o440, app, app),
        );
        // The first activation (boot) restarts nothing.
        assert_eq!(
            read_list("/run/nixos/activation-restart-list"),
            Vec::<String>::new()
        );

        // Second switch: one secret changed, one corrupt. The corrupt one keeps its previous
        // version, the rest installs, the units of what changed are queued, the activation fails.
        let linked_age = store.join("linked.age");
        let good_linked = fs::read(&linked_age).unwrap();
        env.encrypt("nested", b"nested-2");
        fs::write(&linked_age, b"age-encryption.org/v1\n-> X25519 broken\n").unwrap();
        let _ = fs::remove_file(&seen);
        let out = run_bash(&script);
        assert!(
            !out.status.success(),
            "a corrupt secret must fail the activation"
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("agenixInstall"));
        assert_eq!(
            fs::read_link("/run/agenix").unwrap(),
            Path::new("/run/agenix.d/2")
        );
        assert_eq!(env_generations(), vec![2]);
        check_file("/run/agenix/app/nested/token", b"nested-2", (0o400, 0, 0));
        check_file(
            "/run/agenix/templates/app.env",
            b"DB=alice-db TOKEN=nested-2\n",
            (0o440, app, app),
        );
        check_file("/run/app/linked.conf", b"linked-1", (0o400, app, users_gid));
        check_file("/run/app/copied.key", b"copied-1", (0o600, app, app));
        assert_eq!(
            read_list("/run/nixos/activation-restart-list"),
            ["app.service"]
        );
        assert_eq!(
            read_list("/run/nixos/activation-reload-list"),
            ["nginx.service"]
        );

        // Third switch, nothing changed: success, nothing queued.
        fs::write(&linked_age, good_linked).unwrap();
        fs::remove_dir_all("/run/nixos").unwrap();
        let out = run_bash(&script);
        assert!(out.status.success());
        assert_eq!(
            fs::read_link("/run/agenix").unwrap(),
            Path::new("/run/agenix.d/3")
        );
        check_file("/run/app/linked.conf", b"linked-1", (0o400, app, users_gid));
        assert_eq!(
            read_list("/run/nixos/activation-restart-list"),
            Vec::<String>::new()
        );
        assert_eq!(
            read_list("/run/nixos/activation-reload-list"),
            Vec::<String>::new()
        );
    }
);

ns_test!(
    nixos_activation_installs_values_from_json_yaml_and_dotenv_documents,
    |env| {
        let Some(trees) =
            trees("nixos_activation_installs_values_from_json_yaml_and_dotenv_documents")
        else {
            return;
        };
        let yaml = env.encrypt(
            "db.yaml",
            b"db:\n  password: hunter2\n  user: app\nsmtp: 'mail: pw'\n",
        );
        env.encrypt(
            "app.json",
            br#"{"github": {"oauth_token": "gho_1", "user": "bot"}}"#,
        );
        env.encrypt("app.env", b"API_TOKEN=tok-1\nexport SIGNING_KEY='sig 2'\n");
        let params = format!(
            r#"only = [ "structured" ]; params = {{ files = n: {}+ "/${{n}}.age"; identity = {}; package = {}; }};"#,
            lit(env.root.join("store").to_str().unwrap()),
            lit(env.key.to_str().unwrap()),
            built_package(&env.root)
        );
        let evaluated = eval_nixos(trees, &repo().join("module.nix"), &params);
        assert_eq!(failures(&evaluated), Vec::<String>::new());
        let result = &evaluated["structured"]["result"];
        let check = run_check_phase(result);
        assert!(check.status.success(), "checkPhase: {}", stderr(&check));
        let script = agenix_activation(result["activation"]["script"].as_str().unwrap(), "true");
        mount_tmpfs_on_run();

        let out = run_bash(&script);
        // `missing` names a key the document does not have: it alone fails.
        assert!(!out.status.success());
        let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        assert!(
            log.contains(&format!(
                "secret `missing` ({}): yaml key `db/nope`: the key is not in the document",
                yaml.display()
            )),
            "{log}"
        );
        assert!(!log.contains("hunter2"), "{log}");
        assert_eq!(log.matches("error: secret").count(), 1, "{log}");
        for (name, want) in [
            ("gh-token", "gho_1"),
            ("gh-user", "bot"),
            ("db-password", "hunter2"),
            ("smtp", "mail: pw"),
            ("api-token", "tok-1"),
            ("signing-key", "sig 2"),
            ("templates/app.conf", "token=gho_1 db=hunter2\n"),
        ] {
            let path = format!("/run/agenix/{name}");
            assert_eq!(fs::read_to_string(&path).unwrap(), want, "{name}");
            assert_eq!(
                meta(&fs::canonicalize(&path).unwrap()),
                (0o400, 0, 0),
                "{name}"
            );
        }
        assert!(!Path::new("/run/agenix/missing").exists());
    }
);

fn env_generations() -> Vec<u64> {
    let mut found: Vec<u64> = fs::read_dir("/run/agenix.d")
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.parse().ok())
        .collect();
    found.sort_unstable();
    found
}

#[test]
fn home_manager_service_from_the_real_evaluation_installs_as_the_user() {
    let name = "home_manager_service_from_the_real_evaluation_installs_as_the_user";
    let Some(trees) = trees(name) else { return };
    if !require_program(name, "ssh-keygen") {
        return;
    }
    let root = rustix::process::geteuid().is_root();
    let dir = tempfile::tempdir().unwrap();
    // World-traversable so the unprivileged user reaches its home and the files.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let home = dir.path().join("home");
    let runtime = dir.path().join("runtime");
    let store = dir.path().join("store");
    for d in [home.join(".ssh"), runtime.clone(), store.clone()] {
        fs::create_dir_all(&d).unwrap();
    }
    fs::set_permissions(&runtime, fs::Permissions::from_mode(0o700)).unwrap();
    let recipient = super::ssh_keygen(&home.join(".ssh/id_ed25519"));
    for (n, text) in [
        ("token", "tok-1"),
        ("linked", "linked-1"),
        ("copied", "copied-1"),
    ] {
        fs::write(
            store.join(format!("{n}.age")),
            super::encrypt(text.as_bytes(), &recipient),
        )
        .unwrap();
    }
    let params = format!(
        r#"only = [ "full" ]; params = {{ files = n: {} + "/${{n}}.age"; identity = {}; package = {}; }};"#,
        lit(store.to_str().unwrap()),
        lit(home.join(".ssh/id_ed25519").to_str().unwrap()),
        built_package(dir.path())
    );
    let evaluated = eval_home(trees, &repo().join("hm-module.nix"), &params);
    assert_eq!(failures(&evaluated), Vec::<String>::new());
    let result = &evaluated["full"]["result"];
    let check = run_check_phase(result);
    assert!(check.status.success(), "checkPhase: {}", stderr(&check));

    // As root, become an unprivileged user that owns the home and runtime dir, as the user's
    // systemd would run the service.
    let uid = 4111;
    if root {
        let chown = Command::new("chown")
            .args(["-R", &format!("{uid}:{uid}")])
            .arg(&home)
            .arg(&runtime)
            .status()
            .unwrap();
        assert!(chown.success());
    }
    let exec = result["service"]["Service"]["ExecStart"][0]
        .as_str()
        .unwrap();
    // As root, the service also runs where systemd seems to run this machine (a private
    // /run with /run/systemd/system), with a `systemctl` on PATH that records its arguments.
    let bin = dir.path().join("bin");
    let calls = dir.path().join("systemctl-calls");
    fs::create_dir(&bin).unwrap();
    fs::write(
        bin.join("systemctl"),
        format!("#!/bin/sh\necho \"$*\" >> {}\n", calls.display()),
    )
    .unwrap();
    fs::set_permissions(bin.join("systemctl"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(&calls, "").unwrap();
    fs::set_permissions(&calls, fs::Permissions::from_mode(0o666)).unwrap();
    let run = || {
        let mut cmd = if root {
            let mut c = Command::new("unshare");
            c.args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-c",
                "mount -t tmpfs -o mode=0755 tmpfs /run && mkdir -p /run/systemd/system && exec \"$@\"",
                "sh",
                "setpriv",
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
                "--",
            ]);
            c
        } else {
            Command::new("env")
        };
        let out = cmd
            .args(exec.split(' '))
            .env_clear()
            .env("HOME", &home)
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .output()
            .unwrap();
        eprintln!("agenix.service -> {}\n{}", out.status, stderr(&out));
        out
    };
    let out = run();
    assert!(out.status.success());
    let owner = if root {
        uid
    } else {
        rustix::process::getuid().as_raw()
    };
    let check_file = |path: &Path, content: &[u8], mode: u32| {
        assert_eq!(fs::read(path).unwrap(), content, "{}", path.display());
        let m = meta(&fs::canonicalize(path).unwrap());
        assert_eq!((m.0, m.1), (mode, owner), "{}", path.display());
    };
    check_file(&runtime.join("agenix/token"), b"tok-1", 0o400);
    assert_eq!(
        fs::read_link(runtime.join("agenix")).unwrap(),
        runtime.join("agenix.d/1")
    );
    check_file(&runtime.join("app/linked"), b"linked-1", 0o400);
    assert_eq!(
        fs::read_link(runtime.join("app/linked")).unwrap(),
        runtime.join("agenix/linked")
    );
    check_file(&home.join(".config/app/key"), b"copied-1", 0o600);
    assert!(fs::symlink_metadata(home.join(".config/app/key"))
        .unwrap()
        .is_file());
    check_file(
        &runtime.join("agenix/templates/app.conf"),
        b"token=tok-1\n",
        0o400,
    );
    let agenix_d = meta(&runtime.join("agenix.d"));
    assert_eq!(agenix_d.0 & 0o077, 0, "agenix.d is private to the user");

    let restarts = || fs::read_to_string(&calls).unwrap();
    assert_eq!(restarts(), "", "the first start restarts nothing");

    // A switch that changed `linked` (home-manager re-runs the service): a new generation, and
    // its user unit restarted.
    fs::write(
        store.join("linked.age"),
        super::encrypt(b"linked-2", &recipient),
    )
    .unwrap();
    let out = run();
    assert!(out.status.success());
    assert_eq!(
        fs::read_link(runtime.join("agenix")).unwrap(),
        runtime.join("agenix.d/2")
    );
    check_file(&runtime.join("app/linked"), b"linked-2", 0o400);
    check_file(&runtime.join("agenix/token"), b"tok-1", 0o400);
    if root {
        assert_eq!(restarts(), "--user --no-block try-restart app.service\n");
    }

    // Nothing changed: nothing restarted.
    let out = run();
    assert!(out.status.success());
    assert_eq!(
        fs::read_link(runtime.join("agenix")).unwrap(),
        runtime.join("agenix.d/3")
    );
    if root {
        assert_eq!(restarts(), "--user --no-block try-restart app.service\n");
    }
}

/// `nix flake check` runs the same cases: the flake's `checks`, evaluated with the snapshots as
/// its `nixpkgs` and `home-manager` inputs, hold one entry per case and each passes.
#[test]
fn the_flake_has_a_passing_check_per_evaluation_case() {
    let name = "the_flake_has_a_passing_check_per_evaluation_case";
    let Some(trees) = trees(name) else { return };
    let expr = format!(
        r#"let
          nixos = {nixos};
          lib = import (nixos + "/lib");
          nixpkgs = {{
            outPath = nixos;
            inherit lib;
            legacyPackages.x86_64-linux = import {hm_nixpkgs} {{ }};
          }};
          flake = import {repo}/flake.nix;
          self = flake.outputs {{ inherit self nixpkgs; home-manager.outPath = {hm}; nix-darwin.outPath = {nd}; }};
          checks = self.checks.x86_64-linux;
          evaluation = lib.filter (n: lib.hasPrefix "nixos-" n || lib.hasPrefix "home-" n) (lib.attrNames checks);
        in {{
          failures = lib.genAttrs evaluation (n: checks.${{n}}.failures);
          formatter = self.formatter.x86_64-linux.name;
        }}"#,
        nixos = trees.nixos.display(),
        hm_nixpkgs = trees.hm_nixpkgs.display(),
        hm = trees.home_manager.display(),
        nd = trees.nix_darwin.display(),
        repo = repo().display(),
    );
    let got = nix_eval(&expr).unwrap_or_else(|e| panic!("evaluating the flake's checks:\n{e}"));
    assert_flake_checks_pass(
        &got,
        &[
            "home-defaults",
            "home-full",
            "nixos-badCredentials",
            "nixos-credentials",
            "nixos-defaults",
            "nixos-full",
            "nixos-persistBindMounts",
            "nixos-persistFixed",
            "nixos-persistNeededForBoot",
            "nixos-persistNotNeededForBoot",
            "nixos-persistService",
            "nixos-sshKeyPaths",
            "nixos-structured",
            "nixos-sysusers",
            "nixos-userborn",
        ],
    );
    assert_eq!(got["formatter"], "nixfmt");
}

/// A unit file in `dir`, and its `.wants` link from `wanted_by` when given (what NixOS makes
/// of `wantedBy`).
fn unit(dir: &Path, name: &str, text: &str, wanted_by: Option<&str>) {
    fs::write(dir.join(name), text).unwrap();
    if let Some(target) = wanted_by {
        let wants = dir.join(format!("{target}.wants"));
        fs::create_dir_all(&wants).unwrap();
        symlink(format!("../{name}"), wants.join(name)).unwrap();
    }
}

/// The sysusers variant under the machine's real systemd (../shared/real-systemd/boot.sh),
/// with the unit the real NixOS evaluation generated: it installs after the users exist, and a
/// unit named in `restartUnits` is restarted when its secret changes, and only then.
#[test]
fn sysusers_service_from_the_real_evaluation_restarts_units_under_real_systemd() {
    let name = "sysusers_service_from_the_real_evaluation_restarts_units_under_real_systemd";
    let boot = repo().join("../shared/real-systemd/boot.sh");
    if !crate::util::require_root(name) || !require_program(name, "ssh-keygen") {
        return;
    }
    if !boot.is_file() || !Path::new("/lib/systemd/systemd").is_file() {
        skip(
            name,
            "../shared/real-systemd/boot.sh or /lib/systemd/systemd is missing",
        );
        return;
    }
    let Some(trees) = trees(name) else { return };
    // Not under /tmp: boot.sh gives the booted systemd a fresh /tmp.
    let dir = tempfile::Builder::new()
        .prefix("real-systemd-")
        .tempdir_in(crate::util::scratch_base())
        .unwrap();
    let root = dir.path();
    let key = root.join("host_key");
    let recipient = super::ssh_keygen(&key);
    let store = root.join("store");
    fs::create_dir_all(&store).unwrap();
    let encrypt = |file: &str, text: &str| {
        fs::write(
            store.join(file),
            super::encrypt(text.as_bytes(), &recipient),
        )
        .unwrap();
    };
    encrypt("db.age", "db-1");
    encrypt("db-next.age", "db-2");
    encrypt("other.age", "other-1");
    encrypt("other-next.age", "other-2");
    let params = format!(
        r#"only = [ "sysusers" ]; params = {{ files = n: {} + "/${{n}}.age"; identity = {}; package = {}; }};"#,
        lit(store.to_str().unwrap()),
        lit(key.to_str().unwrap()),
        built_package_copied(root)
    );
    let evaluated = eval_nixos(trees, &repo().join("module.nix"), &params);
    assert_eq!(failures(&evaluated), Vec::<String>::new());
    let result = &evaluated["sysusers"]["result"];
    let check = run_check_phase(result);
    assert!(check.status.success(), "checkPhase: {}", stderr(&check));

    // The stand-in package set's systemd (in the unit's PATH) is pointed at this machine's.
    let fake_systemd = nix_eval(&format!(
        "(import {} {{ }}).systemd.outPath",
        trees.nixos.display()
    ))
    .unwrap();
    let systemd = root.join("systemd");
    fs::create_dir_all(systemd.join("bin")).unwrap();
    symlink("/bin/systemctl", systemd.join("bin/systemctl")).unwrap();
    let agenix_unit = result["service"]["unitText"]
        .as_str()
        .unwrap()
        .replace(fake_systemd.as_str().unwrap(), systemd.to_str().unwrap());

    let units = root.join("units");
    let out = root.join("out");
    fs::create_dir_all(&units).unwrap();
    fs::create_dir_all(&out).unwrap();
    let (passwd, group) = user_db(root);
    for t in [
        "sysinit",
        "basic",
        "shutdown",
        "multi-user",
        "default",
        "local-fs",
        "sockets",
    ] {
        unit(&units, &format!("{t}.target"), "[Unit]\n", None);
    }
    unit(
        &units,
        "agenix-install-secrets.service",
        &agenix_unit,
        Some("sysinit.target"),
    );
    // Stand-in for systemd-sysusers: users appear (by bind mount, inside the namespace only).
    unit(
        &units,
        "systemd-sysusers.service",
        &format!(
            "[Unit]\nDefaultDependencies=no\n[Service]\nType=oneshot\nRemainAfterExit=yes\n\
             ExecStart=/bin/sh -c 'test -e /run/agenix && echo secrets-before-users >> /run/rs/out/log; \
             mount --bind {} /etc/passwd && mount --bind {} /etc/group'\n",
            passwd.display(),
            group.display()
        ),
        Some("sysinit.target"),
    );
    // Records each start, with the secret it reads.
    unit(
        &units,
        "recorder.service",
        "[Unit]\nAfter=agenix-install-secrets.service\n[Service]\nType=oneshot\nRemainAfterExit=yes\n\
         ExecStart=/bin/sh -c 'echo \"start $(cat /run/agenix/db)\" >> /run/rs/out/recorder'\n",
        Some("default.target"),
    );
    // Records each start of a DynamicUser= service that gets `other` as a credential through
    // the LoadCredential= line NixOS wrote for it, and whether it can read the installed file
    // itself (it must not: root's, 0400). systemd fails the start when it cannot load a
    // credential, so each line also shows the load worked. The copy's content is not compared:
    // systemd booted in this test's namespace does not expose it to the service (not even to a
    // root one), a limit of the test machine.
    let load_credential: String = result["credentialUnits"]["reader"]["unitText"]
        .as_str()
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("LoadCredential="))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(load_credential, "LoadCredential=other:/run/agenix/other\n");
    unit(
        &units,
        "reader.service",
        &format!(
            "[Unit]\nAfter=agenix-install-secrets.service\n[Service]\nType=oneshot\nRemainAfterExit=yes\n\
             DynamicUser=yes\nStandardOutput=append:/run/rs/out/reader\n{load_credential}\
             ExecStart=/bin/sh -c 'test \"$(id -u)\" != 0 && printf dynamic; \
             cat /run/agenix/other 2>/dev/null || printf \" denied \"; echo \"$CREDENTIALS_DIRECTORY\"'\n"
        ),
        Some("default.target"),
    );
    // Switches: `db` changes, then `other`; each time its consumer runs again. Then once more,
    // unchanged.
    let switch = |log: &str, n: usize| {
        format!(
            "/bin/systemctl restart agenix-install-secrets.service\n\
             for i in $(seq 50); do [ \"$(wc -l < /run/rs/out/{log})\" -ge {n} ] && break; sleep 0.1; done\n"
        )
    };
    let driver = format!(
        "#!/bin/sh\n\
         stat -c '%U %G %a' /run/agenix/db > /run/rs/out/db-meta\n\
         stat -c '%U %G %a' /run/agenix/other > /run/rs/out/other-meta\n\
         cp {db_next} {db}\n{second}\
         cp {other_next} {other}\n{third}\
         sleep 1\n\
         /bin/systemctl restart agenix-install-secrets.service\n\
         sleep 2\n\
         cat /run/agenix/db > /run/rs/out/db-final\n\
         readlink /run/agenix > /run/rs/out/generation\n\
         touch /run/rs/out/done\n",
        db_next = store.join("db-next.age").display(),
        db = store.join("db.age").display(),
        other_next = store.join("other-next.age").display(),
        other = store.join("other.age").display(),
        second = switch("recorder", 2),
        third = switch("reader", 2),
    );
    fs::write(root.join("driver.sh"), driver).unwrap();
    unit(
        &units,
        "driver.service",
        &format!(
            "[Unit]\nAfter=recorder.service agenix-install-secrets.service\n[Service]\nType=oneshot\n\
             ExecStart=/bin/sh {}\n",
            root.join("driver.sh").display()
        ),
        Some("default.target"),
    );

    let booted = Command::new("bash")
        .arg(&boot)
        .arg(&units)
        .arg(&out)
        .arg("60")
        .output()
        .unwrap();
    let console = format!(
        "{}{}",
        String::from_utf8_lossy(&booted.stdout),
        stderr(&booted)
    );
    assert!(booted.status.success(), "boot.sh:\n{console}");
    let read = |f: &str| fs::read_to_string(out.join(f)).unwrap_or_default();
    assert_eq!(read("log"), "", "{console}");
    assert_eq!(read("db-meta"), "app app 400\n", "{console}");
    assert_eq!(read("other-meta"), "root root 400\n", "{console}");
    // Each started once at boot (nothing restarted then), again when its secret changed, not
    // when the other's changed nor after the switch that changed nothing.
    assert_eq!(read("recorder"), "start db-1\nstart db-2\n", "{console}");
    assert_eq!(
        read("reader"),
        "dynamic denied /run/credentials/reader.service\n".repeat(2),
        "{console}"
    );
    assert_eq!(read("db-final"), "db-2");
    assert_eq!(read("generation"), "/run/agenix.d/4\n");
}
