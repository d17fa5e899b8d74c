//! The `flowc` binary: a thin clap front over the library.
//!
//! Exit codes: 0 ok, 1 findings (errors, or warnings under --deny-warnings),
//! 2 could not run (bad arguments, unreadable input), 3 a run ended paused,
//! 141 standard output closed early (see `cli::out`).

mod cli;

// Contacts imports and the service allocate on some threads what others
// free, millions of small values a run; glibc's malloc spent about a third
// of an import's CPU on it (perf), mimalloc a small part.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
