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

// mimalloc's own call (its `extended` API, which the crate leaves out).
extern "C" {
    fn mi_collect(force: bool);
}

/// Gives memory the allocator keeps for reuse back to the system. An
/// import's threads free on the order of 100 MB that mimalloc would keep
/// for a while; `flowc run --contacts` runs the campaign after it, so that
/// memory would stay in the run's peak.
pub fn give_back_memory() {
    // SAFETY: `mi_collect` takes a plain flag and is safe to call at any
    // time from any thread; it only walks the allocator's own structures.
    unsafe { mi_collect(true) }
}

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
