//! Submitting jobs, and the common path: run the step's entrypoint and wait.

use crate::bindings::stepbox::operator::jobs as wit;
use crate::{Error, JobSpec, JobState, JobStatus, LaunchError, LaunchReport, LaunchRequest, Runtime};

pub use wit::Job;

/// A job spec that runs the request's entrypoint command with the request's
/// environment, resources and source root as working directory, on the
/// backend's own environment. Adjust the fields before submitting.
pub fn entrypoint_spec(request: &LaunchRequest) -> JobSpec {
    JobSpec {
        name: Some(request.step_name.clone()),
        backend: None,
        command: request.entrypoint_command.clone(),
        env: request.environment.clone(),
        working_dir: Some(request.source_root.clone()),
        resources: request.resources.clone(),
        timeout_seconds: None,
        runtime: Runtime::Host,
        backend_options: Vec::new(),
    }
}

/// Add environment variables the spec does not set already (the step's own
/// variables win over configured defaults).
pub fn add_default_env(spec: &mut JobSpec, vars: impl IntoIterator<Item = (String, String)>) {
    for (name, value) in vars {
        if !spec.env.iter().any(|var| var.name == name) {
            spec.env.push(crate::EnvVar { name, value });
        }
    }
}

/// Set a backend option (`partition` for Slurm, `address` for Ray, …),
/// replacing an earlier value for the same key. `None` leaves it unset.
pub fn set_backend_option(spec: &mut JobSpec, key: &str, value: Option<String>) {
    spec.backend_options.retain(|(existing, _)| existing != key);
    if let Some(value) = value {
        spec.backend_options.push((key.to_owned(), value));
    }
}

/// Whether `name` is a valid environment variable name: letters, digits
/// and `_`, not starting with a digit.
pub fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Give the job the variable `name` holding the stored secret `secret`:
/// the host fills it in (the step operator must be granted
/// `--grant secret=SECRET`); the flavor never sees the value. Works on
/// every backend (the `secret-env` job option).
pub fn add_secret_env(spec: &mut JobSpec, name: &str, secret: &str) {
    spec.backend_options.push(("secret-env".to_owned(), format!("{name}={secret}")));
}

/// Submit a job. The host records it before this returns.
pub fn submit(spec: &JobSpec) -> Result<Job, Error> {
    wit::submit(spec)
}

/// Submit `spec`, wait for the job to end, and report its outcome.
pub fn run_to_completion(spec: JobSpec) -> Result<LaunchReport, LaunchError> {
    let job = submit(&spec)?;
    let id = job.id();
    crate::log::debug(&format!("submitted job {id}"));
    let status = job.wait()?;
    Ok(report(vec![id], status))
}

/// Run the request's entrypoint as one job with default settings and wait.
pub fn run_entrypoint(request: &LaunchRequest) -> Result<LaunchReport, LaunchError> {
    run_to_completion(entrypoint_spec(request))
}

/// A launch report for jobs whose last one ended with `status`.
pub fn report(job_ids: Vec<String>, status: JobStatus) -> LaunchReport {
    LaunchReport { job_ids, state: status.state, exit_code: status.exit_code, message: status.message }
}

impl JobState {
    /// Whether the job has ended.
    pub fn is_terminal(self) -> bool {
        !matches!(self, JobState::Pending | JobState::Running)
    }
}
