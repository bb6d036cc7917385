//! Cancelling signals that arrive before `stepbox launch` can handle them.
//!
//! Between `exec` and the installation of the launch's handlers (argument
//! parsing, logging, the async runtime: tens of milliseconds on a loaded
//! machine) a SIGINT, SIGTERM or SIGHUP would get its inherited disposition,
//! and a launch started from a script's background job (`stepbox launch … &`)
//! inherits SIGINT *ignored*: the Ctrl-C was lost and the step ran anyway.
//! So `main` blocks the three first; a blocked signal stays pending whatever
//! its disposition, and is delivered once the launch has installed its
//! handlers and lets them through. Every other command lets them through at
//! once, with their usual effect.

use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};

/// SIGINT, SIGTERM and SIGHUP held back in the calling thread (and every
/// thread it starts) until [`HeldSignals::release`].
#[must_use = "held signals stay blocked until released"]
pub struct HeldSignals {
    set: SigSet,
}

impl HeldSignals {
    /// Block the cancelling signals; call first thing in `main`, before any
    /// thread exists, so every thread inherits the mask.
    pub fn hold() -> Self {
        let mut set = SigSet::empty();
        for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            set.add(signal);
        }
        // Cannot fail for a valid set and `how`; if it did, signals simply stay unblocked.
        let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
        HeldSignals { set }
    }

    /// Let the signals through in the calling thread: pending ones are
    /// delivered now. Threads started while they were held keep them
    /// blocked, so they reach this thread (its handlers serve the process),
    /// and programs stepbox starts begin with an empty mask (std resets it).
    pub fn release(self) {
        let _ = pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&self.set), None);
    }
}
