//! `ragenix-install [--check] [--phase PHASE] MANIFEST`: the installer run by the NixOS and
//! home-manager modules. Argument parsing and exit codes only; the work is in
//! `ragenix::install`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use ragenix::install::{self, Phase};

/// Install the age secrets described by a ragenix manifest (written by the NixOS or
/// home-manager module).
#[derive(Parser)]
#[command(name = "ragenix-install", version)]
struct Args {
    /// Only validate the manifest and the age headers of its files; decrypt nothing.
    #[arg(long)]
    check: bool,
    /// With --check: do not open the .age files (for files outside the Nix store).
    #[arg(long, requires = "check")]
    skip_files: bool,
    /// The part of the work to do (NixOS activation runs mount, install, chown in turn).
    #[arg(long, value_enum, default_value = "all", conflicts_with = "check")]
    phase: PhaseArg,
    /// systemctl program to call for restartUnits/reloadUnits (default: `systemctl`, only
    /// when systemd is running).
    #[arg(long, value_name = "PROGRAM", hide = true)]
    systemctl: Option<PathBuf>,
    /// The manifest JSON.
    manifest: PathBuf,
}

/// The command-line spelling of [`Phase`] (the library links no argument parser for it).
#[derive(Clone, Copy, ValueEnum)]
enum PhaseArg {
    /// Everything in one run (the systemd services, home-manager).
    All,
    /// Mount the ramfs on secretsMountPoint (agenix's `agenixNewGeneration`).
    Mount,
    /// Decrypt into a new generation and swap it in, owners as far as they exist yet.
    Install,
    /// Give every secret its owner and group, then hand changed units to systemd.
    Chown,
}

impl From<PhaseArg> for Phase {
    fn from(arg: PhaseArg) -> Phase {
        match arg {
            PhaseArg::All => Phase::All,
            PhaseArg::Mount => Phase::Mount,
            PhaseArg::Install => Phase::Install,
            PhaseArg::Chown => Phase::Chown,
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let opts = install::Options {
        manifest: args.manifest,
        check: args.check,
        skip_files: args.skip_files,
        phase: args.phase.into(),
        systemctl: args.systemctl,
    };
    match install::run(&opts) {
        Ok(outcome) if outcome.failures.is_empty() => ExitCode::SUCCESS,
        Ok(outcome) => {
            for failure in &outcome.failures {
                eprintln!("ragenix-install: error: {failure}");
            }
            eprintln!("ragenix-install: {} error(s)", outcome.failures.len());
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("ragenix-install: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
