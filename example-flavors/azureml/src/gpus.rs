//! Whether Azure ML settings can honour a step's GPU request. Serverless
//! jobs are sized by `instance_type`: GPUs need an N-series VM size
//! (`Standard_NC…`, `Standard_ND…`, `Standard_NV…`). A named compute target
//! has the GPUs it was created with, which this flavor cannot see.

use stepbox_guest::ConfigError;

/// Refuses a serverless GPU request the VM size cannot honour.
pub fn check(serverless: bool, instance_type: Option<&str>, gpu_count: Option<u32>) -> Result<(), ConfigError> {
    let Some(count) = gpu_count.filter(|count| *count > 0) else {
        return Ok(());
    };
    if !serverless {
        return Ok(());
    }
    let n_series = |size: &str| {
        let family = size.strip_prefix("Standard_").unwrap_or(size).to_ascii_uppercase();
        ["NC", "ND", "NV"].iter().any(|prefix| family.starts_with(prefix))
    };
    match instance_type {
        Some(size) if n_series(size) => Ok(()),
        Some(size) => Err(ConfigError::field(
            "instance_type",
            format!(
                "{size} has no GPU but the step asks for {count}: choose an N-series size such as Standard_NC6s_v3"
            ),
        )),
        None => Err(ConfigError::field(
            "instance_type",
            format!("is needed: the step asks for {count} GPU(s); set a GPU VM size such as Standard_NC6s_v3"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serverless_gpu_requests_need_an_n_series_size() {
        assert!(check(true, None, None).is_ok());
        assert!(check(true, Some("Standard_NC6s_v3"), Some(1)).is_ok());
        assert!(check(false, None, Some(4)).is_ok(), "a compute target's GPUs are its own");
        assert!(
            format!("{:?}", check(true, Some("Standard_D4s_v3"), Some(1)).expect_err("no GPU")).contains("has no GPU")
        );
        assert!(format!("{:?}", check(true, None, Some(1)).expect_err("no size")).contains("is needed"));
    }
}
