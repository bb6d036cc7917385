//! Pause points for fault tests.
//!
//! Some faults live in windows microseconds wide: a launch killed after it
//! spawned a job but before it recorded it, a signal that lands before the
//! handlers are installed. A test makes such a window as wide as it needs by
//! starting stepbox with `STEPBOX_TEST_PAUSE_AT=NAME[:SECONDS]`: the process
//! stops at the pause point NAME for SECONDS (30 unless given), says so on
//! stderr, and goes on. Without the variable a pause point is one
//! environment lookup. Nothing here changes what stepbox does, only when.

use std::time::Duration;

/// The variable naming the pause point (and, after a colon, the seconds).
pub const PAUSE_VARIABLE: &str = "STEPBOX_TEST_PAUSE_AT";

/// After a local job's process is spawned, before the launch records it.
pub const JOB_SPAWNED: &str = "job-spawned";
/// After `stepbox launch` holds back SIGINT, SIGTERM and SIGHUP, before
/// its handlers are installed.
pub const SIGNALS_HELD: &str = "signals-held";

/// How long a pause lasts when the variable gives no seconds.
const DEFAULT_PAUSE: Duration = Duration::from_secs(30);

/// How long to pause at `point`, if the environment asks for it.
fn pause_for(point: &str) -> Option<Duration> {
    let wanted = std::env::var(PAUSE_VARIABLE).ok()?;
    let (name, seconds) = match wanted.split_once(':') {
        Some((name, seconds)) => (name, seconds.parse::<f64>().ok().filter(|s| s.is_finite() && *s >= 0.0)?),
        None => (wanted.as_str(), DEFAULT_PAUSE.as_secs_f64()),
    };
    (name == point).then(|| Duration::from_secs_f64(seconds))
}

fn announce(point: &str, pause: Duration) {
    // Best effort: a test reads it to know the window is open.
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("stepbox: paused at {point} ({PAUSE_VARIABLE}) for {:.1}s\n", pause.as_secs_f64()).as_bytes(),
    );
}

/// Pause the calling thread at `point` if asked to.
pub fn pause_at(point: &str) {
    if let Some(pause) = pause_for(point) {
        announce(point, pause);
        std::thread::sleep(pause);
    }
}

/// Pause the calling task at `point` if asked to.
pub async fn pause_at_async(point: &str) {
    if let Some(pause) = pause_for(point) {
        announce(point, pause);
        tokio::time::sleep(pause).await;
    }
}
