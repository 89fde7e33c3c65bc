//! The nix-darwin installer path on Linux: a `"platform": "darwin"` manifest makes
//! `ragenix-install` build its RAM disk with `hdiutil`, `newfs_hfs`, `mount` and `diskutil`,
//! here fakes on `PATH` that log their arguments and fail on demand. The fakes mount nothing,
//! so the "RAM disk" stays a plain directory and the rest of the install runs for real.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::{json, Value};

use super::{encrypt, meta, ssh_keygen, stderr};
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
    /// Under the target directory, not /tmp: the RAM-disk tools take the mount point by name,
    /// so the installer refuses a path below a directory others can write to.
    fn new() -> Mac {
        let tmp = tempfile::Builder::new()
            .prefix("darwin-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let root = tmp.path().to_path_buf();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        let tools = root.join("tools");
        fs::create_dir(&tools).unwrap();
        for (name, body) in FAKES {
            let script = format!(
                "#!/bin/sh\necho \"{name} $*\" >> \"$FAKE_DIR/log\"\n\
                 fail() {{ case \" $FAKE_FAIL \" in *\" $1 \"*) echo \"$2\" >&2; exit 1;; esac; }}\n{body}\n"
            );
            let path = tools.join(name);
            fs::write(&path, script).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }
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
