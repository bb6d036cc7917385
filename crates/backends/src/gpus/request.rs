//! What a job asks of this machine's GPUs: how many, and optionally of which
//! class, matched against the model name by whole words (`h200` matches
//! `NVIDIA H200`; `a10` does not match `NVIDIA A100-SXM4-80GB`).

use crate::backends::JobResources;

/// A job's GPU request; `count` is at least 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuRequest {
    pub count: u32,
    pub class: Option<String>,
}

impl GpuRequest {
    /// The request in a job's resources, if it asks for any GPU.
    pub fn of(resources: &JobResources) -> Option<Self> {
        let count = resources.gpu_count.filter(|count| *count > 0)?;
        Some(GpuRequest { count, class: resources.gpu_class.clone().filter(|class| !class.trim().is_empty()) })
    }

    /// `2 GPUs of class h200`, for messages.
    pub fn describe(&self) -> String {
        let noun = if self.count == 1 { "GPU" } else { "GPUs" };
        match &self.class {
            Some(class) => format!("{} {noun} of class `{class}`", self.count),
            None => format!("{} {noun}", self.count),
        }
    }
}

/// The lower-case alphanumeric words of a name.
fn words(name: &str) -> Vec<String> {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Whether `class`'s words appear, in order and next to each other, among `model`'s.
pub fn class_matches(class: &str, model: &str) -> bool {
    let wanted = words(class);
    let have = words(model);
    !wanted.is_empty() && have.windows(wanted.len()).any(|window| window == wanted.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_match_whole_words() {
        let table = [
            ("h200", "NVIDIA H200", true),
            ("H100", "NVIDIA H100 80GB HBM3", true),
            ("h100 80gb", "NVIDIA H100 80GB HBM3", true),
            ("a100", "NVIDIA A100-SXM4-80GB", true),
            ("a10", "NVIDIA A100-SXM4-80GB", false),
            ("a10", "NVIDIA A10", true),
            ("l4", "NVIDIA L40S", false),
            ("nvidia", "NVIDIA L4", true),
            ("", "NVIDIA L4", false),
            ("--", "NVIDIA L4", false),
        ];
        for (class, model, expected) in table {
            assert_eq!(class_matches(class, model), expected, "{class} vs {model}");
        }
    }

    #[test]
    fn only_a_positive_count_is_a_request() {
        let resources = |count: Option<u32>, class: Option<&str>| JobResources {
            gpu_count: count,
            gpu_class: class.map(str::to_owned),
            ..JobResources::default()
        };
        assert_eq!(GpuRequest::of(&resources(None, Some("h200"))), None);
        assert_eq!(GpuRequest::of(&resources(Some(0), None)), None);
        let two = GpuRequest::of(&resources(Some(2), Some("h200"))).expect("a request");
        assert_eq!(two.describe(), "2 GPUs of class `h200`");
        assert_eq!(GpuRequest::of(&resources(Some(1), Some(" "))).expect("a request").describe(), "1 GPU");
    }
}
