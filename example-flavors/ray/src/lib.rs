//! `ray`: runs a step's entrypoint as a Ray job on a Ray cluster and waits.
//!
//! The cluster's address and the name of the secret holding its token come
//! from the configuration; the host only honours what the step operator is
//! granted (`ray-address=…`, `secret=…`), and applies the token itself. The
//! step's requirements (plus the settings' `runtime_env.pip`) are resolved
//! by `requirements.install` and installed by Ray on the cluster; the
//! step's source root ships as the job's working directory; `num_cpus`,
//! `num_gpus` and `memory` become the entrypoint's resources.

use std::collections::BTreeMap;

use serde::Deserialize;
use stepbox_guest::schemars::{self, JsonSchema};
use stepbox_guest::{ConfigError, Flavor, FlavorInfo, LaunchError, LaunchReport, LaunchRequest, jobs, requirements};

/// Configuration of a step operator that uses the `ray` flavor.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The Ray dashboard address, `http://HOST:8265`. Optional when the step
    /// operator is granted exactly one `ray-address`.
    address: Option<String>,
    /// The stored secret holding the cluster's auth token (Ray's
    /// `RAY_AUTH_MODE=token`); the step operator must be granted it.
    token_secret: Option<String>,
    /// The Python version requirements are resolved for.
    python_version: Option<String>,
    /// Cancel a step that runs longer than this many seconds.
    timeout_seconds: Option<u64>,
    /// Environment variables added to every step (the step's own win).
    #[serde(default)]
    environment: BTreeMap<String, String>,
}

/// The parts of Ray's `runtime_env` a step may set.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RuntimeEnv {
    /// Environment variables of the job; each name must be granted to the
    /// step operator (`--grant job-env=NAME`, or a prefix).
    #[serde(default)]
    env_vars: BTreeMap<String, String>,
    /// More pip requirements, on top of the step's own; packages the step
    /// did not ask for need `--grant flavor-packages`.
    #[serde(default)]
    pip: Vec<String>,
}

/// Per-step settings (`step_operator.ray` in ZenML).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// CPUs reserved for the entrypoint (overrides the step's resources).
    num_cpus: Option<f64>,
    /// GPUs reserved for the entrypoint (overrides the step's resources).
    num_gpus: Option<u32>,
    /// Memory reserved for the entrypoint, in bytes.
    memory: Option<u64>,
    #[serde(default)]
    runtime_env: RuntimeEnv,
    timeout_seconds: Option<u64>,
}

struct Ray;

impl Flavor for Ray {
    type Config = Config;
    type Settings = Settings;

    fn info() -> FlavorInfo {
        FlavorInfo::new("ray", "Ray job", env!("CARGO_PKG_VERSION"))
            .description("Runs each step as a Ray job through the Ray Jobs API of a granted cluster, and waits for it.")
    }

    fn validate(config: &Config) -> Result<(), ConfigError> {
        if let Some(address) = &config.address
            && !(address.starts_with("http://") || address.starts_with("https://"))
        {
            return Err(ConfigError::field(
                "address",
                "must be an http:// or https:// address, such as http://127.0.0.1:8265",
            ));
        }
        if config.timeout_seconds == Some(0) {
            return Err(ConfigError::field("timeout_seconds", "must be at least 1 second"));
        }
        if config.token_secret.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::field("token_secret", "must name a secret"));
        }
        if let Some(name) = config.environment.keys().find(|name| !jobs::valid_env_name(name)) {
            return Err(ConfigError::field(&format!("environment.{name}"), "is not a valid environment variable name"));
        }
        Ok(())
    }

    fn launch(config: Config, settings: Settings, request: LaunchRequest) -> Result<LaunchReport, LaunchError> {
        if settings.num_cpus.is_some_and(|cpus| !cpus.is_finite() || cpus < 0.0) {
            return Err(ConfigError::field("num_cpus", "step setting must be a non-negative number").into());
        }
        if let Some(name) = settings.runtime_env.env_vars.keys().find(|name| !jobs::valid_env_name(name)) {
            return Err(ConfigError::field(
                &format!("runtime_env.env_vars.{name}"),
                "is not a valid environment variable name",
            )
            .into());
        }
        let mut spec = jobs::entrypoint_spec(&request);
        spec.backend = Some("ray".to_owned());
        spec.timeout_seconds = settings.timeout_seconds.or(config.timeout_seconds);
        jobs::set_backend_option(&mut spec, "address", config.address);
        jobs::set_backend_option(&mut spec, "token-secret", config.token_secret);
        if let Some(cpus) = settings.num_cpus {
            spec.resources.cpu_count = Some(cpus);
        }
        if let Some(gpus) = settings.num_gpus {
            spec.resources.gpu_count = Some(gpus);
        }
        if let Some(memory) = settings.memory {
            spec.resources.memory_bytes = Some(memory);
        }
        // The step's settings come first, then the configured defaults.
        jobs::add_default_env(&mut spec, settings.runtime_env.env_vars.into_iter().chain(config.environment));
        let pip: Vec<String> = request.requirements.iter().cloned().chain(settings.runtime_env.pip).collect();
        if !pip.is_empty() {
            stepbox_guest::info!("resolving {} requirements for the Ray job's runtime_env", pip.len());
            let environment = requirements::install(&pip, config.python_version.as_deref())?;
            requirements::run_in(&mut spec, &environment);
        }
        stepbox_guest::info!("submitting step {} to Ray", request.step_name);
        jobs::run_to_completion(spec)
    }
}

stepbox_guest::export_flavor!(Ray);
