//! `vertex`: runs a step as a Google Cloud Vertex AI custom job.
//!
//! The flavor takes the step's image from the launch, or builds and pushes
//! one with the host's `images` capability; creates a custom job
//! (`customJobs.create`) with one worker pool running the step's entrypoint;
//! polls `customJobs.get` with backoff until the job ends, printing its state
//! changes and its Cloud Logging entries; and reports the outcome with the
//! job's error. When the launch is cancelled it calls `customJobs.cancel`.
//!
//! It holds no Google credential: the step operator grants the Vertex AI and
//! Logging origins and the token endpoint, and the host exchanges a
//! service-account key for an access token and adds it to each request
//! (`--grant http-credential=ORIGIN=google-service-account:SECRET`). Config
//! and settings mirror ZenML's Vertex step operator (docs/FLAVORS.md).

mod gpus;
mod job;
mod logs;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use stepbox_guest::cancellation::Cancelled;
use stepbox_guest::http::{CallError, call_json};
use stepbox_guest::remote::{Poll, Stopped, check_endpoint, check_max_poll_interval, poll_until, report, watch_stop};
use stepbox_guest::schemars::{self, JsonSchema};
use stepbox_guest::{ConfigError, Flavor, FlavorInfo, JobState, LaunchError, LaunchReport, LaunchRequest, images, log};

/// Configuration of a step operator that uses the `vertex` flavor (ZenML's
/// `VertexStepOperatorConfig`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The Google Cloud project id (or number).
    project: String,
    /// The region jobs run in, such as `us-central1`.
    region: String,
    /// The service account the job runs as.
    service_account: Option<String>,
    /// The VPC network the job is peered with (`projects/NUMBER/global/networks/NAME`).
    network: Option<String>,
    /// A Cloud KMS key for the job's resources.
    encryption_spec_key_name: Option<String>,
    /// The image to build on when a launch brings no image.
    base_image: Option<String>,
    /// The repository (Artifact Registry) built images are pushed to.
    repository: Option<String>,
    /// Where the step's code goes in a built image.
    #[serde(default = "stepbox_guest::images::default_code_dir")]
    code_dir: String,
    /// Ignore patterns (gitignore syntax) for the step's source directory.
    #[serde(default)]
    ignore: Vec<String>,
    /// The Vertex AI endpoint instead of `https://REGION-aiplatform.googleapis.com`.
    endpoint_url: Option<String>,
    /// The Cloud Logging endpoint instead of `https://logging.googleapis.com`.
    logging_endpoint_url: Option<String>,
    /// The longest wait between two status polls, in seconds.
    #[serde(default = "stepbox_guest::remote::default_max_poll_interval")]
    max_poll_interval_seconds: u64,
}

/// Per-step settings (ZenML's `VertexStepOperatorSettings`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// The machine type of the worker pool.
    #[serde(default = "default_machine_type")]
    machine_type: String,
    /// An accelerator, such as `NVIDIA_TESLA_T4`.
    accelerator_type: Option<String>,
    /// How many accelerators (default: the step's GPU count, else 1).
    accelerator_count: Option<u32>,
    /// The boot disk size, in GB.
    #[serde(default = "default_boot_disk_size")]
    boot_disk_size_gb: u32,
    /// `pd-ssd`, `pd-standard` or `hyperdisk-balanced`.
    #[serde(default = "default_boot_disk_type")]
    boot_disk_type: String,
    /// Run on this persistent resource instead of new machines.
    persistent_resource_id: Option<String>,
    /// Cancel the job after this many seconds (Vertex's default is 7 days).
    timeout_seconds: Option<u64>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            machine_type: default_machine_type(),
            accelerator_type: None,
            accelerator_count: None,
            boot_disk_size_gb: default_boot_disk_size(),
            boot_disk_type: default_boot_disk_type(),
            persistent_resource_id: None,
            timeout_seconds: None,
        }
    }
}

fn default_machine_type() -> String {
    "n1-standard-4".to_owned()
}

fn default_boot_disk_size() -> u32 {
    100
}

fn default_boot_disk_type() -> String {
    "pd-ssd".to_owned()
}

struct Vertex;

impl Flavor for Vertex {
    type Config = Config;
    type Settings = Settings;

    fn info() -> FlavorInfo {
        FlavorInfo::new("vertex", "Google Cloud Vertex AI", env!("CARGO_PKG_VERSION"))
            .description("Runs the step as a Vertex AI custom job; the host holds the Google credential.")
            .docs_url("https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.customJobs")
    }

    fn validate(config: &Config) -> Result<(), ConfigError> {
        let id_like = |text: &str| !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !id_like(&config.project) {
            return Err(ConfigError::field("project", "must be a Google Cloud project id such as my-project"));
        }
        if !id_like(&config.region) {
            return Err(ConfigError::field("region", "must be a region such as us-central1"));
        }
        check_endpoint("endpoint_url", config.endpoint_url.as_deref())?;
        check_endpoint("logging_endpoint_url", config.logging_endpoint_url.as_deref())?;
        check_max_poll_interval(config.max_poll_interval_seconds)
    }

    fn launch(config: Config, settings: Settings, request: LaunchRequest) -> Result<LaunchReport, LaunchError> {
        if !matches!(settings.boot_disk_type.as_str(), "pd-ssd" | "pd-standard" | "hyperdisk-balanced") {
            return Err(
                ConfigError::field("boot_disk_type", "must be pd-ssd, pd-standard or hyperdisk-balanced").into()
            );
        }
        let accelerator = accelerator(&settings, &request)?;
        let image = images::step_image(
            &request,
            config.base_image.as_deref(),
            "base_image",
            config.repository.as_deref(),
            &config.code_dir,
            &config.ignore,
        )?;
        let environment: BTreeMap<String, String> =
            request.environment.iter().map(|var| (var.name.clone(), var.value.clone())).collect();
        let labels = BTreeMap::from([
            ("stepbox-pipeline".to_owned(), job::label_value(&request.pipeline_name)),
            ("stepbox-step".to_owned(), job::label_value(&request.step_name)),
            ("stepbox-step-run-id".to_owned(), job::label_value(&request.step_run_id)),
        ]);
        let parts = job::JobParts {
            display_name: format!("{}-{}", request.pipeline_name, request.step_name),
            image: &image,
            command: &request.entrypoint_command,
            environment: &environment,
            machine_type: &settings.machine_type,
            accelerator,
            boot_disk: (&settings.boot_disk_type, settings.boot_disk_size_gb),
            service_account: config.service_account.as_deref(),
            network: config.network.as_deref(),
            kms_key: config.encryption_spec_key_name.as_deref(),
            persistent_resource_id: settings.persistent_resource_id.as_deref(),
            timeout_seconds: settings.timeout_seconds,
            labels,
        };
        let body = job::custom_job(&parts).map_err(|message| ConfigError::field("environment", &message))?;
        let endpoint = config
            .endpoint_url
            .clone()
            .unwrap_or_else(|| format!("https://{}-aiplatform.googleapis.com", config.region));
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let parent = format!("projects/{}/locations/{}", config.project, config.region);
        let created = call_json("POST", &format!("{endpoint}/v1/{parent}/customJobs"), Some(&body))
            .map_err(|error| error.into_launch_error("Vertex AI customJobs.create"))?;
        let Some(name) = created["name"].as_str().map(str::to_owned) else {
            return Err(LaunchError::Failed(format!("Vertex AI created a job but returned no name: {created}")));
        };
        stepbox_guest::info!("created Vertex AI custom job {name} on {} in {image}", settings.machine_type);
        let logging = config.logging_endpoint_url.as_deref().unwrap_or("https://logging.googleapis.com");
        let mut follower = logs::LogFollower::new(logging, &config.project, job::job_id(&name));
        follow(&endpoint, &name, &mut follower, Duration::from_secs(config.max_poll_interval_seconds))
    }
}

/// The accelerator and its count: the settings', with ZenML's rule that the
/// step's GPU count is the count when an accelerator type is set.
fn accelerator<'a>(settings: &'a Settings, request: &LaunchRequest) -> Result<Option<(&'a str, u32)>, LaunchError> {
    let resources = &request.resources;
    gpus::check(settings.accelerator_type.as_deref(), resources.gpu_count, resources.gpu_class.as_deref())?;
    match (&settings.accelerator_type, settings.accelerator_count) {
        (Some(kind), count) => Ok(Some((kind.as_str(), count.or(request.resources.gpu_count).unwrap_or(1)))),
        (None, Some(_)) => Err(ConfigError::field("accelerator_count", "needs accelerator_type").into()),
        (None, None) => Ok(None),
    }
}

/// Poll the job to its end, printing state changes and logs.
fn follow(
    endpoint: &str,
    name: &str,
    follower: &mut logs::LogFollower,
    max_poll: Duration,
) -> Result<LaunchReport, LaunchError> {
    let url = format!("{endpoint}/v1/{name}");
    let mut last = String::new();
    let polled = poll_until(
        max_poll,
        || {
            let job = call_json("GET", &url, None)?;
            let state = job["state"].as_str().unwrap_or("JOB_STATE_UNSPECIFIED").to_owned();
            if state != last {
                stepbox_guest::info!("custom job {}: {state}", job::job_id(name));
                last = state.clone();
            }
            follower.poll();
            Ok(terminal(name, &state, &job).map_or(Poll::Pending, Poll::Done))
        },
        CallError::is_transient,
    );
    match polled {
        Ok(report) => Ok(report),
        Err(Stopped::Cancelled(cancelled)) => Err(cancel(&url, name, cancelled)),
        Err(Stopped::Failed(error)) => Err(error.into_launch_error("Vertex AI customJobs.get")),
    }
}

/// The launch's outcome once the job is in a terminal state (python-aiplatform's
/// complete states, plus EXPIRED and PARTIALLY_SUCCEEDED).
fn terminal(name: &str, state: &str, job: &Value) -> Option<LaunchReport> {
    let error = job["error"]["message"].as_str().unwrap_or("Vertex AI gave no reason");
    let id = job::job_id(name);
    match state {
        "JOB_STATE_SUCCEEDED" => Some(report(JobState::Succeeded, format!("Vertex AI custom job {id} succeeded"))),
        "JOB_STATE_FAILED" => Some(report(JobState::Failed, format!("Vertex AI custom job {id} failed: {error}"))),
        "JOB_STATE_CANCELLED" => Some(report(JobState::Cancelled, format!("Vertex AI custom job {id} was cancelled"))),
        "JOB_STATE_PAUSED" | "JOB_STATE_EXPIRED" | "JOB_STATE_PARTIALLY_SUCCEEDED" => {
            Some(report(JobState::Failed, format!("Vertex AI custom job {id} ended {state}: {error}")))
        }
        _ => None,
    }
}

/// The launch was cancelled: cancel the job, look briefly for Vertex to say
/// so, and report the launch cancelled.
fn cancel(url: &str, name: &str, cancelled: Cancelled) -> LaunchError {
    let id = job::job_id(name);
    stepbox_guest::info!("{cancelled}: cancelling Vertex AI custom job {id}");
    if let Err(error) = call_json("POST", &format!("{url}:cancel"), Some(&json!({}))) {
        log::warn(&format!("customJobs.cancel for {id} failed: {error}; the job may still be running"));
        return LaunchError::Cancelled(format!("{cancelled}; cancelling Vertex AI custom job {id} failed: {error}"));
    }
    let look = || call_json("GET", url, None).ok().and_then(|job| job["state"].as_str().map(str::to_owned));
    let state = watch_stop("JOB_STATE_CANCELLING", look, |state| terminal(name, state, &json!({})).is_some());
    LaunchError::Cancelled(format!("{cancelled}; Vertex AI custom job {id} was asked to cancel (now {state})"))
}

stepbox_guest::export_flavor!(Vertex);
