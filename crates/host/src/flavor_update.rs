//! Upgrading a flavor, the way a browser upgrades an extension that asks
//! for more: before anything changes, the plan says what the new version
//! imports that the registered one did not (capabilities, WASI
//! interfaces), how its configuration schema changed, and for each step
//! operator of the flavor whether it moves to the new version or stays on
//! the one it has, and why (the grants it would newly need, a configuration
//! the new version refuses). Applying the plan keeps every old version
//! registered by digest; a step operator held back moves once a grant
//! covers the new version ([`crate::step_operators::update`]), or when the
//! user pins it elsewhere.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Serialize;
use stepbox_store::capability::Capability;
use stepbox_store::store::{FlavorPin, FlavorRecord, Provenance, StepOperatorRecord};

use crate::context::Stepbox;
use crate::flavors::{self, Examined, FlavorError};
use crate::host::FlavorLogger;
use crate::limits::Limits;

/// One version of a flavor, as a plan shows it.
#[derive(Debug, Clone, Serialize)]
pub struct VersionSummary {
    /// The version the flavor says it is.
    pub version: String,
    /// Its component's sha256.
    pub sha256: String,
    /// The contract version it exports.
    pub contract: String,
    /// Where it came from (a path, or `oci://…@sha256:…`).
    pub source: String,
    /// How its origin was checked.
    pub provenance: Provenance,
}

impl VersionSummary {
    fn of(record: &FlavorRecord) -> Self {
        Self {
            version: record.version.clone(),
            sha256: record.sha256.clone(),
            contract: contract_of(record),
            source: record.source_path.clone(),
            provenance: record.provenance.clone(),
        }
    }
}

/// The contract version a flavor's exports name.
fn contract_of(record: &FlavorRecord) -> String {
    let package = format!("{}/", crate::CONTRACT_PACKAGE);
    record
        .shape
        .exports
        .iter()
        .find_map(|export| {
            export.strip_prefix(&package).and_then(|rest| rest.split_once('@')).map(|(_, v)| v.to_owned())
        })
        .map_or_else(|| "unknown".to_owned(), |version| format!("{}@{version}", crate::CONTRACT_PACKAGE))
}

/// What happens to one step operator of the flavor.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum OperatorOutcome {
    /// Its grants cover the new version and the new version accepts its
    /// configuration: it runs the new version from now on.
    Moves,
    /// It stays on the version it has (the `sha256`) until a grant covers
    /// the new one or the new version accepts its configuration.
    Held {
        /// The version it stays on.
        sha256: String,
        /// The grants the new version needs that it does not have.
        needs_grants: Vec<Capability>,
        /// Why the new version refuses its configuration, if it does.
        config_refused: Option<String>,
    },
    /// The user pinned it to a version; the update leaves it there.
    Pinned {
        /// The version it is pinned to.
        sha256: String,
    },
}

/// One step operator's part of a plan.
#[derive(Debug, Clone, Serialize)]
pub struct OperatorPlan {
    pub name: String,
    #[serde(flatten)]
    pub outcome: OperatorOutcome,
}

/// Everything an update would change, computed before anything does.
#[derive(Debug, Clone, Serialize)]
pub struct UpgradePlan {
    pub flavor: String,
    pub from: VersionSummary,
    pub to: VersionSummary,
    /// Capabilities the new version imports that the current one does not.
    pub capabilities_added: Vec<Capability>,
    /// Capabilities the current version imports that the new one does not.
    pub capabilities_removed: Vec<Capability>,
    /// WASI interfaces the new version imports that the current one does
    /// not (at any version), with the new version's version.
    pub wasi_added: Vec<String>,
    /// WASI interfaces no longer imported.
    pub wasi_removed: Vec<String>,
    /// WASI interfaces imported by both at different versions (`name@old → new`).
    pub wasi_versions_changed: Vec<String>,
    /// How the configuration schema changed, one line per change.
    pub config_schema_changes: Vec<String>,
    /// How the per-step settings schema changed.
    pub settings_schema_changes: Vec<String>,
    /// Every step operator of the flavor, and what happens to it.
    pub step_operators: Vec<OperatorPlan>,
}

impl UpgradePlan {
    /// Whether the new version is the one registered already.
    pub fn is_noop(&self) -> bool {
        self.from.sha256 == self.to.sha256
    }
}

/// Fetch the new version of flavor `name` from `source` (a path or an
/// `oci://` reference; by default where the current version came from: the
/// same file, or the same registry tag, looked up again now) and plan the
/// update. Nothing is registered.
pub async fn prepare(
    stepbox: &Stepbox,
    name: &str,
    source: Option<&str>,
    allow_unsigned: bool,
    logins: &[stepbox_backends::images::registry::Login],
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(UpgradePlan, Examined), FlavorError> {
    let current = stepbox.db.flavor(name)?.ok_or_else(|| FlavorError::NotFound(name.to_owned()))?;
    let source = match source {
        Some(source) => source.to_owned(),
        None => default_source(&current)?,
    };
    let from_registry = source.starts_with(stepbox_backends::wasm_oci::SCHEME);
    if allow_unsigned && !from_registry {
        return Err(FlavorError::Input(format!(
            "--allow-unsigned is for flavors from registries (oci://…), not {source}"
        )));
    }
    let (source, bytes) = if from_registry {
        crate::oci_flavors::fetch(stepbox, &source, allow_unsigned, logins, progress).await?
    } else if let Some(builtin) = source.strip_prefix(crate::builtin::SCHEME) {
        crate::builtin::fetch(builtin)?
    } else {
        flavors::file_source(std::path::Path::new(&source))?
    };
    let examined = flavors::examine(stepbox, &source, bytes).await?;
    let plan = plan(stepbox, &current, &examined).await?;
    Ok((plan, examined))
}

/// Where a flavor's next version comes from when the user names nothing:
/// its file again, the builtin flavor of its name in this stepbox, or its
/// registry tag (without the pinned digest).
fn default_source(current: &FlavorRecord) -> Result<String, FlavorError> {
    if let Some(builtin) = current.source_path.strip_prefix(crate::builtin::SCHEME) {
        let name = builtin.split_once('@').map_or(builtin, |(name, _)| name);
        return Ok(format!("{}{name}", crate::builtin::SCHEME));
    }
    let Some(pinned) = current.source_path.strip_prefix(stepbox_backends::wasm_oci::SCHEME) else {
        return Ok(current.source_path.clone());
    };
    let reference = pinned.split_once('@').map_or(pinned, |(reference, _)| reference);
    let tagged = reference.rsplit('/').next().is_some_and(|last| last.contains(':'));
    if tagged {
        Ok(format!("{}{reference}", stepbox_backends::wasm_oci::SCHEME))
    } else {
        Err(FlavorError::Input(format!(
            "`{}` was registered by digest ({}), so there is no tag to look up again; name the new version: stepbox flavor update {} oci://REGISTRY/REPOSITORY:TAG",
            current.name, current.source_path, current.name
        )))
    }
}

/// The plan for making `examined` the current version of `current`'s flavor.
pub async fn plan(stepbox: &Stepbox, current: &FlavorRecord, examined: &Examined) -> Result<UpgradePlan, FlavorError> {
    let new = &examined.record;
    if new.name != current.name {
        return Err(FlavorError::Input(format!(
            "the new component is the flavor `{}`, not `{}`; register it under its own name (`stepbox flavor register`)",
            new.name, current.name
        )));
    }
    let (old_caps, new_caps) = (set(&current.shape.capabilities), set(&new.shape.capabilities));
    let (old_wasi, new_wasi) = (by_interface(&current.shape.wasi), by_interface(&new.shape.wasi));
    let mut step_operators = Vec::new();
    for operator in stepbox.db.step_operators()?.into_iter().filter(|op| op.flavor == current.name) {
        let outcome = operator_outcome(current, examined, &operator).await;
        step_operators.push(OperatorPlan { name: operator.name, outcome });
    }
    Ok(UpgradePlan {
        flavor: current.name.clone(),
        from: VersionSummary::of(current),
        to: VersionSummary::of(new),
        capabilities_added: new_caps.difference(&old_caps).copied().collect(),
        capabilities_removed: old_caps.difference(&new_caps).copied().collect(),
        wasi_added: new_wasi.iter().filter(|(name, _)| !old_wasi.contains_key(*name)).map(versioned).collect(),
        wasi_removed: old_wasi.iter().filter(|(name, _)| !new_wasi.contains_key(*name)).map(versioned).collect(),
        wasi_versions_changed: new_wasi
            .iter()
            .filter_map(|(name, version)| match old_wasi.get(name) {
                Some(old) if old != version => Some(format!("{name}@{old} → {version}")),
                _ => None,
            })
            .collect(),
        config_schema_changes: schema_changes(&current.config_schema, &new.config_schema),
        settings_schema_changes: schema_changes(&current.settings_schema, &new.settings_schema),
        step_operators,
    })
}

fn set<T: Ord + Clone>(items: &[T]) -> BTreeSet<T> {
    items.iter().cloned().collect()
}

/// WASI imports by interface name, each with its version (`wasi:io/poll@0.2.6`).
fn by_interface(imports: &[String]) -> std::collections::BTreeMap<String, String> {
    imports
        .iter()
        .map(|import| match import.split_once('@') {
            Some((name, version)) => (name.to_owned(), version.to_owned()),
            None => (import.clone(), String::new()),
        })
        .collect()
}

fn versioned((name, version): (&String, &String)) -> String {
    if version.is_empty() { name.clone() } else { format!("{name}@{version}") }
}

async fn operator_outcome(
    current: &FlavorRecord,
    examined: &Examined,
    operator: &StepOperatorRecord,
) -> OperatorOutcome {
    let stays_on = match &operator.pin {
        Some(pin) if !pin.held => return OperatorOutcome::Pinned { sha256: pin.sha256.clone() },
        Some(pin) => pin.sha256.clone(),
        None => current.sha256.clone(),
    };
    let needs_grants = crate::step_operators::ungranted(&examined.record, &operator.grants);
    let logger = Arc::new(FlavorLogger::new(&examined.record.name, None, &Limits::for_query()));
    let config_refused = match examined.prepared.validate_config(logger, &operator.config.to_string()).await {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(crate::display::visible(&error.message).into_owned()),
        Err(failure) => Some(format!("validating it failed: {failure}")),
    };
    if needs_grants.is_empty() && config_refused.is_none() {
        OperatorOutcome::Moves
    } else {
        OperatorOutcome::Held { sha256: stays_on, needs_grants, config_refused }
    }
}

/// Register `examined` as the flavor's current version, moving and holding
/// step operators as `plan` says, in one transaction.
pub fn apply(stepbox: &Stepbox, plan: &UpgradePlan, examined: &Examined) -> Result<(), FlavorError> {
    let pins: Vec<(String, Option<FlavorPin>)> = plan
        .step_operators
        .iter()
        .filter_map(|operator| match &operator.outcome {
            OperatorOutcome::Moves => Some((operator.name.clone(), None)),
            OperatorOutcome::Held { sha256, .. } => {
                Some((operator.name.clone(), Some(FlavorPin { sha256: sha256.clone(), held: true })))
            }
            OperatorOutcome::Pinned { .. } => None,
        })
        .collect();
    flavors::install(stepbox, examined, &pins)
}

/// How a JSON Schema changed, one line per top-level property added,
/// removed or changed, and per change of what is required.
pub fn schema_changes(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    if old == new {
        return Vec::new();
    }
    let properties = |schema: &serde_json::Value| {
        schema.get("properties").and_then(serde_json::Value::as_object).cloned().unwrap_or_default()
    };
    let required = |schema: &serde_json::Value| -> BTreeSet<String> {
        let list = schema.get("required").and_then(serde_json::Value::as_array);
        list.into_iter().flatten().filter_map(|name| name.as_str().map(str::to_owned)).collect()
    };
    let (old_properties, new_properties) = (properties(old), properties(new));
    let (old_required, new_required) = (required(old), required(new));
    let mut changes = Vec::new();
    for (name, schema) in &new_properties {
        match old_properties.get(name) {
            None => {
                let needed = if new_required.contains(name) { ", required" } else { ", optional" };
                changes.push(format!("added `{name}` ({}{needed})", type_of(schema)));
            }
            Some(before) if before != schema => {
                let (was, is) = (type_of(before), type_of(schema));
                if was == is {
                    changes.push(format!("changed `{name}` (its schema, still {is})"));
                } else {
                    changes.push(format!("changed `{name}`: {was} → {is}"));
                }
            }
            Some(_) => {}
        }
    }
    for name in old_properties.keys().filter(|name| !new_properties.contains_key(*name)) {
        changes.push(format!("removed `{name}`"));
    }
    for name in new_required.difference(&old_required).filter(|name| old_properties.contains_key(*name)) {
        changes.push(format!("`{name}` is now required"));
    }
    for name in old_required.difference(&new_required).filter(|name| new_properties.contains_key(*name)) {
        changes.push(format!("`{name}` is no longer required"));
    }
    if changes.is_empty() {
        changes.push("changed outside its properties (definitions, descriptions or constraints)".to_owned());
    }
    changes
}

/// A short name for what a property's schema accepts.
fn type_of(schema: &serde_json::Value) -> String {
    match schema.get("type") {
        Some(serde_json::Value::String(kind)) => kind.clone(),
        Some(serde_json::Value::Array(kinds)) => {
            kinds.iter().filter_map(serde_json::Value::as_str).collect::<Vec<_>>().join(" or ")
        }
        _ => match schema.get("$ref").and_then(serde_json::Value::as_str) {
            Some(reference) => reference.rsplit('/').next().unwrap_or(reference).to_owned(),
            None => "a schema".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::schema_changes;
    use serde_json::json;

    #[test]
    fn schema_changes_name_each_property_and_requirement() {
        let old = json!({"properties": {"a": {"type": "string"}, "b": {"type": "integer"}, "c": {"type": "string"}}, "required": ["a"]});
        let new = json!({
            "properties": {"a": {"type": "string"}, "b": {"type": "string"}, "d": {"type": ["string", "null"]}, "c": {"type": "string"}},
            "required": ["c"]
        });
        let changes = schema_changes(&old, &new);
        assert_eq!(
            changes,
            vec![
                "changed `b`: integer → string",
                "added `d` (string or null, optional)",
                "`c` is now required",
                "`a` is no longer required",
            ]
        );
        let removed = schema_changes(&old, &json!({"properties": {"a": {"type": "string"}}, "required": ["a"]}));
        assert_eq!(removed, vec!["removed `b`", "removed `c`"]);
        assert!(schema_changes(&old, &old).is_empty());
        let elsewhere =
            schema_changes(&json!({"properties": {}, "title": "x"}), &json!({"properties": {}, "title": "y"}));
        assert_eq!(elsewhere.len(), 1);
    }
}
