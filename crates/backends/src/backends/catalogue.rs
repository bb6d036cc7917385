//! Every job backend this runtime has, with the options a job spec may pass
//! to it (`backend-options` in the contract) and what each option is. The
//! `jobs` capability checks a spec's options against this table before a
//! backend sees them; `stepbox backends` prints it.

use std::collections::BTreeMap;

use crate::secrets::SecretValue;

/// What kind of value an option takes, and so how the host checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionKind {
    /// Plain text, passed to the backend as is.
    Text,
    /// An engine's address, `scheme://host:port`. The step operator must be
    /// granted it (`--grant <grant>=ADDRESS`); with one granted and none
    /// asked for, the granted one is used.
    Address { grant: &'static str },
    /// The name of a stored secret, which the step operator must be granted
    /// (`--grant secret=NAME`). The backend gets the value; the flavor never.
    Secret,
}

/// One option a backend understands.
#[derive(Debug, Clone, Copy)]
pub struct BackendOption {
    pub key: &'static str,
    pub kind: OptionKind,
    pub help: &'static str,
}

/// A backend and its options.
#[derive(Debug, Clone, Copy)]
pub struct BackendInfo {
    pub name: &'static str,
    pub summary: &'static str,
    pub options: &'static [BackendOption],
}

impl BackendInfo {
    /// The option named `key`.
    pub fn option(&self, key: &str) -> Option<&'static BackendOption> {
        self.options.iter().find(|option| option.key == key)
    }

    /// The option keys, for error messages.
    pub fn keys(&self) -> String {
        if self.options.is_empty() {
            return "none".to_owned();
        }
        self.options.iter().map(|option| option.key).collect::<Vec<_>>().join(", ")
    }
}

/// The backends, in the order `stepbox backends` shows them.
pub const BACKENDS: &[BackendInfo] = &[
    BackendInfo {
        name: "local",
        summary: "a process on this machine, confined with bubblewrap unless the step operator is trusted",
        options: &[],
    },
    BackendInfo {
        name: "container",
        summary: "a podman container from the job's image, no network and no capabilities unless granted",
        options: &[],
    },
    BackendInfo {
        name: "slurm",
        summary: "a Slurm batch job, through sbatch/scontrol/scancel and the cluster this machine's Slurm commands reach",
        options: &[
            BackendOption {
                key: "partition",
                kind: OptionKind::Text,
                help: "the partition to submit to (sbatch --partition)",
            },
            BackendOption { key: "account", kind: OptionKind::Text, help: "the account to charge (sbatch --account)" },
            BackendOption { key: "qos", kind: OptionKind::Text, help: "the quality of service (sbatch --qos)" },
        ],
    },
    BackendInfo {
        name: "ray",
        summary: "a Ray job, through the Ray Jobs REST API of a granted cluster address",
        options: &[
            BackendOption {
                key: "address",
                kind: OptionKind::Address { grant: "ray-address" },
                help: "the Ray dashboard address, http://HOST:8265; must be granted with --grant ray-address=ADDRESS",
            },
            BackendOption {
                key: "token-secret",
                kind: OptionKind::Secret,
                help: "the secret holding the cluster's auth token (RAY_AUTH_MODE=token); must be granted with --grant secret=NAME",
            },
        ],
    },
];

/// The backend named `name`.
pub fn backend(name: &str) -> Option<&'static BackendInfo> {
    BACKENDS.iter().find(|info| info.name == name)
}

/// A job's backend options after the host checked them: text options as
/// given, addresses as granted, secrets as their values.
#[derive(Debug, Clone, Default)]
pub struct BackendOptions {
    values: BTreeMap<&'static str, String>,
    secrets: BTreeMap<&'static str, SecretValue>,
}

impl BackendOptions {
    /// Set a text or address option.
    pub fn set(&mut self, key: &'static str, value: String) {
        self.values.insert(key, value);
    }

    /// Set a secret option to its value.
    pub fn set_secret(&mut self, key: &'static str, value: SecretValue) {
        self.secrets.insert(key, value);
    }

    /// A text or address option.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// A secret option's value.
    pub fn secret(&self, key: &str) -> Option<&SecretValue> {
        self.secrets.get(key)
    }

    /// Every option set, as `key=value` (secrets as `key=<secret>`).
    pub fn keys(&self) -> Vec<String> {
        let values = self.values.iter().map(|(key, value)| format!("{key}={value}"));
        values.chain(self.secrets.keys().map(|key| format!("{key}=<secret>"))).collect()
    }
}
