//! The store path Nix gives a path value when it copies it into the store (a path in JSON
//! output or interpolated into a string): `/nix/store/<hash>-<name>`, computed from the file's
//! NAR serialisation exactly as Nix does, without writing anything. The walk goes from open
//! directory to entry (`*at` calls, never following a symlink), so a tree handed over by the
//! sandbox cannot be redirected out of it while it is read.

use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use sha2::{Digest, Sha256};

const STORE_DIR: &str = "/nix/store";
const BASE32: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// The store path of entry `entry` of the open directory `dir`, copied with `builtins.path`'s
/// defaults (recursive, sha256) under `name`. A symlink is stored as a link, as Nix does.
pub(crate) fn store_path(dir: impl AsFd, entry: &OsStr, name: &str) -> io::Result<String> {
    let mut nar = Sha256::new();
    put_str(&mut nar, b"nix-archive-1");
    serialise(&mut nar, dir.as_fd(), entry)?;
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

fn open_at(dir: std::os::fd::BorrowedFd<'_>, entry: &OsStr, extra: OFlags) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | extra;
    Ok(rustix::fs::openat(dir, entry, flags, Mode::empty())?)
}

fn serialise(h: &mut Sha256, dir: std::os::fd::BorrowedFd<'_>, entry: &OsStr) -> io::Result<()> {
    let st = rustix::fs::statat(dir, entry, AtFlags::SYMLINK_NOFOLLOW)?;
    put_str(h, b"(");
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Symlink => {
            put_str(h, b"type");
            put_str(h, b"symlink");
            put_str(h, b"target");
            let target = rustix::fs::readlinkat(dir, entry, Vec::new())?;
            put_str(h, target.as_bytes());
        }
        FileType::Directory => {
            put_str(h, b"type");
            put_str(h, b"directory");
            let fd = open_at(dir, entry, OFlags::DIRECTORY)?;
            let mut names: Vec<Vec<u8>> = Vec::new();
            for e in rustix::fs::Dir::read_from(&fd)? {
                let name = e?.file_name().to_bytes().to_vec();
                if name != b"." && name != b".." {
                    names.push(name);
                }
            }
            names.sort();
            for name in names {
                put_str(h, b"entry");
                put_str(h, b"(");
                put_str(h, b"name");
                put_str(h, &name);
                put_str(h, b"node");
                serialise(h, fd.as_fd(), OsStr::from_bytes(&name))?;
                put_str(h, b")");
            }
        }
        FileType::RegularFile => {
            put_str(h, b"type");
            put_str(h, b"regular");
            if st.st_mode & 0o100 != 0 {
                put_str(h, b"executable");
                put_str(h, b"");
            }
            let mut contents = Vec::new();
            std::fs::File::from(open_at(dir, entry, OFlags::empty())?)
                .read_to_end(&mut contents)?;
            put_str(h, b"contents");
            put_str(h, &contents);
        }
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file, directory or symlink",
            ))
        }
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
        std::fs::write(dir.path().join("foo"), "hi\n").unwrap();
        let fd = std::fs::File::open(dir.path()).unwrap();
        assert_eq!(
            store_path(&fd, OsStr::new("foo"), "foo").unwrap(),
            "/nix/store/6mlv4zpsh5r2q4nb94lpkma95g744zvi-foo"
        );
    }
}
