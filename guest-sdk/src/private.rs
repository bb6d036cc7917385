//! The glue behind `export_flavor!`. Not part of the public API.

use serde::de::DeserializeOwned;

use crate::bindings::exports::stepbox::operator::operator::FlavorMetadata;
use crate::{ConfigError, Flavor, LaunchError, LaunchReport, LaunchRequest};

/// The flavor's metadata with the JSON Schemas of its config and settings.
pub fn metadata<F: Flavor>() -> FlavorMetadata {
    let info = F::info();
    FlavorMetadata {
        name: info.name,
        display_name: info.display_name,
        version: info.version,
        description: info.description,
        docs_url: info.docs_url,
        config_schema: schema_of::<F::Config>(),
        settings_schema: schema_of::<F::Settings>(),
    }
}

fn schema_of<T: schemars::JsonSchema>() -> String {
    serde_json::to_string(&schemars::schema_for!(T)).unwrap_or_else(|_| "{}".to_owned())
}

/// Decode `json` into `T`, naming the field that is wrong.
fn decode<T: DeserializeOwned>(json: &str, what: &str) -> Result<T, ConfigError> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    let mut deserializer = serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let message = format!("{what}: {}", without_position(&error.inner().to_string()));
        if path == "." || path.is_empty() { ConfigError::whole(message) } else { ConfigError::field(&path, message) }
    })
}

/// serde_json ends messages with " at line L column C", meaningless to a
/// user who typed `--config key=value`.
fn without_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(at) if message[at..].contains(" column ") => &message[..at],
        _ => message,
    }
}

pub fn validate_config<F: Flavor>(config: &str) -> Result<(), ConfigError> {
    let config: F::Config = decode(config, "invalid configuration")?;
    F::validate(&config)
}

pub fn launch<F: Flavor>(config: &str, request: LaunchRequest) -> Result<LaunchReport, LaunchError> {
    let config: F::Config = decode(config, "invalid configuration")?;
    F::validate(&config)?;
    let settings: F::Settings = if request.settings.trim().is_empty() || request.settings.trim() == "null" {
        F::Settings::default()
    } else {
        decode(&request.settings, "invalid step settings")?
    };
    F::launch(config, settings, request)
}
