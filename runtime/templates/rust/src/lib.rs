//! `{{name}}`: a stepbox flavor. It runs each step's entrypoint as one job
//! on the step operator's default backend and waits for it.
//!
//! The contract is `wit/operator.wit`; wit-bindgen generates the Rust types
//! from it. The component imports only the interfaces this code calls.

wit_bindgen::generate!({ path: "wit", world: "flavor" });

use exports::stepbox::operator::operator::{
    ConfigError, FlavorMetadata, Guest, LaunchError, LaunchReport, LaunchRequest,
};
use stepbox::operator::jobs::{self, JobSpec, Runtime};
use stepbox::operator::log::{self, Level};
use stepbox::operator::types::Error;

const CONFIG_SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "timeout_seconds": {"type": ["integer", "null"], "minimum": 1, "description": "Cancel a step that runs longer than this."}
  },
  "additionalProperties": false
}"#;
const SETTINGS_SCHEMA: &str = r#"{"type": "object", "additionalProperties": false}"#;

struct Flavor;

/// The configuration: a JSON object with an optional `timeout_seconds`.
fn timeout_seconds(config: &str) -> Result<Option<u64>, ConfigError> {
    let text = if config.trim().is_empty() { "{}" } else { config };
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|error| ConfigError { field: None, message: format!("not JSON: {error}") })?;
    let object = value
        .as_object()
        .ok_or_else(|| ConfigError { field: None, message: "expected a JSON object".into() })?;
    if let Some(key) = object.keys().find(|key| *key != "timeout_seconds") {
        return Err(ConfigError { field: Some(key.clone()), message: format!("unknown field `{key}`") });
    }
    match object.get("timeout_seconds") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(value) => match value.as_u64() {
            Some(seconds) if seconds >= 1 => Ok(Some(seconds)),
            _ => Err(ConfigError {
                field: Some("timeout_seconds".into()),
                message: format!("must be a whole number of seconds, at least 1, got {value}"),
            }),
        },
    }
}

fn host_error(error: Error) -> LaunchError {
    match error {
        Error::Denied(message) => LaunchError::Denied(message),
        Error::Cancelled(message) => LaunchError::Cancelled(message),
        Error::Invalid(message) | Error::Unsupported(message) | Error::Failed(message) => LaunchError::Failed(message),
    }
}

impl Guest for Flavor {
    fn metadata() -> FlavorMetadata {
        FlavorMetadata {
            name: "{{name}}".into(),
            display_name: "{{name}}".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Runs each step as one job and waits for it.".into(),
            docs_url: None,
            config_schema: CONFIG_SCHEMA.into(),
            settings_schema: SETTINGS_SCHEMA.into(),
        }
    }

    fn validate_config(config: String) -> Result<(), ConfigError> {
        timeout_seconds(&config).map(|_| ())
    }

    fn launch(config: String, request: LaunchRequest) -> Result<LaunchReport, LaunchError> {
        let timeout = timeout_seconds(&config).map_err(LaunchError::InvalidConfig)?;
        log::log(Level::Info, &format!("running step {}", request.step_name));
        let job = jobs::submit(&JobSpec {
            name: Some(request.step_name.clone()),
            backend: None,
            command: request.entrypoint_command.clone(),
            env: request.environment.clone(),
            working_dir: Some(request.source_root.clone()),
            resources: request.resources.clone(),
            timeout_seconds: timeout,
            runtime: Runtime::Host,
            backend_options: Vec::new(),
        })
        .map_err(host_error)?;
        let status = job.wait().map_err(host_error)?;
        Ok(LaunchReport { job_ids: vec![job.id()], state: status.state, exit_code: status.exit_code, message: status.message })
    }
}

export!(Flavor);
