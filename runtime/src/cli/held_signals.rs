//! Cancelling signals that arrive before `stepbox launch` can handle them.
//!
//! Between `exec` and the installation of the launch's handlers (argument
//! parsing, logging, the async runtime: tens of milliseconds on a loaded
//! machine) a SIGINT, SIGTERM or SIGHUP would get its inherited disposition,
//! and a launch started from a script's background job (`stepbox launch … &`)
//! inherits SIGINT *ignored*: the Ctrl-C was lost and the step ran anyway.
//!
//! So `main` blocks the three before anything else ([`HeldSignals::hold`]: a
//! blocked signal stays pending whatever its disposition). Once the command
//! is known, a launch installs handlers that only note which signal came
//! ([`HeldSignals::note_for_launch`]) and lets the signals through; the
//! launch asks [`EarlySignals::first`] once its own handlers are in place.
//! Every other command lets them through at once, with their usual effect.
//! Either way the signals are unblocked before any other thread exists, so
//! no thread, and no program stepbox starts, inherits them blocked (a job
//! must get its SIGTERM).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};

/// The signals a launch takes as cancellation, in the order [`EarlySignals::first`] reports them.
const CANCELLING: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// SIGINT, SIGTERM and SIGHUP held back in the calling thread until released.
#[must_use = "held signals stay blocked until released"]
pub struct HeldSignals {
    set: SigSet,
}

/// Which cancelling signals arrived before the launch could handle them.
pub struct EarlySignals {
    seen: [Arc<AtomicBool>; 3],
}

impl HeldSignals {
    /// Block the cancelling signals; call first thing in `main`, before any
    /// thread exists.
    pub fn hold() -> Self {
        let mut set = SigSet::empty();
        for signal in CANCELLING {
            set.add(signal);
        }
        // Cannot fail for a valid set and `how`; if it did, signals simply stay unblocked.
        let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
        HeldSignals { set }
    }

    /// Let the signals through with their usual effect (every command but launch).
    pub fn release(self) {
        let _ = pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&self.set), None);
    }

    /// Note each cancelling signal from now on (pending ones included), then
    /// let them through: for `launch`, before its runtime's threads start.
    pub fn note_for_launch(self) -> EarlySignals {
        let seen = [(); 3].map(|()| Arc::new(AtomicBool::new(false)));
        for (signal, flag) in CANCELLING.iter().zip(&seen) {
            // Registration fails only for signals that cannot be handled (not these three).
            let _ = signal_hook::flag::register(*signal as i32, Arc::clone(flag));
        }
        self.release();
        EarlySignals { seen }
    }
}

impl EarlySignals {
    /// The first cancelling signal noted so far (SIGINT, then SIGTERM, then SIGHUP).
    pub fn first(&self) -> Option<Signal> {
        CANCELLING.iter().zip(&self.seen).find(|(_, flag)| flag.load(Ordering::Acquire)).map(|(signal, _)| *signal)
    }
}
