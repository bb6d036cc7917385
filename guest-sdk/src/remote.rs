//! Following work the flavor started outside the host (a cloud training
//! job) to its end: poll with backoff, ride out a few transient failures,
//! and stop waiting the moment the launch is cancelled.

use std::time::Duration;

use crate::cancellation::{Backoff, Cancelled};
use crate::{ConfigError, JobState, LaunchReport};

/// What one poll found.
pub enum Poll<T> {
    /// The remote work ended: the launch's outcome.
    Done(T),
    /// Still going.
    Pending,
}

/// Why polling stopped before the work ended.
pub enum Stopped<E> {
    /// The launch is being cancelled: stop the remote work now.
    Cancelled(Cancelled),
    /// A poll failed for good (or transiently too many times in a row).
    Failed(E),
}

/// Consecutive transient failures tolerated before giving up.
pub const MAX_TRANSIENT_FAILURES: u32 = 5;

/// Call `poll` until it is `Done`, waiting 2 s, 4 s, … up to `max_wait`
/// between calls. A failure `transient` says may pass is logged and retried.
pub fn poll_until<T, E: std::fmt::Display>(
    max_wait: Duration,
    mut poll: impl FnMut() -> Result<Poll<T>, E>,
    transient: impl Fn(&E) -> bool,
) -> Result<T, Stopped<E>> {
    let mut backoff = Backoff::new(Duration::from_secs(2), max_wait);
    let mut failures = 0;
    loop {
        match poll() {
            Ok(Poll::Done(outcome)) => return Ok(outcome),
            Ok(Poll::Pending) => failures = 0,
            Err(error) if transient(&error) && failures < MAX_TRANSIENT_FAILURES => {
                failures += 1;
                crate::log::warn(&format!("polling failed ({error}); trying again"));
            }
            Err(error) => return Err(Stopped::Failed(error)),
        }
        backoff.wait().map_err(Stopped::Cancelled)?;
    }
}

/// The report of remote work that ended: no host jobs, the service's words.
pub fn report(state: JobState, message: String) -> LaunchReport {
    LaunchReport { job_ids: Vec::new(), state, exit_code: None, message: Some(message) }
}

/// After asking a service to stop: look (`look` returns the status, or
/// `None` when the look failed) up to three times, a second apart, until
/// `stopped` says so. Returns the last status seen, starting from `asked`.
/// It waits with the plain clock: the launch is already cancelled, and the
/// host stops the flavor when its `cancel-grace` runs out.
pub fn watch_stop(asked: &str, mut look: impl FnMut() -> Option<String>, stopped: impl Fn(&str) -> bool) -> String {
    let mut status = asked.to_owned();
    for _ in 0..3 {
        if let Some(seen) = look() {
            status = seen;
            if stopped(&status) {
                break;
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    status
}

/// Check a config's endpoint override (`field`): an http or https URL, if given.
pub fn check_endpoint(field: &str, url: Option<&str>) -> Result<(), ConfigError> {
    match url {
        Some(url) if !url.starts_with("https://") && !url.starts_with("http://") => {
            Err(ConfigError::field(field, "must be an http or https URL"))
        }
        _ => Ok(()),
    }
}

/// The default longest wait between polls, in seconds (serde default for
/// a `max_poll_interval_seconds` field).
pub fn default_max_poll_interval() -> u64 {
    30
}

/// Check a config's `max_poll_interval_seconds`: at least one second.
pub fn check_max_poll_interval(seconds: u64) -> Result<(), ConfigError> {
    if seconds == 0 {
        return Err(ConfigError::field("max_poll_interval_seconds", "must be at least 1"));
    }
    Ok(())
}
