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
    /// Bytes the guest may write to its stdout, and to its stderr.
    pub guest_output_bytes: usize,
    /// Bytes the flavor's messages may add to the run's log, per call
    /// (each message counts as the line written: timestamp, level, text).
    pub log_bytes: usize,
    /// Bytes of one host-call argument: a log message, a job spec (command,
    /// environment and working directory together), a requirements list.
    pub argument_bytes: usize,
    /// Jobs one launch may submit.
    pub jobs_per_launch: usize,
    /// Bytes of each job's output written to its log file.
    pub job_log_bytes: u64,
    /// How long a cancelled job gets between SIGTERM and SIGKILL, and a
    /// cancelled flavor to stop the work it started elsewhere and return.
    pub cancel_grace: Duration,
    /// How long a whole launch may take, jobs included.
    pub wall_clock: Duration,
    /// Outgoing HTTP requests one launch may make (token requests included).
    pub http_requests: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            guest_memory_bytes: 256 << 20,
            guest_cpu: Duration::from_secs(30),
            guest_output_bytes: 1 << 20,
            log_bytes: 16 << 20,
            argument_bytes: 1 << 20,
            jobs_per_launch: 64,
            job_log_bytes: 64 << 20,
            cancel_grace: Duration::from_secs(10),
            wall_clock: Duration::from_secs(24 * 3600),
            // A day of polling every few seconds, with logs, fits many times over.
            http_requests: 100_000,
        }
    }
}

impl Limits {
    /// Limits for the short calls made outside a launch (`metadata`,
    /// `validate-config`): the same, with a tighter CPU budget.
    pub fn for_query() -> Self {
        Self { guest_cpu: Duration::from_secs(10), ..Self::default() }
    }
}

/// A limit override that cannot be applied.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LimitError {
    #[error("unknown limit `{0}`; the limits are: {names}", names = LIMIT_NAMES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "))]
    Unknown(String),
    #[error("limit `{name}`: `{value}` is not {expected}")]
    BadValue { name: String, value: String, expected: &'static str },
}

/// The limits a step operator can override, with what each one bounds.
pub const LIMIT_NAMES: &[(&str, &str)] = &[
    ("guest-memory", "linear memory of the flavor instance (a size)"),
    ("guest-cpu", "time the flavor's own code may run per call, host waits excluded (a duration)"),
    ("guest-output", "bytes the flavor may write to its stdout, and to its stderr (a size)"),
    ("log-bytes", "bytes the flavor's log messages may add to the run log, timestamps included (a size)"),
    ("argument-size", "bytes of one host-call argument: a log message, a job spec, a requirements list (a size)"),
    ("jobs-per-launch", "jobs one launch may submit (a count)"),
    ("job-log", "bytes of each job's output kept in its log file (a size)"),
    (
        "cancel-grace",
        "time a cancelled job gets between SIGTERM and SIGKILL, and a cancelled flavor to stop its remote work (a duration)",
    ),
    ("wall-clock", "time a whole launch may take, its jobs included (a duration)"),
    ("http-requests", "outgoing HTTP requests one launch may make, token requests included (a count)"),
];

/// A limit was hit inside a host call: the call ends (raised as a trap so
/// the guest cannot ignore it), and a launch's jobs are cancelled.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the flavor hit its `{limit}` limit: {detail}. If it really needs more: stepbox step-operator update NAME --limit {limit}=VALUE"
)]
pub struct LimitExceeded {
    /// The limit's name, as `--limit` takes it.
    pub limit: &'static str,
    /// What the flavor did that went past it.
    pub detail: String,
}

impl Limits {
    /// Check one host-call argument of `bytes` bytes against `argument-size`;
    /// `what` names it in the error ("a log message", "a job spec").
    pub fn check_argument(&self, what: &str, bytes: usize) -> Result<(), LimitExceeded> {
        if bytes <= self.argument_bytes {
            return Ok(());
        }
        Err(LimitExceeded {
            limit: "argument-size",
            detail: format!(
                "it passed {what} of {} to the host; one argument may hold at most {}",
                bytesize::ByteSize::b(bytes as u64),
                bytesize::ByteSize::b(self.argument_bytes as u64)
            ),
        })
    }
}

impl Limits {
    /// These limits with `overrides` (limit name → value text) applied.
    pub fn with_overrides<'a>(
        mut self,
        overrides: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Result<Self, LimitError> {
        for (name, value) in overrides {
            self.apply(name, value)?;
        }
        Ok(self)
    }

    /// The value of the limit `name`, written the way `--limit` takes it.
    pub fn value_of(&self, name: &str) -> Option<String> {
        let size = exact_size;
        Some(match name {
            "guest-memory" => size(self.guest_memory_bytes as u64),
            "guest-cpu" => humantime::format_duration(self.guest_cpu).to_string(),
            "guest-output" => size(self.guest_output_bytes as u64),
            "log-bytes" => size(self.log_bytes as u64),
            "argument-size" => size(self.argument_bytes as u64),
            "jobs-per-launch" => self.jobs_per_launch.to_string(),
            "job-log" => size(self.job_log_bytes),
            "cancel-grace" => humantime::format_duration(self.cancel_grace).to_string(),
            "wall-clock" => humantime::format_duration(self.wall_clock).to_string(),
            "http-requests" => self.http_requests.to_string(),
            _ => return None,
        })
    }

    fn apply(&mut self, name: &str, value: &str) -> Result<(), LimitError> {
        let bad = |expected| LimitError::BadValue { name: name.to_owned(), value: value.to_owned(), expected };
        let size = || -> Result<u64, LimitError> {
            stepbox_backends::units::parse_memory(value).map_err(|_| bad("a size such as 64MiB or 1GiB"))
        };
        let duration = || -> Result<Duration, LimitError> {
            humantime::parse_duration(value)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| bad("a duration such as 500ms, 30s or 5m"))
        };
        let count = || -> Result<usize, LimitError> {
            value.parse().ok().filter(|n| *n > 0).ok_or_else(|| bad("a positive whole number"))
        };
        let usize_size = || size().and_then(|n| usize::try_from(n).map_err(|_| bad("a size this machine can address")));
        match name {
            "guest-memory" => self.guest_memory_bytes = usize_size()?,
            "guest-cpu" => self.guest_cpu = duration()?,
            "guest-output" => self.guest_output_bytes = usize_size()?,
            "log-bytes" => self.log_bytes = usize_size()?,
            "argument-size" => self.argument_bytes = usize_size()?,
            "jobs-per-launch" => self.jobs_per_launch = count()?,
            "job-log" => self.job_log_bytes = size()?,
            "cancel-grace" => self.cancel_grace = duration()?,
            "wall-clock" => self.wall_clock = duration()?,
            "http-requests" => self.http_requests = count()? as u64,
            other => return Err(LimitError::Unknown(other.to_owned())),
        }
        Ok(())
    }
}

/// A byte count in the largest binary unit that divides it exactly.
fn exact_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes != 0 && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn overrides(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn overrides_replace_defaults() {
        let limits = Limits::default()
            .with_overrides(&overrides(&[("guest-memory", "64MiB"), ("guest-cpu", "2s"), ("jobs-per-launch", "3")]))
            .expect("valid overrides");
        assert_eq!(limits.guest_memory_bytes, 64 << 20);
        assert_eq!(limits.guest_cpu, Duration::from_secs(2));
        assert_eq!(limits.jobs_per_launch, 3);
        assert_eq!(limits.cancel_grace, Limits::default().cancel_grace);
    }

    #[test]
    fn every_limit_value_reads_back_as_an_override() {
        let defaults = Limits::default();
        for (name, _) in LIMIT_NAMES {
            let value = defaults.value_of(name).expect("every named limit has a value");
            let again = Limits::default().with_overrides(&overrides(&[(name, &value)])).expect(&value);
            assert_eq!(again, defaults, "{name}={value}");
        }
    }

    #[test]
    fn every_named_limit_is_accepted() {
        for (name, _) in LIMIT_NAMES {
            let value = match *name {
                "guest-cpu" | "cancel-grace" | "wall-clock" => "1s",
                "jobs-per-launch" | "http-requests" => "5",
                _ => "1MiB",
            };
            assert!(Limits::default().with_overrides(&overrides(&[(name, value)])).is_ok(), "{name}");
        }
    }

    #[test]
    fn an_argument_past_its_size_names_the_limit_and_the_way_out() {
        let limits = Limits::default().with_overrides(&overrides(&[("argument-size", "1KiB")])).expect("valid");
        assert!(limits.check_argument("a log message", 1024).is_ok());
        let exceeded = limits.check_argument("a log message", 1025).unwrap_err();
        assert_eq!(exceeded.limit, "argument-size");
        let message = exceeded.to_string();
        assert!(message.contains("a log message of 1.0 KiB"), "{message}");
        assert!(message.contains("--limit argument-size=VALUE"), "{message}");
    }

    #[test]
    fn bad_overrides_name_the_problem() {
        let cases = [
            (("guest-ram", "1GiB"), "unknown limit `guest-ram`"),
            (("guest-cpu", "soon"), "a duration"),
            (("guest-cpu", "0s"), "a duration"),
            (("guest-memory", "lots"), "a size"),
            (("jobs-per-launch", "0"), "a positive whole number"),
        ];
        for ((name, value), message) in cases {
            let error = Limits::default().with_overrides(&overrides(&[(name, value)])).unwrap_err();
            assert!(error.to_string().contains(message), "{name}={value}: {error}");
        }
    }
}
