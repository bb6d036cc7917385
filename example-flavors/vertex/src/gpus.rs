//! Whether Vertex AI settings can honour a step's GPU request: GPUs come
//! only from an `accelerator_type`, so a step asking for GPUs without one,
//! or for a class the accelerator is not, is refused rather than run on CPUs.

use stepbox_guest::ConfigError;

/// Refuses a GPU request the accelerator settings cannot honour.
pub fn check(
    accelerator_type: Option<&str>,
    gpu_count: Option<u32>,
    gpu_class: Option<&str>,
) -> Result<(), ConfigError> {
    let asked = gpu_count.filter(|count| *count > 0);
    match (accelerator_type, asked) {
        (None, Some(count)) => Err(ConfigError::field(
            "accelerator_type",
            format!(
                "is needed: the step asks for {count} GPU(s); set it, for example NVIDIA_TESLA_T4 or NVIDIA_H100_80GB"
            ),
        )),
        (Some(kind), Some(_)) => match gpu_class.map(str::trim).filter(|class| !class.is_empty()) {
            Some(class) if !kind.split('_').any(|word| word.eq_ignore_ascii_case(class)) => Err(ConfigError::field(
                "accelerator_type",
                format!("is {kind}, but the step asks for GPU class `{class}`"),
            )),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_requests_need_a_matching_accelerator() {
        assert!(check(None, None, None).is_ok());
        assert!(check(None, Some(0), None).is_ok());
        assert!(format!("{:?}", check(None, Some(2), None).expect_err("no accelerator")).contains("is needed"));
        assert!(check(Some("NVIDIA_H100_80GB"), Some(1), Some("h100")).is_ok());
        assert!(check(Some("NVIDIA_TESLA_T4"), Some(1), None).is_ok());
        let wrong = check(Some("NVIDIA_TESLA_T4"), Some(1), Some("a100")).expect_err("a T4 is no A100");
        assert!(format!("{wrong:?}").contains("asks for GPU class `a100`"), "{wrong:?}");
    }
}
