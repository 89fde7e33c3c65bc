//! Command line: agenix's flags, parsed with clap, dispatched to the modules that do the work.

use std::process::ExitCode;

pub fn main() -> ExitCode {
    ExitCode::SUCCESS
}
