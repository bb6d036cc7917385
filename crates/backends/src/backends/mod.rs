//! Where jobs run. A backend turns a [`JobRequest`] into a running job and
//! follows it to the end. Backends know nothing of WebAssembly: the `jobs`
//! host capability translates between the contract and these types.

pub mod catalogue;
pub mod confine;
pub mod container;
pub mod devices;
pub mod dry_run;
mod job_log;
pub mod local;
mod podman_auth;
mod process_job;
pub mod ray;
pub mod redact;
mod remote;
pub mod seccomp;
pub mod slurm;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use thiserror::Error;

pub use job_log::{JobLog, OutputSink, Stream, TerminalOutput, file_tail};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::TimedOut => "timed-out",
        }
    }

    /// Whether the job has ended.
    pub fn is_terminal(self) -> bool {
        !matches!(self, JobState::Pending | JobState::Running)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Ok(match text {
            "pending" => JobState::Pending,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            "timed-out" => JobState::TimedOut,
            other => return Err(format!("unknown job state `{other}`")),
        })
    }
}

/// A job's state, exit code and the backend's explanation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobStatus {
    pub state: JobState,
    pub exit_code: Option<i32>,
    pub message: Option<String>,
}

impl JobStatus {
    pub fn running() -> Self {
        Self { state: JobState::Running, exit_code: None, message: None }
    }
}

/// Resources a job asks for.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JobResources {
    pub cpu_count: Option<f64>,
    pub gpu_count: Option<u32>,
    pub gpu_class: Option<String>,
    pub memory_bytes: Option<u64>,
}

/// How a job is sandboxed on the machine that runs it (see [`confine`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Confinement {
    /// Whether the job keeps the network.
    pub network: bool,
    /// Directories the job may write: the step's source root and the
    /// `writable-dir` grants. Its working directory is one of them or inside one.
    pub writable: Vec<PathBuf>,
    /// Directories the job may read besides the system's and its own
    /// environment: `readable-dir` grants.
    pub readable: Vec<PathBuf>,
    /// Directories the job must never see even where a visible directory
    /// holds them: stepbox's own home.
    pub hidden: Vec<PathBuf>,
}

/// What a job's command runs in.
#[derive(Debug, Clone, PartialEq)]
pub enum JobRuntime {
    /// The backend's own environment.
    Host,
    /// A Python environment from `requirements.install`: its `bin` goes
    /// first on PATH and `VIRTUAL_ENV` names it.
    Environment(crate::environments::Environment),
    /// A container image reference.
    Image(String),
}

/// A job, checked against policy, ready for a backend.
pub struct JobRequest {
    /// The runtime's id for the job.
    pub id: String,
    /// The run the job belongs to (named to whoever waits for its GPUs).
    pub run_id: String,
    pub name: String,
    pub command: Vec<String>,
    /// The job's whole environment.
    pub env: Vec<(String, String)>,
    pub working_dir: Option<PathBuf>,
    pub resources: JobResources,
    pub timeout: Option<Duration>,
    pub runtime: JobRuntime,
    /// Sandbox the job (None: run it as the user, unconfined).
    pub confinement: Option<Confinement>,
    /// Whether the job may use the network (`job-network`).
    pub network: bool,
    /// Where the job's output goes.
    pub log: Arc<JobLog>,
    /// Backend options, checked against the grants (addresses granted,
    /// secrets resolved).
    pub options: catalogue::BackendOptions,
    /// Becomes true when the launch closes: a backend still waiting to
    /// start the job (for GPUs) gives up, and starts nothing.
    pub closing: Option<tokio::sync::watch::Receiver<bool>>,
    /// The login to the registry of the job's image, when a
    /// `registry-credential` grant names that registry: the container
    /// backend pulls with it, and sends it to no other registry.
    pub registry_login: Option<crate::images::registry::Login>,
}

/// Why a backend could not run a job.
#[derive(Debug, Error)]
pub enum BackendError {
    /// The request cannot work on this backend (bad working dir, …).
    #[error("{0}")]
    Invalid(String),
    /// The backend does not support something the request asks for.
    #[error("{0}")]
    Unsupported(String),
    /// This machine cannot give what the request asks for, however long the
    /// job waited (more GPUs than it has, a class it lacks): the caller's
    /// request is wrong for here, whatever the flavor makes of it.
    #[error("{0}")]
    Unsatisfiable(String),
    /// The backend failed.
    #[error("{0}")]
    Failed(String),
}

/// A place jobs run.
#[async_trait]
pub trait JobBackend: Send + Sync {
    /// The name step operators and job specs use for this backend.
    fn name(&self) -> &'static str;

    /// Start a job. Returns once the backend has accepted it.
    async fn submit(&self, request: JobRequest) -> Result<Arc<dyn RunningJob>, BackendError>;

    /// Stop a job whose launch is gone (its supervisor died), from what
    /// was recorded of it alone. Blocking: it runs where no launch is, in
    /// `stepbox runs show` and `wait`. `Err` says why the job may still be
    /// running.
    fn stop_orphan(&self, job: &OrphanedJob<'_>) -> Result<(), String>;
}

/// What the store recorded of a job whose launch is gone.
#[derive(Debug, Clone, Copy)]
pub struct OrphanedJob<'a> {
    /// The runtime's id for the job (what local processes and containers are marked with).
    pub id: &'a str,
    /// The backend's own id, if it was recorded.
    pub external_id: Option<&'a str>,
}

/// Every backend this runtime has, by name, as a launch uses them: stopped
/// jobs get `grace` before they are forced, Slurm keeps its job files under
/// `run_dir`, and jobs on this machine lease GPUs from `gpu_leases`.
pub fn standard(
    grace: Duration,
    run_dir: &std::path::Path,
    gpu_leases: &std::path::Path,
) -> std::collections::BTreeMap<&'static str, Arc<dyn JobBackend>> {
    let leases = crate::gpus::Leases::new(gpu_leases);
    let backends: [Arc<dyn JobBackend>; 4] = [
        Arc::new(local::LocalBackend::new(grace, leases.clone())),
        Arc::new(container::ContainerBackend::new(grace, leases)),
        Arc::new(slurm::SlurmBackend::new(grace, run_dir.join("slurm"))),
        Arc::new(ray::RayBackend::new(grace)),
    ];
    backends.into_iter().map(|backend| (backend.name(), backend)).collect()
}

/// Run a program to its end with no input: `Err` holds what it said on
/// failure. For the blocking [`JobBackend::stop_orphan`].
fn run_to_end(command: &mut std::process::Command) -> Result<String, String> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|error| format!("cannot run {program}: {error}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!("{program} failed: {}", String::from_utf8_lossy(&output.stderr).trim()))
    }
}

/// A job a backend accepted.
#[async_trait]
pub trait RunningJob: Send + Sync {
    /// The backend's own id for the job (a process id, a Slurm job id, …).
    fn external_id(&self) -> String;

    /// The current status, without waiting.
    fn status(&self) -> JobStatus;

    /// Wait until the job has ended.
    async fn wait(&self) -> JobStatus;

    /// Stop the job: ask politely, wait up to `grace`, then force it. Returns
    /// once everything the job started has ended.
    async fn cancel(&self, grace: Duration) -> JobStatus;

    /// The UUIDs of the GPUs leased to the job on this machine.
    fn gpus(&self) -> Vec<String> {
        Vec::new()
    }
}
