//! What evaluating a rules file may read: the policy, decided once before evaluation starts (as
//! Nix's restricted evaluation is), and the only way the evaluator touches the file system or
//! the environment. It owns finding the rules root and resolving paths beneath it; it does not
//! own error rendering (the evaluator locates the errors it returns).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::lower::canon_path;
use crate::platform;

/// Directories whose presence marks the root of a repository.
const VCS_MARKERS: &[&str] = &[".git", ".hg", ".jj", ".sl"];

/// Symlinks followed while resolving one path, as Linux's `MAXSYMLINKS`.
const MAX_SYMLINKS: u32 = 40;

/// The environment variable that lifts confinement like `--impure` does.
pub(crate) const IMPURE_ENV: &str = "RAGENIX_IMPURE";

/// The read policy of one evaluation.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// `None`: impure, everything the user can read is readable.
    root: Option<Root>,
}

/// The rules root, as reached from the rules file's path (`lexical`, which path values are
/// built from) and with every symlink resolved (`real`).
#[derive(Debug, Clone)]
struct Root {
    lexical: PathBuf,
    real: PathBuf,
    /// The root directory, opened once: files are opened beneath it.
    fd: Arc<OwnedFd>,
}

/// Why a path could not be used.
#[derive(Debug)]
pub(crate) enum Denied {
    /// The path leads outside the rules root (directly, through `..` or through a symlink).
    Outside,
    /// Inside the root, but the file system said no (missing, permission, loop, …).
    Io(io::Error),
}

impl From<io::Error> for Denied {
    fn from(e: io::Error) -> Self {
        Denied::Io(e)
    }
}

/// See [`Sandbox::resolver`].
pub(crate) struct Resolver<'s> {
    sandbox: &'s Sandbox,
    /// Lexical directory -> the directory, opened; or whether it leads outside. Keyed by the
    /// path's bytes: the paths are lexically canonical, so equal bytes are equal paths, and
    /// hashing bytes is much cheaper than hashing a `Path` component by component. (SipHash:
    /// the names come from the rules file, which may be crafted to collide.)
    dirs: HashMap<OsString, Result<Dir, bool>>,
}

/// A directory names are looked up in.
struct Dir {
    fd: OwnedFd,
    lookups: u32,
    /// Its entries, read once many names have been looked up in it: one listing costs less
    /// than thousands of `fstatat` calls, most of them for files that do not exist yet.
    listing: Option<Listing>,
}

/// A directory's entries: name -> whether it may be a symlink (a symlink, or a kind the
/// listing did not tell).
#[derive(Default)]
struct Listing {
    names: HashMap<OsString, bool>,
    any_link: bool,
}

/// What a listing says about a name.
#[derive(Debug, PartialEq)]
enum Listed {
    /// Not a symlink, whatever the file system takes the name to mean.
    NoLink,
    /// The kernel has to be asked.
    Ask,
}

impl Listing {
    /// Only an answer that holds on every file system: a name absent from the listing may
    /// still find an entry where names are matched without regard to case or Unicode form
    /// (macOS, casefolded ext4), so an absent name is only settled when the directory holds
    /// no symlink at all.
    fn lookup(&self, name: &OsStr) -> Listed {
        match self.names.get(name) {
            Some(false) => Listed::NoLink,
            Some(true) => Listed::Ask,
            None if self.any_link => Listed::Ask,
            None => Listed::NoLink,
        }
    }

    fn insert(&mut self, name: OsString, maybe_link: bool) {
        self.any_link |= maybe_link;
        self.names.insert(name, maybe_link);
    }
}

/// Lookups in one directory after which it is listed.
const LIST_AFTER: u32 = 32;

impl Dir {
    /// Whether the final component `name` is a symlink that needs the full walk; an error
    /// (missing, permission) means it is not one.
    fn may_be_symlink(&mut self, name: &OsStr) -> bool {
        self.lookups = self.lookups.saturating_add(1);
        if self.lookups == LIST_AFTER + 1 {
            // Listed once; a directory that may be searched but not read keeps being asked
            // name by name.
            self.listing = self.list().ok();
        }
        if let Some(Listed::NoLink) = self.listing.as_ref().map(|l| l.lookup(name)) {
            return false;
        }
        rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink)
    }

    fn list(&self) -> io::Result<Listing> {
        let fd = rustix::fs::openat(
            &self.fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut listing = Listing::default();
        for entry in rustix::fs::Dir::read_from(&fd)? {
            let entry = entry?;
            let maybe_link = matches!(entry.file_type(), FileType::Symlink | FileType::Unknown);
            listing.insert(
                OsStr::from_bytes(entry.file_name().to_bytes()).to_owned(),
                maybe_link,
            );
        }
        Ok(listing)
    }
}

impl Resolver<'_> {
    /// Whether [`Sandbox::resolve`] would find that `path` leads outside the root.
    pub(crate) fn leads_outside(&mut self, path: &Path) -> bool {
        let Some(root) = &self.sandbox.root else {
            return false;
        };
        let walk = |path| matches!(self.sandbox.resolve(path), Err(Denied::Outside));
        // The root's own directory is outside it: the full walk answers for the root. Any
        // other path has its directory resolved (outside, for a path outside the root).
        let is_root = path == root.lexical || path == root.real;
        let (false, Some(dir), Some(name)) = (is_root, path.parent(), path.file_name()) else {
            return walk(path);
        };
        let key = dir.as_os_str();
        if !self.dirs.contains_key(key) {
            let opened = match self.sandbox.resolve(dir) {
                Err(Denied::Outside) => Err(true),
                Err(Denied::Io(_)) => Err(false),
                Ok(real) => rustix::fs::open(
                    &real,
                    platform::fd::DIR_SEARCH_FLAGS | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map(|fd| Dir {
                    fd,
                    lookups: 0,
                    listing: None,
                })
                .map_err(|_| false),
            };
            self.dirs.insert(key.to_owned(), opened);
        }
        match self.dirs.get_mut(key).expect("inserted above") {
            Err(outside) => *outside,
            Ok(dir) => dir.may_be_symlink(name) && walk(path),
        }
    }
}

impl Sandbox {
    /// Confined to the rules root of `file` (an absolute, lexically canonical path): the nearest
    /// ancestor directory holding `.git`, `.hg`, `.jj` or `.sl`, else the file's directory.
    pub fn confined_to_rules_of(file: &Path) -> io::Result<Sandbox> {
        let dir = file.parent().unwrap_or(Path::new("/"));
        let lexical = dir
            .ancestors()
            .find(|d| {
                VCS_MARKERS
                    .iter()
                    .any(|m| d.join(m).symlink_metadata().is_ok())
            })
            .unwrap_or(dir)
            .to_path_buf();
        Sandbox::confined_to(&lexical)
    }

    /// Confined to `dir` and what is beneath it.
    pub fn confined_to(dir: &Path) -> io::Result<Sandbox> {
        let lexical = canon_path(&dir.to_string_lossy());
        let real = lexical.canonicalize()?;
        let fd = rustix::fs::open(
            &real,
            platform::fd::DIR_SEARCH_FLAGS | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Sandbox {
            root: Some(Root {
                lexical,
                real,
                fd: Arc::new(fd),
            }),
        })
    }

    /// No confinement: `--impure`.
    pub fn impure() -> Sandbox {
        Sandbox { root: None }
    }

    pub fn is_confined(&self) -> bool {
        self.root.is_some()
    }

    /// The rules root as reached from the rules file and with symlinks resolved (the same path
    /// twice when no symlink is involved); `None` when impure.
    pub fn roots(&self) -> Option<(&Path, &Path)> {
        self.root.as_ref().map(|r| (&*r.lexical, &*r.real))
    }

    /// Where `path` (absolute, lexically canonical) really is, every symlink resolved, provided
    /// that every step of the way stays beneath the root. Nothing outside the root is ever
    /// looked at: a symlink's target is checked before it is followed.
    pub(crate) fn resolve(&self, path: &Path) -> Result<PathBuf, Denied> {
        let Some(root) = &self.root else {
            return Ok(path.to_path_buf());
        };
        let rel = root.beneath(path).ok_or(Denied::Outside)?;
        let mut todo: Vec<PathBuf> = rel
            .components()
            .rev()
            .map(|c| PathBuf::from(c.as_os_str()))
            .collect();
        let mut cur = root.real.clone();
        let mut links = 0;
        while let Some(part) = todo.pop() {
            if part == Path::new("..") {
                if cur == root.real {
                    return Err(Denied::Outside);
                }
                cur.pop();
                continue;
            }
            let next = cur.join(&part);
            let meta = next.symlink_metadata()?;
            if !meta.file_type().is_symlink() {
                cur = next;
                continue;
            }
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(Denied::Io(io::Error::other(
                    "too many levels of symbolic links",
                )));
            }
            let target = next.read_link()?;
            let rest: Vec<PathBuf> = if target.is_absolute() {
                let target = canon_path(&target.to_string_lossy());
                cur = root.real.clone();
                root.beneath(&target)
                    .ok_or(Denied::Outside)?
                    .components()
                    .map(|c| PathBuf::from(c.as_os_str()))
                    .collect()
            } else {
                target
                    .components()
                    .filter(|c| !matches!(c, Component::CurDir))
                    .map(|c| PathBuf::from(c.as_os_str()))
                    .collect()
            };
            todo.extend(rest.into_iter().rev());
        }
        Ok(cur)
    }

    /// A resolver for many paths that share directories (every secret of a large rules file
    /// sits in a handful of them): each directory is resolved once, then each name is looked
    /// up in it without following, with the full walk only when the name is itself a symlink.
    pub(crate) fn resolver(&self) -> Resolver<'_> {
        Resolver {
            sandbox: self,
            dirs: HashMap::new(),
        }
    }

    /// Opens what [`Self::resolve`] returned. Confined, the open is relative to the root and
    /// refuses every symlink, so one planted between the check and the open (the resolved
    /// path has none) cannot redirect it.
    fn open(&self, path: &Path, flags: OFlags) -> Result<OwnedFd, Denied> {
        self.open_resolved(&self.resolve(path)?, flags)
    }

    fn open_resolved(&self, real: &Path, flags: OFlags) -> Result<OwnedFd, Denied> {
        let flags = flags | OFlags::RDONLY | OFlags::CLOEXEC;
        let Some(root) = &self.root else {
            return Ok(rustix::fs::open(real, flags, Mode::empty()).map_err(io::Error::from)?);
        };
        let rel = real.strip_prefix(&root.real).unwrap_or(Path::new(""));
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        match platform::fd::open_beneath(root.fd.as_fd(), rel, flags) {
            Ok(fd) => Ok(fd),
            // A symlink appeared, or the path left the root, after the check.
            Err(e)
                if e.raw_os_error() == Some(Errno::LOOP.raw_os_error())
                    || e.raw_os_error() == Some(Errno::XDEV.raw_os_error()) =>
            {
                Err(Denied::Outside)
            }
            Err(e) => Err(Denied::Io(e)),
        }
    }

    /// The contents of a file.
    pub(crate) fn read(&self, path: &Path) -> Result<Vec<u8>, Denied> {
        let mut bytes = Vec::new();
        std::fs::File::from(self.open(path, OFlags::empty())?).read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// A directory's entries: name and kind as Nix's `readDir` names them.
    pub(crate) fn read_dir(&self, path: &Path) -> Result<Vec<(String, &'static str)>, Denied> {
        let fd = self.open(path, OFlags::DIRECTORY)?;
        let mut out = Vec::new();
        for entry in rustix::fs::Dir::read_from(&fd).map_err(io::Error::from)? {
            let entry = entry.map_err(io::Error::from)?;
            let name = entry.file_name();
            if name.to_bytes() == b"." || name.to_bytes() == b".." {
                continue;
            }
            let kind = match entry.file_type() {
                FileType::Unknown => rustix::fs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW)
                    .map(|st| FileType::from_raw_mode(st.st_mode))
                    .unwrap_or(FileType::Unknown),
                known => known,
            };
            let kind = match kind {
                FileType::Directory => "directory",
                FileType::Symlink => "symlink",
                FileType::RegularFile => "regular",
                _ => "unknown",
            };
            out.push((name.to_string_lossy().into_owned(), kind));
        }
        Ok(out)
    }

    /// Whether `path` exists; a path outside the root is an error, not `false`, so that
    /// `pathExists` cannot be used to probe the rest of the file system.
    pub(crate) fn exists(&self, path: &Path) -> Result<bool, Denied> {
        match self.resolve(path) {
            Ok(_) => Ok(true),
            Err(Denied::Io(_)) => Ok(false),
            Err(Denied::Outside) => Err(Denied::Outside),
        }
    }

    /// Whether `path` is a directory (for `import` of a directory's `default.nix`).
    pub(crate) fn is_dir(&self, path: &Path) -> Result<bool, Denied> {
        match self.resolve(path) {
            Ok(real) => Ok(real.is_dir()),
            Err(Denied::Io(_)) => Ok(false),
            Err(Denied::Outside) => Err(Denied::Outside),
        }
    }

    /// The store path Nix would copy `path` to. Its directory is resolved like any other
    /// path; the entry itself, and everything beneath it, is read without following symlinks
    /// (a symlink is stored as a link, as Nix does), so nothing outside the root is read.
    pub(crate) fn store_path(&self, path: &Path) -> Result<String, Denied> {
        // The root's own parent is outside it, so the root is read as its own `.`.
        let is_root = self
            .root
            .as_ref()
            .is_some_and(|r| path == r.lexical || path == r.real);
        let (dir, entry) = match (path.parent(), path.file_name()) {
            (Some(dir), Some(entry)) if !is_root => (dir, entry),
            _ => (path, std::ffi::OsStr::new(".")),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let fd = self.open(dir, OFlags::DIRECTORY)?;
        Ok(super::store::store_path(&fd, entry, &name)?)
    }

    /// `builtins.getEnv`: empty when confined, as in Nix's pure evaluation.
    pub(crate) fn env(&self, name: &str) -> String {
        if self.root.is_none() {
            std::env::var(name).unwrap_or_default()
        } else {
            String::new()
        }
    }

    /// The message for a path refused by the policy.
    pub(crate) fn outside_message(&self, what: &str, path: &Path) -> String {
        let root = self
            .root
            .as_ref()
            .map_or_else(String::new, |r| r.lexical.display().to_string());
        format!(
            "{what} '{}' is forbidden outside the rules root {root}; pass --impure or set \
             {IMPURE_ENV}=1 to allow it",
            path.display()
        )
    }
}

impl Root {
    /// `path` relative to the root, or `None` when it is not beneath it.
    fn beneath<'p>(&self, path: &'p Path) -> Option<&'p Path> {
        path.strip_prefix(&self.lexical)
            .or_else(|_| path.strip_prefix(&self.real))
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn setup() -> (tempfile::TempDir, PathBuf, Sandbox) {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(base.join("repo/.git")).unwrap();
        std::fs::create_dir_all(base.join("repo/secrets")).unwrap();
        std::fs::write(base.join("repo/keys.nix"), "[ ]").unwrap();
        std::fs::write(base.join("outside"), "secret").unwrap();
        let sandbox =
            Sandbox::confined_to_rules_of(&base.join("repo/secrets/secrets.nix")).unwrap();
        (dir, base, sandbox)
    }

    #[test]
    fn the_root_is_the_nearest_ancestor_with_a_vcs_marker() {
        let (_d, base, sandbox) = setup();
        assert_eq!(sandbox.roots().unwrap().1, base.join("repo"));
        let plain = Sandbox::confined_to_rules_of(&base.join("repo/.git/x.nix")).unwrap();
        assert_eq!(plain.roots().unwrap().1, base.join("repo"));
    }

    #[test]
    fn a_git_worktree_file_and_other_vcs_markers_count() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        for (marker, is_file) in [
            (".git", true),
            (".hg", false),
            (".jj", false),
            (".sl", false),
        ] {
            let repo = base.join(format!("r{}", &marker[1..]));
            std::fs::create_dir_all(repo.join("a/b")).unwrap();
            if is_file {
                std::fs::write(repo.join(marker), "gitdir: /elsewhere\n").unwrap();
            } else {
                std::fs::create_dir(repo.join(marker)).unwrap();
            }
            let sandbox = Sandbox::confined_to_rules_of(&repo.join("a/b/secrets.nix")).unwrap();
            assert_eq!(sandbox.roots().unwrap().1, repo, "{marker}");
        }
    }

    #[test]
    fn without_a_marker_the_root_is_the_rules_files_directory() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        std::fs::create_dir(base.join("s")).unwrap();
        // No marker anywhere up to `/` is assumed for a fresh temp dir.
        if base.ancestors().any(|d| d.join(".git").exists()) {
            return;
        }
        let sandbox = Sandbox::confined_to_rules_of(&base.join("s/secrets.nix")).unwrap();
        assert_eq!(sandbox.roots().unwrap().1, base.join("s"));
    }

    #[test]
    fn paths_inside_resolve_and_paths_outside_are_refused() {
        let (_d, base, sandbox) = setup();
        assert_eq!(sandbox.read(&base.join("repo/keys.nix")).unwrap(), b"[ ]");
        assert!(matches!(
            sandbox.read(&base.join("outside")),
            Err(Denied::Outside)
        ));
        assert!(matches!(
            sandbox.exists(Path::new("/etc/passwd")),
            Err(Denied::Outside)
        ));
        assert!(!sandbox.exists(&base.join("repo/nope")).unwrap());
    }

    #[test]
    fn symlinks_leading_outside_are_refused_before_being_followed() {
        let (_d, base, sandbox) = setup();
        symlink(base.join("outside"), base.join("repo/abs")).unwrap();
        symlink("../outside", base.join("repo/rel")).unwrap();
        symlink("../../outside/nope", base.join("repo/secrets/dangling")).unwrap();
        symlink("../keys.nix", base.join("repo/secrets/inside")).unwrap();
        for link in ["repo/abs", "repo/rel", "repo/secrets/dangling"] {
            assert!(
                matches!(sandbox.resolve(&base.join(link)), Err(Denied::Outside)),
                "{link}"
            );
        }
        assert_eq!(
            sandbox.resolve(&base.join("repo/secrets/inside")).unwrap(),
            base.join("repo/keys.nix")
        );
    }

    #[test]
    fn the_resolver_finds_outside_exactly_the_paths_resolve_finds_outside() {
        let (_d, base, sandbox) = setup();
        std::fs::create_dir(base.join("repo/sub")).unwrap();
        std::fs::write(base.join("repo/sub/file"), "").unwrap();
        symlink("../../outside", base.join("repo/sub/out")).unwrap();
        symlink("file", base.join("repo/sub/in")).unwrap();
        symlink("sub", base.join("repo/linked")).unwrap();
        symlink(base.join("outside"), base.join("repo/away")).unwrap();
        symlink("x", base.join("repo/sub/loop")).unwrap();
        symlink("loop", base.join("repo/sub/x")).unwrap();
        std::fs::create_dir(base.join("repo/plain")).unwrap();
        std::fs::write(base.join("repo/plain/file"), "").unwrap();
        let paths = [
            "repo/sub/file",
            "repo/sub/missing",
            "repo/sub/out",
            "repo/sub/in",
            "repo/sub/loop",
            "repo/linked/file",
            "repo/linked/out",
            "repo/away/file",
            "repo/nodir/file",
            "repo/sub/file/under",
            "repo/plain/file",
            "repo/plain/missing",
            "repo/keys.nix",
            "outside",
            "repo",
        ];
        let mut resolver = sandbox.resolver();
        let mut outside = 0;
        // Again and again: later rounds are answered from the directory cache, then from the
        // directories' listings.
        for _ in 0..=LIST_AFTER {
            for path in paths {
                let path = base.join(path);
                let expected = matches!(sandbox.resolve(&path), Err(Denied::Outside));
                assert_eq!(
                    resolver.leads_outside(&path),
                    expected,
                    "{}",
                    path.display()
                );
                outside += usize::from(expected);
            }
        }
        assert_eq!(
            outside,
            4 * (LIST_AFTER as usize + 1),
            "the fixture has 4 ways out"
        );
    }

    #[test]
    fn a_listing_settles_an_absent_name_only_where_no_entry_is_a_symlink() {
        let mut plain = Listing::default();
        plain.insert("a.age".into(), false);
        assert_eq!(plain.lookup(OsStr::new("a.age")), Listed::NoLink);
        assert_eq!(plain.lookup(OsStr::new("A.age")), Listed::NoLink);
        let mut linked = Listing::default();
        linked.insert("a.age".into(), false);
        linked.insert("b.age".into(), true);
        assert_eq!(linked.lookup(OsStr::new("a.age")), Listed::NoLink);
        assert_eq!(linked.lookup(OsStr::new("b.age")), Listed::Ask);
        // Where names are matched without regard to case, "B.age" is the symlink "b.age".
        assert_eq!(linked.lookup(OsStr::new("B.age")), Listed::Ask);
    }

    #[test]
    fn a_symlink_planted_after_the_check_is_not_followed() {
        let (_d, base, sandbox) = setup();
        std::fs::create_dir(base.join("repo/d")).unwrap();
        std::fs::write(base.join("repo/d/secret"), "inside").unwrap();
        std::fs::write(base.join("secret"), "outside").unwrap();
        let real = sandbox.resolve(&base.join("repo/d/secret")).unwrap();
        std::fs::remove_dir_all(base.join("repo/d")).unwrap();
        symlink(&base, base.join("repo/d")).unwrap();
        assert!(matches!(
            sandbox.open_resolved(&real, OFlags::empty()),
            Err(Denied::Outside)
        ));
    }

    #[test]
    fn a_symlink_loop_is_an_error_not_a_hang() {
        let (_d, base, sandbox) = setup();
        symlink("b", base.join("repo/a")).unwrap();
        symlink("a", base.join("repo/b")).unwrap();
        assert!(matches!(
            sandbox.resolve(&base.join("repo/a")),
            Err(Denied::Io(_))
        ));
    }

    #[test]
    fn get_env_is_empty_unless_impure() {
        let (_d, _base, sandbox) = setup();
        assert_eq!(sandbox.env("PATH"), "");
        assert_eq!(
            Sandbox::impure().env("PATH"),
            std::env::var("PATH").unwrap()
        );
    }
}
