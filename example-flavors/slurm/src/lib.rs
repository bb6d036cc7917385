//! `slurm`: runs a step's entrypoint as a Slurm batch job and waits for it.
//!
//! The step's requirements go into a Python environment (`requirements`)
//! under `$STEPBOX_HOME`, which the compute nodes see on the shared
//! filesystem; the entrypoint runs in it on the `slurm` backend with the
//! step's resources (CPUs, memory, GPUs as gres) and the partition, account,
//! QoS and time limit from the configuration, overridden per step.

use std::collections::BTreeMap;

use serde::Deserialize;
use stepbox_guest::schemars::{self, JsonSchema};
use stepbox_guest::{ConfigError, Flavor, FlavorInfo, LaunchError, LaunchReport, LaunchRequest, jobs, requirements};

/// Configuration of a step operator that uses the `slurm` flavor.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The partition to submit to; the cluster's default when absent.
    partition: Option<String>,
    /// The account to charge.
    account: Option<String>,
    /// The quality of service.
    qos: Option<String>,
    /// The job's time limit in minutes: Slurm ends it as TIMEOUT after this.
    time_limit_minutes: Option<u64>,
    /// The Python version of the environment made for a step's requirements.
    python_version: Option<String>,
    /// Environment variables added to every step (the step's own win).
    #[serde(default)]
    environment: BTreeMap<String, String>,
}

/// Per-step settings (`step_operator.slurm` in ZenML); each overrides the
/// configuration's field of the same name.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Settings {
    partition: Option<String>,
    account: Option<String>,
    qos: Option<String>,
    time_limit_minutes: Option<u64>,
    /// Environment variables for this step only.
    #[serde(default)]
    environment: BTreeMap<String, String>,
}

struct Slurm;

impl Flavor for Slurm {
    type Config = Config;
    type Settings = Settings;

    fn info() -> FlavorInfo {
        FlavorInfo::new("slurm", "Slurm batch job", env!("CARGO_PKG_VERSION")).description(
            "Runs each step as a Slurm batch job on the cluster the host's Slurm commands reach, and waits for it.",
        )
    }

    fn validate(config: &Config) -> Result<(), ConfigError> {
        check_time_limit("time_limit_minutes", config.time_limit_minutes)?;
        for (field, value) in [("partition", &config.partition), ("account", &config.account), ("qos", &config.qos)] {
            check_name(field, value.as_deref())?;
        }
        if let Some(name) = config.environment.keys().find(|name| !jobs::valid_env_name(name)) {
            return Err(ConfigError::field(&format!("environment.{name}"), "is not a valid environment variable name"));
        }
        Ok(())
    }

    fn launch(config: Config, settings: Settings, request: LaunchRequest) -> Result<LaunchReport, LaunchError> {
        check_time_limit("time_limit_minutes", settings.time_limit_minutes)?;
        let partition = settings.partition.or(config.partition);
        let account = settings.account.or(config.account);
        let qos = settings.qos.or(config.qos);
        for (field, value) in [("partition", &partition), ("account", &account), ("qos", &qos)] {
            check_name(field, value.as_deref())?;
        }
        let mut spec = jobs::entrypoint_spec(&request);
        spec.backend = Some("slurm".to_owned());
        spec.timeout_seconds = settings.time_limit_minutes.or(config.time_limit_minutes).map(|minutes| minutes * 60);
        jobs::set_backend_option(&mut spec, "partition", partition.clone());
        jobs::set_backend_option(&mut spec, "account", account);
        jobs::set_backend_option(&mut spec, "qos", qos);
        jobs::add_default_env(&mut spec, config.environment.into_iter().chain(settings.environment));
        if !request.requirements.is_empty() {
            stepbox_guest::info!("installing {} requirements on the shared filesystem", request.requirements.len());
            let environment = requirements::install(&request.requirements, config.python_version.as_deref())?;
            requirements::run_in(&mut spec, &environment);
        }
        stepbox_guest::info!(
            "submitting step {} to Slurm (partition {})",
            request.step_name,
            partition.as_deref().unwrap_or("default")
        );
        jobs::run_to_completion(spec)
    }
}

fn check_time_limit(field: &str, minutes: Option<u64>) -> Result<(), ConfigError> {
    match minutes {
        Some(0) => Err(ConfigError::field(field, "must be at least 1 minute")),
        Some(minutes) if minutes > 365 * 24 * 60 => Err(ConfigError::field(field, "must be at most a year")),
        _ => Ok(()),
    }
}

/// Slurm names: no spaces, not empty, not starting with `-`.
fn check_name(field: &str, value: Option<&str>) -> Result<(), ConfigError> {
    match value {
        Some(value) if value.is_empty() || value.starts_with('-') || value.contains(char::is_whitespace) => {
            Err(ConfigError::field(field, "must be a Slurm name: no spaces, not empty, not starting with `-`"))
        }
        _ => Ok(()),
    }
}

stepbox_guest::export_flavor!(Slurm);
