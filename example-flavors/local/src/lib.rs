//! `local`: runs a step's entrypoint as a job on the machine stepbox runs on.
//!
//! The simplest useful flavor, and the reference for writing others: it
//! decodes its configuration, merges the per-step settings, installs the
//! step's Python requirements into an environment (`requirements`), submits
//! the entrypoint to run in it (`jobs`) and waits for it.

use std::collections::BTreeMap;

use serde::Deserialize;
use stepbox_guest::schemars::{self, JsonSchema};
use stepbox_guest::{ConfigError, Flavor, FlavorInfo, LaunchError, LaunchReport, LaunchRequest, jobs, requirements};

/// Configuration of a step operator that uses the `local` flavor.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Cancel a step that runs longer than this many seconds.
    timeout_seconds: Option<u64>,
    /// Environment variables added to every step (the step's own win); each
    /// name must be granted with `--grant job-env=NAME` (or a prefix).
    #[serde(default)]
    environment: BTreeMap<String, String>,
    /// Run steps in this directory instead of the step's source root: a
    /// directory inside it, or one granted with `--grant writable-dir=PATH`.
    working_dir: Option<String>,
    /// The job backend to use; the step operator's default when absent.
    backend: Option<String>,
    /// The Python version of the environment made for a step's requirements
    /// (default: the one on the machine's PATH).
    python_version: Option<String>,
    /// Variables filled in by the host from stored secrets, as variable →
    /// secret name (each binding granted with `--grant secret-env=VAR=NAME`);
    /// the flavor never sees the values.
    #[serde(default)]
    secret_environment: BTreeMap<String, String>,
}

/// Per-step settings (`step_operator.local` in ZenML).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Overrides the configured timeout for this step.
    timeout_seconds: Option<u64>,
    /// Environment variables for this step only (granted as `environment`).
    #[serde(default)]
    environment: BTreeMap<String, String>,
}

struct Local;

impl Flavor for Local {
    type Config = Config;
    type Settings = Settings;

    fn info() -> FlavorInfo {
        FlavorInfo::new("local", "Local process", env!("CARGO_PKG_VERSION"))
            .description("Runs each step as a process on the machine stepbox runs on, and waits for it.")
    }

    fn validate(config: &Config) -> Result<(), ConfigError> {
        if config.timeout_seconds == Some(0) {
            return Err(ConfigError::field("timeout_seconds", "must be at least 1 second"));
        }
        if let Some(name) = config.environment.keys().find(|name| !jobs::valid_env_name(name)) {
            return Err(ConfigError::field(
                &format!("environment.{name}"),
                "is not a valid environment variable name (letters, digits and _, not starting with a digit)",
            ));
        }
        if config.working_dir.as_deref().is_some_and(|dir| !dir.starts_with('/')) {
            return Err(ConfigError::field("working_dir", "must be an absolute path"));
        }
        Ok(())
    }

    fn launch(config: Config, settings: Settings, request: LaunchRequest) -> Result<LaunchReport, LaunchError> {
        if settings.timeout_seconds == Some(0) {
            return Err(ConfigError::field("timeout_seconds", "step setting must be at least 1 second").into());
        }
        let mut spec = jobs::entrypoint_spec(&request);
        spec.backend = config.backend;
        spec.timeout_seconds = settings.timeout_seconds.or(config.timeout_seconds);
        if let Some(dir) = config.working_dir {
            spec.working_dir = Some(dir);
        }
        jobs::add_default_env(&mut spec, config.environment.into_iter().chain(settings.environment));
        for (name, secret) in &config.secret_environment {
            spec.env.retain(|var| &var.name != name);
            jobs::add_secret_env(&mut spec, name, secret);
        }
        if !request.requirements.is_empty() {
            stepbox_guest::info!("installing {} requirements", request.requirements.len());
            let environment = requirements::install(&request.requirements, config.python_version.as_deref())?;
            requirements::run_in(&mut spec, &environment);
        }
        stepbox_guest::info!("running step {} of {}/{}", request.step_name, request.pipeline_name, request.run_name);
        jobs::run_to_completion(spec)
    }
}

stepbox_guest::export_flavor!(Local);
