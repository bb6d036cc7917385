//! Whether a SageMaker instance type can honour a step's GPU request: the
//! instance type sizes the job, so a step asking for GPUs on an instance
//! without them, or for a class the instance does not carry, is refused
//! rather than run on CPUs.

use stepbox_guest::ConfigError;

/// GPU instance families and the GPU each carries (AWS's instance type pages).
const GPU_FAMILIES: &[(&str, &str)] = &[
    ("p2", "k80"),
    ("p3", "v100"),
    ("p3dn", "v100"),
    ("p4d", "a100"),
    ("p4de", "a100"),
    ("p5", "h100"),
    ("p5e", "h200"),
    ("p5en", "h200"),
    ("g4dn", "t4"),
    ("g5", "a10g"),
    ("g6", "l4"),
    ("g6e", "l40s"),
    ("gr6", "l4"),
];

/// The GPU model of `instance_type` (`ml.g5.xlarge` → `a10g`), if it has GPUs.
fn gpu_of(instance_type: &str) -> Option<&'static str> {
    let family = instance_type.strip_prefix("ml.")?.split('.').next()?;
    GPU_FAMILIES.iter().find(|(name, _)| *name == family).map(|(_, gpu)| *gpu)
}

/// Refuses a GPU request `instance_type` cannot honour.
pub fn check(instance_type: &str, gpu_count: Option<u32>, gpu_class: Option<&str>) -> Result<(), ConfigError> {
    let Some(count) = gpu_count.filter(|count| *count > 0) else {
        return Ok(());
    };
    let Some(gpu) = gpu_of(instance_type) else {
        return Err(ConfigError::field(
            "instance_type",
            format!(
                "{instance_type} has no GPU but the step asks for {count}: choose a GPU instance type such as \
                 ml.g5.xlarge (A10G), ml.p4d.24xlarge (A100) or ml.p5.48xlarge (H100)"
            ),
        ));
    };
    match gpu_class {
        Some(class) if !class.trim().is_empty() && !class.trim().eq_ignore_ascii_case(gpu) => Err(ConfigError::field(
            "instance_type",
            format!("{instance_type} carries {} GPUs but the step asks for class `{class}`", gpu.to_uppercase()),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_requests_are_checked_against_the_instance_type() {
        let table = [
            ("ml.m5.large", None, None, None),
            ("ml.m5.large", Some(0), None, None),
            ("ml.m5.large", Some(1), None, Some("has no GPU")),
            ("ml.g5.xlarge", Some(1), None, None),
            ("ml.g5.xlarge", Some(1), Some("A10G"), None),
            ("ml.p4d.24xlarge", Some(8), Some("h100"), Some("carries A100 GPUs")),
            ("ml.p5e.48xlarge", Some(8), Some("h200"), None),
            ("g5.xlarge", Some(1), None, Some("has no GPU")),
        ];
        for (instance, count, class, expected) in table {
            let result = check(instance, count, class);
            match expected {
                None => assert!(result.is_ok(), "{instance} {count:?} {class:?}: {result:?}"),
                Some(text) => {
                    let error = result.expect_err(instance);
                    assert!(format!("{error:?}").contains(text), "{instance}: {error:?}");
                }
            }
        }
    }
}
