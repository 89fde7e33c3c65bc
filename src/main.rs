use std::process::ExitCode;

// Evaluating a rules file makes hundreds of thousands of small, short-lived allocations (rnix's
// syntax tree, thunks, strings); glibc's malloc spent about a third of the time on them. Set
// here, in the program, rather than in the library, so the library imposes no allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    ragenix::cli::main()
}
