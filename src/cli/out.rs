//! The command line's standard output and error. A reader that goes away
//! (`flowc check . | head`) ends the process quietly with exit 141, as a tool
//! killed by SIGPIPE would; `print!` would panic instead.

use std::io::{self, Write};

/// Exit code when standard output closed early: 128 + SIGPIPE.
pub const CLOSED: u8 = 141;

/// `print!` that never panics; see the module comment.
macro_rules! out {
    ($($t:tt)*) => { $crate::cli::out::text(format_args!($($t)*)) };
}

/// `println!` that never panics; see the module comment.
macro_rules! outln {
    () => { $crate::cli::out::text(format_args!("\n")) };
    ($($t:tt)*) => { $crate::cli::out::line(format_args!($($t)*)) };
}

/// `eprint!` that never panics: with standard error closed there is nobody
/// left to tell, so the text is dropped.
macro_rules! err {
    ($($t:tt)*) => { $crate::cli::out::error_text(format_args!($($t)*)) };
}

/// `eprintln!` that never panics; see `err!`.
macro_rules! errln {
    ($($t:tt)*) => { $crate::cli::out::error_text(format_args!("{}\n", format_args!($($t)*))) };
}

pub fn text(args: std::fmt::Arguments) {
    if let Err(e) = io::stdout().lock().write_fmt(args) {
        stop(&e);
    }
}

pub fn line(args: std::fmt::Arguments) {
    let mut o = io::stdout().lock();
    if let Err(e) = o.write_fmt(args).and_then(|()| o.write_all(b"\n")) {
        stop(&e);
    }
}

pub fn bytes(b: &[u8]) {
    let mut o = io::stdout().lock();
    if let Err(e) = o.write_all(b).and_then(|()| o.flush()) {
        stop(&e);
    }
}

pub fn error_text(args: std::fmt::Arguments) {
    let _ = io::stderr().lock().write_fmt(args);
}

/// Ends the process after a failed write to standard output. Nothing is
/// written to a database or a file between two prints without a transaction
/// or a rename around it, so stopping here loses no data.
fn stop(e: &io::Error) -> ! {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(i32::from(CLOSED));
    }
    error_text(format_args!("error: cannot write to standard output: {e}\n"));
    std::process::exit(2);
}
