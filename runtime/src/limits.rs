//! Limits on what one flavor instance may consume. Every launch gets its own
//! store with these limits; defaults are safe for an untrusted flavor.

use std::time::Duration;

/// Limits applied to one flavor instance and the host calls it makes.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Linear memory the guest may grow to, in bytes.
    pub guest_memory_bytes: usize,
    /// Time the guest may spend executing its own code in one call
    /// (`launch`, `metadata` or `validate-config`); time blocked in host calls
    /// such as `job.wait` does not count.
    pub guest_cpu: Duration,
    /// Bytes of guest stdout and stderr kept (each); the rest is dropped.
    pub guest_output_bytes: usize,
    /// Bytes of a single log message kept; longer ones are truncated.
    pub log_message_bytes: usize,
    /// Log messages accepted per launch; later ones are dropped.
    pub log_messages: usize,
    /// Jobs one launch may submit.
    pub jobs_per_launch: usize,
    /// Bytes of each job's output written to its log file.
    pub job_log_bytes: u64,
    /// How long a cancelled job gets between SIGTERM and SIGKILL.
    pub cancel_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            guest_memory_bytes: 256 << 20,
            guest_cpu: Duration::from_secs(30),
            guest_output_bytes: 64 << 10,
            log_message_bytes: 16 << 10,
            log_messages: 10_000,
            jobs_per_launch: 64,
            job_log_bytes: 64 << 20,
            cancel_grace: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// Limits for the short calls made outside a launch (`metadata`,
    /// `validate-config`): the same, with a tighter CPU budget.
    pub fn for_query() -> Self {
        Self {
            guest_cpu: Duration::from_secs(10),
            ..Self::default()
        }
    }
}
