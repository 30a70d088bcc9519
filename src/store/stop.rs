//! A request to stop a writer: SIGTERM or SIGINT. Their default action ends the process at
//! once, which on object storage leaves the lock object for the next writer to wait out (a
//! local `flock` dies with the process, but the lock object does not). While a store is being
//! written the two signals only set a flag instead; the writer looks at it before each write
//! and stops there as a failed change does: it deletes what it wrote, releases its lock and
//! says that nothing was committed. Once the commit point is written the change finishes. A
//! second signal of the same kind ends the process at once, as the default action would.
//!
//! `libc::sigaction` directly (libc is a dependency already): the handler only stores to an
//! atomic, which is async-signal-safe, and this is all a crate such as signal-hook would do here.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Once;

/// The signal that asked to stop (0: none).
static STOP: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    if STOP.swap(signal, Ordering::SeqCst) == signal {
        // The second of its kind: end now, as its default action does.
        // SAFETY: signal and raise are async-signal-safe; the default action ends the process.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
    }
}

/// Catch SIGTERM and SIGINT from now on (once per process).
pub(super) fn catch() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        for signal in [libc::SIGTERM, libc::SIGINT] {
            // SAFETY: a zeroed sigaction is valid; the handler is an extern "C" fn that only
            // touches an atomic. SA_RESTART keeps interrupted reads and writes going.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(signal, &action, std::ptr::null_mut());
            }
        }
    });
}

/// The number of the signal that asked to stop, if one did: a command that fails after one
/// exits with 128 + it, as a process ended by the signal is reported by the shell.
#[must_use]
pub fn signal_number() -> Option<i32> {
    Some(STOP.load(Ordering::SeqCst)).filter(|s| *s != 0)
}

/// The name of the signal that asked to stop, if one did.
#[must_use]
pub(super) fn requested() -> Option<&'static str> {
    match STOP.load(Ordering::SeqCst) {
        0 => None,
        libc::SIGINT => Some("SIGINT"),
        libc::SIGTERM => Some("SIGTERM"),
        _ => Some("a signal"),
    }
}
