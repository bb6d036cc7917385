//! Hearing that the launch is being cancelled (Ctrl-C, `stepbox cancel`, the
//! wall-clock budget), for flavors that start work the host cannot stop
//! itself, such as a cloud training job.
//!
//! Wait between polls with [`sleep`]: it returns [`Cancelled`] as soon as the
//! launch is cancelled. The flavor then has the step operator's
//! `cancel-grace` to call the service's stop API and return; outgoing HTTP
//! keeps working meanwhile.
//!
//! ```no_run
//! # fn poll() -> bool { true }
//! # fn stop_remote_job() {}
//! use stepbox_guest::cancellation;
//!
//! loop {
//!     if poll() { break; }
//!     if let Err(cancelled) = cancellation::sleep(std::time::Duration::from_secs(5)) {
//!         stop_remote_job();
//!         # let _ = cancelled;
//!         break;
//!     }
//! }
//! ```

use std::time::Duration;

use crate::bindings::stepbox::operator::cancellation;
use crate::bindings::stepbox::operator::types::Error;

/// The launch is being cancelled; the reason says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancelled(pub String);

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Cancelled {}

/// Why the launch is being cancelled, or `None` while it is not.
pub fn requested() -> Option<Cancelled> {
    cancellation::requested().map(Cancelled)
}

/// Wait `duration`, or until the launch is cancelled, whichever is first.
pub fn sleep(duration: Duration) -> Result<(), Cancelled> {
    let milliseconds = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    match cancellation::sleep(milliseconds) {
        Ok(()) => Ok(()),
        Err(Error::Cancelled(reason)) => Err(Cancelled(reason)),
        // Outside a launch there is nothing to cancel: sleep as asked.
        Err(_) => {
            std::thread::sleep(duration);
            Ok(())
        }
    }
}

/// Waits between polls of a remote job that grow from `first` to `max`
/// (doubling), each cut short by cancellation.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Waits of `first`, `2 * first`, … up to `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Self { next: first.min(max), max }
    }

    /// Wait the next interval; `Err` as soon as the launch is cancelled.
    pub fn wait(&mut self) -> Result<(), Cancelled> {
        sleep(self.next)?;
        self.next = (self.next * 2).min(self.max);
        Ok(())
    }
}
