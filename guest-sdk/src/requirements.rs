//! Python environments for jobs (the `requirements` capability; a step
//! operator must grant it).

use crate::bindings::stepbox::operator::requirements as wit;
use crate::{Error, JobSpec, Runtime};

pub use wit::Environment;

/// An environment holding exactly `requirements` (PEP 508 strings) on
/// `python_version` (None: the backend's default), made or reused by the
/// host. Blocks while it installs.
pub fn install(requirements: &[String], python_version: Option<&str>) -> Result<Environment, Error> {
    wit::install(&wit::EnvironmentSpec {
        requirements: requirements.to_vec(),
        python_version: python_version.map(str::to_owned),
    })
}

/// Make `spec` run in `environment`.
pub fn run_in(spec: &mut JobSpec, environment: &Environment) {
    spec.runtime = Runtime::Environment(environment.handle.clone());
}
