//! `stepbox step-operator …`

use std::path::PathBuf;

use super::args::{ConfigArgs, StepOperatorCommand};
use super::output::{self, Format};
use super::{Failure, open};
use crate::context::Stepbox;
use crate::exit;
use crate::step_operators::{self, config_from_pairs};
use crate::store::StepOperatorRecord;
use crate::units::parse_key_value;

pub async fn run(home: Option<PathBuf>, command: StepOperatorCommand) -> Result<u8, Failure> {
    let stepbox = open(home)?;
    match command {
        StepOperatorCommand::Register { name, flavor, config, output } => {
            let schema = flavor_schema(&stepbox, &flavor)?;
            let file = read_config_file(&config)?;
            let mut object = match file {
                Some(serde_json::Value::Object(map)) => map,
                _ => serde_json::Map::new(),
            };
            object.extend(pairs(&schema, &config)?);
            let limits = limit_pairs(&config)?;
            let object = serde_json::Value::Object(object);
            let record = step_operators::register(&stepbox, &name, &flavor, object, limits, &config.grants).await?;
            print_one(&record, output, "registered")?;
            warn_ungranted(&stepbox, &record);
        }
        StepOperatorCommand::List { output } => {
            let records = step_operators::list(&stepbox)?;
            match output {
                Format::Json => output::json(&records)?,
                Format::Table if records.is_empty() => {
                    output::line(format_args!(
                        "no step operators; add one with `stepbox step-operator register NAME --flavor FLAVOR`"
                    ))?;
                }
                Format::Table => {
                    let mut table = output::table(&["NAME", "FLAVOR", "GRANTS", "CONFIG", "UPDATED"]);
                    for record in &records {
                        table.add_row(vec![
                            record.name.clone(),
                            record.flavor.clone(),
                            grant_list(&record.grants),
                            step_operators::config_summary(&record.config),
                            record.updated_at.clone(),
                        ]);
                    }
                    output::line(&table)?;
                }
            }
        }
        StepOperatorCommand::Describe { name, output } => {
            let record = step_operators::get(&stepbox, &name)?;
            print_one(&record, output, "")?;
        }
        StepOperatorCommand::Update { name, config, unset, unset_limit, revoke, pin, unpin, output } => {
            let current = step_operators::get(&stepbox, &name)?;
            let schema = flavor_schema(&stepbox, &current.flavor)?;
            let change = step_operators::Update {
                replace: read_config_file(&config)?,
                set: pairs(&schema, &config)?,
                unset,
                limits: limit_pairs(&config)?,
                unset_limits: unset_limit,
                grants: config.grants.clone(),
                revoke,
                pin: match (pin, unpin) {
                    (Some(sha256), _) => Some(step_operators::PinChange::To(sha256)),
                    (None, true) => Some(step_operators::PinChange::Follow),
                    (None, false) => None,
                },
            };
            if change.is_empty() {
                return Err(Failure::input(
                    "nothing to update: give --config KEY=VALUE, --config-file FILE, --unset KEY, \
                     --limit NAME=VALUE, --unset-limit NAME, --grant GRANT, --revoke GRANT, --pin SHA256 or --unpin",
                ));
            }
            let record = step_operators::update(&stepbox, &name, change).await?;
            print_one(&record, output, "updated")?;
            if current.pin != record.pin {
                let version = crate::flavors::for_operator(&stepbox, &record)?;
                output::note(format_args!(
                    "step operator `{}` now runs version {} (sha256 {}) of the flavor `{}`{}",
                    record.name,
                    crate::display::visible(&version.version),
                    output::short(&version.sha256),
                    record.flavor,
                    match &record.pin {
                        None => ", its current one",
                        Some(_) => ", pinned",
                    }
                ));
            } else if let Some(pin) = record.pin.as_ref().filter(|pin| pin.held) {
                output::note(format_args!(
                    "step operator `{}` stays on version sha256 {} of the flavor `{}` until its grants cover the current one",
                    record.name,
                    output::short(&pin.sha256),
                    record.flavor
                ));
            }
            warn_ungranted(&stepbox, &record);
        }
        StepOperatorCommand::Delete { name } => {
            step_operators::delete(&stepbox, &name)?;
            output::line(format_args!("deleted step operator `{name}`"))?;
        }
    }
    Ok(exit::OK)
}

fn flavor_schema(stepbox: &Stepbox, flavor: &str) -> Result<serde_json::Value, Failure> {
    let listing = crate::flavors::get(stepbox, flavor)?;
    Ok(listing.record.config_schema)
}

fn pairs(
    schema: &serde_json::Value,
    config: &ConfigArgs,
) -> Result<serde_json::Map<String, serde_json::Value>, Failure> {
    let parsed = config
        .config
        .iter()
        .map(|pair| parse_key_value(pair))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::input(format!("--config {e}")))?;
    Ok(config_from_pairs(schema, &parsed))
}

fn grant_list(grants: &crate::policy::Grants) -> String {
    let described = grants.describe();
    if described.is_empty() { "log only".to_owned() } else { described.join(" ") }
}

/// Say so when the flavor imports capabilities the step operator does not grant.
fn warn_ungranted(stepbox: &Stepbox, record: &StepOperatorRecord) {
    warn_unstored_secrets(stepbox, record);
    let Ok(flavor) = crate::flavors::for_operator(stepbox, record) else { return };
    let missing = step_operators::ungranted(&flavor, &record.grants);
    if !missing.is_empty() {
        let grants: Vec<String> = missing.iter().map(|c| format!("--grant {c}")).collect();
        output::note(format_args!(
            "warning: flavor `{}` imports {} but step operator `{}` does not grant it; launches will be refused until you run: stepbox step-operator update {} {}",
            record.flavor,
            missing.iter().map(|c| c.name()).collect::<Vec<_>>().join(", "),
            record.name,
            record.name,
            grants.join(" ")
        ));
    }
}

/// Say so when a granted secret (`secret=`, `secret-env=`, or a credential's) is not stored yet.
fn warn_unstored_secrets(stepbox: &Stepbox, record: &StepOperatorRecord) {
    let secrets = stepbox.home.secrets();
    for name in record.grants.secret_names() {
        if matches!(secrets.get(&name), Err(crate::secrets::SecretError::NotFound(_))) {
            output::note(format_args!(
                "warning: step operator `{}` uses the secret `{name}`, which is not stored yet; store it with: stepbox secret set {name}",
                record.name
            ));
        }
    }
}

fn limit_pairs(config: &ConfigArgs) -> Result<std::collections::BTreeMap<String, String>, Failure> {
    config.limits.iter().map(|pair| parse_key_value(pair).map_err(|e| Failure::input(format!("--limit {e}")))).collect()
}

fn read_config_file(config: &ConfigArgs) -> Result<Option<serde_json::Value>, Failure> {
    let Some(path) = &config.config_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::input(format!("cannot read --config-file {}: {e}", path.display())))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Failure::input(format!("--config-file {} is not valid JSON: {e}", path.display())))?;
    if !value.is_object() {
        return Err(Failure::input(format!(
            "--config-file {} must hold a JSON object, like {{\"key\": \"value\"}}",
            path.display()
        )));
    }
    Ok(Some(value))
}

fn print_one(record: &StepOperatorRecord, format: Format, verb: &str) -> Result<(), Failure> {
    match format {
        Format::Json => output::json(record),
        Format::Table => {
            if !verb.is_empty() {
                output::line(format_args!("{verb} step operator `{}` (flavor `{}`)", record.name, record.flavor))?;
                return Ok(());
            }
            let limits = if record.limits.is_empty() {
                "defaults".to_owned()
            } else {
                let pairs: Vec<String> = record.limits.iter().map(|(k, v)| format!("{k}={v}")).collect();
                pairs.join(" ")
            };
            output::fields(&[
                ("name", record.name.clone()),
                ("flavor", record.flavor.clone()),
                ("limits", limits),
                ("grants", grant_list(&record.grants)),
                (
                    "flavor version",
                    match &record.pin {
                        None => "the flavor's current one".to_owned(),
                        Some(pin) if pin.held => {
                            format!("sha256 {} (held there by a flavor update its grants do not cover)", pin.sha256)
                        }
                        Some(pin) => format!("sha256 {} (pinned)", pin.sha256),
                    },
                ),
                ("created", record.created_at.clone()),
                ("updated", record.updated_at.clone()),
            ])?;
            output::line(format_args!(
                "\nconfig:\n{}",
                serde_json::to_string_pretty(&record.config).unwrap_or_default()
            ))?;
            Ok(())
        }
    }
}
