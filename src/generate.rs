//! Secret generators: a rule's `generator` attribute, parsed and run, giving the plaintext in
//! memory. Built-ins draw from the OS CSPRNG; sources run a command or a script with no shell
//! and no temporary file. [`generate_files`] is `--generate`: it encrypts the results and
//! writes them only when every generator succeeded.
//!
//! The `generator` grammar is the rules format's (`crate::rules::Generator`); this module runs
//! one. Built-ins end without a newline; a source's output is kept byte for byte.

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use base64::prelude::{Engine, BASE64_STANDARD};
use rand::rngs::OsRng;
use rand::seq::SliceRandom;
use rand::Rng;
use zeroize::Zeroizing;

use anyhow::Context;

use crate::rules::{Generator, GeneratorError, Rules, Secret};
use crate::{age_io, atomic, keys};

/// Lines of a failing source's stderr kept in the error.
const STDERR_LINES: usize = 20;

/// What a generator produced.
pub struct Generated {
    /// The plaintext to encrypt, wiped from memory when dropped.
    pub secret: Zeroizing<Vec<u8>>,
    /// For `ssh-ed25519`: the public key line (with trailing newline), to be written to
    /// [`public_key_path`].
    pub public: Option<String>,
}

impl fmt::Debug for Generated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generated")
            .field("secret", &format_args!("<{} bytes>", self.secret.len()))
            .field("public", &self.public)
            .finish()
    }
}

/// Why a secret could not be generated. Every message names the secret.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error(transparent)]
    Spec(#[from] GeneratorError),
    #[error("secret \"{name}\": cannot run generator {program:?}: {source}")]
    Spawn {
        name: String,
        program: String,
        source: std::io::Error,
    },
    #[error("secret \"{name}\": generator {program:?} failed ({status}){}", stderr_suffix(.stderr))]
    Failed {
        name: String,
        program: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("secret \"{name}\": cannot create an ssh-ed25519 key: {why}")]
    Key { name: String, why: String },
    #[error("secret \"{name}\" has no generator in the rules, so --generate cannot create it")]
    NoGenerator { name: String },
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(":\n{stderr}")
    }
}

impl Generator {
    /// Produces the secret. Sources run in `workdir` (the rules directory, so relative paths in
    /// commands mean what they meant to the author of the rules).
    pub fn generate(&self, name: &str, workdir: &Path) -> Result<Generated, GenerateError> {
        let secret: Zeroizing<Vec<u8>> = match self {
            Generator::Alnum(n) => {
                const ALNUM: &[u8] =
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
                let mut rng = OsRng;
                Zeroizing::new(
                    (0..*n)
                        .map(|_| ALNUM[rng.gen_range(0..ALNUM.len())])
                        .collect(),
                )
            }
            Generator::Hex(n) => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let bytes = random_bytes(*n);
                let mut out = Zeroizing::new(Vec::with_capacity(2 * n));
                for b in bytes.iter() {
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 0xf)]);
                }
                out
            }
            Generator::Base64(n) => {
                Zeroizing::new(BASE64_STANDARD.encode(&*random_bytes(*n)).into_bytes())
            }
            Generator::Passphrase(n) => {
                let words = diceware_wordlists::Wordlist::EffLong.get_list();
                let mut rng = OsRng;
                let mut out = Zeroizing::new(Vec::new());
                for i in 0..*n {
                    if i > 0 {
                        out.push(b'-');
                    }
                    let word = words.choose(&mut rng).expect("the wordlist is not empty");
                    out.extend_from_slice(word.as_bytes());
                }
                out
            }
            Generator::SshEd25519 => return ssh_ed25519(name),
            Generator::Command(argv) => run(name, &argv[0], &argv[1..], None, workdir)?,
            Generator::Script {
                script,
                interpreter,
            } => run(
                name,
                &interpreter[0],
                &interpreter[1..],
                Some(script.as_bytes()),
                workdir,
            )?,
        };
        Ok(Generated {
            secret,
            public: None,
        })
    }
}

/// What `--generate` will do, decided before anything runs.
#[derive(Debug)]
pub struct Plan<'r> {
    /// Secrets to create, in rules order, with their parsed generators.
    pub create: Vec<(&'r Secret, Generator)>,
    /// Secrets left alone because their file exists and `force` was not given.
    pub existing: Vec<&'r Secret>,
}

/// Chooses the secrets to generate: those in `only` (every rule with a generator when `only`
/// is empty) whose file is missing, or all of them with `force`. A secret named in `only`
/// without a generator, or any unusable generator, is an error before anything runs.
pub fn plan<'r>(
    rules: &'r Rules,
    only: &[&'r Secret],
    force: bool,
) -> Result<Plan<'r>, GenerateError> {
    let candidates: Vec<&Secret> = if only.is_empty() {
        rules
            .secrets
            .iter()
            .filter(|s| s.extra.contains_key("generator"))
            .collect()
    } else {
        only.to_vec()
    };
    let mut plan = Plan {
        create: Vec::new(),
        existing: Vec::new(),
    };
    for secret in candidates {
        let generator = Generator::of(secret)?.ok_or_else(|| GenerateError::NoGenerator {
            name: secret.name.clone(),
        })?;
        // symlink_metadata: a dangling symlink is still something we must not overwrite.
        let exists = std::fs::symlink_metadata(rules.secret_file(secret)).is_ok();
        if exists && !force {
            plan.existing.push(secret);
        } else {
            plan.create.push((secret, generator));
        }
    }
    Ok(plan)
}

/// Runs every generator of the plan, in order, before anything is written: on the first
/// failure the already generated plaintexts are dropped (and wiped) and the error returned,
/// so a failing generator leaves nothing behind.
pub fn run_plan<'r>(
    plan: &Plan<'r>,
    workdir: &Path,
) -> Result<Vec<(&'r Secret, Generated)>, GenerateError> {
    plan.create
        .iter()
        .map(|(secret, generator)| Ok((*secret, generator.generate(&secret.name, workdir)?)))
        .collect()
}

/// `--generate`: plans, parses every recipient list, runs every generator (in memory), then
/// encrypts each result into a synced temp file beside its target; only when all of that
/// succeeded are the files renamed into place (an ssh-ed25519 secret's `.pub` before the
/// secret, so a secret on disk always has its public key). Before that point nothing is
/// written; the plaintext never is.
pub fn generate_files(
    rules: &Rules,
    only: &[&Secret],
    force: bool,
    verbose: bool,
) -> anyhow::Result<()> {
    let plan = plan(rules, only, force)?;
    for secret in &plan.existing {
        eprintln!(
            "ragenix: keeping {}: the file exists (--force replaces it)",
            secret.name
        );
    }
    if plan.create.is_empty() {
        if plan.existing.is_empty() {
            eprintln!(
                "ragenix: no rule in {} has a generator; nothing to generate",
                rules.file.display()
            );
        }
        return Ok(());
    }
    let mut recipients = Vec::with_capacity(plan.create.len());
    let mut bad = 0;
    for (secret, _) in &plan.create {
        match keys::recipients(&secret.name, &secret.public_keys) {
            Ok(r) => recipients.push(r),
            Err(e) => {
                eprintln!("ragenix: {e:#}");
                bad += 1;
            }
        }
    }
    if bad > 0 {
        anyhow::bail!(
            "{bad} of {} secrets have unusable recipients; nothing was generated",
            plan.create.len()
        );
    }
    let generated = run_plan(&plan, &rules.dir)?;
    let mut publics = Vec::new();
    let mut secrets = Vec::with_capacity(generated.len());
    for ((secret, made), to) in generated.iter().zip(&recipients) {
        let file = rules.secret_file(secret);
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating directory {}", dir.display()))?;
        }
        secrets.push(atomic::stage(&file, |w| {
            age_io::encrypt(to, secret.armor, &mut &made.secret[..], w)
        })?);
        if let Some(public) = &made.public {
            publics.push(atomic::stage(&public_key_path(&file), |w| {
                Ok(w.write_all(public.as_bytes())?)
            })?);
        }
    }
    for staged in publics.into_iter().chain(secrets) {
        let target = staged.target().to_path_buf();
        staged.commit()?;
        if verbose {
            eprintln!("ragenix: wrote {}", target.display());
        }
    }
    for (secret, made) in &generated {
        match made.public {
            Some(_) => eprintln!(
                "ragenix: generated {} (public key in {})",
                secret.name,
                public_key_path(&rules.secret_file(secret)).display()
            ),
            None => eprintln!("ragenix: generated {}", secret.name),
        }
    }
    Ok(())
}

/// Runs a rule's generator, if it has one.
pub fn generate(secret: &Secret, workdir: &Path) -> Result<Option<Generated>, GenerateError> {
    Generator::of(secret)?
        .map(|g| g.generate(&secret.name, workdir))
        .transpose()
}

/// Where the `ssh-ed25519` generator's public key goes: the secret file with `.age` replaced
/// by `.pub` (`hosts/web.age` → `hosts/web.pub`), or `.pub` appended when there is no `.age`.
pub fn public_key_path(secret_file: &Path) -> PathBuf {
    let mut name = secret_file.file_name().unwrap_or_default().to_os_string();
    if secret_file.extension().is_some_and(|e| e == "age") {
        name = secret_file.file_stem().unwrap_or_default().to_os_string();
    }
    name.push(".pub");
    secret_file.with_file_name(name)
}

fn random_bytes(n: usize) -> Zeroizing<Vec<u8>> {
    let mut bytes = Zeroizing::new(vec![0u8; n]);
    OsRng.fill(&mut bytes[..]);
    bytes
}

fn ssh_ed25519(name: &str) -> Result<Generated, GenerateError> {
    let key_error = |e: ssh_key::Error| GenerateError::Key {
        name: name.to_owned(),
        why: e.to_string(),
    };
    let mut key =
        ssh_key::PrivateKey::random(&mut OsRng, ssh_key::Algorithm::Ed25519).map_err(key_error)?;
    // The comment says which secret the key belongs to, as `ssh-keygen -C` would.
    let comment = Path::new(name)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_owned());
    key.set_comment(comment);
    let private = key.to_openssh(ssh_key::LineEnding::LF).map_err(key_error)?;
    let public = key.public_key().to_openssh().map_err(key_error)?;
    Ok(Generated {
        secret: Zeroizing::new(private.as_bytes().to_vec()),
        public: Some(public + "\n"),
    })
}

/// Runs a source with no shell: stdout is the secret (kept only in memory), stderr is kept for
/// the error message, a non-zero exit is an error naming the secret and the status.
fn run(
    name: &str,
    program: &str,
    args: &[String],
    stdin: Option<&[u8]>,
    workdir: &Path,
) -> Result<Zeroizing<Vec<u8>>, GenerateError> {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(workdir)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| GenerateError::Spawn {
            name: name.to_owned(),
            program: program.to_owned(),
            source,
        })?;
    let mut pipe_in = child.stdin.take();
    let mut pipe_out = child.stdout.take().expect("stdout is piped");
    let mut pipe_err = child.stderr.take().expect("stderr is piped");
    // Three pipes at once: feed stdin and drain stderr on threads so that none can fill up
    // and deadlock the child.
    let (stdout, stderr) = std::thread::scope(|scope| {
        if let (Some(mut pipe), Some(input)) = (pipe_in.take(), stdin) {
            scope.spawn(move || {
                // A script that exits without reading all of its input is not an error here;
                // its exit status says whether it worked.
                let _ = pipe.write_all(input);
            });
        }
        let err = scope.spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe_err.read_to_end(&mut buf);
            buf
        });
        let mut out = Zeroizing::new(Vec::new());
        let read = pipe_out.read_to_end(&mut out);
        (read.map(|_| out), err.join().unwrap_or_default())
    });
    let status = child.wait().map_err(|source| GenerateError::Spawn {
        name: name.to_owned(),
        program: program.to_owned(),
        source,
    })?;
    if !status.success() {
        let text = String::from_utf8_lossy(&stderr);
        let lines: Vec<&str> = text.trim_end().lines().collect();
        let tail = lines[lines.len().saturating_sub(STDERR_LINES)..].join("\n");
        return Err(GenerateError::Failed {
            name: name.to_owned(),
            program: program.to_owned(),
            status,
            stderr: tail,
        });
    }
    stdout.map_err(|source| GenerateError::Spawn {
        name: name.to_owned(),
        program: program.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use serde_json::Value as Json;

    fn parse(v: Json) -> Result<Generator, GeneratorError> {
        Generator::from_json("db.age", &v)
    }

    fn gen(v: Json) -> Generated {
        parse(v)
            .unwrap()
            .generate("db.age", Path::new("."))
            .unwrap()
    }

    fn text(g: &Generated) -> String {
        String::from_utf8(g.secret.to_vec()).unwrap()
    }

    #[test]
    fn a_rule_without_generator_has_none() {
        let secret = Secret {
            name: "a.age".into(),
            path: "a.age".into(),
            public_keys: vec![],
            armor: false,
            extra: Default::default(),
        };
        assert!(Generator::of(&secret).unwrap().is_none());
        assert!(generate(&secret, Path::new(".")).unwrap().is_none());
    }

    #[test]
    fn alnum_gives_n_alphanumeric_characters() {
        let a = text(&gen(json!("alnum:64")));
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, text(&gen(json!("alnum:64"))), "two draws must differ");
    }

    #[test]
    fn hex_gives_n_bytes_as_2n_lowercase_digits() {
        let h = text(&gen(json!("hex:32")));
        assert_eq!(h.len(), 64);
        assert!(
            h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{h}"
        );
    }

    #[test]
    fn base64_gives_n_bytes_padded() {
        let b = text(&gen(json!("base64:32")));
        assert_eq!(b.len(), 44);
        assert_eq!(BASE64_STANDARD.decode(&b).unwrap().len(), 32);
        assert_eq!(
            BASE64_STANDARD
                .decode(text(&gen(json!("base64:1"))))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn passphrase_gives_n_wordlist_words() {
        let p = text(&gen(json!("passphrase:6")));
        let words: Vec<&str> = p.split('-').collect();
        assert_eq!(words.len(), 6, "{p}");
        let list = diceware_wordlists::Wordlist::EffLong.get_list();
        assert_eq!(list.len(), 7776);
        for w in words {
            assert!(list.contains(&w), "{w} is not an EFF word");
        }
    }

    #[test]
    fn ssh_ed25519_gives_a_private_key_and_its_public_line() {
        let g = gen(json!("ssh-ed25519"));
        let private = ssh_key::PrivateKey::from_openssh(&*g.secret).unwrap();
        assert_eq!(private.algorithm(), ssh_key::Algorithm::Ed25519);
        let public = g.public.as_deref().unwrap();
        assert!(public.ends_with(" db\n"), "{public}");
        assert_eq!(
            ssh_key::PublicKey::from_openssh(public.trim_end())
                .unwrap()
                .key_data(),
            private.public_key().key_data()
        );
    }

    #[test]
    fn public_key_path_replaces_age_with_pub() {
        assert_eq!(
            public_key_path(Path::new("/s/hosts/web.age")),
            Path::new("/s/hosts/web.pub")
        );
        assert_eq!(
            public_key_path(Path::new("/s/key")),
            Path::new("/s/key.pub")
        );
        assert_eq!(public_key_path(Path::new("a.b.age")), Path::new("a.b.pub"));
    }

    #[test]
    fn a_command_runs_without_a_shell_and_its_stdout_is_kept_verbatim() {
        let g = gen(json!({"command": ["printf", "%s|%s\n", "a b", "$HOME;"]}));
        assert_eq!(text(&g), "a b|$HOME;\n");
        assert!(g.public.is_none());
    }

    #[test]
    fn sources_run_in_the_given_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("seed"), "from the rules dir").unwrap();
        let g = parse(json!({"command": ["cat", "seed"]}))
            .unwrap()
            .generate("db.age", dir.path())
            .unwrap();
        assert_eq!(text(&g), "from the rules dir");
    }

    #[test]
    fn a_script_defaults_to_sh_and_reads_from_stdin() {
        let g = gen(json!({"script": "x=4; printf '%s' \"$((x * 10 + 2))\"\necho >&2 noise"}));
        assert_eq!(text(&g), "42");
    }

    #[test]
    fn a_script_uses_the_interpreter_given_split_like_a_shell() {
        let g = gen(
            json!({"script": "declare -a xs=(a b); printf %s \"${xs[1]}\"", "interpreter": "bash"}),
        );
        assert_eq!(text(&g), "b");
        let g = gen(json!({"script": "echo \"$1\"", "interpreter": "sh -s 'two words'"}));
        assert_eq!(text(&g), "two words\n");
    }

    #[test]
    fn a_large_script_and_output_do_not_deadlock() {
        let script = format!(
            "head -c 300000 /dev/zero | tr '\\0' x\n: '{}'\n",
            "y".repeat(300_000)
        );
        let g = gen(json!({"script": script}));
        assert_eq!(g.secret.len(), 300_000);
    }

    #[test]
    fn a_failing_command_names_the_secret_status_and_stderr() {
        let err = parse(json!({"script": "echo partial; echo 'vault sealed' >&2; exit 3"}))
            .unwrap()
            .generate("db.age", Path::new("."))
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("secret \"db.age\": generator \"sh\" failed"),
            "{msg}"
        );
        assert!(msg.contains("exit status: 3"), "{msg}");
        assert!(msg.contains("vault sealed"), "{msg}");
        assert!(
            !msg.contains("partial"),
            "stdout is the secret and must not leak: {msg}"
        );
    }

    #[test]
    fn a_missing_program_names_the_secret_and_program() {
        let err = parse(json!({"command": ["/nonexistent/pass", "show"]}))
            .unwrap()
            .generate("db.age", Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("secret \"db.age\": cannot run generator \"/nonexistent/pass\""),
            "{err}"
        );
    }

    #[test]
    fn a_killed_generator_is_a_failure() {
        let err = parse(json!({"script": "kill -9 $$"}))
            .unwrap()
            .generate("db.age", Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(err.contains("signal: 9"), "{err}");
    }

    fn plan_rules(dir: &Path) -> Rules {
        Rules::from_json(
            &dir.join("secrets.nix"),
            &json!({
                "new.age": {"publicKeys": [], "generator": "hex:4"},
                "old.age": {"publicKeys": [], "generator": "alnum:4"},
                "plain.age": {"publicKeys": []},
                "sub/cmd.age": {"publicKeys": [], "generator": {"command": ["printf", "x"]}},
            }),
        )
        .unwrap()
    }

    fn names(
        secrets: impl IntoIterator<Item = impl std::ops::Deref<Target = Secret>>,
    ) -> Vec<String> {
        secrets.into_iter().map(|s| s.name.clone()).collect()
    }

    #[test]
    fn plan_creates_missing_secrets_with_generators_and_keeps_existing_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("old.age"), "ciphertext").unwrap();
        let rules = plan_rules(dir.path());
        let p = plan(&rules, &[], false).unwrap();
        assert_eq!(
            names(p.create.iter().map(|(s, _)| *s)),
            ["new.age", "sub/cmd.age"]
        );
        assert_eq!(names(p.existing.iter().copied()), ["old.age"]);
        let forced = plan(&rules, &[], true).unwrap();
        assert_eq!(
            names(forced.create.iter().map(|(s, _)| *s)),
            ["new.age", "old.age", "sub/cmd.age"]
        );
        assert_eq!(forced.create[1].1, Generator::Alnum(4));
        assert!(forced.existing.is_empty());
    }

    #[test]
    fn plan_for_named_secrets_only_and_refuses_one_without_generator() {
        let dir = tempfile::tempdir().unwrap();
        let rules = plan_rules(dir.path());
        let p = plan(&rules, &[&rules.secrets[3]], false).unwrap();
        assert_eq!(names(p.create.iter().map(|(s, _)| *s)), ["sub/cmd.age"]);
        let err = plan(&rules, &[&rules.secrets[0], &rules.secrets[2]], false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "secret \"plain.age\" has no generator in the rules, so --generate cannot create it"
        );
    }

    #[test]
    fn plan_rejects_a_bad_generator_before_running_any() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let rules = Rules::from_json(
            &dir.path().join("secrets.nix"),
            &json!({
                "a.age": {"publicKeys": [], "generator": {"command": ["touch", marker]}},
                "b.age": {"publicKeys": [], "generator": "hex:many"},
            }),
        )
        .unwrap();
        let err = plan(&rules, &[], false).unwrap_err().to_string();
        assert!(
            err.contains("\"b.age\"") && err.contains("hex:many"),
            "{err}"
        );
        assert!(!marker.exists());
    }

    #[test]
    fn run_plan_stops_at_the_first_failure_and_returns_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let rules = Rules::from_json(
            &dir.path().join("secrets.nix"),
            &json!({
                "a.age": {"publicKeys": [], "generator": "hex:4"},
                "b.age": {"publicKeys": [], "generator": {"script": "exit 7"}},
                "c.age": {"publicKeys": [], "generator": {"script": "touch c-ran"}},
            }),
        )
        .unwrap();
        let p = plan(&rules, &[], false).unwrap();
        let err = run_plan(&p, dir.path()).unwrap_err().to_string();
        assert!(
            err.starts_with("secret \"b.age\": generator \"sh\" failed (exit status: 7)"),
            "{err}"
        );
        assert!(
            !dir.path().join("c-ran").exists(),
            "generators after a failure must not run"
        );
        let ok = plan(&rules, &[&rules.secrets[0]], false).unwrap();
        let done = run_plan(&ok, dir.path()).unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].1.secret.len(), 8);
    }
}
