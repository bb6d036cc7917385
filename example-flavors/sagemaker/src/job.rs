//! The `CreateTrainingJob` request for a step, under SageMaker's own rules:
//! 63-character job names of letters, digits and hyphens; at most 100
//! environment variables of 512 characters each (longer values are split
//! the way ZenML splits them, and ZenML's entrypoint joins them again); at
//! most 100 container arguments of 256 characters.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// Longest training job name.
pub const MAX_NAME: usize = 63;
/// Longest environment value SageMaker takes.
pub const MAX_ENV_VALUE: usize = 512;
/// Most environment variables SageMaker takes.
pub const MAX_ENV_ENTRIES: usize = 100;
/// ZenML's suffix for the pieces of a split variable (`zenml.utils.env_utils`).
pub const CHUNK_SUFFIX: &str = "_CHUNK_";
/// ZenML splits a value into at most this many pieces.
pub const MAX_CHUNKS: usize = 10;

/// A job name from the pipeline and step names and a unique suffix (from
/// the step-run id): `[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}`.
pub fn job_name(pipeline: &str, step: &str, unique: &str) -> String {
    let suffix: String = unique.chars().filter(char::is_ascii_alphanumeric).take(12).collect::<String>().to_lowercase();
    let suffix = if suffix.is_empty() { "step".to_owned() } else { suffix };
    let mut base = String::new();
    for c in format!("{pipeline}-{step}").chars() {
        if c.is_ascii_alphanumeric() {
            base.push(c);
        } else if !base.is_empty() && !base.ends_with('-') {
            base.push('-');
        }
    }
    let room = MAX_NAME - suffix.len() - 1;
    let base: String = base.chars().take(room).collect();
    let base = base.trim_end_matches('-');
    if base.is_empty() { suffix } else { format!("{base}-{suffix}") }
}

/// The job's environment: values over 512 characters split into
/// `NAME_CHUNK_0`, `NAME_CHUNK_1`, … as ZenML does; names checked.
pub fn environment(variables: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (name, value) in variables {
        let valid_name = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            return Err(format!("`{name}` is not a name SageMaker accepts for an environment variable"));
        }
        let chars: Vec<char> = value.chars().collect();
        if chars.len() <= MAX_ENV_VALUE {
            out.insert(name.clone(), value.clone());
            continue;
        }
        if chars.len() > MAX_ENV_VALUE * MAX_CHUNKS {
            return Err(format!(
                "the value of `{name}` is {} characters; SageMaker takes {MAX_ENV_VALUE} per variable and ZenML's entrypoint joins at most {MAX_CHUNKS} pieces",
                chars.len()
            ));
        }
        for (i, piece) in chars.chunks(MAX_ENV_VALUE).enumerate() {
            out.insert(format!("{name}{CHUNK_SUFFIX}{i}"), piece.iter().collect());
        }
    }
    if out.len() > MAX_ENV_ENTRIES {
        return Err(format!(
            "the step needs {} environment variables (after splitting long values); SageMaker takes at most {MAX_ENV_ENTRIES}",
            out.len()
        ));
    }
    Ok(out)
}

/// The container's entrypoint, checked against SageMaker's limits.
pub fn entrypoint(command: &[String]) -> Result<Vec<String>, String> {
    if command.is_empty() || command.len() > 100 {
        return Err(format!("the entrypoint has {} words; SageMaker takes 1 to 100", command.len()));
    }
    if let Some(long) = command.iter().find(|word| word.chars().count() > 256) {
        let start: String = long.chars().take(40).collect();
        return Err(format!("an entrypoint word is over SageMaker's 256 characters: `{start}…`"));
    }
    Ok(command.to_vec())
}

/// Everything `CreateTrainingJob` needs besides the name.
pub struct JobParts<'a> {
    pub role: &'a str,
    pub image: &'a str,
    pub command: Vec<String>,
    pub output_path: String,
    pub instance_type: &'a str,
    pub instance_count: u32,
    pub volume_size_gb: u32,
    pub max_runtime_seconds: u64,
    pub environment: BTreeMap<String, String>,
    /// Channel name → S3 URI.
    pub inputs: BTreeMap<String, String>,
    pub spot: Option<u64>,
    pub vpc: Option<(Vec<String>, Vec<String>)>,
    pub tags: BTreeMap<String, String>,
}

/// The `CreateTrainingJob` input.
pub fn create_request(name: &str, parts: &JobParts<'_>) -> Value {
    let mut request = json!({
        "TrainingJobName": name,
        "RoleArn": parts.role,
        "AlgorithmSpecification": {
            "TrainingImage": parts.image,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": parts.command,
        },
        "OutputDataConfig": { "S3OutputPath": parts.output_path },
        "ResourceConfig": {
            "InstanceType": parts.instance_type,
            "InstanceCount": parts.instance_count,
            "VolumeSizeInGB": parts.volume_size_gb,
        },
        "StoppingCondition": { "MaxRuntimeInSeconds": parts.max_runtime_seconds },
        "Environment": parts.environment,
        "Tags": parts.tags.iter().map(|(k, v)| json!({ "Key": k, "Value": v })).collect::<Vec<_>>(),
    });
    if !parts.inputs.is_empty() {
        request["InputDataConfig"] = parts
            .inputs
            .iter()
            .map(|(channel, uri)| {
                json!({
                    "ChannelName": channel,
                    "DataSource": { "S3DataSource": {
                        "S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated",
                    } },
                })
            })
            .collect();
    }
    if let Some(max_wait) = parts.spot {
        request["EnableManagedSpotTraining"] = json!(true);
        request["StoppingCondition"]["MaxWaitTimeInSeconds"] = json!(max_wait);
    }
    if let Some((subnets, groups)) = &parts.vpc {
        request["VpcConfig"] = json!({ "Subnets": subnets, "SecurityGroupIds": groups });
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_follow_sagemakers_pattern_and_length() {
        let cases = [
            ("training_pipeline", "trainer", "3f2a9c1e-77aa-4b1d", "training-pipeline-trainer-3f2a9c1e77aa"),
            ("p", "s", "", "p-s-step"),
            ("__", "..", "ABC", "abc"),
        ];
        for (pipeline, step, unique, expected) in cases {
            assert_eq!(job_name(pipeline, step, unique), expected);
        }
        let long = job_name(&"x".repeat(80), "step", "0123456789abcdef");
        assert_eq!(long.len(), MAX_NAME);
        assert!(long.ends_with("-0123456789ab"), "{long}");
    }

    #[test]
    fn long_values_are_split_as_zenml_splits_them() {
        let token = "t".repeat(1100);
        let env = environment(&BTreeMap::from([("ZENML_STORE_API_TOKEN".to_owned(), token.clone())])).expect("ok");
        assert_eq!(env.len(), 3);
        assert_eq!(env["ZENML_STORE_API_TOKEN_CHUNK_0"].len(), 512);
        assert_eq!(env["ZENML_STORE_API_TOKEN_CHUNK_2"].len(), 76);
        let joined: String = (0..3).map(|i| env[&format!("ZENML_STORE_API_TOKEN_CHUNK_{i}")].clone()).collect();
        assert_eq!(joined, token);

        let huge = environment(&BTreeMap::from([("X".to_owned(), "t".repeat(5121))])).expect_err("too long");
        assert!(huge.contains("at most 10 pieces"), "{huge}");
        let bad = environment(&BTreeMap::from([("1X".to_owned(), String::new())])).expect_err("bad name");
        assert!(bad.contains("`1X`"), "{bad}");
    }
}
