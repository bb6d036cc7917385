//! The `log` capability: messages from the flavor, attributed to it, shown
//! on the terminal and kept in the run's log. Each message is bounded by
//! `argument-size` and all of them together by `log-bytes`; going past either
//! ends the call.

use std::fs::File;
use std::io::Write;
use std::sync::Mutex;

use crate::bindings::log::{Host, Level};
use crate::host::HostState;
use crate::limits::{LimitExceeded, Limits};

/// Where one flavor instance's messages go.
pub struct FlavorLogger {
    flavor: String,
    sink: Mutex<Sink>,
    limits: Limits,
}

/// The log file and the bytes still allowed into it.
struct Sink {
    file: Option<File>,
    remaining: usize,
    exhausted: bool,
}

impl Sink {
    /// Append a line to the log file; a file that fails once is dropped
    /// (the terminal still shows every line).
    fn append(&mut self, line: &str) {
        if let Some(file) = self.file.as_mut()
            && file.write_all(line.as_bytes()).is_err()
        {
            self.file = None;
        }
    }
}

impl FlavorLogger {
    /// A logger for `flavor`, also writing to `file` when given.
    pub fn new(flavor: &str, file: Option<File>, limits: &Limits) -> Self {
        Self {
            flavor: flavor.to_owned(),
            sink: Mutex::new(Sink { file, remaining: limits.log_bytes, exhausted: false }),
            limits: limits.clone(),
        }
    }

    /// Record one message from (or caused by) the flavor. A message that
    /// would take the log past `log-bytes` is not recorded: the error ends
    /// the flavor's call.
    pub fn emit(&self, level: Level, message: &str) -> Result<(), LimitExceeded> {
        let message = &*crate::display::visible(message);
        let line = format!("{} {:<5} {message}\n", stepbox_store::store::now(), level_name(level));
        let mut sink = self.sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if sink.exhausted || line.len() > sink.remaining {
            sink.exhausted = true;
            return Err(LimitExceeded {
                limit: "log-bytes",
                detail: format!("its log messages went past {}", bytesize::ByteSize::b(self.limits.log_bytes as u64)),
            });
        }
        sink.remaining -= line.len();
        self.show(level, message);
        sink.append(&line);
        Ok(())
    }

    /// Record a note from the host about the flavor (a refused call, uv's
    /// progress). Notes do not count against the flavor's limits.
    pub fn note(&self, level: Level, message: &str) {
        let message = &*crate::display::visible(message);
        self.show(level, message);
        let line = format!("{} {:<5} {message}\n", stepbox_store::store::now(), level_name(level));
        self.sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).append(&line);
    }

    /// Check a host-call argument against this instance's `argument-size`.
    pub fn check_argument(&self, what: &str, bytes: usize) -> Result<(), LimitExceeded> {
        self.limits.check_argument(what, bytes)
    }

    fn show(&self, level: Level, text: &str) {
        let flavor = &self.flavor;
        match level {
            Level::Trace => tracing::trace!(target: "flavor", "[{flavor}] {text}"),
            Level::Debug => tracing::debug!(target: "flavor", "[{flavor}] {text}"),
            Level::Info => tracing::info!(target: "flavor", "[{flavor}] {text}"),
            Level::Warn => tracing::warn!(target: "flavor", "[{flavor}] {text}"),
            Level::Error => tracing::error!(target: "flavor", "[{flavor}] {text}"),
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

/// What `log` sees of an instance: the flavor's logger.
pub struct LogView<'a> {
    logger: &'a FlavorLogger,
}

/// The `log` capability, for the linker.
struct LogCapability;

impl wasmtime::component::HasData for LogCapability {
    type Data<'a> = LogView<'a>;
}

fn view(state: &mut HostState) -> LogView<'_> {
    LogView { logger: &state.logger }
}

/// Link `log`.
pub(super) fn add_to_linker(linker: &mut wasmtime::component::Linker<HostState>) -> wasmtime::Result<()> {
    crate::bindings::log::add_to_linker::<HostState, LogCapability>(linker, view)
}

impl Host for LogView<'_> {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.logger.check_argument("a log message", message.len())?;
        self.logger.emit(level, &message)?;
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
