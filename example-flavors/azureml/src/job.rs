//! The Azure ML requests for a step: the environment version that names its
//! image (a command job has no image field, and versions are immutable, so
//! the version is a hash of the image reference), and the command job
//! itself, whose command is one shell string.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Longest job name (`^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$`).
pub const MAX_NAME: usize = 255;

/// The environment version for `image`: the same image always gets the same version.
pub fn environment_version(image: &str) -> String {
    hex::encode(Sha256::digest(image.as_bytes()))[..16].to_owned()
}

/// The environment version's body.
pub fn environment_body(image: &str) -> Value {
    json!({ "properties": { "image": image, "isAnonymous": false, "osType": "Linux" } })
}

/// A job name from the pipeline and step names and a unique suffix.
pub fn job_name(pipeline: &str, step: &str, unique: &str) -> String {
    let clean = |text: &str| -> String {
        text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
    };
    let suffix: String = unique.chars().filter(char::is_ascii_alphanumeric).take(12).collect::<String>().to_lowercase();
    let name = format!("{}_{}_{}", clean(pipeline), clean(step), if suffix.is_empty() { "step" } else { &suffix });
    let name = name.trim_start_matches(['_', '-']);
    let name: String = name.chars().take(MAX_NAME).collect();
    if name.is_empty() { "step".to_owned() } else { name }
}

/// The entrypoint as the one shell string a command job runs.
pub fn command(entrypoint: &[String]) -> Result<String, String> {
    if entrypoint.is_empty() {
        return Err("the entrypoint is empty".to_owned());
    }
    shlex::try_join(entrypoint.iter().map(String::as_str))
        .map_err(|_| "an entrypoint word contains a NUL byte, which no shell command can hold".to_owned())
}

/// Everything the command job needs.
pub struct JobParts<'a> {
    pub display_name: &'a str,
    pub experiment: String,
    pub command: String,
    pub environment_id: String,
    pub compute_id: Option<String>,
    pub environment: &'a BTreeMap<String, String>,
    pub instance_count: u32,
    pub instance_type: Option<&'a str>,
    pub shm_size: Option<&'a str>,
    pub timeout_seconds: Option<u64>,
    pub tags: BTreeMap<String, String>,
}

/// The `Jobs_CreateOrUpdate` body of a command job.
pub fn command_job(parts: &JobParts<'_>) -> Value {
    let mut resources = json!({ "instanceCount": parts.instance_count });
    if let Some(kind) = parts.instance_type {
        resources["instanceType"] = json!(kind);
    }
    if let Some(size) = parts.shm_size {
        resources["shmSize"] = json!(size);
    }
    let mut properties = json!({
        "jobType": "Command",
        "displayName": parts.display_name,
        "experimentName": parts.experiment,
        "command": parts.command,
        "environmentId": parts.environment_id,
        "environmentVariables": parts.environment,
        "resources": resources,
        "tags": parts.tags,
    });
    // No computeId means serverless compute.
    if let Some(compute) = &parts.compute_id {
        properties["computeId"] = json!(compute);
    }
    if let Some(seconds) = parts.timeout_seconds {
        properties["limits"] = json!({ "jobLimitsType": "Command", "timeout": format!("PT{seconds}S") });
    }
    json!({ "properties": properties })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_versions_and_commands() {
        assert_eq!(job_name("training pipeline", "train.v2", "3f2a-9c1e"), "training_pipeline_train_v2_3f2a9c1e");
        assert_eq!(job_name("_x", "s", ""), "x_s_step");
        assert_eq!(job_name(&"p".repeat(300), "s", "1").len(), MAX_NAME);
        assert_eq!(environment_version("repo/img:1"), environment_version("repo/img:1"));
        assert_ne!(environment_version("repo/img:1"), environment_version("repo/img:2"));
        assert_eq!(environment_version("repo/img:1").len(), 16);
        let words = ["python", "-c", "print('a b')"].map(str::to_owned);
        assert_eq!(command(&words).expect("a command"), r#"python -c "print('a b')""#);
        assert!(command(&[]).is_err());
    }
}
