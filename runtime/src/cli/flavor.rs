//! `stepbox flavor …`

use std::path::PathBuf;

use super::args::{FlavorCommand, PullArgs};
use super::output::{self, Format};
use super::{Failure, open};
use crate::capability::Capability;
use crate::exit;
use crate::flavors::{self, FlavorListing};

pub async fn run(home: Option<PathBuf>, command: FlavorCommand) -> Result<u8, Failure> {
    let stepbox = open(home)?;
    match command {
        FlavorCommand::Register { source, replace, pull: PullArgs { allow_unsigned, registry }, output } => {
            let from_registry = source.starts_with(crate::wasm_oci::SCHEME);
            if !from_registry && (!registry.credentials.is_empty() || allow_unsigned) {
                let flag = if allow_unsigned { "--allow-unsigned" } else { "--registry-credential" };
                return Err(Failure::input(format!("{flag} is for flavors from registries (oci://…), not {source}")));
            }
            let record = if from_registry {
                let logins = crate::oci_flavors::logins(&stepbox, &registry.credentials)?;
                crate::oci_flavors::register(&stepbox, &source, replace, allow_unsigned, &logins, &progress).await?
            } else if let Some(name) = source.strip_prefix(crate::builtin::SCHEME) {
                crate::builtin::register(&stepbox, name, replace).await?
            } else {
                flavors::register(&stepbox, std::path::Path::new(&source), replace).await?
            };
            match output {
                Format::Json => output::json(&record)?,
                Format::Table => output::line(format_args!(
                    "registered flavor `{}` {} (sha256 {}, imports: {})",
                    record.name,
                    crate::display::visible(&record.version),
                    output::short(&record.sha256),
                    capability_list(&record.shape.capabilities)
                ))?,
            }
            note_held(&stepbox, &record.name)?;
        }
        FlavorCommand::Update { name, source, yes, dry_run, pull: PullArgs { allow_unsigned, registry }, output } => {
            let logins = crate::oci_flavors::logins(&stepbox, &registry.credentials)?;
            let (plan, examined) =
                crate::flavor_update::prepare(&stepbox, &name, source.as_deref(), allow_unsigned, &logins, &progress)
                    .await?;
            if plan.is_noop() {
                output::line(format_args!(
                    "flavor `{name}` is already at {} (sha256 {}); nothing to update",
                    crate::display::visible(&plan.to.version),
                    output::short(&plan.to.sha256)
                ))?;
                return Ok(exit::OK);
            }
            if output == Format::Table {
                print_plan(&plan)?;
            }
            let apply = !dry_run && (yes || confirm(&name)?);
            if apply {
                crate::flavor_update::apply(&stepbox, &plan, &examined)?;
            }
            if output == Format::Json {
                output::json(&serde_json::json!({"plan": plan, "applied": apply}))?;
            }
            if dry_run {
                return Ok(exit::OK);
            }
            if !apply {
                return Err(Failure::input(format!(
                    "flavor `{name}` was not updated: nothing changed. Apply the update shown with --yes (or answer y on a terminal); --dry-run only shows it"
                )));
            }
            if output == Format::Table {
                output::line(format_args!(
                    "updated flavor `{name}` to {} (sha256 {}); the previous version stays registered",
                    crate::display::visible(&plan.to.version),
                    output::short(&plan.to.sha256)
                ))?;
            }
        }
        FlavorCommand::Push { path, reference, registry, output } => {
            let logins = crate::oci_flavors::logins(&stepbox, &registry.credentials)?;
            let pushed = crate::oci_flavors::push(&path, &reference, &logins, &progress).await?;
            match output {
                Format::Json => output::json(&pushed)?,
                Format::Table => output::line(format_args!(
                    "pushed {} ({}) as {}\nregister it pinned with: stepbox flavor register oci://{}@{}",
                    path.display(),
                    bytesize::ByteSize::b(pushed.size),
                    pushed.reference,
                    pushed.repository,
                    pushed.digest,
                ))?,
            }
        }
        FlavorCommand::Sign { reference, key, registry, output } => {
            let logins = crate::oci_flavors::logins(&stepbox, &registry.credentials)?;
            let signed = crate::oci_flavors::sign(&reference, &key, &logins, &progress).await?;
            match output {
                Format::Json => output::json(&signed)?,
                Format::Table => output::line(format_args!(
                    "{} {}@{} with the key {} (at the tag {})\ntrust it with: stepbox trust add NAME --key PUBLIC_KEY --scope {}",
                    if signed.already_there { "already signed" } else { "signed" },
                    signed.repository,
                    signed.digest,
                    signed.fingerprint,
                    signed.tag,
                    signed.repository,
                ))?,
            }
        }
        FlavorCommand::Inspect { path, output } => {
            let shown = path.display().to_string();
            let bytes = crate::component::read_component_file(&path).map_err(Failure::input)?;
            let inspection = crate::inspect::inspect(&shown, &bytes);
            match output {
                Format::Json => output::json(&inspection)?,
                Format::Table => print_inspection(&inspection)?,
            }
            if let Some(problem) = &inspection.problem {
                return Err(Failure::input(format!("not a flavor stepbox can register: {problem}")));
            }
        }
        FlavorCommand::Test { path, config, settings, output } => {
            let sample = config
                .iter()
                .map(|pair| crate::units::parse_key_value(pair))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Failure::input(format!("--config {e}")))?;
            let settings = match settings {
                Some(text) => Some(
                    serde_json::from_str::<serde_json::Value>(&text)
                        .ok()
                        .filter(serde_json::Value::is_object)
                        .ok_or_else(|| Failure::input(format!("--settings must be a JSON object, got: {text}")))?,
                ),
                None => None,
            };
            if !path.is_file() {
                return Err(Failure::input(format!("{} is not a file", path.display())));
            }
            let report = crate::conformance::check(&path, &stepbox.home.cache_dir(), &sample, settings)
                .await
                .map_err(|e| Failure::new(exit::INTERNAL, format!("the conformance check could not run: {e:#}")))?;
            match output {
                Format::Json => output::json(&report)?,
                Format::Table => print_conformance(&report)?,
            }
            if !report.passed() {
                return Ok(1);
            }
        }
        FlavorCommand::List { available: true, output } => {
            let available = crate::builtin::available()?;
            let registered = flavors::list(&stepbox)?.0;
            match output {
                Format::Json => output::json(&available)?,
                Format::Table => {
                    let mut table = output::table(&["NAME", "SIZE", "SHA256", "REGISTERED"]);
                    for builtin in &available.flavors {
                        let here = registered.iter().find(|listing| listing.record.name == builtin.name);
                        table.add_row(vec![
                            format!("builtin:{}", builtin.name),
                            bytesize::ByteSize::b(builtin.size).to_string(),
                            builtin.sha256.clone(),
                            match here {
                                Some(listing) if listing.record.sha256 == builtin.sha256 => "yes, this one".to_owned(),
                                Some(_) => "another version".to_owned(),
                                None => "-".to_owned(),
                            },
                        ]);
                    }
                    output::line(&table)?;
                    output::line(format_args!(
                        "shipped in {}; register one with: stepbox flavor register builtin:NAME",
                        available.dir.display()
                    ))?;
                }
            }
        }
        FlavorCommand::List { available: false, output } => {
            let (listings, broken) = flavors::list(&stepbox)?;
            match output {
                Format::Json => output::json(&listings)?,
                Format::Table => {
                    let mut table =
                        output::table(&["NAME", "VERSION", "SHA256", "IMPORTS", "USED BY", "STATUS", "DISPLAY NAME"]);
                    for listing in &listings {
                        let record = &listing.record;
                        table.add_row(vec![
                            record.name.clone(),
                            format!("{} (current)", record.version),
                            output::short(&record.sha256).to_owned(),
                            capability_list(&record.shape.capabilities),
                            names(&listing.used_by),
                            listing.status.clone(),
                            record.display_name.clone(),
                        ]);
                        for version in &listing.versions {
                            table.add_row(vec![
                                String::new(),
                                version.version.clone(),
                                output::short(&version.sha256).to_owned(),
                                capability_list(&version.capabilities),
                                names(&version.used_by),
                                version.status.clone(),
                                String::new(),
                            ]);
                        }
                    }
                    if listings.is_empty() {
                        output::line(format_args!(
                            "no flavors registered; add one with `stepbox flavor register PATH.wasm`"
                        ))?;
                    } else {
                        output::line(&table)?;
                    }
                }
            }
            for problem in &broken {
                output::note(format_args!("warning: unreadable flavor record {problem}"));
            }
        }
        FlavorCommand::Describe { name, output } => {
            let listing = flavors::get(&stepbox, &name)?;
            match output {
                Format::Json => output::json(&listing)?,
                Format::Table => describe(&listing)?,
            }
        }
        FlavorCommand::Delete { name, sha256: None } => {
            flavors::delete(&stepbox, &name)?;
            output::line(format_args!("deleted flavor `{name}` and all its versions"))?;
        }
        FlavorCommand::Delete { name, sha256: Some(prefix) } => {
            let sha256 = flavors::delete_version(&stepbox, &name, &prefix)?;
            output::line(format_args!("deleted version sha256 {sha256} of flavor `{name}`"))?;
        }
    }
    Ok(exit::OK)
}

fn names(list: &[String]) -> String {
    if list.is_empty() { "-".to_owned() } else { list.join(", ") }
}

/// Name the step operators of `flavor` an update held on an older version.
fn note_held(stepbox: &crate::context::Stepbox, flavor: &str) -> Result<(), Failure> {
    for operator in crate::step_operators::list(stepbox)? {
        if operator.flavor == flavor
            && let Some(pin) = operator.pin.as_ref().filter(|pin| pin.held)
        {
            output::note(format_args!(
                "step operator `{}` stays on the previous version (sha256 {}) until its grants cover this one: {}",
                operator.name,
                output::short(&pin.sha256),
                held_reason(stepbox, &operator)
            ));
        }
    }
    Ok(())
}

/// What a held step operator needs to move to its flavor's current version.
fn held_reason(stepbox: &crate::context::Stepbox, operator: &crate::store::StepOperatorRecord) -> String {
    let Ok(current) = flavors::get(stepbox, &operator.flavor) else { return String::new() };
    let missing = crate::step_operators::ungranted(&current.record, &operator.grants);
    if missing.is_empty() {
        "its configuration is refused by the new version; change it with `stepbox step-operator update`".to_owned()
    } else {
        format!(
            "stepbox step-operator update {} {}",
            operator.name,
            missing.iter().map(|c| format!("--grant {c}")).collect::<Vec<_>>().join(" ")
        )
    }
}

/// Ask on the terminal whether to apply an update; `false` when there is no terminal to ask.
fn confirm(name: &str) -> Result<bool, Failure> {
    use std::io::{BufRead as _, IsTerminal as _, Read as _};
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Ok(false);
    }
    output::note(format_args!("Update flavor `{name}` as shown? [y/N] "));
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .take(64)
        .read_line(&mut answer)
        .map_err(|error| Failure::input(format!("cannot read the answer: {error}")))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// The plan of an update, before it is applied.
fn print_plan(plan: &crate::flavor_update::UpgradePlan) -> Result<(), Failure> {
    use crate::flavor_update::OperatorOutcome;
    let visible = |text: &str| crate::display::visible(text).into_owned();
    let listed = |added: Vec<String>, removed: Vec<String>| {
        let mut parts: Vec<String> = added.into_iter().map(|item| format!("+ {item}")).collect();
        parts.extend(removed.into_iter().map(|item| format!("- {item}")));
        if parts.is_empty() { "unchanged".to_owned() } else { parts.join(", ") }
    };
    let schema = |changes: &[String]| if changes.is_empty() { "unchanged".to_owned() } else { changes.join("; ") };
    output::line(format_args!(
        "Update flavor `{}`: {} (sha256 {}) → {} (sha256 {})",
        plan.flavor,
        visible(&plan.from.version),
        output::short(&plan.from.sha256),
        visible(&plan.to.version),
        output::short(&plan.to.sha256)
    ))?;
    let contract = if plan.from.contract == plan.to.contract {
        format!("{} (unchanged)", plan.to.contract)
    } else {
        format!("{} → {}", plan.from.contract, plan.to.contract)
    };
    output::fields(&[
        ("from", plan.from.source.clone()),
        ("to", plan.to.source.clone()),
        ("provenance", plan.to.provenance.to_string()),
        ("contract", contract),
        (
            "capabilities",
            listed(
                plan.capabilities_added.iter().map(|c| c.name().to_owned()).collect(),
                plan.capabilities_removed.iter().map(|c| c.name().to_owned()).collect(),
            ),
        ),
        ("wasi imports", {
            let mut text = listed(plan.wasi_added.clone(), plan.wasi_removed.clone());
            if !plan.wasi_versions_changed.is_empty() {
                text.push_str(&format!(
                    " ({} more at another WASI version, e.g. {})",
                    plan.wasi_versions_changed.len(),
                    plan.wasi_versions_changed[0]
                ));
            }
            text
        }),
        ("config schema", schema(&plan.config_schema_changes)),
        ("settings schema", schema(&plan.settings_schema_changes)),
    ])?;
    if plan.step_operators.is_empty() {
        output::line("\nNo step operator uses it.")?;
        return Ok(());
    }
    output::line("\nStep operators:")?;
    for operator in &plan.step_operators {
        let what = match &operator.outcome {
            OperatorOutcome::Moves => format!("moves to {}", visible(&plan.to.version)),
            OperatorOutcome::Held { sha256, needs_grants, config_refused } => {
                let mut why = Vec::new();
                if !needs_grants.is_empty() {
                    why.push(format!(
                        "it would newly need {} (stepbox step-operator update {} {})",
                        needs_grants.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", "),
                        operator.name,
                        needs_grants.iter().map(|c| format!("--grant {c}")).collect::<Vec<_>>().join(" ")
                    ));
                }
                if let Some(refused) = config_refused {
                    why.push(format!("the new version refuses its configuration: {refused}"));
                }
                format!("STAYS on sha256 {} until covered: {}", output::short(sha256), why.join("; "))
            }
            OperatorOutcome::Pinned { sha256 } => format!("pinned to sha256 {}; unchanged", output::short(sha256)),
        };
        output::line(format_args!("  {}: {what}", operator.name))?;
    }
    Ok(())
}

/// Progress of a push or pull, on stderr.
fn progress(message: &str) {
    output::note(format_args!("{message}"));
}

fn print_inspection(inspection: &crate::inspect::Inspection) -> Result<(), Failure> {
    let beyond: Vec<String> =
        inspection.wasi_beyond_minimal.iter().map(|w| format!("{} ({})", w.interface, w.note)).collect();
    output::fields(&[
        ("file", inspection.path.clone()),
        ("kind", inspection.kind.to_owned()),
        ("size", bytesize::ByteSize::b(inspection.size).to_string()),
        ("sha256", inspection.sha256.clone()),
        ("contract", inspection.contract.clone().unwrap_or_else(|| "none".to_owned())),
        ("exports", inspection.exports.join(", ")),
        ("capabilities", capability_list(&inspection.capabilities)),
        ("wasi (minimal)", format!("{} interfaces", inspection.wasi_minimal.len())),
        ("wasi (beyond)", if beyond.is_empty() { "none".to_owned() } else { beyond.join("; ") }),
    ])?;
    if inspection.is_flavor() {
        let grants: Vec<String> =
            inspection.capabilities.iter().filter(|c| c.needs_grant()).map(|c| format!("--grant {c}")).collect();
        output::line(format_args!(
            "\nA flavor. A step operator using it needs: {}",
            if grants.is_empty() { "no grants".to_owned() } else { grants.join(" ") }
        ))?;
    }
    Ok(())
}

fn capability_list(capabilities: &[Capability]) -> String {
    if capabilities.is_empty() {
        "-".to_owned()
    } else {
        capabilities.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
    }
}

fn describe(listing: &FlavorListing) -> Result<(), Failure> {
    let record = &listing.record;
    output::fields(&[
        ("name", record.name.clone()),
        ("display name", record.display_name.clone()),
        ("version", record.version.clone()),
        ("description", record.description.clone()),
        ("docs", record.docs_url.clone().unwrap_or_else(|| "-".to_owned())),
        ("contract", format!("{}@{}", crate::CONTRACT_PACKAGE, crate::CONTRACT_VERSION)),
        ("capabilities", capability_list(&record.shape.capabilities)),
        ("wasi imports", record.shape.wasi.join(", ")),
        ("exports", record.shape.exports.join(", ")),
        ("size", bytesize::ByteSize::b(record.size).to_string()),
        ("sha256", record.sha256.clone()),
        ("source", format!("{} ({})", record.source_path, listing.status)),
        ("provenance", record.provenance.to_string()),
        ("registered", record.registered_at.clone()),
    ])?;
    output::line(format_args!("\nconfig schema:\n{}", pretty(&record.config_schema)))?;
    output::line(format_args!("\nsettings schema:\n{}", pretty(&record.settings_schema)))?;
    Ok(())
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

fn print_conformance(report: &crate::conformance::Report) -> Result<(), Failure> {
    let mut table = output::table(&["CHECK", "RESULT", "DETAIL"]);
    for check in &report.checks {
        table.add_row(vec![check.name.to_owned(), check.result.to_uppercase(), check.detail.clone()]);
    }
    output::line(&table)?;
    if !report.jobs.is_empty() {
        let mut jobs = output::table(&["JOB", "BACKEND", "COMMAND", "RUNTIME", "ENV", "OPTIONS"]);
        for job in &report.jobs {
            jobs.add_row(vec![
                job.name.clone(),
                job.backend.to_owned(),
                job.command.join(" "),
                job.runtime.clone(),
                job.env_names.join(" "),
                job.backend_options.join(" "),
            ]);
        }
        output::line(format_args!("Jobs the dry-run launch submitted (none was run):\n{jobs}"))?;
    }
    let verdict = if report.passed() { "PASS" } else { "FAIL" };
    let name = report.flavor.as_deref().unwrap_or(&report.file);
    output::line(format_args!("{verdict}: {name}"))?;
    Ok(())
}
