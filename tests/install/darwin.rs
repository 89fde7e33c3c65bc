//! The nix-darwin path on Linux: a `"platform": "darwin"` manifest makes `ragenix-install`
//! build its RAM disk with `hdiutil`, `newfs_hfs`, `mount` and `diskutil`, here fakes on `PATH`
//! that log their arguments and fail on demand. The fakes mount nothing, so the "RAM disk"
//! stays a plain directory and the rest of the install runs for real. Then darwin-module.nix
//! inside the real nix-darwin module system (`nix/tests/darwin-cases.nix`), and the daemon
//! command that evaluation generated, run with the fakes.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

use super::modules::{
    assert_cases_pass, assert_flake_checks_pass, broken_copy, built_package, failures, lit,
    mount_tmpfs_on_run, nix_eval, repo, run_check_phase, trees, Trees,
};
use super::{encrypt, meta, ns_test, ssh_keygen, stderr};
use crate::util::{require_program, require_root};

/// The fake tools. `FAKE_FAIL` names tools that fail; a mount is remembered in `$FAKE_DIR/mounted`.
const FAKES: &[(&str, &str)] = &[
    (
        "hdiutil",
        r#"case "$1" in
  attach) fail hdiutil 'hdiutil: attach failed - Resource temporarily unavailable'
          printf '/dev/disk7          \t\n' ;;
  detach) rm -f "$FAKE_DIR/mounted" ;;
esac"#,
    ),
    (
        "newfs_hfs",
        r#"fail newfs_hfs 'newfs_hfs: cannot open device'"#,
    ),
    (
        "mount",
        r#"fail mount 'mount_hfs: Operation not permitted'
eval "mp=\${$#}"; eval "dev=\${$(($# - 1))}"
printf '%s\n%s\n' "$dev" "$mp" > "$FAKE_DIR/mounted""#,
    ),
    (
        "diskutil",
        r#"if [ -f "$FAKE_DIR/mounted" ] && [ "$(sed -n 2p "$FAKE_DIR/mounted")" = "$2" ]; then
  printf '   Device Identifier:  disk7\n   Device Node:  %s\n   Mount Point:  %s\n' "$(sed -n 1p "$FAKE_DIR/mounted")" "$2"
else
  echo "Could not find disk: $2" >&2; exit 1
fi"#,
    ),
];

/// Writes the fake tools into `dir` (created); they log to and keep state in `$FAKE_DIR`.
pub fn write_fakes(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    for (name, body) in FAKES {
        let script = format!(
            "#!/bin/sh\necho \"{name} $*\" >> \"$FAKE_DIR/log\"\n\
             fail() {{ case \" $FAKE_FAIL \" in *\" $1 \"*) echo \"$2\" >&2; exit 1;; esac; }}\n{body}\n"
        );
        let path = dir.join(name);
        fs::write(&path, script).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

struct Mac {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    tools: PathBuf,
    key: PathBuf,
    recipient: String,
    mount_point: PathBuf,
    secrets_dir: PathBuf,
}

impl Mac {
    /// Not under /tmp: the RAM-disk tools take the mount point by name, so the installer
    /// refuses a path below a directory others can write to (see `scratch_base`).
    fn new() -> Mac {
        let tmp = tempfile::Builder::new()
            .prefix("darwin-")
            .tempdir_in(crate::util::scratch_base())
            .unwrap();
        let root = tmp.path().to_path_buf();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        let tools = root.join("tools");
        write_fakes(&tools);
        let key = root.join("ssh_host_ed25519_key");
        let recipient = ssh_keygen(&key);
        Mac {
            mount_point: root.join("run/agenix.d"),
            secrets_dir: root.join("run/agenix"),
            _tmp: tmp,
            root,
            tools,
            key,
            recipient,
        }
    }

    fn manifest(&self, secret: &[u8]) -> Value {
        let file = self.root.join("db.age");
        fs::write(&file, encrypt(secret, &self.recipient)).unwrap();
        json!({
            "version": 1, "mode": "system", "platform": "darwin",
            "secretsDir": self.secrets_dir, "secretsMountPoint": self.mount_point,
            "identityPaths": [self.key], "dirGroup": "admin",
            "secrets": [{ "name": "db", "file": file, "path": self.secrets_dir.join("db") }],
        })
    }

    /// Runs the installer with the fakes first on PATH; returns its output and the tool calls.
    fn install(&self, manifest: &Value, args: &[&str], fail: &str) -> (Output, Vec<String>) {
        let path = self.root.join("manifest.json");
        fs::write(&path, manifest.to_string()).unwrap();
        let _ = fs::remove_file(self.root.join("log"));
        let search = format!(
            "{}:{}",
            self.tools.display(),
            std::env::var("PATH").unwrap()
        );
        let out = Command::new(env!("CARGO_BIN_EXE_ragenix-install"))
            .args(args)
            .arg(&path)
            .env("PATH", search)
            .env("FAKE_DIR", &self.root)
            .env("FAKE_FAIL", fail)
            .output()
            .unwrap();
        let log = fs::read_to_string(self.root.join("log")).unwrap_or_default();
        (out, log.lines().map(str::to_string).collect())
    }

    fn mp(&self) -> String {
        self.mount_point.display().to_string()
    }
}

fn ready(test: &str) -> bool {
    require_root(test) && require_program(test, "ssh-keygen")
}

fn first_mount_calls(mp: &str) -> Vec<String> {
    vec![
        format!("diskutil info {mp}"),
        "hdiutil attach -nomount ram://1048576".into(),
        "newfs_hfs -v agenix /dev/disk7".into(),
        format!("mount -t hfs -o nobrowse,nodev,nosuid,-m=0751 /dev/disk7 {mp}"),
        format!("diskutil info {mp}"),
        format!("diskutil info {mp}"),
    ]
}

#[test]
fn darwin_first_install_makes_the_ram_disk_as_agenix_then_installs() {
    if !ready("darwin_first_install_makes_the_ram_disk_as_agenix_then_installs") {
        return;
    }
    let mac = Mac::new();
    let (out, calls) = mac.install(&mac.manifest(b"pw"), &[], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(calls, first_mount_calls(&mac.mp()));
    assert_eq!(fs::read(mac.secrets_dir.join("db")).unwrap(), b"pw");
    assert_eq!(
        fs::read_link(&mac.secrets_dir).unwrap(),
        mac.mount_point.join("1")
    );
    assert_eq!(meta(&mac.mount_point).0, 0o751);
    assert_eq!(meta(&mac.mount_point.join("1/db")).0, 0o400);
}

#[test]
fn darwin_an_existing_ram_disk_is_reused_without_hdiutil() {
    if !ready("darwin_an_existing_ram_disk_is_reused_without_hdiutil") {
        return;
    }
    let mac = Mac::new();
    let (out, _) = mac.install(&mac.manifest(b"one"), &[], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let (out, calls) = mac.install(&mac.manifest(b"two"), &[], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(calls, [format!("diskutil info {}", mac.mp())]);
    assert_eq!(fs::read(mac.secrets_dir.join("db")).unwrap(), b"two");
    assert_eq!(
        fs::read_link(&mac.secrets_dir).unwrap(),
        mac.mount_point.join("2")
    );
}

#[test]
fn darwin_a_failing_hdiutil_stops_before_anything_is_written() {
    if !ready("darwin_a_failing_hdiutil_stops_before_anything_is_written") {
        return;
    }
    let mac = Mac::new();
    let (out, calls) = mac.install(&mac.manifest(b"pw"), &[], "hdiutil");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "`hdiutil attach -nomount ram://1048576` failed: hdiutil: attach failed - Resource temporarily unavailable"
        ),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        calls[1..],
        ["hdiutil attach -nomount ram://1048576".to_string()]
    );
    assert!(fs::symlink_metadata(&mac.secrets_dir).is_err());
    assert!(!mac.mount_point.join("1").exists());
}

#[test]
fn darwin_a_failing_mount_detaches_the_disk_it_attached() {
    if !ready("darwin_a_failing_mount_detaches_the_disk_it_attached") {
        return;
    }
    let mac = Mac::new();
    let (out, calls) = mac.install(&mac.manifest(b"pw"), &[], "mount");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("mount_hfs: Operation not permitted"));
    assert_eq!(calls.last().unwrap(), "hdiutil detach /dev/disk7");
    assert!(fs::symlink_metadata(&mac.secrets_dir).is_err());
}

#[test]
fn darwin_the_mount_phase_alone_only_makes_the_disk() {
    if !ready("darwin_the_mount_phase_alone_only_makes_the_disk") {
        return;
    }
    let mac = Mac::new();
    let (out, calls) = mac.install(&mac.manifest(b"pw"), &["--phase", "mount"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(calls, first_mount_calls(&mac.mp()));
    assert!(fs::symlink_metadata(&mac.secrets_dir).is_err());
}

#[test]
fn darwin_a_mount_point_below_a_world_writable_directory_is_never_named_to_mount() {
    if !ready("darwin_a_mount_point_below_a_world_writable_directory_is_never_named_to_mount") {
        return;
    }
    let mac = Mac::new();
    let shared = mac.root.join("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    let mut manifest = mac.manifest(b"pw");
    manifest["secretsMountPoint"] = json!(shared.join("agenix.d"));
    let (out, calls) = mac.install(&manifest, &[], "");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("refusing to hand its name to `mount`"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        calls,
        [format!(
            "diskutil info {}",
            shared.join("agenix.d").display()
        )]
    );
}

// darwin-module.nix inside the real nix-darwin module system (`nix/tests/darwin-cases.nix`),
// then what that evaluation generated, run on Linux with the fake tools.

/// Evaluates the nix-darwin cases (`args`: extra attributes for eval-darwin.nix) with `module`.
fn eval_darwin(trees: &Trees, module: &Path, args: &str) -> Value {
    let expr = format!(
        "import {}/nix/tests/eval-darwin.nix {{ nixDarwin = {}; nixpkgs = {}; module = {}; {args} }}",
        repo().display(),
        trees.nix_darwin.display(),
        trees.hm_nixpkgs.display(),
        module.display()
    );
    nix_eval(&expr).unwrap_or_else(|e| panic!("evaluating the nix-darwin cases failed:\n{e}"))
}

#[test]
fn darwin_cases_hold_in_the_real_nix_darwin_module_system() {
    let name = "darwin_cases_hold_in_the_real_nix_darwin_module_system";
    let Some(trees) = trees(name) else { return };
    let evaluated = eval_darwin(trees, &repo().join("darwin-module.nix"), "");
    // `units` is refused by its own assertion: systemd units do not exist on nix-darwin.
    assert_cases_pass(
        &evaluated,
        &["defaults", "full", "openssh", "sshKeyPaths", "units"],
        &["units"],
        None,
    );
}

#[test]
fn a_darwin_daemon_that_launchd_would_not_retry_fails_the_cases() {
    let name = "a_darwin_daemon_that_launchd_would_not_retry_fails_the_cases";
    let Some(trees) = trees(name) else { return };
    let copy = broken_copy("darwin-module.nix", |t| {
        t.replace(
            "KeepAlive.SuccessfulExit = false;",
            "KeepAlive.SuccessfulExit = true;",
        )
    });
    let evaluated = eval_darwin(trees, &copy.path().join("darwin-module.nix"), "");
    let got = failures(&evaluated);
    for case in ["defaults", "full"] {
        assert!(
            got.contains(&format!(
                "{case}: KeepAlive.SuccessfulExit: got true, want false"
            )),
            "{got:?}"
        );
    }
}

#[test]
fn a_darwin_module_that_chowns_before_users_exist_fails_the_cases() {
    let name = "a_darwin_module_that_chowns_before_users_exist_fails_the_cases";
    let Some(trees) = trees(name) else { return };
    let copy = broken_copy("darwin-module.nix", |t| {
        t.replace("users.text = mkAfter", "users.text = lib.mkBefore")
    });
    let evaluated = eval_darwin(trees, &copy.path().join("darwin-module.nix"), "");
    assert!(
        failures(&evaluated)
            .iter()
            .any(|f| f.starts_with("defaults: activation order")),
        "{:?}",
        failures(&evaluated)
    );
}

ns_test!(
    darwin_daemon_from_the_real_evaluation_makes_the_ram_disk_and_installs,
    |env| {
        let name = "darwin_daemon_from_the_real_evaluation_makes_the_ram_disk_and_installs";
        let Some(trees) = trees(name) else { return };
        env.encrypt("db", b"db-secret");
        env.encrypt("token", b"tok-123");
        let params = format!(
            r#"only = [ "full" ]; params = {{ files = n: {}+ "/${{n}}.age"; identity = {}; package = {}; }};"#,
            lit(env.root.join("store").to_str().unwrap()),
            lit(env.key.to_str().unwrap()),
            built_package(&env.root)
        );
        let evaluated = eval_darwin(trees, &repo().join("darwin-module.nix"), &params);
        assert_eq!(failures(&evaluated), Vec::<String>::new());
        let result = &evaluated["full"]["result"];
        let check = run_check_phase(result);
        assert!(check.status.success(), "checkPhase: {}", stderr(&check));

        // macOS's `admin` group, for this namespace only.
        let group = env.root.join("group");
        let mut g = fs::read_to_string("/etc/group").unwrap();
        g.push_str("admin:x:4110:\n");
        fs::write(&group, g).unwrap();
        let bind = Command::new("mount")
            .arg("--bind")
            .arg(&group)
            .arg("/etc/group")
            .status()
            .unwrap();
        assert!(bind.success());
        mount_tmpfs_on_run();

        // The daemon's own command line, minus macOS's wait for the store volume; its PATH
        // with the fakes in front of it.
        let daemon = &result["daemon"];
        let command = daemon["ProgramArguments"][2].as_str().unwrap();
        let command = command
            .strip_prefix("/bin/wait4path /nix/store && ")
            .unwrap_or_else(|| panic!("{command}"));
        let tools = env.root.join("tools");
        write_fakes(&tools);
        let path = format!(
            "{}:{}",
            tools.display(),
            daemon["EnvironmentVariables"]["PATH"].as_str().unwrap()
        );
        let start = || {
            let _ = fs::remove_file(env.root.join("log"));
            let out = Command::new("/bin/sh")
                .args(["-c", command])
                .env_clear()
                .env("PATH", &path)
                .env("FAKE_DIR", &env.root)
                .output()
                .unwrap();
            let log = fs::read_to_string(env.root.join("log")).unwrap_or_default();
            (out, log.lines().map(str::to_string).collect::<Vec<_>>())
        };

        let (out, calls) = start();
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(calls, first_mount_calls("/run/agenix.d"));
        assert_eq!(
            fs::read_link("/run/agenix").unwrap(),
            Path::new("/run/agenix.d/1")
        );
        let admin = 4110;
        assert_eq!(meta(Path::new("/run/agenix.d")), (0o751, 0, admin));
        assert_eq!(fs::read("/run/agenix/db").unwrap(), b"db-secret");
        assert_eq!(meta(Path::new("/run/agenix.d/1/db")), (0o440, 65534, admin));
        assert_eq!(fs::read("/run/ragenix/token").unwrap(), b"tok-123");
        assert_eq!(
            fs::read_link("/run/ragenix/token").unwrap(),
            Path::new("/run/agenix/token")
        );
        assert_eq!(
            fs::read("/run/agenix/templates/app.env").unwrap(),
            b"TOKEN=tok-123\n"
        );

        // launchd starts it again (a reboot would find no disk; a restart finds ours).
        let (out, calls) = start();
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(calls, ["diskutil info /run/agenix.d"]);
        assert_eq!(
            fs::read_link("/run/agenix").unwrap(),
            Path::new("/run/agenix.d/2")
        );
    }
);

/// Evaluates `nix/tests/home-darwin-cases.nix` with `module` in home-manager for an
/// aarch64-darwin host.
fn eval_home_darwin(trees: &Trees, module: &Path) -> Value {
    let expr = format!(
        "let lib = import {nixpkgs}/lib; in import {repo}/nix/tests/eval-home.nix {{
           homeManager = {hm}; pkgs = import {nixpkgs} {{ system = \"aarch64-darwin\"; }};
           module = {module}; cases = import {repo}/nix/tests/home-darwin-cases.nix {{ inherit lib; }}; }}",
        repo = repo().display(),
        hm = trees.home_manager.display(),
        nixpkgs = trees.hm_nixpkgs.display(),
        module = module.display()
    );
    nix_eval(&expr).unwrap_or_else(|e| panic!("evaluating home-manager on darwin failed:\n{e}"))
}

#[test]
fn home_manager_on_darwin_installs_through_a_launchd_agent() {
    let name = "home_manager_on_darwin_installs_through_a_launchd_agent";
    let Some(trees) = trees(name) else { return };
    let evaluated = eval_home_darwin(trees, &repo().join("hm-module.nix"));
    assert_cases_pass(&evaluated, &["custom", "defaults"], &[], Some("TMPDIR"));
}

#[test]
fn a_home_module_that_keeps_systemd_on_darwin_fails_the_cases() {
    let name = "a_home_module_that_keeps_systemd_on_darwin_fails_the_cases";
    let Some(trees) = trees(name) else { return };
    let copy = broken_copy("hm-module.nix", |t| {
        t.replace("&& isDarwin)", "&& false)")
            .replace("&& !isDarwin)", "&& true)")
    });
    let evaluated = eval_home_darwin(trees, &copy.path().join("hm-module.nix"));
    let got = failures(&evaluated);
    assert!(
        got.iter()
            .any(|f| f.starts_with("defaults: systemd user service: got {")),
        "{got:?}"
    );
    assert!(
        got.contains(&"defaults: agent enabled: got null, want true".to_string()),
        "{got:?}"
    );
}

/// The flake's `darwinModules` are darwin-module.nix, and its checks for a darwin system (with
/// the snapshots standing in for its nixpkgs, home-manager and nix-darwin inputs) hold one
/// passing entry per darwin case, the default package built for that system.
#[test]
fn the_flake_has_darwin_modules_and_a_passing_check_per_darwin_case() {
    let name = "the_flake_has_darwin_modules_and_a_passing_check_per_darwin_case";
    let Some(trees) = trees(name) else { return };
    let expr = format!(
        r#"let
          tree = {nixpkgs};
          lib = import (tree + "/lib");
          nixpkgs = {{
            outPath = tree;
            inherit lib;
            legacyPackages.aarch64-darwin = import tree {{ system = "aarch64-darwin"; }};
          }};
          flake = import {repo}/flake.nix;
          self = flake.outputs {{ inherit self nixpkgs; home-manager.outPath = {hm}; nix-darwin.outPath = {nd}; }};
          checks = self.checks.aarch64-darwin;
          evaluation = lib.filter (n: n != "ragenix") (lib.attrNames checks);
          viaFlake = import {repo}/nix/tests/eval-darwin.nix {{
            nixDarwin = {nd}; nixpkgs = tree; module = self.darwinModules.default; only = [ "defaults" ];
          }};
        in {{
          failures = lib.genAttrs evaluation (n: checks.${{n}}.failures);
          modules = map (m: toString self.darwinModules.${{m}}) [ "default" "ragenix" "age" ];
          packageSystem = viaFlake.defaults.result.packageSystem;
          viaFlake = viaFlake.defaults.failures;
        }}"#,
        nixpkgs = trees.hm_nixpkgs.display(),
        hm = trees.home_manager.display(),
        nd = trees.nix_darwin.display(),
        repo = repo().display(),
    );
    let got = nix_eval(&expr).unwrap_or_else(|e| panic!("evaluating the flake's checks:\n{e}"));
    assert_flake_checks_pass(
        &got,
        &[
            "darwin-defaults",
            "darwin-full",
            "darwin-openssh",
            "darwin-sshKeyPaths",
            "darwin-units",
            "home-darwin-custom",
            "home-darwin-defaults",
        ],
    );
    let module = repo().join("darwin-module.nix");
    assert_eq!(got["modules"], json!([module, module, module]));
    assert_eq!(got["packageSystem"], "aarch64-darwin");
    assert_eq!(got["viaFlake"], json!([]));
}
