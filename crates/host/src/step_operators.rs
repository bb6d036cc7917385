//! Step operators: a named flavor with a configuration the flavor accepted.
//!
//! `--config key=value` values are typed by the flavor's config schema: a key
//! whose schema says `string` keeps its text as is; any other key's value is
//! read as JSON (`3`, `true`, `[1,2]`), falling back to a string.

use std::collections::BTreeMap;
use std::sync::Arc;

use thiserror::Error;

use crate::context::Stepbox;
use crate::flavors::{self, FlavorError};
use crate::host::FlavorLogger;
use crate::instance::GuestFailure;
use crate::limits::{LimitError, Limits};
use stepbox_backends::exit;
use stepbox_store::policy::{GrantError, Grants};
use stepbox_store::store::{FlavorPin, StepOperatorRecord, StoreError};

/// Why a step-operator operation failed.
#[derive(Debug, Error)]
pub enum StepOperatorError {
    #[error("no step operator named `{0}`; `stepbox step-operator list` shows the registered ones")]
    NotFound(String),
    #[error("a step operator named `{0}` already exists; change it with `stepbox step-operator update {0}`")]
    Exists(String),
    #[error("`{0}` is not a valid step operator name: use 1-63 letters, digits, `-`, `_` or `.`")]
    BadName(String),
    #[error("the flavor `{flavor}` refused the configuration: {message}")]
    InvalidConfig { flavor: String, message: String },
    #[error("the configuration must be a JSON object, got: {0}")]
    NotAnObject(String),
    #[error("the flavor `{flavor}` failed while validating the configuration: {failure}")]
    Guest { flavor: String, failure: GuestFailure },
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error(transparent)]
    Grant(#[from] GrantError),
    #[error(transparent)]
    Flavor(#[from] FlavorError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Bad input the user can correct.
    #[error("{0}")]
    Input(String),
}

impl StepOperatorError {
    pub fn exit_code(&self) -> u8 {
        match self {
            StepOperatorError::Guest { .. } => exit::FLAVOR_ERROR,
            StepOperatorError::Flavor(error) => error.exit_code(),
            StepOperatorError::Store(_) => exit::INTERNAL,
            _ => exit::BAD_INPUT,
        }
    }
}

/// Build a config object from `key=value` pairs, typed by `schema`.
pub fn config_from_pairs(
    schema: &serde_json::Value,
    pairs: &[(String, String)],
) -> serde_json::Map<String, serde_json::Value> {
    let mut config = serde_json::Map::new();
    for (key, value) in pairs {
        config.insert(key.clone(), typed_value(schema, key, value));
    }
    config
}

fn typed_value(schema: &serde_json::Value, key: &str, text: &str) -> serde_json::Value {
    let property = &schema["properties"][key];
    let is_string = match &property["type"] {
        serde_json::Value::String(ty) => ty == "string",
        serde_json::Value::Array(types) => {
            types.iter().any(|ty| ty == "string") && !types.iter().any(|ty| ty != "string" && ty != "null")
        }
        _ => false,
    };
    if is_string {
        return serde_json::Value::String(text.to_owned());
    }
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_owned()))
}

fn valid_name(name: &str) -> bool {
    (1..=63).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Ask the flavor version `record` whether it accepts `config`.
pub async fn validate(
    stepbox: &Stepbox,
    record: &stepbox_store::store::FlavorRecord,
    config: &serde_json::Value,
) -> Result<(), StepOperatorError> {
    if !config.is_object() {
        return Err(StepOperatorError::NotAnObject(config.to_string()));
    }
    let flavor = record.name.as_str();
    let prepared = flavors::prepare(stepbox, record)?;
    let logger = Arc::new(FlavorLogger::new(flavor, None, &Limits::for_query()));
    match prepared.validate_config(logger, &config.to_string()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(StepOperatorError::InvalidConfig {
            flavor: flavor.to_owned(),
            // The flavor's words: shown with control characters made visible.
            message: crate::display::visible(&match error.field {
                Some(field) if !error.message.contains(&field) => {
                    format!("{field}: {}", error.message)
                }
                _ => error.message,
            })
            .into_owned(),
        }),
        Err(failure) => Err(StepOperatorError::Guest { flavor: flavor.to_owned(), failure }),
    }
}

/// Register a step operator after the flavor has validated its configuration.
pub async fn register(
    stepbox: &Stepbox,
    name: &str,
    flavor: &str,
    config: serde_json::Value,
    limits: BTreeMap<String, String>,
    grants: &[String],
) -> Result<StepOperatorRecord, StepOperatorError> {
    if !valid_name(name) {
        return Err(StepOperatorError::BadName(name.to_owned()));
    }
    Limits::default().with_overrides(&limits)?;
    let mut granted = Grants::default();
    for grant in grants {
        granted.grant(grant)?;
    }
    if stepbox.db.step_operator(name)?.is_some() {
        return Err(StepOperatorError::Exists(name.to_owned()));
    }
    validate(stepbox, &flavors::get(stepbox, flavor)?.record, &config).await?;
    let now = stepbox_store::store::now();
    let record = StepOperatorRecord {
        name: name.to_owned(),
        flavor: flavor.to_owned(),
        config,
        limits,
        grants: granted,
        pin: None,
        created_at: now.clone(),
        updated_at: now,
    };
    if !stepbox.db.insert_step_operator(&record)? {
        return Err(StepOperatorError::Exists(name.to_owned()));
    }
    Ok(record)
}

/// What `update` changes.
#[derive(Debug, Default)]
pub struct Update {
    /// A whole new configuration.
    pub replace: Option<serde_json::Value>,
    /// Configuration keys to add or replace.
    pub set: serde_json::Map<String, serde_json::Value>,
    /// Configuration keys to remove.
    pub unset: Vec<String>,
    /// Limits to override.
    pub limits: BTreeMap<String, String>,
    /// Limit overrides to remove (back to the default).
    pub unset_limits: Vec<String>,
    /// Grants to add (`--grant`).
    pub grants: Vec<String>,
    /// Grants to remove (`--revoke`).
    pub revoke: Vec<String>,
    /// Which version of its flavor to run.
    pub pin: Option<PinChange>,
}

/// A change of the flavor version a step operator runs.
#[derive(Debug, Clone)]
pub enum PinChange {
    /// Pin it to the registered version whose sha256 starts with this
    /// (at least 8 hex digits, `sha256:` allowed).
    To(String),
    /// Follow the flavor's current version.
    Follow,
}

impl Update {
    /// Whether this update changes anything.
    pub fn is_empty(&self) -> bool {
        self.replace.is_none()
            && self.set.is_empty()
            && self.unset.is_empty()
            && self.limits.is_empty()
            && self.unset_limits.is_empty()
            && self.grants.is_empty()
            && self.revoke.is_empty()
            && self.pin.is_none()
    }
}

/// Change a step operator's configuration and limits; the flavor validates
/// the resulting configuration.
pub async fn update(stepbox: &Stepbox, name: &str, change: Update) -> Result<StepOperatorRecord, StepOperatorError> {
    let Update { replace, set, unset, limits: new_limits, unset_limits, grants, revoke, pin } = change;
    let mut record = get(stepbox, name)?;
    for grant in &grants {
        record.grants.grant(grant)?;
    }
    for grant in &revoke {
        record.grants.revoke(grant)?;
    }
    let mut limits = record.limits.clone();
    limits.extend(new_limits);
    for key in &unset_limits {
        limits.remove(key);
    }
    Limits::default().with_overrides(&limits)?;
    let mut config = match replace {
        Some(serde_json::Value::Object(config)) => config,
        Some(other) => return Err(StepOperatorError::NotAnObject(other.to_string())),
        None => match record.config.clone() {
            serde_json::Value::Object(config) => config,
            _ => serde_json::Map::new(),
        },
    };
    config.extend(set);
    for key in &unset {
        config.remove(key);
    }
    let config = serde_json::Value::Object(config);
    record.pin = match pin {
        Some(PinChange::Follow) => None,
        Some(PinChange::To(prefix)) => {
            Some(FlavorPin { sha256: version_by_prefix(stepbox, &record.flavor, &prefix)?, held: false })
        }
        None => record.pin.take(),
    };
    // Held back by an update: move to the current version once it is covered.
    if let Some(held) = record.pin.as_ref().filter(|pin| pin.held) {
        let current = flavors::get(stepbox, &record.flavor)?.record;
        let covered = ungranted(&current, &record.grants).is_empty();
        if held.sha256 == current.sha256 || (covered && validate(stepbox, &current, &config).await.is_ok()) {
            record.pin = None;
        }
    }
    let version = flavors::for_operator(stepbox, &record)?;
    validate(stepbox, &version, &config).await?;
    stepbox.db.update_step_operator(name, &config, &limits, &record.grants, record.pin.as_ref())?;
    record.config = config;
    record.limits = limits;
    Ok(get(stepbox, name).unwrap_or(record))
}

/// The sha256 of the version of `flavor` that `prefix` names.
fn version_by_prefix(stepbox: &Stepbox, flavor: &str, prefix: &str) -> Result<String, StepOperatorError> {
    let wanted = prefix.strip_prefix("sha256:").unwrap_or(prefix).to_ascii_lowercase();
    let (versions, _) = stepbox.db.flavor_versions(Some(flavor))?;
    let known = || {
        versions
            .iter()
            .map(|v| format!("{} ({})", &v.sha256[..v.sha256.len().min(12)], v.version))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if wanted.len() < 8 || !wanted.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(StepOperatorError::Input(format!(
            "--pin {prefix}: name a version by its sha256 (at least 8 hex digits); the versions of `{flavor}`: {}",
            known()
        )));
    }
    let matching: Vec<_> = versions.iter().filter(|v| v.sha256.starts_with(&wanted)).collect();
    match matching.as_slice() {
        [one] => Ok(one.sha256.clone()),
        [] => Err(StepOperatorError::Input(format!(
            "--pin {prefix}: no registered version of `{flavor}` has that sha256; its versions: {}",
            known()
        ))),
        _ => Err(StepOperatorError::Input(format!("--pin {prefix}: more than one version matches; give more digits"))),
    }
}

pub fn get(stepbox: &Stepbox, name: &str) -> Result<StepOperatorRecord, StepOperatorError> {
    stepbox.db.step_operator(name)?.ok_or_else(|| StepOperatorError::NotFound(name.to_owned()))
}

pub fn list(stepbox: &Stepbox) -> Result<Vec<StepOperatorRecord>, StepOperatorError> {
    Ok(stepbox.db.step_operators()?)
}

pub fn delete(stepbox: &Stepbox, name: &str) -> Result<(), StepOperatorError> {
    if !stepbox.db.delete_step_operator(name)? {
        return Err(StepOperatorError::NotFound(name.to_owned()));
    }
    Ok(())
}

/// The capabilities `flavor` imports that `grants` does not allow.
pub fn ungranted(
    flavor: &stepbox_store::store::FlavorRecord,
    grants: &Grants,
) -> Vec<stepbox_store::capability::Capability> {
    flavor.shape.capabilities.iter().copied().filter(|capability| !grants.allows(*capability)).collect()
}

/// Keys of a flat config, for display.
pub fn config_summary(config: &serde_json::Value) -> String {
    let map: BTreeMap<_, _> = config.as_object().into_iter().flatten().collect();
    map.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pair_values_follow_the_schema_types() {
        let schema = json!({"properties": {
            "name": {"type": "string"},
            "maybe_name": {"type": ["string", "null"]},
            "count": {"type": "integer"},
            "flag": {"type": "boolean"},
        }});
        let pairs: Vec<(String, String)> = [
            ("name", "123"),
            ("maybe_name", "true"),
            ("count", "3"),
            ("flag", "true"),
            ("free", "[1,2]"),
            ("text", "hello"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let config = config_from_pairs(&schema, &pairs);
        assert_eq!(config["name"], json!("123"));
        assert_eq!(config["maybe_name"], json!("true"));
        assert_eq!(config["count"], json!(3));
        assert_eq!(config["flag"], json!(true));
        assert_eq!(config["free"], json!([1, 2]));
        assert_eq!(config["text"], json!("hello"));
    }
}
