//! `stepbox flavor test`: a conformance check any flavor author can run on a
//! `.wasm` file. Everything happens in a throwaway state directory (sharing
//! the precompiled-component cache), and the launch is a dry run: every
//! backend records the jobs it is given and runs none of them.
//!
//! The checks, in order (a check that cannot run because an earlier one
//! failed is reported as not run):
//! 1. `component`: the file is a component of this contract, and registers;
//! 2. `metadata`: name, version and description are set, and both schemas
//!    are valid JSON Schema;
//! 3. `accepts-sample`: `validate-config` accepts the sample configuration;
//! 4. `rejects-garbage`: it refuses a wrongly typed value, with a message;
//! 5. `launch`: a dry-run launch succeeds and submits at least one job, and
//!    every job runs the launch's entrypoint command. A remote flavor (one
//!    that makes HTTP requests and submits no host jobs) is launched offline
//!    instead, with an image and no origin allowed: it must end with a clean
//!    error naming the refused request.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::context::Stepbox;
use crate::launch::{self, Interrupt, StepRequest};
use stepbox_backends::backends::dry_run::{RecordedJob, Recorder};
use stepbox_backends::backends::{OutputSink, Stream};
use stepbox_store::capability::Capability;
use stepbox_store::store::RunState;

/// The entrypoint the dry-run launch asks the flavor to run.
pub const ENTRYPOINT: &[&str] = &["python", "-m", "stepbox_conformance_step"];

/// One check's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    /// `pass`, `fail` or `not-run`.
    pub result: &'static str,
    pub detail: String,
}

/// What `stepbox flavor test` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub file: String,
    pub flavor: Option<String>,
    pub checks: Vec<Check>,
    /// The jobs the dry-run launch submitted.
    pub jobs: Vec<RecordedJob>,
}

impl Report {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|check| check.result == "pass")
    }
}

struct Checks(Vec<Check>);

impl Checks {
    fn pass(&mut self, name: &'static str, detail: impl Into<String>) {
        self.0.push(Check { name, result: "pass", detail: detail.into() });
    }

    fn fail(&mut self, name: &'static str, detail: impl Into<String>) {
        self.0.push(Check { name, result: "fail", detail: detail.into() });
    }

    fn not_run(&mut self, names: &[&'static str]) {
        for name in names {
            self.0.push(Check { name, result: "not-run", detail: "an earlier check failed".to_owned() });
        }
    }
}

/// Output of dry-run jobs and flavor logs is not the user's concern here.
struct Discard;

impl OutputSink for Discard {
    fn write(&self, _stream: Stream, _bytes: &[u8]) {}
}

/// Run the checks on the component at `path`. `cache` is the precompiled-
/// component cache to use; `sample` the configuration to try, as
/// `key=value` pairs typed by the flavor's schema (none: `{}`); `settings`
/// the per-step settings of the dry-run launch.
pub async fn check(
    path: &Path,
    cache: &Path,
    sample: &[(String, String)],
    settings: Option<serde_json::Value>,
) -> anyhow::Result<Report> {
    let scratch = tempfile::tempdir()?;
    let home = stepbox_store::home::Home::at(scratch.path().join("home")).with_cache(cache.to_owned());
    let stepbox = Stepbox::open(home)?;
    let mut checks = Checks(Vec::new());
    let mut report = Report { file: path.display().to_string(), flavor: None, checks: Vec::new(), jobs: Vec::new() };

    let record = match crate::flavors::register(&stepbox, path, false).await {
        Ok(record) => {
            checks.pass("component", format!("a stepbox:operator@{} component", crate::CONTRACT_VERSION));
            record
        }
        Err(error) => {
            checks.fail("component", error.to_string());
            checks.not_run(&["metadata", "accepts-sample", "rejects-garbage", "launch"]);
            report.checks = checks.0;
            return Ok(report);
        }
    };
    report.flavor = Some(record.name.clone());

    let mut problems = Vec::new();
    for (field, value) in
        [("version", &record.version), ("display name", &record.display_name), ("description", &record.description)]
    {
        if value.trim().is_empty() {
            problems.push(format!("the {field} is empty"));
        }
    }
    for (which, schema) in [("config", &record.config_schema), ("settings", &record.settings_schema)] {
        if let Err(error) = jsonschema::meta::validate(schema) {
            problems.push(format!("the {which} schema is not valid JSON Schema: {error}"));
        }
    }
    if problems.is_empty() {
        checks.pass("metadata", format!("{} {}; both schemas are valid JSON Schema", record.name, record.version));
    } else {
        checks.fail("metadata", problems.join("; "));
    }

    let sample = serde_json::Value::Object(crate::step_operators::config_from_pairs(&record.config_schema, sample));
    // A step operator granted what the flavor imports and every backend.
    let mut grants: Vec<String> =
        record.shape.capabilities.iter().filter(|c| c.needs_grant()).map(Capability::to_string).collect();
    grants.extend(stepbox_backends::backends::catalogue::BACKENDS.iter().map(|info| format!("backend={}", info.name)));
    let registered = crate::step_operators::register(
        &stepbox,
        "conformance",
        &record.name,
        sample.clone(),
        Default::default(),
        &grants,
    )
    .await;
    match registered {
        Ok(_) => checks.pass("accepts-sample", format!("accepted {sample}")),
        Err(error) => {
            checks.fail("accepts-sample", format!("refused {sample}: {error}"));
            checks.not_run(&["rejects-garbage", "launch"]);
            report.checks = checks.0;
            return Ok(report);
        }
    }

    let garbage = garbage_for(&record.config_schema);
    match crate::step_operators::validate(&stepbox, &record, &garbage).await {
        Ok(()) => checks.fail("rejects-garbage", format!("accepted {garbage}")),
        Err(crate::step_operators::StepOperatorError::InvalidConfig { message, .. }) if !message.trim().is_empty() => {
            checks.pass("rejects-garbage", format!("refused {garbage}: {message}"))
        }
        Err(error) => {
            checks.fail("rejects-garbage", format!("{garbage}: expected a refusal with a message, got: {error}"))
        }
    }

    // A remote flavor (outgoing HTTP, no host jobs) launches on a service
    // no dry run can stand in for: its launch runs offline instead, and
    // must end with a clean error that names the refused request.
    let imports = |capability: Capability| record.shape.capabilities.contains(&capability);
    let remote = imports(Capability::Http) && !imports(Capability::Jobs);
    let recorder = Recorder::default();
    let source_root = scratch.path().join("step");
    std::fs::create_dir_all(&source_root)?;
    let args = StepRequest {
        step_operator: "conformance".to_owned(),
        pipeline: "conformance".to_owned(),
        run_name: "dry-run".to_owned(),
        step: "step".to_owned(),
        requirements: vec!["six==1.16.0".to_owned()],
        entrypoint: ENTRYPOINT.iter().map(|s| s.to_string()).collect(),
        environment: vec![("STEPBOX_CONFORMANCE".to_owned(), "1".to_owned())],
        cpu_count: Some(1.0),
        memory_bytes: Some(256 << 20),
        settings,
        source_root,
        dry_run: Some(recorder.clone()),
        image: remote.then(|| REMOTE_IMAGE.to_owned()),
        ..Default::default()
    };
    let outcome = launch::launch(&stepbox, args, Arc::new(Discard), std::future::pending::<Interrupt>()).await;
    report.jobs = recorder.jobs();
    if remote {
        checks.0.push(offline_launch(outcome));
        report.checks = checks.0;
        return Ok(report);
    }
    match outcome {
        Ok(outcome) if outcome.state == RunState::Succeeded => {
            let others: Vec<&RecordedJob> = report
                .jobs
                .iter()
                .filter(|job| job.command.iter().map(String::as_str).ne(ENTRYPOINT.iter().copied()))
                .collect();
            if report.jobs.is_empty() {
                checks.fail("launch", "the launch succeeded without submitting a job");
            } else if let Some(job) = others.first() {
                checks.fail(
                    "launch",
                    format!("job {} runs {:?}, not the entrypoint {ENTRYPOINT:?}", job.name, job.command),
                );
            } else {
                let backends: Vec<&str> = report.jobs.iter().map(|job| job.backend).collect();
                checks.pass(
                    "launch",
                    format!("{} job(s) running the entrypoint, on {}", report.jobs.len(), backends.join(", ")),
                );
            }
        }
        Ok(outcome) => checks.fail(
            "launch",
            format!("the dry-run launch ended {}: {}", outcome.state, outcome.message.unwrap_or_default()),
        ),
        Err(error) => checks.fail("launch", error.to_string()),
    }
    report.checks = checks.0;
    Ok(report)
}

/// The image a remote flavor's offline launch is given (never pulled).
const REMOTE_IMAGE: &str = "conformance.invalid/step:dry-run";

/// The `launch` check of a remote flavor, run with no origin allowed: it
/// must fail cleanly (denied, or a failure naming the refusal), never
/// succeed without its service, trap or hang.
fn offline_launch(outcome: Result<launch::LaunchOutcome, launch::LaunchError>) -> Check {
    let check = |result, detail: String| Check { name: "launch", result, detail };
    match outcome {
        Ok(outcome) if outcome.state == RunState::Succeeded => {
            check("fail", "with every request refused, the launch still reported success".to_owned())
        }
        Ok(outcome) => {
            let message = outcome.message.unwrap_or_default();
            let clean = outcome.exit_code == stepbox_backends::exit::DENIED || message.contains("Denied");
            if clean && !message.contains("trap") {
                check(
                    "pass",
                    format!(
                        "a remote flavor (wasi:http, no host jobs): offline, its launch ended with the refusal: {message}. Test it against its service or a fake of it"
                    ),
                )
            } else {
                check(
                    "fail",
                    format!("offline, the launch should fail naming the refused request; it ended: {message}"),
                )
            }
        }
        Err(error) => check("fail", error.to_string()),
    }
}

/// A configuration no honest flavor accepts: the first property the schema
/// types, given a value of another type; an unknown field if none is typed.
fn garbage_for(schema: &serde_json::Value) -> serde_json::Value {
    let properties = schema["properties"].as_object().into_iter().flatten();
    for (name, property) in properties {
        let types: Vec<&str> = match &property["type"] {
            serde_json::Value::String(ty) => vec![ty.as_str()],
            serde_json::Value::Array(types) => types.iter().filter_map(|ty| ty.as_str()).collect(),
            _ => continue,
        };
        let wrong = if types.contains(&"array") || types.contains(&"object") && types.contains(&"string") {
            continue;
        } else if types.contains(&"object") || types.contains(&"string") {
            serde_json::json!([1, 2, 3])
        } else {
            serde_json::json!({ "not": "this" })
        };
        return serde_json::json!({ name.clone(): wrong });
    }
    serde_json::json!({ "stepbox-conformance-unknown-field": { "not": "this" } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_a_wrongly_typed_value_of_a_typed_property() {
        let schema = serde_json::json!({ "properties": {
            "tags": { "type": "array" },
            "timeout_seconds": { "type": ["integer", "null"] },
        }});
        assert_eq!(garbage_for(&schema), serde_json::json!({ "timeout_seconds": { "not": "this" } }));
        let strings = serde_json::json!({ "properties": { "name": { "type": "string" } } });
        assert_eq!(garbage_for(&strings), serde_json::json!({ "name": [1, 2, 3] }));
        let untyped = serde_json::json!({ "properties": { "anything": {} } });
        assert!(garbage_for(&untyped).get("stepbox-conformance-unknown-field").is_some());
    }
}
