//! The store path Nix gives a path value when it copies it into the store (a path in JSON
//! output or interpolated into a string): `/nix/store/<hash>-<name>`, computed from the file's
//! NAR serialisation exactly as Nix does, without writing anything.

use std::path::Path;

use sha2::{Digest, Sha256};

const STORE_DIR: &str = "/nix/store";
const BASE32: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// The store path of `path` copied with `builtins.path`'s defaults (recursive, sha256) under
/// `name` (the base name of the path as the user wrote it, which a symlink may not share).
pub(crate) fn store_path(path: &Path, name: &str) -> std::io::Result<String> {
    let mut nar = Sha256::new();
    put_str(&mut nar, b"nix-archive-1");
    serialise(&mut nar, path)?;
    let fingerprint = format!("source:sha256:{}:{STORE_DIR}:{name}", hex(&nar.finalize()));
    let digest = Sha256::digest(fingerprint.as_bytes());
    let mut compressed = [0u8; 20];
    for (i, b) in digest.iter().enumerate() {
        compressed[i % 20] ^= b;
    }
    Ok(format!("{STORE_DIR}/{}-{name}", base32(&compressed)))
}

fn put_str(h: &mut Sha256, s: &[u8]) {
    h.update((s.len() as u64).to_le_bytes());
    h.update(s);
    let pad = (8 - s.len() % 8) % 8;
    h.update(&[0u8; 8][..pad]);
}

fn serialise(h: &mut Sha256, path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path)?;
    put_str(h, b"(");
    if meta.file_type().is_symlink() {
        put_str(h, b"type");
        put_str(h, b"symlink");
        put_str(h, b"target");
        put_str(h, std::fs::read_link(path)?.as_os_str().as_bytes());
    } else if meta.is_dir() {
        put_str(h, b"type");
        put_str(h, b"directory");
        let mut names: Vec<_> = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            put_str(h, b"entry");
            put_str(h, b"(");
            put_str(h, b"name");
            put_str(h, name.as_bytes());
            put_str(h, b"node");
            serialise(h, &path.join(&name))?;
            put_str(h, b")");
        }
    } else {
        put_str(h, b"type");
        put_str(h, b"regular");
        if meta.permissions().mode() & 0o100 != 0 {
            put_str(h, b"executable");
            put_str(h, b"");
        }
        put_str(h, b"contents");
        put_str(h, &std::fs::read(path)?);
    }
    put_str(h, b")");
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Nix's base-32: least significant bits first, its own alphabet.
fn base32(bytes: &[u8]) -> String {
    let len = (bytes.len() * 8 - 1) / 5 + 1;
    (0..len)
        .rev()
        .map(|n| {
            let b = n * 5;
            let (i, j) = (b / 8, b % 8);
            let lo = bytes[i] >> j;
            let hi = if i + 1 < bytes.len() {
                (bytes[i + 1] as u16) << (8 - j)
            } else {
                0
            };
            BASE32[((lo as u16 | hi) & 0x1f) as usize] as char
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_gets_the_store_path_nix_gives_it() {
        // `nix-instantiate --eval --json -E ./foo` with foo = "hi\n" (Nix 2.8).
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("foo");
        std::fs::write(&file, "hi\n").unwrap();
        assert_eq!(
            store_path(&file, "foo").unwrap(),
            "/nix/store/6mlv4zpsh5r2q4nb94lpkma95g744zvi-foo"
        );
    }
}
