//! The Vertex AI `CustomJob` for a step, as the REST API takes it (and as
//! gcloud sends it): one worker pool, its machine and container specs, the
//! environment as `{name, value}` pairs, int64 fields such as
//! `replicaCount` written as JSON strings (proto3's JSON mapping), and
//! labels that tie the server-named job to the step.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// Most environment variables a container spec takes.
pub const MAX_ENV_ENTRIES: usize = 100;
/// Longest display name.
pub const MAX_DISPLAY_NAME: usize = 128;

/// Everything the job needs.
pub struct JobParts<'a> {
    pub display_name: String,
    pub image: &'a str,
    pub command: &'a [String],
    pub environment: &'a BTreeMap<String, String>,
    pub machine_type: &'a str,
    pub accelerator: Option<(&'a str, u32)>,
    pub boot_disk: (&'a str, u32),
    pub service_account: Option<&'a str>,
    pub network: Option<&'a str>,
    pub kms_key: Option<&'a str>,
    pub persistent_resource_id: Option<&'a str>,
    pub timeout_seconds: Option<u64>,
    pub labels: BTreeMap<String, String>,
}

/// The `customJobs.create` body.
pub fn custom_job(parts: &JobParts<'_>) -> Result<Value, String> {
    if parts.environment.len() > MAX_ENV_ENTRIES {
        return Err(format!(
            "the step has {} environment variables; a Vertex AI container takes at most {MAX_ENV_ENTRIES}",
            parts.environment.len()
        ));
    }
    if let Some(name) = parts.environment.keys().find(|name| !is_c_identifier(name)) {
        return Err(format!("`{name}` is not a name Vertex AI accepts for an environment variable (a C identifier)"));
    }
    let mut machine = json!({ "machineType": parts.machine_type });
    if let Some((accelerator, count)) = parts.accelerator {
        machine["acceleratorType"] = json!(accelerator);
        machine["acceleratorCount"] = json!(count);
    }
    let env: Vec<Value> = parts
        .environment
        .iter()
        // `$(VAR)` would be expanded by Vertex: `$$` keeps a literal `$`.
        .map(|(name, value)| json!({ "name": name, "value": value.replace("$(", "$$(") }))
        .collect();
    let mut job_spec = json!({
        "workerPoolSpecs": [{
            "machineSpec": machine,
            "replicaCount": "1",
            "diskSpec": { "bootDiskType": parts.boot_disk.0, "bootDiskSizeGb": parts.boot_disk.1 },
            "containerSpec": { "imageUri": parts.image, "command": parts.command, "env": env },
        }],
    });
    if let Some(account) = parts.service_account {
        job_spec["serviceAccount"] = json!(account);
    }
    if let Some(network) = parts.network {
        job_spec["network"] = json!(network);
    }
    if let Some(resource) = parts.persistent_resource_id {
        job_spec["persistentResourceId"] = json!(resource);
    }
    if let Some(seconds) = parts.timeout_seconds {
        job_spec["scheduling"] = json!({ "timeout": format!("{seconds}s") });
    }
    let display_name: String = parts.display_name.chars().take(MAX_DISPLAY_NAME).collect();
    let mut job = json!({ "displayName": display_name, "jobSpec": job_spec, "labels": parts.labels });
    if let Some(key) = parts.kms_key {
        job["encryptionSpec"] = json!({ "kmsKeyName": key });
    }
    Ok(job)
}

fn is_c_identifier(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A label value: lowercase letters, digits, `_` and `-`, at most 63 characters.
pub fn label_value(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c.to_ascii_lowercase() } else { '-' })
        .take(63)
        .collect()
}

/// The job id at the end of `projects/…/customJobs/ID`.
pub fn job_id(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts<'a>(env: &'a BTreeMap<String, String>, command: &'a [String]) -> JobParts<'a> {
        JobParts {
            display_name: "pipe-train".to_owned(),
            image: "us-docker.pkg.dev/p/r/trainer:1",
            command,
            environment: env,
            machine_type: "n1-standard-4",
            accelerator: Some(("NVIDIA_TESLA_T4", 1)),
            boot_disk: ("pd-ssd", 100),
            service_account: None,
            network: None,
            kms_key: None,
            persistent_resource_id: None,
            timeout_seconds: Some(3600),
            labels: BTreeMap::from([("stepbox-step".to_owned(), "train".to_owned())]),
        }
    }

    #[test]
    fn the_body_has_gclouds_shape() {
        let env = BTreeMap::from([("RUN_ID".to_owned(), "abc$(HOME)".to_owned())]);
        let command = ["python".to_owned(), "-m".to_owned(), "trainer".to_owned()];
        let job = custom_job(&parts(&env, &command)).expect("a job");
        let pool = &job["jobSpec"]["workerPoolSpecs"][0];
        assert_eq!(pool["replicaCount"], "1", "int64 as a string");
        assert_eq!(pool["machineSpec"]["acceleratorCount"], 1);
        assert_eq!(pool["containerSpec"]["env"][0], json!({ "name": "RUN_ID", "value": "abc$$(HOME)" }));
        assert_eq!(job["jobSpec"]["scheduling"]["timeout"], "3600s");
    }

    #[test]
    fn names_labels_and_ids() {
        assert_eq!(label_value("My_Pipeline.v2"), "my_pipeline-v2");
        assert_eq!(job_id("projects/1/locations/us-central1/customJobs/4567"), "4567");
        let env = BTreeMap::from([("1BAD".to_owned(), String::new())]);
        assert!(custom_job(&parts(&env, &[])).expect_err("bad name").contains("`1BAD`"));
    }
}
