//! ragenix: an agenix-compatible secret manager.
//!
//! Rules (`secrets.nix`) are read by our own Nix evaluator in [`rules`]; secrets are age files
//! handled through the `age` crate. [`cli`] wires the command line to these pieces.

pub mod check;
pub mod cli;
pub mod generate;
pub mod rules;
pub mod schema;
