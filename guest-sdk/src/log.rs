//! Messages to the user, attributed to the flavor by the runtime.
//!
//! Use the macros (`stepbox_guest::info!("…")`) or the functions directly.

use crate::bindings::stepbox::operator::log::{Level, log};

/// Log at trace level.
pub fn trace(message: &str) {
    log(Level::Trace, message);
}

/// Log at debug level.
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Log at info level: shown to the user by default.
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Log a warning.
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Log an error.
pub fn error(message: &str) {
    log(Level::Error, message);
}

/// `info!("submitted {}", id)`: format and log at info level.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::info(&::std::format!($($arg)*)) };
}

/// `debug!(…)`: format and log at debug level.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::debug(&::std::format!($($arg)*)) };
}

/// `warn!(…)`: format and log a warning.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::warn(&::std::format!($($arg)*)) };
}

/// `error!(…)`: format and log an error.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::error(&::std::format!($($arg)*)) };
}
