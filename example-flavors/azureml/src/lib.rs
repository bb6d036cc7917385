//! `azureml`: runs a step as an Azure Machine Learning command job.
//!
//! The flavor takes the step's image from the launch, or builds and pushes
//! one with the host's `images` capability; registers it as an environment
//! version (a command job names an environment, not an image); creates the
//! command job on serverless compute or a named compute target; polls the
//! job with backoff until it ends, printing its status changes and its logs
//! from Run History; and reports the outcome with Run History's error. When
//! the launch is cancelled it calls the job's `cancel`.
//!
//! It holds no Azure credential: the step operator grants the ARM and Run
//! History origins, and the host gets an Entra ID token with client
//! credentials and adds it (`--grant
//! http-credential=ORIGIN=azure-client-credentials:SECRET`). Log files are
//! read from SAS URLs, which carry their own authorization. Config and
//! settings mirror ZenML's AzureML step operator (docs/FLAVORS.md).

mod gpus;
mod history;
mod job;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use stepbox_guest::cancellation::Cancelled;
use stepbox_guest::http::{CallError, call_json};
use stepbox_guest::remote::{Poll, Stopped, check_endpoint, check_max_poll_interval, poll_until, report, watch_stop};
use stepbox_guest::schemars::{self, JsonSchema};
use stepbox_guest::{ConfigError, Flavor, FlavorInfo, JobState, LaunchError, LaunchReport, LaunchRequest, images, log};

/// Configuration of a step operator that uses the `azureml` flavor (ZenML's
/// `AzureMLStepOperatorConfig`; its service-principal fields are a stored
/// secret here, applied by the host).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    subscription_id: String,
    resource_group: String,
    workspace_name: String,
    /// The image to build on when a launch brings no image.
    base_image: Option<String>,
    /// The repository (an Azure Container Registry) built images are pushed to.
    repository: Option<String>,
    /// Where the step's code goes in a built image.
    #[serde(default = "stepbox_guest::images::default_code_dir")]
    code_dir: String,
    /// Ignore patterns (gitignore syntax) for the step's source directory.
    #[serde(default)]
    ignore: Vec<String>,
    /// The environment whose versions name the steps' images.
    #[serde(default = "default_environment_name")]
    environment_name: String,
    /// The Azure Resource Manager endpoint instead of `https://management.azure.com`.
    endpoint_url: Option<String>,
    /// The Machine Learning REST API version.
    #[serde(default = "default_api_version")]
    api_version: String,
    /// The longest wait between two status polls, in seconds.
    #[serde(default = "stepbox_guest::remote::default_max_poll_interval")]
    max_poll_interval_seconds: u64,
}

fn default_environment_name() -> String {
    "stepbox-step-images".to_owned()
}

fn default_api_version() -> String {
    "2025-12-01".to_owned()
}

/// Per-step settings (ZenML's `AzureMLStepOperatorSettings`).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// `serverless` (the default), `compute-instance` or `compute-cluster`.
    mode: Option<String>,
    /// The compute target to run on (needed unless serverless).
    #[serde(alias = "compute_target_name")]
    compute_name: Option<String>,
    /// The VM size, such as `Standard_NC6s_v3` (serverless).
    #[serde(alias = "size")]
    instance_type: Option<String>,
    /// How many nodes (default 1).
    instance_count: Option<u32>,
    /// The container's shared memory, such as `2g`.
    shm_size: Option<String>,
    /// More environment variables for the job (the step's own win).
    #[serde(default)]
    environment: BTreeMap<String, String>,
    /// Cancel the job after this many seconds.
    timeout_seconds: Option<u64>,
}

struct AzureMl;

impl Flavor for AzureMl {
    type Config = Config;
    type Settings = Settings;

    fn info() -> FlavorInfo {
        FlavorInfo::new("azureml", "Azure Machine Learning", env!("CARGO_PKG_VERSION"))
            .description("Runs the step as an Azure ML command job; the host holds the Entra ID credential.")
            .docs_url("https://learn.microsoft.com/rest/api/azureml/jobs/create-or-update")
    }

    fn validate(config: &Config) -> Result<(), ConfigError> {
        let name_like =
            |text: &str| !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "-_.()".contains(c));
        for (field, value) in [
            ("subscription_id", &config.subscription_id),
            ("resource_group", &config.resource_group),
            ("workspace_name", &config.workspace_name),
            ("environment_name", &config.environment_name),
        ] {
            if !name_like(value) {
                return Err(ConfigError::field(field, "must be a non-empty Azure name (letters, digits, -_.())"));
            }
        }
        check_endpoint("endpoint_url", config.endpoint_url.as_deref())?;
        check_max_poll_interval(config.max_poll_interval_seconds)
    }

    fn launch(config: Config, settings: Settings, request: LaunchRequest) -> Result<LaunchReport, LaunchError> {
        let workspace = Workspace::new(&config);
        let compute_id = compute(&settings, &workspace)?;
        gpus::check(compute_id.is_none(), settings.instance_type.as_deref(), request.resources.gpu_count)?;
        if request.resources.gpu_count.is_some_and(|gpus| gpus > 0) && compute_id.is_some() {
            log::info("the step's GPUs are those of the compute target; Azure ML does not size a job on one");
        }
        let image = images::step_image(
            &request,
            config.base_image.as_deref(),
            "base_image",
            config.repository.as_deref(),
            &config.code_dir,
            &config.ignore,
        )?;

        // The environment version first: the job refers to it.
        let version = job::environment_version(&image);
        let environment_url = workspace.url(&format!("environments/{}/versions/{version}", config.environment_name));
        call_json("PUT", &environment_url, Some(&job::environment_body(&image)))
            .map_err(|error| error.into_launch_error("Azure ML environment version"))?;
        stepbox_guest::info!("environment {}:{version} is {image}", config.environment_name);

        let mut variables = settings.environment.clone();
        variables.extend(request.environment.iter().map(|var| (var.name.clone(), var.value.clone())));
        let name = job::job_name(&request.pipeline_name, &request.step_name, &request.step_run_id);
        let command = job::command(&request.entrypoint_command).map_err(LaunchError::Failed)?;
        let tags = BTreeMap::from([
            ("stepbox-pipeline".to_owned(), request.pipeline_name.clone()),
            ("stepbox-step".to_owned(), request.step_name.clone()),
            ("stepbox-step-run-id".to_owned(), request.step_run_id.clone()),
        ]);
        let parts = job::JobParts {
            display_name: &request.step_name,
            experiment: request.pipeline_name.clone(),
            command,
            environment_id: format!("azureml:{}:{version}", config.environment_name),
            compute_id,
            environment: &variables,
            instance_count: settings.instance_count.unwrap_or(1),
            instance_type: settings.instance_type.as_deref(),
            shm_size: settings.shm_size.as_deref(),
            timeout_seconds: settings.timeout_seconds,
            tags,
        };
        let job_url = workspace.url(&format!("jobs/{name}"));
        call_json("PUT", &job_url, Some(&job::command_job(&parts)))
            .map_err(|error| error.into_launch_error("Azure ML jobs.create"))?;
        stepbox_guest::info!("created Azure ML job {name} in workspace {}", config.workspace_name);

        let mut history = history::RunHistory::discover(&workspace.url(""), &workspace.path, &name);
        follow(&workspace, &name, &mut history, Duration::from_secs(config.max_poll_interval_seconds))
    }
}

/// The workspace's ARM URLs.
struct Workspace {
    endpoint: String,
    /// `subscriptions/…/workspaces/NAME`
    path: String,
    api_version: String,
}

impl Workspace {
    fn new(config: &Config) -> Self {
        let endpoint = config.endpoint_url.as_deref().unwrap_or("https://management.azure.com");
        Self {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            path: format!(
                "subscriptions/{}/resourceGroups/{}/providers/Microsoft.MachineLearningServices/workspaces/{}",
                config.subscription_id, config.resource_group, config.workspace_name
            ),
            api_version: config.api_version.clone(),
        }
    }

    /// `…/workspaces/NAME/{rest}?api-version=…` (the workspace itself when `rest` is empty).
    fn url(&self, rest: &str) -> String {
        let rest = if rest.is_empty() { String::new() } else { format!("/{rest}") };
        format!("{}/{}{rest}?api-version={}", self.endpoint, self.path, self.api_version)
    }
}

/// The compute target's ARM id, or none for serverless.
fn compute(settings: &Settings, workspace: &Workspace) -> Result<Option<String>, LaunchError> {
    let mode = settings.mode.as_deref().unwrap_or("serverless");
    match (mode, &settings.compute_name) {
        ("serverless", None) => Ok(None),
        ("serverless", Some(_)) => {
            Err(ConfigError::field("compute_name", "is for mode compute-instance or compute-cluster, not serverless")
                .into())
        }
        ("compute-instance" | "compute-cluster", Some(name)) => {
            Ok(Some(format!("/{}/computes/{name}", workspace.path)))
        }
        ("compute-instance" | "compute-cluster", None) => {
            Err(ConfigError::field("compute_name", format!("is needed with mode {mode}")).into())
        }
        _ => Err(ConfigError::field("mode", "must be serverless, compute-instance or compute-cluster").into()),
    }
}

/// Poll the job to its end, printing status changes and logs.
fn follow(
    workspace: &Workspace,
    name: &str,
    history: &mut history::RunHistory,
    max_poll: Duration,
) -> Result<LaunchReport, LaunchError> {
    let url = workspace.url(&format!("jobs/{name}"));
    let mut last = String::new();
    let polled = poll_until(
        max_poll,
        || {
            let job = call_json("GET", &url, None)?;
            let status = job["properties"]["status"].as_str().unwrap_or("Unknown").to_owned();
            if status != last {
                stepbox_guest::info!("job {name}: {status}");
                last = status.clone();
            }
            history.poll();
            Ok(terminal(name, &status, history).map_or(Poll::Pending, Poll::Done))
        },
        CallError::is_transient,
    );
    match polled {
        Ok(report) => Ok(report),
        Err(Stopped::Cancelled(cancelled)) => Err(cancel(workspace, name, cancelled)),
        Err(Stopped::Failed(error)) => Err(error.into_launch_error("Azure ML jobs.get")),
    }
}

/// The launch's outcome once the job is in a terminal state (azure-ai-ml's
/// terminal set: Completed, Failed, Canceled, NotResponding, Paused).
fn terminal(name: &str, status: &str, history: &mut history::RunHistory) -> Option<LaunchReport> {
    match status.to_ascii_lowercase().as_str() {
        "completed" => Some(report(JobState::Succeeded, format!("Azure ML job {name} completed"))),
        "canceled" => Some(report(JobState::Cancelled, format!("Azure ML job {name} was canceled"))),
        "failed" | "notresponding" | "paused" => {
            let reason = history.failure().unwrap_or_else(|| "Azure ML gave no reason".to_owned());
            Some(report(JobState::Failed, format!("Azure ML job {name} ended {status}: {reason}")))
        }
        _ => None,
    }
}

/// The launch was cancelled: cancel the job (a long-running operation; the
/// job's own status says when it is done), look briefly, and report.
fn cancel(workspace: &Workspace, name: &str, cancelled: Cancelled) -> LaunchError {
    stepbox_guest::info!("{cancelled}: canceling Azure ML job {name}");
    if let Err(error) = call_json("POST", &workspace.url(&format!("jobs/{name}/cancel")), None) {
        log::warn(&format!("canceling Azure ML job {name} failed: {error}; the job may still be running"));
        return LaunchError::Cancelled(format!("{cancelled}; canceling Azure ML job {name} failed: {error}"));
    }
    let job = workspace.url(&format!("jobs/{name}"));
    let look =
        || call_json("GET", &job, None).ok().and_then(|job| job["properties"]["status"].as_str().map(str::to_owned));
    let status = watch_stop("CancelRequested", look, |status| status.eq_ignore_ascii_case("canceled"));
    LaunchError::Cancelled(format!("{cancelled}; Azure ML job {name} was asked to cancel (now {status})"))
}

stepbox_guest::export_flavor!(AzureMl);
