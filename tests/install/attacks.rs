//! The installer against a user who owns a directory on a secret's path (issue 8). Each test
//! runs as root in its own mount namespace; uid 65534 does the attacker's steps through
//! `setpriv`, and the victim is a root-owned 0600 file outside every declared path, which must
//! end exactly as it began (bytes, mode, owner, and nothing new beside it).

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use super::{meta, ns_test, stderr, Env};
use crate::util::require_program;

const NOBODY: u32 = 65534;

/// Runs `script` with `sh` as uid/gid 65534 without supplementary groups.
fn as_nobody(script: &str) {
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-euc",
            script,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "attacker step failed: {script}\n{}",
        stderr(&out)
    );
}

/// A root-owned directory holding a root-owned 0600 file: what the attacker aims at.
struct Victim {
    dir: PathBuf,
    file: PathBuf,
}

impl Victim {
    fn new(env: &Env, file_name: &str) -> Victim {
        let dir = env.root.join("victim");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let file = dir.join(file_name);
        fs::write(&file, b"ORIGINAL").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        Victim { dir, file }
    }

    fn assert_untouched(&self) {
        assert!(
            fs::symlink_metadata(&self.file).unwrap().is_file(),
            "the victim was replaced"
        );
        assert_eq!(fs::read(&self.file).unwrap(), b"ORIGINAL");
        assert_eq!(meta(&self.file), (0o600, 0, 0), "victim mode/owner changed");
        assert_eq!(meta(&self.dir), (0o755, 0, 0));
        let names: Vec<_> = fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names.len(),
            1,
            "something was added beside the victim: {names:?}"
        );
    }
}

/// Makes `/run/home/alice`, owned by uid 65534, below root-owned directories only (as a real
/// home is; under /tmp, world-writable, no symlink would be followed at all).
fn alice_home(env: &Env) -> PathBuf {
    private_run();
    // uid 65534 reads the victim's path through its own symlinks only; the temp root stays
    // closed to it.
    let _ = env;
    let home = PathBuf::from("/run/home/alice");
    fs::create_dir_all(&home).unwrap();
    fs::set_permissions("/run/home", fs::Permissions::from_mode(0o755)).unwrap();
    rustix::fs::chown(
        &home,
        Some(rustix::fs::Uid::from_raw(NOBODY)),
        Some(rustix::fs::Gid::from_raw(NOBODY)),
    )
    .unwrap();
    home
}

/// A manifest with a harmless secret `good` and `token` at `path`.
fn with_token(env: &Env, path: &Path, symlink: bool, owner: &str) -> Value {
    let good = env.encrypt("good", b"good");
    let mut token = env.secret("token", &env.encrypt("token", b"TOKEN"));
    token["path"] = json!(path);
    token["symlink"] = json!(symlink);
    token["mode"] = json!("0444");
    token["owner"] = json!(owner);
    token["group"] = json!(owner);
    env.manifest(json!([env.secret("good", &good), token]))
}

fn assert_only_token_failed(out: &std::process::Output, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("error: secret `token`"), "{err}");
    assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    assert!(err.contains("1 error(s)"), "{err}");
}

/// The install phase with a directory on the way swapped for a symlink to the victim's
/// directory: `symlink = false` would write the secret over the victim, `symlink = true`
/// would put a link in its place.
fn a_symlinked_directory_is_refused_at_install(env: &Env, symlink_entry: bool) {
    if !require_program("attacks", "setpriv") {
        return;
    }
    let home = alice_home(env);
    let victim = Victim::new(env, "target");
    as_nobody(&format!(
        "mkdir {h}/app && ln -s {v} {h}/app/conf",
        h = home.display(),
        v = victim.dir.display()
    ));
    let manifest = with_token(env, &home.join("app/conf/target"), symlink_entry, "65534");
    let out = env.install_with(&manifest, &[]);
    assert_only_token_failed(
        &out,
        &format!(
            "`{}` is a symlink below `{}`, which is owned by uid 65534: refusing to follow it",
            home.join("app/conf").display(),
            home.display()
        ),
    );
    victim.assert_untouched();
    assert_eq!(fs::read(env.secrets_dir.join("good")).unwrap(), b"good");
}

ns_test!(
    a_user_symlink_on_a_custom_path_is_not_written_through,
    |env| {
        a_symlinked_directory_is_refused_at_install(env, false);
    }
);

ns_test!(
    a_user_symlink_on_a_custom_link_path_is_not_linked_through,
    |env| {
        a_symlinked_directory_is_refused_at_install(env, true);
        // The secret itself is installed; only the link the user could redirect is refused.
        assert_eq!(fs::read(env.secrets_dir.join("token")).unwrap(), b"TOKEN");
    }
);

/// Adds user and group `late` (uid/gid 4321) as NixOS's `users` step would between the two
/// phases, by bind-mounting extended copies over /etc/passwd and /etc/group (this namespace
/// only).
fn create_late_user(env: &Env) {
    set_late_user(env, 4321);
}

/// (Re)defines user and group `late` with `id` (the bind mounts stack; the newest is seen).
fn set_late_user(env: &Env, id: u32) {
    for (file, line) in [
        ("passwd", format!("late:x:{id}:{id}::/:/bin/false\n")),
        ("group", format!("late:x:{id}:\n")),
    ] {
        let etc = Path::new("/etc").join(file);
        let copy = env.root.join(format!("{file}.{id}"));
        let text: String = fs::read_to_string(&etc)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with("late:"))
            .map(|l| format!("{l}\n"))
            .chain([line])
            .collect();
        fs::write(&copy, text).unwrap();
        let status = Command::new("mount")
            .arg("--bind")
            .arg(&copy)
            .arg(&etc)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

/// The setting of the chown-phase attacks: `token` at `~alice/app/conf/target` (a directory of
/// uid 65534's) for user `late`, through the install phase (root's until `late` exists), then
/// `late` created as NixOS's `users` step would between the phases. `None`, with a visible
/// skip, without setpriv.
struct InstalledForLate {
    home: PathBuf,
    victim: Victim,
    manifest: Value,
    token: PathBuf,
}

fn installed_for_late_user(env: &Env) -> Option<InstalledForLate> {
    if !require_program("attacks", "setpriv") {
        return None;
    }
    let home = alice_home(env);
    let victim = Victim::new(env, "target");
    as_nobody(&format!("mkdir -p {}/app/conf", home.display()));
    let token = home.join("app/conf/target");
    let manifest = with_token(env, &token, false, "late");
    let out = env.install_with(&manifest, &["--phase", "install"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(meta(&token), (0o444, 0, 0), "root's until `late` exists");
    create_late_user(env);
    Some(InstalledForLate {
        home,
        victim,
        manifest,
        token,
    })
}

ns_test!(
    a_symlink_swapped_in_between_install_and_chown_is_refused,
    |env| {
        let Some(InstalledForLate {
            home,
            victim,
            manifest,
            ..
        }) = installed_for_late_user(env)
        else {
            return;
        };
        // The window between the phases: NixOS creates users, the attacker swaps a directory.
        as_nobody(&format!(
            "cd {h}/app && mv conf conf.old && ln -s {v} conf",
            h = home.display(),
            v = victim.dir.display()
        ));
        let out = env.install_with(&manifest, &["--phase", "chown"]);
        assert_only_token_failed(
            &out,
            &format!(
                "`{}` is a symlink below `{}`",
                home.join("app/conf").display(),
                home.display()
            ),
        );
        victim.assert_untouched();
        assert_eq!(meta(&home.join("app/conf.old/target")), (0o444, 0, 0));
    }
);

ns_test!(
    a_file_replaced_between_install_and_chown_is_not_chowned,
    |env| {
        let Some(InstalledForLate {
            home,
            victim,
            manifest,
            ..
        }) = installed_for_late_user(env)
        else {
            return;
        };
        // The last component itself: a symlink to the victim in place of the secret.
        as_nobody(&format!(
            "cd {h}/app/conf && rm -f target && ln -s {v} target",
            h = home.display(),
            v = victim.file.display()
        ));
        let out = env.install_with(&manifest, &["--phase", "chown"]);
        assert_only_token_failed(&out, "is no longer the file the install phase wrote");
        victim.assert_untouched();

        // A file of the attacker's own in its place is not given to `late` either.
        as_nobody(&format!(
            "cd {h}/app/conf && rm -f target && echo mine > target",
            h = home.display()
        ));
        let out = env.install_with(&manifest, &["--phase", "chown"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("is no longer the file the install phase wrote")
                || err.contains("is owned by uid 65534, not by the installer"),
            "{err}"
        );
        assert_eq!(meta(&home.join("app/conf/target")).1, NOBODY);
        victim.assert_untouched();
    }
);

ns_test!(
    a_file_at_a_custom_path_with_a_second_hard_link_is_not_chowned,
    |env| {
        let Some(InstalledForLate {
            home,
            victim,
            manifest,
            token: secret,
        }) = installed_for_late_user(env)
        else {
            return;
        };
        // What an inode reused by a root file and hard-linked into place looks like to the
        // chown phase: the recorded inode, with a second name outside. (Made by root here:
        // protected_hardlinks keeps a user from linking root's files on this machine.)
        fs::hard_link(&secret, home.join("second-name")).unwrap();
        let out = env.install_with(&manifest, &["--phase", "chown"]);
        assert_only_token_failed(&out, "has 2 hard links, the install phase left it with one");
        assert_eq!(
            meta(&secret).1,
            0,
            "the shared inode was not handed to `late`"
        );
        victim.assert_untouched();
    }
);

ns_test!(
    an_owner_whose_uid_changes_between_the_phases_still_gets_the_file,
    |env| {
        // `late` exists at install time (the file is created as 4321) and `users` renumbers it.
        set_late_user(env, 4321);
        let manifest = with_token(env, &env.root.join("etc/app/target"), false, "late");
        let out = env.install_with(&manifest, &["--phase", "install"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(meta(&env.root.join("etc/app/target")), (0o444, 4321, 4321));
        set_late_user(env, 4322);
        let out = env.install_with(&manifest, &["--phase", "chown"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(meta(&env.root.join("etc/app/target")), (0o444, 4322, 4322));
    }
);

ns_test!(the_chown_phase_chowns_what_the_install_phase_wrote, |env| {
    // The same two phases without an attacker: the recorded file gets its late owner.
    let manifest = with_token(env, &env.root.join("etc/app/target"), false, "late");
    let out = env.install_with(&manifest, &["--phase", "install"]);
    assert!(out.status.success(), "{}", stderr(&out));
    create_late_user(env);
    let out = env.install_with(&manifest, &["--phase", "chown"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(meta(&env.root.join("etc/app/target")), (0o444, 4321, 4321));
});

/// Mounts a root-owned 0755 tmpfs on /run (this namespace only), so that paths below it are
/// reached through root-owned directories only, as on a real system.
fn private_run() {
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run"])
        .status()
        .unwrap();
    assert!(status.success());
}

/// How many filesystems of `fstype` are mounted exactly at `path`.
fn mounts_at(path: &str, fstype: &str) -> usize {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| {
            let (before, after) = l.split_once(" - ").unwrap();
            before.split(' ').nth(4) == Some(path) && after.split(' ').next() == Some(fstype)
        })
        .count()
}

fn run_manifest(env: &Env) -> Value {
    let a = env.encrypt("a", b"alpha");
    json!({
        "version": 1,
        "mode": "system",
        "secretsDir": "/run/agenix",
        "secretsMountPoint": "/run/agenix.d",
        "identityPaths": [env.key],
        "secrets": [{ "name": "a", "file": a, "path": "/run/agenix/a" }],
    })
}

ns_test!(root_owned_symlinks_like_var_run_are_followed, |env| {
    if !fs::symlink_metadata("/var/run").is_ok_and(|m| m.file_type().is_symlink()) {
        crate::util::skip(
            "root_owned_symlinks_like_var_run_are_followed",
            "/var/run is not a symlink here",
        );
        return;
    }
    private_run();
    fs::create_dir("/run/real").unwrap();
    symlink("/run/real", "/run/alias").unwrap();
    let mut manifest = run_manifest(env);
    manifest["secretsDir"] = json!("/var/run/agenix");
    manifest["secretsMountPoint"] = json!("/var/run/agenix.d");
    manifest["secrets"][0]["path"] = json!("/var/run/alias/app/a.conf");
    manifest["secrets"][0]["symlink"] = json!(false);
    // A relative link climbing with `..` is followed the same way.
    symlink("../run/real", "/run/up").unwrap();
    let mut b = manifest["secrets"][0].clone();
    b["name"] = json!("b");
    b["path"] = json!("/run/up/app/b.conf");
    manifest["secrets"].as_array_mut().unwrap().push(b);
    env.install(&manifest);
    assert_eq!(fs::read("/run/real/app/a.conf").unwrap(), b"alpha");
    assert_eq!(fs::read("/run/real/app/b.conf").unwrap(), b"alpha");
    assert_eq!(mounts_at("/run/agenix.d", "ramfs"), 1);
    assert!(fs::symlink_metadata("/run/agenix")
        .unwrap()
        .file_type()
        .is_symlink());
});

ns_test!(
    a_symlink_owned_by_a_user_is_refused_even_in_a_root_directory,
    |env| {
        private_run();
        fs::create_dir("/run/real").unwrap();
        symlink("/run/real", "/run/theirs").unwrap();
        rustix::fs::chownat(
            rustix::fs::CWD,
            "/run/theirs",
            Some(rustix::fs::Uid::from_raw(NOBODY)),
            None,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
        let manifest = with_token(env, Path::new("/run/theirs/token"), false, "0");
        let out = env.install_with(&manifest, &[]);
        assert_only_token_failed(
            &out,
            "`/run/theirs` is a symlink that is owned by uid 65534: refusing to follow it",
        );
        assert_eq!(fs::read_dir("/run/real").unwrap().count(), 0);
    }
);

ns_test!(
    three_spellings_of_the_mount_point_give_exactly_one_ramfs,
    |env| {
        if !fs::symlink_metadata("/var/run").is_ok_and(|m| m.file_type().is_symlink()) {
            crate::util::skip(
                "three_spellings_of_the_mount_point_give_exactly_one_ramfs",
                "/var/run is not a symlink here",
            );
            return;
        }
        private_run();
        fs::create_dir("/run/agenix.d").unwrap();
        symlink("agenix.d", "/run/secrets.d").unwrap();
        let mut manifest = run_manifest(env);
        for round in 0..3 {
            for spelling in ["/run/agenix.d", "/var/run/agenix.d", "/run/secrets.d"] {
                manifest["secretsMountPoint"] = json!(spelling);
                for phase in ["mount", "install", "chown"] {
                    let out = env.install_with(&manifest, &["--phase", phase]);
                    assert!(
                        out.status.success(),
                        "{round} {spelling} {phase}: {}",
                        stderr(&out)
                    );
                }
                assert_eq!(mounts_at("/run/agenix.d", "ramfs"), 1, "{round} {spelling}");
                assert_eq!(fs::read("/run/agenix/a").unwrap(), b"alpha");
            }
        }
        // `//` is refused before anything is mounted, naming the option.
        manifest["secretsMountPoint"] = json!("/run//agenix.d");
        let out = env.install_with(&manifest, &["--phase", "mount"]);
        assert_eq!(out.status.code(), Some(2));
        assert!(
            stderr(&out)
                .contains("age.secretsMountPoint: `/run//agenix.d` is not a normalised path"),
            "{}",
            stderr(&out)
        );
        assert_eq!(mounts_at("/run/agenix.d", "ramfs"), 1);
        assert_eq!(mounts_at("/run/secrets.d", "ramfs"), 0);
    }
);

ns_test!(a_kept_previous_version_gets_the_new_mode_and_owner, |env| {
    let flaky = env.encrypt("flaky", b"v1");
    let plain = env.encrypt("plain", b"p1");
    let plain_path = env.root.join("etc/plain");
    let entries = |mode: &str, owner: &str| {
        let mut f = env.secret("flaky", &flaky);
        f["mode"] = json!(mode);
        f["owner"] = json!(owner);
        f["group"] = json!(owner);
        let mut p = env.secret("plain", &plain);
        p["path"] = json!(plain_path);
        p["symlink"] = json!(false);
        p["mode"] = json!(mode);
        p["owner"] = json!(owner);
        p["group"] = json!(owner);
        env.manifest(json!([f, p]))
    };
    env.install(&entries("0444", "0"));
    assert_eq!(meta(&env.secrets_dir.join("flaky")), (0o444, 0, 0));
    assert_eq!(meta(&plain_path), (0o444, 0, 0));

    // Now neither decrypts, and both are declared 0400 for uid 4321.
    let other = super::ssh_keygen(&env.root.join("other_key"));
    env.encrypt_to("flaky", b"v2", &other);
    env.encrypt_to("plain", b"p2", &other);
    let out = env.install_with(&entries("0400", "4321"), &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.matches("(the previous version is kept, with mode 0400 and owner 4321:4321)")
            .count(),
        2,
        "{err}"
    );
    assert_eq!(fs::read(env.secrets_dir.join("flaky")).unwrap(), b"v1");
    assert_eq!(meta(&env.secrets_dir.join("flaky")), (0o400, 4321, 4321));
    assert_eq!(fs::read(&plain_path).unwrap(), b"p1");
    assert_eq!(meta(&plain_path), (0o400, 4321, 4321));
});

ns_test!(
    a_file_planted_at_a_custom_path_is_not_kept_as_the_previous_version,
    |env| {
        if !require_program("attacks", "setpriv") {
            return;
        }
        let home = alice_home(env);
        as_nobody(&format!("mkdir -p {}/app", home.display()));
        let path = home.join("app/token");
        let manifest = with_token(env, &path, false, "0");
        env.install(&manifest);
        // The user swaps in a file of their own, then the secret stops decrypting.
        as_nobody(&format!(
            "cd {}/app && rm -f token && echo planted > token && chmod 0666 token",
            home.display()
        ));
        let other = super::ssh_keygen(&env.root.join("other_key"));
        env.encrypt_to("token", b"v2", &other);
        let out = env.install_with(&manifest, &[]);
        assert_only_token_failed(&out, "is not the file installed there before: left alone");
        assert_eq!(meta(&path), (0o666, NOBODY, NOBODY));
    }
);

/// Each declaration that would break or be redirected at activation is refused by `--check`
/// at build time, one located message per problem (no root needed).
#[test]
fn check_rejects_each_unsafe_declaration_naming_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let secret = |name: &str, path: &str, symlink: bool| json!({"name": name, "file": "/nix/store/x.age", "path": path, "symlink": symlink});
    let manifest = json!({
        "version": 1, "mode": "system",
        "secretsDir": "/run/agenix/", "secretsMountPoint": "/run//agenix.d",
        "identityPaths": [],
        "secrets": [
            secret("a", "/run/agenix/a", true),
            secret("b", "/run/agenix//a", true),
            secret("c", "/run/agenix/elsewhere", false),
            secret("x", "/run/agenix/x", true),
            secret("x/y", "/run/agenix/x/y", true),
            secret("d", "/etc/d", false),
            secret("e", "/etc//d", false),
        ],
    });
    let path = dir.path().join("m.json");
    fs::write(&path, manifest.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ragenix-install"))
        .args(["--check", "--skip-files"])
        .arg(&path)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for needle in [
        "age.secretsDir: `/run/agenix/` is not a normalised path (a trailing `/`)",
        "age.secretsMountPoint: `/run//agenix.d` is not a normalised path (an empty component `//`)",
        "age.secrets.\"b\".path: `/run/agenix/a` is inside, or contains, age.secretsDir",
        "age.secrets.\"c\".path: `/run/agenix/elsewhere` is inside, or contains, age.secretsDir",
        "age.secrets.\"x\" and age.secrets.\"x/y\": `x` cannot be both a file and the directory holding `x/y`",
        "age.secrets.\"d\".path and age.secrets.\"e\".path both install to `/etc/d`",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

ns_test!(
    the_chown_phase_leaves_alone_files_the_install_phase_did_not_write,
    |env| {
        // An entry the install phase never saw (another manifest) points at an existing file.
        let stranger = env.root.join("etc/stranger");
        fs::create_dir_all(stranger.parent().unwrap()).unwrap();
        fs::write(&stranger, b"not a secret").unwrap();
        fs::set_permissions(&stranger, fs::Permissions::from_mode(0o600)).unwrap();
        let good = env.encrypt("good", b"good");
        env.install_with(
            &env.manifest(json!([env.secret("good", &good)])),
            &["--phase", "install"],
        );
        let mut token = with_token(env, &stranger, false, "4321");
        token["secrets"][0] = env.secret("good", &good);
        let out = env.install_with(&token, &["--phase", "chown"]);
        assert_only_token_failed(&out, "was not written by the install phase: not chowned");
        assert_eq!(meta(&stranger), (0o600, 0, 0));
    }
);

ns_test!(
    a_plain_directory_planted_at_secrets_dir_is_not_taken_for_the_previous_generation,
    |env| {
        // `age.secretsDir` below a directory a user owns (`/var/lib/app/secrets` with
        // `/var/lib/app` the service's): the user replaces the link with a plain directory,
        // as an older setup would have left, holding a hard link to a root file (a 0666 one,
        // which `protected_hardlinks` lets them link). A failing secret must not make root
        // "keep" that file by giving it the declared mode and owner.
        if !require_program("attacks", "setpriv") {
            return;
        }
        let home = alice_home(env);
        fs::create_dir("/run/victim").unwrap();
        let victim = Path::new("/run/victim/shared");
        fs::write(victim, b"ORIGINAL").unwrap();
        fs::set_permissions(victim, fs::Permissions::from_mode(0o666)).unwrap();
        as_nobody(&format!(
            "mkdir {h}/agenix && ln {v} {h}/agenix/token",
            h = home.display(),
            v = victim.display()
        ));
        let other = super::ssh_keygen(&env.root.join("other_key"));
        let token = env.encrypt_to("token", b"TOKEN", &other);
        let secrets_dir = home.join("agenix");
        let manifest = json!({
            "version": 1,
            "mode": "system",
            "secretsDir": secrets_dir,
            "secretsMountPoint": "/run/agenix.d",
            "identityPaths": [env.key],
            "secrets": [{
                "name": "token", "file": token, "path": secrets_dir.join("token"),
                "mode": "0400", "owner": "65534", "group": "65534",
            }],
        });
        let out = env.install_with(&manifest, &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("error: secret `token`"), "{err}");
        assert_eq!(fs::read(victim).unwrap(), b"ORIGINAL");
        assert_eq!(meta(victim), (0o666, 0, 0), "the victim was given away");
    }
);

/// Mounts `source` on `target` with bindfs, every entry shown as root's and not writable by
/// group or others: what a user's own FUSE filesystem may claim (with `user_allow_other`,
/// root sees it). Unmounted on drop, which ends the bindfs process.
struct LyingMount(PathBuf);

impl LyingMount {
    fn new(source: &Path, target: &Path) -> LyingMount {
        let status = Command::new("bindfs")
            .args(["--force-user=root", "--force-group=root", "--perms=go-w"])
            .arg(source)
            .arg(target)
            .status()
            .unwrap();
        assert!(status.success(), "bindfs failed");
        LyingMount(target.to_path_buf())
    }
}

impl Drop for LyingMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

ns_test!(
    a_fuse_filesystem_cannot_vouch_for_its_own_symlinks_or_see_the_bytes,
    |env| {
        // A user mounts a FUSE filesystem of their own on their home (a root-owned parent):
        // it reports its directories and symlinks as root's, 0755. Its claims are not
        // evidence: a symlink in it is refused, and no secret is written through it.
        if !require_program("attacks", "setpriv") || !require_program("attacks", "bindfs") {
            return;
        }
        let home = alice_home(env);
        let real = PathBuf::from("/run/alice-real");
        fs::create_dir(&real).unwrap();
        rustix::fs::chown(
            &real,
            Some(rustix::fs::Uid::from_raw(NOBODY)),
            Some(rustix::fs::Gid::from_raw(NOBODY)),
        )
        .unwrap();
        let victim = Victim::new(env, "target");
        as_nobody(&format!(
            "ln -s {v} {r}/app && mkdir {r}/conf",
            v = victim.dir.display(),
            r = real.display()
        ));
        let _mount = LyingMount::new(&real, &home);
        assert_eq!(
            meta(&home.join("conf")).1,
            0,
            "bindfs does not lie as expected"
        );

        let manifest = with_token(env, &home.join("app/target"), false, "65534");
        let out = env.install_with(&manifest, &[]);
        assert_only_token_failed(
            &out,
            &format!(
                "`{}` is a symlink below `{}`, which is on a FUSE filesystem",
                home.join("app").display(),
                home.display()
            ),
        );
        victim.assert_untouched();

        let manifest = with_token(env, &home.join("conf/target"), false, "0");
        let out = env.install_with(&manifest, &[]);
        assert_only_token_failed(&out, "is on a FUSE filesystem");
        assert!(!real.join("conf/target").exists());
        assert_eq!(fs::read(env.secrets_dir.join("good")).unwrap(), b"good");
    }
);
