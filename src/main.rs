use std::process::ExitCode;

fn main() -> ExitCode {
    ragenix::cli::main()
}
