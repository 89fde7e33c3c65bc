//! ragenix: an agenix-compatible secret manager.
//!
//! Rules (`secrets.nix`) are read by our own Nix evaluator in [`rules`]; secrets are age files
//! handled through the `age` crate ([`keys`], [`age_io`]), replaced on disk by [`atomic`].
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
pub mod rekey;
pub mod rules;
pub mod schema;
pub mod signals;

// Evaluating a rules file makes hundreds of thousands of small, short-lived allocations (rnix's
// syntax tree, thunks, strings); glibc's malloc spent about a third of the time on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
