//! What one step operator's flavor may do: its grants, and the checks host
//! calls make before acting.
//!
//! Nothing but `log` is granted by default. Grants are set with
//! `--grant` when a step operator is registered or updated and stored with it.
//! A flavor importing an ungranted capability is refused before it runs; a
//! call outside a grant gets a [`Denial`], returned to the guest as a `denied`
//! error value naming the rule and the grant that would allow it.
//!
//! [`grant`] is the vocabulary (one typed [`Grant`] per `--grant` value, and
//! the table help and errors are made from), [`Grants`] what a step operator
//! stores; the checks are grouped by what they guard: [`jobs`] (where a job
//! works, its backend, command, environment and resources), [`packages`],
//! [`images`], [`egress`] (outgoing HTTP), [`connections`] (backend options
//! and secrets) and [`job_env`].

pub mod connections;
pub mod egress;
pub mod grant;
mod grants;
pub mod images;
pub mod job_env;
mod jobs;
mod packages;
#[cfg(test)]
mod test_support;

use std::fmt;

pub use grant::{Grant, GrantError};
pub use grants::Grants;
pub use images::RegistryCredential;
pub use jobs::{check_resources, overlap};

/// The job backends this runtime has.
pub fn backend_names() -> Vec<&'static str> {
    stepbox_backends::backends::catalogue::BACKENDS.iter().map(|info| info.name).collect()
}

/// A refused host call: the rule that refused it and what would allow it.
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    /// The rule's name, for example `entrypoint-only`.
    pub rule: &'static str,
    /// What was refused and how to allow it.
    pub message: String,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "denied by rule `{}`: {}", self.rule, self.message)
    }
}

/// Why part of a job spec was refused: outside the grants, or malformed (an
/// unknown backend option, a missing secret, a directory that does not exist).
#[derive(Debug, Clone, PartialEq)]
pub enum Refused {
    /// Outside the grants.
    Denied(Denial),
    /// Malformed.
    Invalid(String),
}

/// A `writable-dir` grant's path, normalised: absolute, no `..`, no trailing
/// slash, and not `/` itself (which would make confinement pointless).
fn writable_dir(text: &str) -> Option<String> {
    let path = std::path::Path::new(text);
    let components_ok =
        path.components().all(|c| matches!(c, std::path::Component::RootDir | std::path::Component::Normal(_)));
    let normal = path.components().collect::<std::path::PathBuf>().display().to_string();
    // A `--grant` value is trimmed, so a path ending in whitespace (`/data /`) could not be
    // granted again from `describe()`; no directory has a control character in its name by
    // intent, and a NUL cannot reach bubblewrap at all. Both are refused here, where the user
    // typed them (found by fuzzing, docs/RELIABILITY.md).
    let plain = normal.trim_end() == normal && !normal.contains(char::is_control);
    (path.is_absolute() && components_ok && plain && normal != "/").then_some(normal)
}

/// Serde for grant values stored as the text they were granted with: they
/// are written with `Display` and read back through their own parser
/// (`FromStr`), so a stored value is exactly as valid as a typed one.
macro_rules! stored_as_text {
    ($($type:ty),+) => {$(
        impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    )+};
}
use stored_as_text;
