//! Conveniences on the contract's error types.

use crate::{ConfigError, Error, LaunchError};

impl ConfigError {
    /// An error blamed on one field (a dotted path such as `retry.count`).
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self { field: Some(field.to_owned()), message: message.into() }
    }

    /// An error about the configuration as a whole.
    pub fn whole(message: impl Into<String>) -> Self {
        Self { field: None, message: message.into() }
    }
}

/// A host error ends a launch with the matching launch error: a denial stays a
/// denial, a cancellation stays a cancellation, anything else is a failure.
impl From<Error> for LaunchError {
    fn from(error: Error) -> Self {
        match error {
            Error::Denied(message) => LaunchError::Denied(message),
            Error::Cancelled(message) => LaunchError::Cancelled(message),
            Error::Invalid(message) => LaunchError::Failed(format!("invalid request: {message}")),
            Error::Unsupported(message) => LaunchError::Failed(format!("unsupported: {message}")),
            Error::Failed(message) => LaunchError::Failed(message),
        }
    }
}

impl From<ConfigError> for LaunchError {
    fn from(error: ConfigError) -> Self {
        LaunchError::InvalidConfig(error)
    }
}
