//! The Ray job backend: a job becomes a Ray job submitted through the Jobs
//! REST API of a granted cluster, with its working directory shipped as a
//! package, its environment and Python requirements as the runtime_env,
//! and its resources as entrypoint resources. Followed by polling; output
//! fetched from the job's logs; stopped through the API.

mod api;
mod package;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use super::remote::{self, EngineError, EngineJob, with_retries};
use super::{
    BackendError, JobBackend, JobLog, JobRequest, JobRuntime, JobState, JobStatus, OrphanedJob, RunningJob, Stream,
};
pub use api::{JobDetails, RayApi};
pub use package::{MAX_PACKAGE_BYTES, Package, package};

/// Submits jobs to Ray clusters.
pub struct RayBackend {
    grace: Duration,
}

impl RayBackend {
    pub fn new(grace: Duration) -> Self {
        Self { grace }
    }
}

/// The submission id stepbox gives the Ray job of job `id`.
pub fn submission_id(id: &str) -> String {
    format!("stepbox-{id}")
}

/// The Jobs API submit request for `request`, with the working directory
/// already uploaded as `working_dir_uri`.
pub fn submit_body(
    request: &JobRequest,
    working_dir_uri: Option<&str>,
    pip: Option<Vec<String>>,
) -> Result<serde_json::Value, BackendError> {
    let entrypoint = shlex::try_join(request.command.iter().map(String::as_str))
        .map_err(|error| BackendError::Invalid(format!("the command cannot be written as a shell command: {error}")))?;
    let mut runtime_env = serde_json::Map::new();
    if !request.env.is_empty() {
        let vars: serde_json::Map<String, serde_json::Value> =
            request.env.iter().map(|(name, value)| (name.clone(), value.clone().into())).collect();
        runtime_env.insert("env_vars".to_owned(), vars.into());
    }
    if let Some(uri) = working_dir_uri {
        runtime_env.insert("working_dir".to_owned(), uri.into());
    }
    if let Some(packages) = pip {
        runtime_env.insert("pip".to_owned(), json!({ "packages": packages }));
    }
    let mut body = json!({
        "entrypoint": entrypoint,
        "submission_id": submission_id(&request.id),
        "metadata": { "stepbox.job": request.id, "stepbox.name": request.name },
    });
    if !runtime_env.is_empty() {
        body["runtime_env"] = runtime_env.into();
    }
    let resources = &request.resources;
    if let Some(cpus) = resources.cpu_count {
        body["entrypoint_num_cpus"] = cpus.into();
    }
    if let Some(gpus) = resources.gpu_count.filter(|gpus| *gpus > 0) {
        body["entrypoint_num_gpus"] = gpus.into();
        if let Some(class) = &resources.gpu_class {
            // Ray's own encoding of an accelerator type as a resource.
            body["entrypoint_resources"] = json!({ format!("accelerator_type:{class}"): 0.001 });
        }
    }
    if let Some(bytes) = resources.memory_bytes {
        body["entrypoint_memory"] = bytes.into();
    }
    Ok(body)
}

/// A job's status from Ray's details. `stop_requested`: stepbox asked Ray
/// to stop it.
pub fn status_of(details: &JobDetails, stop_requested: bool) -> JobStatus {
    let code = details.driver_exit_code;
    // A failure's message ends with the last 20,000 characters of the logs,
    // which the job log already has.
    let message = details
        .message
        .as_deref()
        .map(|message| message.split(", last available logs").next().unwrap_or(message).trim().to_owned())
        .filter(|message| !message.is_empty());
    let with = |state, message| JobStatus { state, exit_code: code, message };
    match details.status.as_str() {
        "PENDING" => JobStatus { state: JobState::Pending, exit_code: None, message },
        "RUNNING" => JobStatus::running(),
        "SUCCEEDED" => with(JobState::Succeeded, None),
        "STOPPED" => with(JobState::Cancelled, Some(message.unwrap_or_else(|| "stopped in Ray".to_owned()))),
        "FAILED" if stop_requested => {
            with(JobState::Cancelled, Some(format!("cancelled; Ray says FAILED: {}", message.unwrap_or_default())))
        }
        "FAILED" => with(JobState::Failed, message),
        other => with(JobState::Failed, Some(format!("Ray reports a status stepbox does not know: {other}"))),
    }
}

#[async_trait]
impl JobBackend for RayBackend {
    fn name(&self) -> &'static str {
        "ray"
    }

    /// A Ray job cannot be: its cluster's address and token were the
    /// launch's grants and secrets, not recorded with the job.
    fn stop_orphan(&self, job: &OrphanedJob<'_>) -> Result<(), String> {
        Err(format!("Ray job {} may still be running; stop it on its cluster", job.external_id.unwrap_or("(no id)")))
    }

    async fn submit(&self, request: JobRequest) -> Result<Arc<dyn RunningJob>, BackendError> {
        let address = request
            .options
            .get("address")
            .ok_or_else(|| BackendError::Invalid("the Ray backend needs a cluster address".to_owned()))?;
        let api =
            RayApi::new(address, request.options.secret("token-secret").cloned()).map_err(BackendError::Failed)?;
        let pip = match &request.runtime {
            JobRuntime::Host => None,
            JobRuntime::Environment(environment) => {
                Some(environment.requirements().map_err(|error| BackendError::Failed(error.to_string()))?)
            }
            JobRuntime::Image(image) => {
                return Err(BackendError::Unsupported(format!(
                    "the Ray backend runs commands in the cluster's Python, with requirements from \
                     requirements.install, not images ({image}); use the container backend for images"
                )));
            }
        };
        let working_dir = match &request.working_dir {
            Some(dir) => Some(upload_working_dir(&api, dir).await?),
            None => None,
        };
        let body = submit_body(&request, working_dir.as_deref(), pip)?;
        with_retries("Ray", "submit the job", || api.submit(&body))
            .await
            .map_err(|error| BackendError::Failed(error.message().to_owned()))?;
        let id = submission_id(&request.id);
        tracing::debug!("job {} is Ray job {id} on {}", request.id, api.address());
        let job = RayJob { api, id, copied: Mutex::new(0) };
        Ok(remote::follow(Arc::new(job), request.log, request.timeout, self.grace))
    }
}

/// Zip the working directory and upload it unless the cluster has it.
async fn upload_working_dir(api: &RayApi, dir: &std::path::Path) -> Result<String, BackendError> {
    let dir = dir.to_owned();
    let package = tokio::task::spawn_blocking(move || package(&dir))
        .await
        .map_err(|error| BackendError::Failed(format!("packaging the working directory failed: {error}")))?
        .map_err(BackendError::Invalid)?;
    let uri = format!("gcs://{}", package.name);
    let exists = with_retries("Ray", "look for the working-directory package", || api.has_package(&package.name))
        .await
        .map_err(|error| BackendError::Failed(error.message().to_owned()))?;
    if !exists {
        tracing::debug!("uploading {uri} ({} bytes)", package.zip.len());
        with_retries("Ray", "upload the working directory", || api.upload_package(&package.name, package.zip.clone()))
            .await
            .map_err(|error| BackendError::Failed(error.message().to_owned()))?;
    }
    Ok(uri)
}

/// One submitted Ray job.
struct RayJob {
    api: RayApi,
    id: String,
    /// Bytes of the job's log already copied.
    copied: Mutex<usize>,
}

#[async_trait]
impl EngineJob for RayJob {
    fn engine(&self) -> &'static str {
        "Ray"
    }

    fn external_id(&self) -> String {
        self.id.clone()
    }

    async fn poll(&self, stop_requested: bool) -> Result<JobStatus, EngineError> {
        Ok(status_of(&self.api.job(&self.id).await?, stop_requested))
    }

    async fn collect_output(&self, log: &JobLog) {
        // Ray serves the whole log; copy what is new since the last call.
        let Ok(logs) = self.api.logs(&self.id).await else { return };
        let mut copied = self.copied.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(new) = logs.as_bytes().get(*copied..).filter(|new| !new.is_empty()) {
            log.write(Stream::Stdout, new);
            *copied = logs.len();
        }
    }

    async fn stop(&self, force: bool) -> Result<(), EngineError> {
        // Ray's stop is already SIGTERM, then SIGKILL after its own wait.
        with_retries("Ray", "stop the job", || self.api.stop(&self.id)).await?;
        if !force && self.api.job(&self.id).await.is_ok_and(|details| details.status == "PENDING") {
            // Ray delivers a stop to the job's supervisor, which does not
            // exist until the job's resources and runtime env are ready.
            tracing::warn!(
                "Ray job {} has not started, and Ray cannot stop a job before it starts: it stays pending \
                 until it starts (then stops) or until Ray fails it after RAY_JOB_START_TIMEOUT_SECONDS \
                 (15 minutes by default)",
                self.id
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details(status: &str, message: Option<&str>, code: Option<i32>) -> JobDetails {
        JobDetails { status: status.to_owned(), message: message.map(str::to_owned), driver_exit_code: code }
    }

    #[test]
    fn a_job_maps_onto_the_submit_request() {
        let log = JobLog::create(
            &std::env::temp_dir().join(format!("stepbox-ray-test-{}.log", std::process::id())),
            1 << 20,
            Arc::new(crate::backends::TerminalOutput::new()),
        )
        .expect("a job log");
        let request = JobRequest {
            id: "j1".into(),
            run_id: "r1".into(),
            name: "train-1".into(),
            command: vec!["python".into(), "train.py".into(), "--msg".into(), "it's here".into()],
            env: vec![("MODE".into(), "eval".into())],
            working_dir: None,
            resources: crate::backends::JobResources {
                cpu_count: Some(1.5),
                gpu_count: Some(2),
                gpu_class: Some("A100".into()),
                memory_bytes: Some(1 << 30),
            },
            timeout: None,
            runtime: JobRuntime::Host,
            confinement: None,
            network: false,
            log: Arc::new(log),
            options: Default::default(),
            closing: None,
            registry_login: None,
        };
        let body =
            submit_body(&request, Some("gcs://_ray_pkg_ab.zip"), Some(vec!["six==1.16.0".into()])).expect("a body");
        let entrypoint = body["entrypoint"].as_str().expect("a string");
        assert_eq!(
            shlex::split(entrypoint),
            Some(request.command.clone()),
            "the shell gets the exact argv: {entrypoint}"
        );
        assert_eq!(body["submission_id"], "stepbox-j1");
        assert_eq!(body["runtime_env"]["env_vars"]["MODE"], "eval");
        assert_eq!(body["runtime_env"]["working_dir"], "gcs://_ray_pkg_ab.zip");
        assert_eq!(body["runtime_env"]["pip"]["packages"][0], "six==1.16.0");
        assert_eq!(body["entrypoint_num_cpus"], 1.5);
        assert_eq!(body["entrypoint_num_gpus"], 2);
        assert_eq!(body["entrypoint_resources"]["accelerator_type:A100"], 0.001);
        assert_eq!(body["entrypoint_memory"], 1u64 << 30);
        assert_eq!(body["metadata"]["stepbox.job"], "j1");
    }

    #[test]
    fn every_ray_status_has_a_meaning() {
        let failed = details(
            "FAILED",
            Some(
                "Job entrypoint command failed with exit code 3, last available logs (truncated to 20,000 chars):\nboom",
            ),
            Some(3),
        );
        let status = status_of(&failed, false);
        assert_eq!((status.state, status.exit_code), (JobState::Failed, Some(3)));
        assert_eq!(status.message.as_deref(), Some("Job entrypoint command failed with exit code 3"));
        assert_eq!(status_of(&failed, true).state, JobState::Cancelled);
        assert_eq!(status_of(&details("SUCCEEDED", None, Some(0)), false).state, JobState::Succeeded);
        assert_eq!(status_of(&details("STOPPED", None, None), false).state, JobState::Cancelled);
        assert_eq!(status_of(&details("PENDING", None, None), false).state, JobState::Pending);
        assert_eq!(status_of(&details("RUNNING", None, None), false).state, JobState::Running);
        assert_eq!(status_of(&details("EXPLODED", None, None), false).state, JobState::Failed);
    }
}
