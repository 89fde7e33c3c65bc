//! User-facing errors: a message plus an optional hint line, rendered once by `cli::main`.
//!
//! Everything else travels as `anyhow::Error` with lowercase context; a `UserError` anywhere in
//! the chain contributes its hint.

use std::fmt;

/// A mistake the user can fix, with a suggestion how.
#[derive(Debug)]
pub struct UserError {
    pub message: String,
    pub hint: Option<String>,
    pub kind: Kind,
}

/// What a caller may do about a [`UserError`] besides printing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only printing it.
    Other,
    /// No identity can decrypt a file: none was found, none matched, or the matching one could
    /// not be unlocked. The file itself may be fine; a caller that only wanted to compare
    /// against the old content (`-e` from stdin) can go on without it.
    NoIdentity,
}

impl UserError {
    pub fn new(message: impl Into<String>) -> Self {
        UserError {
            message: message.into(),
            hint: None,
            kind: Kind::Other,
        }
    }

    pub fn with_hint(message: impl Into<String>, hint: impl Into<String>) -> Self {
        UserError {
            message: message.into(),
            hint: Some(hint.into()),
            kind: Kind::Other,
        }
    }

    pub fn kind(mut self, kind: Kind) -> Self {
        self.kind = kind;
        self
    }
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UserError {}

/// The first hint found in an error chain.
pub fn hint(err: &anyhow::Error) -> Option<&str> {
    err.chain()
        .find_map(|e| e.downcast_ref::<UserError>())
        .and_then(|u| u.hint.as_deref())
}

/// Whether `err` says that no identity can decrypt a file (see [`Kind::NoIdentity`]).
pub fn is_no_identity(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|e| e.downcast_ref::<UserError>())
        .any(|u| u.kind == Kind::NoIdentity)
}
