//! The `log` capability: messages from the flavor, attributed to it, bounded
//! in size and number, shown on the terminal and kept in the run's log.

use std::fs::File;
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::bindings::log::{Host, Level};
use crate::host::HostState;
use crate::limits::Limits;

/// Where one flavor instance's messages go.
pub struct FlavorLogger {
    flavor: String,
    file: Mutex<Option<File>>,
    message_bytes: usize,
    max_messages: usize,
    count: AtomicUsize,
}

impl FlavorLogger {
    /// A logger for `flavor`, also writing to `file` when given.
    pub fn new(flavor: &str, file: Option<File>, limits: &Limits) -> Self {
        Self {
            flavor: flavor.to_owned(),
            file: Mutex::new(file),
            message_bytes: limits.log_message_bytes,
            max_messages: limits.log_messages,
            count: AtomicUsize::new(0),
        }
    }

    /// Record one message, truncated to the size limit; messages past the
    /// count limit are dropped (with one note saying so).
    pub fn emit(&self, level: Level, message: &str) {
        let n = self.count.fetch_add(1, Ordering::Relaxed);
        if n > self.max_messages {
            return;
        }
        if n == self.max_messages {
            let note = format!(
                "log limit reached: {} messages; later messages from this flavor are dropped",
                self.max_messages
            );
            self.write(Level::Warn, &note);
            return;
        }
        let text = truncate(message, self.message_bytes);
        self.write(level, &text);
    }

    fn write(&self, level: Level, text: &str) {
        let flavor = &self.flavor;
        match level {
            Level::Trace => tracing::trace!(target: "flavor", "[{flavor}] {text}"),
            Level::Debug => tracing::debug!(target: "flavor", "[{flavor}] {text}"),
            Level::Info => tracing::info!(target: "flavor", "[{flavor}] {text}"),
            Level::Warn => tracing::warn!(target: "flavor", "[{flavor}] {text}"),
            Level::Error => tracing::error!(target: "flavor", "[{flavor}] {text}"),
        }
        let mut file = self.file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(f) = file.as_mut() {
            let line = format!("{} {:<5} {text}\n", crate::store::now(), level_name(level));
            if f.write_all(line.as_bytes()).is_err() {
                *file = None;
            }
        }
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "TRACE",
        Level::Debug => "DEBUG",
        Level::Info => "INFO",
        Level::Warn => "WARN",
        Level::Error => "ERROR",
    }
}

/// At most `max` bytes of `text`, cut at a character boundary, with a note.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [truncated {} bytes]", &text[..end], text.len() - end)
}

impl Host for HostState {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.logger.emit(level, &message);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate("short", 10), "short");
        let cut = truncate("ééééé", 3);
        assert!(cut.starts_with('é') && cut.contains("truncated 8 bytes"), "{cut}");
    }
}
