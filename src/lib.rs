//! ragenix: an agenix-compatible secret manager.
//!
//! Rules (`secrets.nix`) are read by our own Nix evaluator in [`rules`]; secrets are age files
//! handled through the `age` crate ([`keys`], [`age_io`]), replaced on disk by [`atomic`].
//! [`cli`] wires the command line to [`edit`] and [`rekey`].

pub mod age_io;
pub mod atomic;
pub mod check;
pub mod cli;
pub mod edit;
pub mod error;
pub mod generate;
pub mod install;
pub mod keys;
pub mod progress;
pub mod rekey;
pub mod rules;
pub mod schema;
pub mod signals;
