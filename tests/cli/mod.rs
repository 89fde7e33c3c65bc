//! The `ragenix` command line, driven as a user would: flags, edit, rekey, interop with Go
//! `age`, crash safety and plaintext hygiene.

mod closed_pipe;
mod confinement;
mod crash;
mod edit;
mod edit_source;
mod example;
mod flags;
mod interop;
mod one_writer;
mod rekey;
mod structured;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use assert_cmd::Command;
use tempfile::TempDir;

/// A scratch project: a directory for secrets, an X25519 key, and private temp locations so
/// leftover plaintext can be searched for.
pub struct Project {
    pub dir: TempDir,
    /// The X25519 identity file.
    pub key: PathBuf,
    /// Its recipient.
    pub public: String,
}

impl Project {
    pub fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["home", "run", "tmp"] {
            fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let key = dir.path().join("key.txt");
        let id = age::x25519::Identity::generate();
        use age::secrecy::ExposeSecret;
        fs::write(&key, format!("{}\n", id.to_string().expose_secret())).unwrap();
        Project {
            public: id.to_public().to_string(),
            key,
            dir,
        }
    }

    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes `secrets.nix` (or `rel`) giving each name the listed public keys.
    pub fn rules_at(&self, rel: &str, secrets: &[(&str, &[&str], bool)]) {
        let mut s = String::from("{\n");
        for (name, keys, armor) in secrets {
            let keys: Vec<String> = keys.iter().map(|k| format!("{k:?}")).collect();
            s += &format!(
                "  {name:?} = {{ publicKeys = [ {} ]; armor = {armor}; }};\n",
                keys.join(" ")
            );
        }
        s += "}\n";
        let path = self.path(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, s).unwrap();
    }

    /// `secrets.nix` with every name encrypted to this project's key, binary.
    pub fn rules(&self, names: &[&str]) {
        let pk = self.public.as_str();
        let list: Vec<(&str, &[&str], bool)> = names
            .iter()
            .map(|n| (*n, std::slice::from_ref(&pk), false))
            .collect();
        self.rules_at("secrets.nix", &list);
    }

    /// `ragenix` run in the project directory with a clean, private environment.
    pub fn cmd(&self) -> Command {
        Command::from_std(self.std_cmd())
    }

    /// The same as a `std::process::Command` (for tests that signal the process).
    pub fn std_cmd(&self) -> StdCommand {
        let mut c = StdCommand::new(bin());
        self.prepare(&mut c);
        c
    }

    /// Gives any command the project's directory and environment.
    pub fn prepare(&self, c: &mut StdCommand) {
        c.current_dir(self.dir.path())
            .env_remove("RULES")
            .env_remove("VISUAL")
            .env_remove("EDITOR")
            .env_remove("RAGENIX_ASKPASS")
            .env("HOME", self.path("home"))
            .env("XDG_RUNTIME_DIR", self.path("run"))
            .env("TMPDIR", self.path("tmp"));
    }

    /// Encrypts `plain` to this project's key with ragenix itself (`-e` from stdin; `--editor -`
    /// because only it may write an empty secret).
    pub fn create(&self, name: &str, plain: &[u8]) {
        self.cmd()
            .args(["-i", "key.txt", "--editor", "-", "-e", name])
            .write_stdin(plain.to_vec())
            .assert()
            .success();
    }

    /// Decrypts a file with the library, for checks that do not need a process per file.
    pub fn open(&self, rel: impl AsRef<Path>) -> anyhow::Result<Vec<u8>> {
        let ids = ragenix::keys::load_identities(
            std::slice::from_ref(&self.key),
            std::sync::Arc::new(NoPrompt),
        )?;
        let mut out = Vec::new();
        ragenix::age_io::decrypt(&ids, &mut fs::File::open(self.path(rel))?, &mut out)?;
        Ok(out)
    }

    /// Files under the project whose name marks them as our atomic-write temp files.
    pub fn temp_files(&self) -> Vec<PathBuf> {
        walkdir::WalkDir::new(self.dir.path())
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".ragenix-tmp-"))
            .map(|e| e.into_path())
            .collect()
    }

    /// Every file in the temp locations ragenix may use whose content contains `needle`.
    pub fn plaintext_copies(&self, needle: &[u8]) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for base in [
            self.path("run"),
            self.path("tmp"),
            PathBuf::from("/dev/shm"),
        ] {
            for e in walkdir::WalkDir::new(base)
                .into_iter()
                .filter_map(Result::ok)
            {
                if e.file_type().is_file() {
                    if let Ok(data) = fs::read(e.path()) {
                        if data.windows(needle.len()).any(|w| w == needle) {
                            found.push(e.into_path());
                        }
                    }
                }
            }
        }
        found
    }

    /// Directories ragenix created for plaintext and did not remove.
    pub fn leftover_private_dirs(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for base in [self.path("run"), self.path("tmp")] {
            for e in fs::read_dir(base).unwrap().filter_map(Result::ok) {
                found.push(e.path());
            }
        }
        found
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ragenix")
}

pub struct NoPrompt;
impl ragenix::keys::Prompt for NoPrompt {
    fn passphrase(&self, _: &str) -> anyhow::Result<Option<age::secrecy::SecretString>> {
        Ok(None)
    }
}

/// Writes an executable shell script and returns its path.
pub fn script(path: &Path, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    path.to_path_buf()
}

pub fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
