//! ragenix: an agenix-compatible secret manager.
//!
//! Rules (`secrets.nix`) are read by our own Nix evaluator in [`rules`]; secrets are age files
//! handled through the `age` crate ([`keys`], [`age_io`]), replaced on disk by [`atomic`];
//! [`structured`] picks one value out of a decrypted JSON, YAML, dotenv or INI document.
//! [`cli`] turns the command line into an [`action::Action`] and wires it to [`edit`],
//! [`rekey`], [`check`], [`generate`], [`schema`] and [`manual`]; [`lock`] keeps writers one at
//! a time and [`output`] owns stdout.

pub mod action;
pub mod age_io;
pub mod atomic;
pub mod check;
pub mod cli;
pub mod edit;
pub mod error;
pub mod generate;
pub mod install;
pub mod keys;
pub mod lock;
pub mod manual;
pub mod output;
pub mod platform;
pub mod progress;
pub mod prompt;
pub mod rekey;
pub mod rules;
pub mod schema;
pub mod signals;
pub mod structured;
