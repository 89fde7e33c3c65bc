//! `ragenix-install` on real mounts. Each scenario runs in its own private mount namespace: the
//! test re-executes this test binary under `unshare --mount --propagation private`, filtered to
//! itself, so the ramfs, the installer runs and the checks all share one namespace that
//! disappears with it. Needs root and `unshare`; keys come from `ssh-keygen`.

mod attacks;
mod darwin;
mod modules;
mod nix;
mod scenarios;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::str::FromStr;

use serde_json::{json, Value};

use crate::util::{require_program, require_root};

const NS_VAR: &str = "RAGENIX_TEST_NAMESPACE";
const ROOT_VAR: &str = "RAGENIX_TEST_ROOT";

/// Declares a test whose body runs inside a private mount namespace with a fresh [`Env`].
macro_rules! ns_test {
    ($name:ident, |$env:ident| $body:block) => {
        #[test]
        fn $name() {
            $crate::install::in_namespace(module_path!(), stringify!($name), |$env| $body);
        }
    };
}
pub(crate) use ns_test;

/// Outside the namespace: checks prerequisites, makes the temp root, re-executes this test
/// in a new namespace and reports its output. Inside: runs `body`.
pub fn in_namespace(module: &str, name: &str, body: impl FnOnce(&Env)) {
    if std::env::var(NS_VAR).as_deref() == Ok(name) {
        let root = PathBuf::from(std::env::var(ROOT_VAR).unwrap());
        body(&Env::new(root));
        return;
    }
    if !require_root(name)
        || !require_program(name, "unshare")
        || !require_program(name, "ssh-keygen")
    {
        return;
    }
    let root = tempfile::Builder::new()
        .prefix("ragenix-install-")
        .tempdir()
        .unwrap();
    let test = format!("{}::{name}", module.trim_start_matches("tests::"));
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", &test, "--nocapture", "--test-threads=1"])
        .env(NS_VAR, name)
        .env(ROOT_VAR, root.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A skip inside the namespace must stay visible outside it.
    for line in stderr.lines().filter(|l| l.starts_with("SKIPPED")) {
        eprintln!("{line}");
    }
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{test} failed in its namespace ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

/// A temp root inside the namespace: host key, encrypted files, manifest, installer runs.
pub struct Env {
    pub root: PathBuf,
    pub key: PathBuf,
    pub recipient: String,
    pub secrets_dir: PathBuf,
    pub mount_point: PathBuf,
}

impl Env {
    fn new(root: PathBuf) -> Env {
        let key = root.join("ssh_host_ed25519_key");
        let recipient = ssh_keygen(&key);
        Env {
            secrets_dir: root.join("run/agenix"),
            mount_point: root.join("run/agenix.d"),
            root,
            key,
            recipient,
        }
    }

    /// Writes `plaintext` encrypted to the host key as `<name>.age`; returns its path.
    pub fn encrypt(&self, name: &str, plaintext: &[u8]) -> PathBuf {
        self.encrypt_to(name, plaintext, &self.recipient)
    }

    pub fn encrypt_to(&self, name: &str, plaintext: &[u8], recipient: &str) -> PathBuf {
        let path = self.root.join("store").join(format!("{name}.age"));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, encrypt(plaintext, recipient)).unwrap();
        path
    }

    /// A base system manifest with this env's paths; `secrets` is a JSON list.
    pub fn manifest(&self, secrets: Value) -> Value {
        json!({
            "version": 1,
            "mode": "system",
            "secretsDir": self.secrets_dir,
            "secretsMountPoint": self.mount_point,
            "identityPaths": [self.key],
            "dirGroup": "keys",
            "secrets": secrets,
        })
    }

    /// A secret entry with the default path.
    pub fn secret(&self, name: &str, file: &Path) -> Value {
        json!({ "name": name, "file": file, "path": self.secrets_dir.join(name) })
    }

    pub fn write_manifest(&self, manifest: &Value) -> PathBuf {
        let path = self.root.join("manifest.json");
        fs::write(&path, serde_json::to_vec_pretty(manifest).unwrap()).unwrap();
        path
    }

    /// Runs the installer on `manifest` with extra arguments.
    pub fn install_with(&self, manifest: &Value, args: &[&str]) -> Output {
        let path = self.write_manifest(manifest);
        let out = Command::new(env!("CARGO_BIN_EXE_ragenix-install"))
            .args(args)
            .arg(&path)
            .output()
            .unwrap();
        eprintln!(
            "ragenix-install {args:?} -> {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs all phases and asserts success.
    pub fn install(&self, manifest: &Value) -> Output {
        let out = self.install_with(manifest, &[]);
        assert!(out.status.success(), "installer failed: {}", stderr(&out));
        out
    }

    pub fn generation(&self, n: u64) -> PathBuf {
        self.mount_point.join(n.to_string())
    }

    pub fn generations(&self) -> Vec<u64> {
        let mut found: Vec<u64> = fs::read_dir(&self.mount_point)
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().to_str()?.parse().ok())
            .collect();
        found.sort_unstable();
        found
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Generates an unencrypted ssh-ed25519 key at `path`; returns the public key line.
pub fn ssh_keygen(path: &Path) -> String {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "host", "-f"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
    fs::read_to_string(path.with_extension("pub"))
        .unwrap_or_else(|_| fs::read_to_string(format!("{}.pub", path.display())).unwrap())
        .trim()
        .to_string()
}

/// Encrypts to an ssh or age recipient with the age crate (binary format).
pub fn encrypt(plaintext: &[u8], recipient: &str) -> Vec<u8> {
    let boxed: Box<dyn age::Recipient> = if recipient.starts_with("age1") {
        Box::new(age::x25519::Recipient::from_str(recipient).unwrap())
    } else {
        Box::new(age::ssh::Recipient::from_str(recipient).unwrap())
    };
    let encryptor = age::Encryptor::with_recipients(std::iter::once(boxed.as_ref())).unwrap();
    let mut out = Vec::new();
    let mut writer = encryptor.wrap_output(&mut out).unwrap();
    writer.write_all(plaintext).unwrap();
    writer.finish().unwrap();
    out
}

/// Mode bits, uid and gid of `path` (not following a final symlink).
pub fn meta(path: &Path) -> (u32, u32, u32) {
    let m = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.permissions().mode() & 0o7777, m.uid(), m.gid())
}
