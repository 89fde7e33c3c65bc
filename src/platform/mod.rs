//! Everything that differs between Linux and macOS, and nothing else: how staged files are
//! made durable ([`flush`]), where a private plaintext directory goes ([`plaintext`]), the
//! installer's handles on inodes ([`fd`]) and its in-memory secrets filesystem ([`secrets_fs`]: a ramfs on Linux, an HFS RAM disk
//! made with `hdiutil` on macOS). Each choice is a value picked at run time, so the tests on
//! Linux exercise the macOS logic too; only the `sys` shims below are chosen by `cfg`, and
//! they are a few lines each.

pub mod fd;
pub mod flush;
pub mod plaintext;
pub mod ramdisk;
pub mod secrets_fs;

#[cfg(target_os = "linux")]
#[path = "linux.rs"]
mod sys;
#[cfg(target_os = "macos")]
#[path = "macos.rs"]
mod sys;
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
compile_error!("ragenix supports Linux and macOS; add a src/platform shim for this system");

/// The operating systems whose conventions ragenix follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Os {
    Linux,
    MacOs,
}

impl Os {
    /// The system this binary was built for.
    pub const CURRENT: Os = sys::OS;
}
