//! `stepbox flavor …`

use std::path::PathBuf;

use super::args::FlavorCommand;
use super::output::{self, Format};
use super::{Failure, open};
use crate::capability::Capability;
use crate::exit;
use crate::flavors::{self, FlavorListing};

pub async fn run(home: Option<PathBuf>, command: FlavorCommand) -> Result<u8, Failure> {
    let stepbox = open(home)?;
    match command {
        FlavorCommand::Register { source, replace, allow_unsigned, registry, output } => {
            let record = if source.starts_with(crate::wasm_oci::SCHEME) {
                let logins = crate::oci_flavors::logins(&stepbox, &registry.credentials)?;
                crate::oci_flavors::register(&stepbox, &source, replace, allow_unsigned, &logins, &progress).await?
            } else {
                if !registry.credentials.is_empty() || allow_unsigned {
                    let flag = if allow_unsigned { "--allow-unsigned" } else { "--registry-credential" };
                    return Err(Failure::input(format!(
                        "{flag} is for flavors from registries (oci://…); {source} is a file"
                    )));
                }
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
        FlavorCommand::List { output } => {
            let (listings, broken) = flavors::list(&stepbox)?;
            match output {
                Format::Json => output::json(&listings)?,
                Format::Table => {
                    let mut table = output::table(&["NAME", "VERSION", "DISPLAY NAME", "IMPORTS", "SHA256", "STATUS"]);
                    for listing in &listings {
                        let record = &listing.record;
                        table.add_row(vec![
                            record.name.clone(),
                            record.version.clone(),
                            record.display_name.clone(),
                            capability_list(&record.shape.capabilities),
                            output::short(&record.sha256).to_owned(),
                            listing.status.clone(),
                        ]);
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
        FlavorCommand::Delete { name } => {
            flavors::delete(&stepbox, &name)?;
            output::line(format_args!("deleted flavor `{name}`"))?;
        }
    }
    Ok(exit::OK)
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
