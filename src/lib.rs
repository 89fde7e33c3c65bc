//! ragenix: an agenix-compatible secret manager.
//!
//! Rules (`secrets.nix`) are read by our own Nix evaluator in [`rules`]; secrets are age files
//! handled through the `age` crate ([`keys`], [`age_io`]), replaced on disk by [`atomic`];
//! [`structured`] picks one value out of a decrypted JSON, YAML, dotenv or INI document.
//! [`cli`] wires the command line to [`edit`], [`rekey`], [`check`], [`generate`], [`schema`]
//! and [`manual`].

pub mod age_io;
pub mod atomic;
pub mod check;
pub mod cli;
pub mod edit;
pub mod error;
pub mod generate;
pub mod install;
pub mod keys;
pub mod manual;
pub mod progress;
pub mod prompt;
pub mod rekey;
pub mod rules;
pub mod schema;
pub mod signals;
pub mod structured;
