//! A command's failure: the message for the user and the exit code.

use std::fmt::Display;

use crate::exit;
use crate::flavors::FlavorError;
use crate::launch::LaunchError;
use crate::step_operators::StepOperatorError;
use crate::store::StoreError;

/// What the user sees when a command fails.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Display) -> Self {
        Self { code, message: message.to_string() }
    }

    /// The reader of stdout went away (`stepbox runs list | head`): the
    /// command stops quietly, with the status of a program SIGPIPE ended.
    pub fn closed_pipe() -> Self {
        Self::new(exit::CLOSED_PIPE, "")
    }

    /// Whether this is [`Failure::closed_pipe`]: nothing to tell the user.
    pub fn is_closed_pipe(&self) -> bool {
        self.code == exit::CLOSED_PIPE && self.message.is_empty()
    }

    /// Bad input: the user can fix it.
    pub fn input(message: impl Display) -> Self {
        Self::new(exit::BAD_INPUT, message)
    }
}

impl From<FlavorError> for Failure {
    fn from(error: FlavorError) -> Self {
        Self::new(error.exit_code(), error)
    }
}

impl From<StepOperatorError> for Failure {
    fn from(error: StepOperatorError) -> Self {
        Self::new(error.exit_code(), error)
    }
}

impl From<LaunchError> for Failure {
    fn from(error: LaunchError) -> Self {
        Self::new(error.exit_code(), error)
    }
}

impl From<crate::supervisor::RunError> for Failure {
    fn from(error: crate::supervisor::RunError) -> Self {
        Self::new(error.exit_code(), error)
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Self::new(exit::INTERNAL, error)
    }
}
