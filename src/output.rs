//! What the commands print, written so that printing never stops or breaks the work.
//!
//! `println!` panics when standard output is a closed pipe (`ztf2zarr info s.zarr | head -1`) or
//! a full device, and `eprintln!` likewise on standard error: a panic after a commit turns a
//! finished build into exit 101, and one inside a transaction leaves it pending. So:
//! - a closed pipe on standard output ends the printing quietly, as it does for ripgrep: the
//!   reader has what it wanted, and the command's exit status stays what its work decides;
//! - any other failure to write standard output (`/dev/full`, a full disk) is remembered, printing
//!   stops, and the process exits 2 naming it once the command's work is done
//!   ([`stdout_failure`]);
//! - standard error is written as well as it can be: a message that cannot be shown has no one
//!   else to go to.
//!
//! Use [`crate::out!`] / [`crate::outln!`] for standard output and [`crate::errln!`] for standard
//! error.

use std::fmt::Arguments;
use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Standard output can take no more (closed, or failed once).
static STDOUT_DONE: AtomicBool = AtomicBool::new(false);
/// The first failure to write standard output that was not its reader going away.
static STDOUT_FAILURE: Mutex<Option<String>> = Mutex::new(None);

/// Write to standard output, flushed at once so that a failure shows here and not at exit,
/// where the standard library would drop it silently.
pub fn out(text: Arguments<'_>) {
    if STDOUT_DONE.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout.write_fmt(text).and_then(|()| stdout.flush()) {
        STDOUT_DONE.store(true, Ordering::Relaxed);
        if error.kind() != ErrorKind::BrokenPipe {
            let mut failure = STDOUT_FAILURE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            failure.get_or_insert_with(|| error.to_string());
        }
    }
}

/// Write to standard error, if it can be written.
pub fn err(text: Arguments<'_>) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_fmt(text).and_then(|()| stderr.flush());
}

/// Why standard output could not be written, if it could not (a closed pipe is not a failure).
#[must_use]
pub fn stdout_failure() -> Option<String> {
    STDOUT_FAILURE.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
}

/// `print!` that never panics (see [`crate::output`]).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::out(format_args!($($arg)*)) };
}

/// `println!` that never panics (see [`crate::output`]).
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => { $crate::output::out(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `eprintln!` that never panics (see [`crate::output`]).
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => { $crate::output::err(format_args!("{}\n", format_args!($($arg)*))) };
}
