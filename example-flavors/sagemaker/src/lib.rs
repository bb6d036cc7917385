//! `sagemaker`: runs a step as an Amazon SageMaker training job.
//!
//! The flavor takes the step's image from the launch, or builds and pushes
//! one with the host's `images` capability; creates the training job
//! (`CreateTrainingJob`) with the step's entrypoint and environment; polls
//! `DescribeTrainingJob` with backoff until the job ends, printing its
//! status changes and its CloudWatch logs as they come; and reports the
//! outcome with SageMaker's failure reason. When the launch is cancelled
//! (Ctrl-C, `stepbox cancel`, the wall-clock budget) it calls
//! `StopTrainingJob` and reports the launch cancelled.
//!
//! It holds no AWS credential: the step operator grants the SageMaker and
//! CloudWatch Logs origins, and the host signs every request with SigV4
//! (`--grant http-credential=ORIGIN=aws-sigv4:SECRET`). Config and settings
//! mirror ZenML's SageMaker step operator; docs/FLAVORS.md has the table.

mod api;
mod gpus;
mod job;
mod logs;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use stepbox_guest::cancellation::Cancelled;
use stepbox_guest::remote::{Poll, Stopped, check_endpoint, check_max_poll_interval, poll_until, report, watch_stop};
use stepbox_guest::schemars::{self, JsonSchema};
use stepbox_guest::{ConfigError, Flavor, FlavorInfo, JobState, LaunchError, LaunchReport, LaunchRequest, images, log};

use api::{AwsApi, AwsError};

/// Configuration of a step operator that uses the `sagemaker` flavor
/// (ZenML's `SagemakerStepOperatorConfig`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The IAM role SageMaker assumes to run the job (its ARN).
    role: String,
    /// The S3 bucket (or `s3://bucket/prefix`) for the job's output; SageMaker requires one.
    bucket: String,
    /// The AWS region, such as `us-east-1`.
    region: String,
    /// The image to build on when a launch brings no image.
    base_image: Option<String>,
    /// The repository (an ECR repository) built images are pushed to.
    repository: Option<String>,
    /// Where the step's code goes in a built image, and the job's working directory.
    #[serde(default = "stepbox_guest::images::default_code_dir")]
    code_dir: String,
    /// Ignore patterns (gitignore syntax) for the step's source directory.
    #[serde(default)]
    ignore: Vec<String>,
    /// The SageMaker API endpoint instead of `https://api.sagemaker.REGION.amazonaws.com` (a VPC endpoint, an emulator).
    endpoint_url: Option<String>,
    /// The CloudWatch Logs endpoint instead of `https://logs.REGION.amazonaws.com`.
    logs_endpoint_url: Option<String>,
    /// The longest wait between two status polls, in seconds.
    #[serde(default = "stepbox_guest::remote::default_max_poll_interval")]
    max_poll_interval_seconds: u64,
}

/// Per-step settings (`step_operator.sagemaker` in ZenML; its
/// `SagemakerStepOperatorSettings`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// The training instance type.
    #[serde(default = "default_instance_type")]
    instance_type: String,
    /// Recorded as the job's `zenml:experiment` tag.
    experiment_name: Option<String>,
    /// Input data: one S3 URI (the `training` channel), or channel name → S3 URI.
    input_data_s3_uri: Option<InputData>,
    /// The Estimator arguments stepbox maps onto the training job.
    #[serde(default)]
    estimator_args: EstimatorArgs,
    /// More environment variables for the job (the step's own win).
    #[serde(default)]
    environment: BTreeMap<String, String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            instance_type: default_instance_type(),
            experiment_name: None,
            input_data_s3_uri: None,
            estimator_args: EstimatorArgs::default(),
            environment: BTreeMap::new(),
        }
    }
}

fn default_instance_type() -> String {
    "ml.m5.large".to_owned()
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
enum InputData {
    One(String),
    Channels(BTreeMap<String, String>),
}

/// The SageMaker Python SDK's Estimator arguments this flavor understands;
/// any other is refused rather than ignored.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct EstimatorArgs {
    /// Instances to train on (default 1).
    instance_count: Option<u32>,
    /// The storage volume per instance, in GB (default 30).
    volume_size: Option<u32>,
    /// The job's longest run, in seconds (default 86400, one day).
    max_run: Option<u64>,
    /// Train on spot instances; `max_wait` is then required.
    use_spot_instances: Option<bool>,
    /// With spot instances: the longest wait for capacity plus run, in seconds.
    max_wait: Option<u64>,
    /// The VPC subnets the job runs in (with `security_group_ids`).
    subnets: Option<Vec<String>>,
    security_group_ids: Option<Vec<String>>,
    /// Tags for the training job.
    tags: Option<BTreeMap<String, String>>,
}

struct Sagemaker;

impl Flavor for Sagemaker {
    type Config = Config;
    type Settings = Settings;

    fn info() -> FlavorInfo {
        FlavorInfo::new("sagemaker", "Amazon SageMaker", env!("CARGO_PKG_VERSION"))
            .description("Runs the step as a SageMaker training job; the host signs the AWS requests.")
            .docs_url("https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateTrainingJob.html")
    }

    fn validate(config: &Config) -> Result<(), ConfigError> {
        let role_ok =
            config.role.starts_with("arn:aws") && config.role.contains(":iam::") && config.role.contains(":role/");
        if !role_ok {
            return Err(ConfigError::field("role", "must be an IAM role ARN, arn:aws:iam::ACCOUNT:role/NAME"));
        }
        if config.region.is_empty()
            || !config.region.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(ConfigError::field("region", "must be an AWS region such as us-east-1"));
        }
        if config.bucket.trim_start_matches("s3://").is_empty() {
            return Err(ConfigError::field("bucket", "must name an S3 bucket"));
        }
        check_endpoint("endpoint_url", config.endpoint_url.as_deref())?;
        check_endpoint("logs_endpoint_url", config.logs_endpoint_url.as_deref())?;
        check_max_poll_interval(config.max_poll_interval_seconds)
    }

    fn launch(config: Config, settings: Settings, request: LaunchRequest) -> Result<LaunchReport, LaunchError> {
        if !settings.instance_type.starts_with("ml.") {
            return Err(
                ConfigError::field("instance_type", "must be a SageMaker instance type such as ml.m5.large").into()
            );
        }
        let resources = &request.resources;
        gpus::check(&settings.instance_type, resources.gpu_count, resources.gpu_class.as_deref())?;
        if resources.cpu_count.is_some() || resources.memory_bytes.is_some() {
            log::warn(
                "SageMaker sizes a job by its instance_type setting; the step's CPU and memory settings are not used",
            );
        }
        let image = images::step_image(
            &request,
            config.base_image.as_deref(),
            "base_image",
            config.repository.as_deref(),
            &config.code_dir,
            &config.ignore,
        )?;
        let name = job::job_name(&request.pipeline_name, &request.step_name, &request.step_run_id);
        let body = create_request(&config, &settings, &request, &name, &image)?;
        let sagemaker = AwsApi {
            endpoint: config
                .endpoint_url
                .clone()
                .unwrap_or_else(|| format!("https://api.sagemaker.{}.amazonaws.com/", config.region)),
            target_prefix: "SageMaker",
            scope: format!("{}/sagemaker", config.region),
        };
        let logs = AwsApi {
            endpoint: config
                .logs_endpoint_url
                .clone()
                .unwrap_or_else(|| format!("https://logs.{}.amazonaws.com/", config.region)),
            target_prefix: "Logs_20140328",
            scope: format!("{}/logs", config.region),
        };
        let created =
            sagemaker.call("CreateTrainingJob", &body).map_err(|error| failure("CreateTrainingJob", error))?;
        let arn = created["TrainingJobArn"].as_str().unwrap_or(&name).to_owned();
        stepbox_guest::info!("created SageMaker training job {name} ({arn}) on {} in {image}", settings.instance_type);
        follow(&sagemaker, &logs, &name, Duration::from_secs(config.max_poll_interval_seconds))
    }
}

/// The `CreateTrainingJob` input for this step.
fn create_request(
    config: &Config,
    settings: &Settings,
    request: &LaunchRequest,
    name: &str,
    image: &str,
) -> Result<Value, LaunchError> {
    let mut variables = settings.environment.clone();
    variables.extend(request.environment.iter().map(|var| (var.name.clone(), var.value.clone())));
    let environment = job::environment(&variables).map_err(|message| ConfigError::field("environment", &message))?;
    let command = job::entrypoint(&request.entrypoint_command).map_err(LaunchError::Failed)?;
    let args = &settings.estimator_args;
    let spot = match (args.use_spot_instances, args.max_wait) {
        (Some(true), Some(wait)) => Some(wait),
        (Some(true), None) => {
            return Err(ConfigError::field("estimator_args.max_wait", "is required with use_spot_instances").into());
        }
        _ => None,
    };
    let vpc = match (&args.subnets, &args.security_group_ids) {
        (Some(subnets), Some(groups)) => Some((subnets.clone(), groups.clone())),
        (None, None) => None,
        _ => {
            return Err(ConfigError::field("estimator_args.subnets", "and security_group_ids go together").into());
        }
    };
    let inputs = match &settings.input_data_s3_uri {
        None => BTreeMap::new(),
        Some(InputData::One(uri)) => BTreeMap::from([("training".to_owned(), uri.clone())]),
        Some(InputData::Channels(channels)) => channels.clone(),
    };
    let mut tags = args.tags.clone().unwrap_or_default();
    tags.insert("stepbox:pipeline".to_owned(), request.pipeline_name.clone());
    tags.insert("stepbox:step".to_owned(), request.step_name.clone());
    tags.insert("stepbox:step-run-id".to_owned(), request.step_run_id.clone());
    if let Some(experiment) = &settings.experiment_name {
        tags.insert("zenml:experiment".to_owned(), experiment.clone());
    }
    let output_path =
        if config.bucket.starts_with("s3://") { config.bucket.clone() } else { format!("s3://{}/", config.bucket) };
    let parts = job::JobParts {
        role: &config.role,
        image,
        command,
        output_path,
        instance_type: &settings.instance_type,
        instance_count: args.instance_count.unwrap_or(1),
        volume_size_gb: args.volume_size.unwrap_or(30),
        max_runtime_seconds: args.max_run.unwrap_or(86_400),
        environment,
        inputs,
        spot,
        vpc,
        tags,
    };
    Ok(job::create_request(name, &parts))
}

/// A failed call, as the launch's error: a host refusal is `denied`.
fn failure(operation: &str, error: AwsError) -> LaunchError {
    match &error {
        AwsError::Transport(http) if http.is_denied() => LaunchError::Denied(format!("{operation}: {error}")),
        _ => LaunchError::Failed(format!("SageMaker {operation}: {error}")),
    }
}

/// Poll the job to its end, printing status changes and logs.
fn follow(sagemaker: &AwsApi, logs: &AwsApi, name: &str, max_poll: Duration) -> Result<LaunchReport, LaunchError> {
    let mut follower = logs::LogFollower::new(name);
    let mut last = String::new();
    let polled = poll_until(
        max_poll,
        || {
            let job = sagemaker.call("DescribeTrainingJob", &json!({ "TrainingJobName": name }))?;
            let status = job["TrainingJobStatus"].as_str().unwrap_or("Unknown").to_owned();
            let shown = format!("{status} ({})", job["SecondaryStatus"].as_str().unwrap_or(""));
            if shown != last {
                stepbox_guest::info!("training job {name}: {shown}");
                last = shown;
            }
            follower.poll(logs);
            Ok(terminal(name, &status, &job).map_or(Poll::Pending, Poll::Done))
        },
        AwsError::is_transient,
    );
    match polled {
        Ok(report) => Ok(report),
        Err(Stopped::Cancelled(cancelled)) => Err(stop(sagemaker, name, cancelled)),
        Err(Stopped::Failed(error)) => Err(failure("DescribeTrainingJob", error)),
    }
}

/// The launch's outcome once the job is in a terminal state.
fn terminal(name: &str, status: &str, job: &Value) -> Option<LaunchReport> {
    let reason = job["FailureReason"].as_str().unwrap_or("SageMaker gave no reason");
    match status {
        "Completed" => {
            let billable =
                job["BillableTimeInSeconds"].as_u64().map(|s| format!(", {s} s billable")).unwrap_or_default();
            Some(report(JobState::Succeeded, format!("SageMaker training job {name} completed{billable}")))
        }
        "Failed" => Some(report(JobState::Failed, format!("SageMaker training job {name} failed: {reason}"))),
        "Stopped" => Some(report(JobState::Cancelled, format!("SageMaker training job {name} was stopped"))),
        _ => None,
    }
}

/// The launch was cancelled: stop the job, wait briefly for SageMaker to say
/// so, and report the launch cancelled.
fn stop(sagemaker: &AwsApi, name: &str, cancelled: Cancelled) -> LaunchError {
    stepbox_guest::info!("{cancelled}: stopping SageMaker training job {name}");
    let input = json!({ "TrainingJobName": name });
    if let Err(error) = sagemaker.call("StopTrainingJob", &input) {
        log::warn(&format!("StopTrainingJob for {name} failed: {error}; the job may still be running"));
        return LaunchError::Cancelled(format!("{cancelled}; stopping SageMaker training job {name} failed: {error}"));
    }
    let look = || {
        let job = sagemaker.call("DescribeTrainingJob", &input).ok()?;
        job["TrainingJobStatus"].as_str().map(str::to_owned)
    };
    let status = watch_stop("Stopping", look, |status| matches!(status, "Stopped" | "Completed" | "Failed"));
    LaunchError::Cancelled(format!("{cancelled}; SageMaker training job {name} was asked to stop (now {status})"))
}

stepbox_guest::export_flavor!(Sagemaker);
