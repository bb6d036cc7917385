//! Timestamps as stepbox records them (runs, jobs, environments): RFC 3339
//! in UTC with milliseconds, which sort as text in time order.

/// Now, as stepbox records it.
pub fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}
