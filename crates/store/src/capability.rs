//! The capabilities a flavor can import, as one typed list: what the
//! component checker sorts imports into, what a step operator grants, and
//! what the linker links.
//!
//! A capability is named as its WIT interface is (`jobs` is
//! `stepbox:operator/jobs`), except `http`, which is WASI's `wasi:http`. The
//! stored forms (a component's shape, a step operator's grants) keep these
//! names, so records written before this type existed read the same.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// One capability of the contract. Stored (serde) as its name; ordered by
/// its name, so lists of capabilities read as they did when they were
/// strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    /// `log`: the flavor's own log lines. Always granted.
    Log,
    /// `cancellation`: whether the launch is being cancelled. Always granted.
    Cancellation,
    /// `jobs`: run jobs on a backend.
    Jobs,
    /// `requirements`: Python environments for a step's requirements.
    Requirements,
    /// `images`: build and push container images.
    Images,
    /// `http`: outgoing HTTP through `wasi:http`, checked per request.
    Http,
}

impl Capability {
    /// Every capability, in the order the contract lists them.
    pub const ALL: [Capability; 6] =
        [Self::Log, Self::Cancellation, Self::Jobs, Self::Requirements, Self::Images, Self::Http];

    /// The capability's name: its contract interface's, or `http`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::Cancellation => "cancellation",
            Self::Jobs => "jobs",
            Self::Requirements => "requirements",
            Self::Images => "images",
            Self::Http => "http",
        }
    }

    /// Whether a step operator must grant it: `log` and `cancellation` only
    /// inform, and every flavor has them.
    pub fn needs_grant(self) -> bool {
        !matches!(self, Self::Log | Self::Cancellation)
    }

    /// The capabilities a step operator can grant.
    pub fn grantable() -> impl Iterator<Item = Capability> {
        Self::ALL.into_iter().filter(|capability| capability.needs_grant())
    }

    /// The capability the contract interface `interface` (of
    /// `stepbox:operator`) provides; `None` for `types`, which provides none,
    /// and for names the contract does not have.
    pub fn of_contract_interface(interface: &str) -> Option<Capability> {
        interface.parse().ok().filter(|capability| *capability != Self::Http)
    }
}

impl Ord for Capability {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name().cmp(other.name())
    }
}

impl PartialOrd for Capability {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is no capability.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("`{0}` is not a capability (there are: {names})", names = names())]
pub struct UnknownCapability(pub String);

impl FromStr for Capability {
    type Err = UnknownCapability;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|capability| capability.name() == name)
            .ok_or_else(|| UnknownCapability(name.to_owned()))
    }
}

/// Every capability's name, for messages.
fn names() -> String {
    Capability::ALL.map(Capability::name).join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_capability_reads_back_from_its_name_and_says_whether_it_needs_a_grant() {
        let table = [
            ("log", Capability::Log, false),
            ("cancellation", Capability::Cancellation, false),
            ("jobs", Capability::Jobs, true),
            ("requirements", Capability::Requirements, true),
            ("images", Capability::Images, true),
            ("http", Capability::Http, true),
        ];
        assert_eq!(table.len(), Capability::ALL.len(), "the table covers every capability");
        for (name, capability, grant) in table {
            assert_eq!(name.parse::<Capability>(), Ok(capability), "{name}");
            assert_eq!(capability.to_string(), name);
            assert_eq!(capability.needs_grant(), grant, "{name}");
        }
        let grantable: Vec<&str> = Capability::grantable().map(Capability::name).collect();
        assert_eq!(grantable, ["jobs", "requirements", "images", "http"]);
    }

    #[test]
    fn names_that_are_no_capability_are_refused() {
        for name in ["", "JOBS", "types", "network", "jobs ", "wasi:http"] {
            let refused = name.parse::<Capability>().expect_err(name);
            assert!(refused.to_string().contains("there are: log, cancellation, jobs"), "{refused}");
        }
    }

    #[test]
    fn capabilities_are_stored_as_their_names_and_sorted_by_them() {
        for capability in Capability::ALL {
            let stored = serde_json::to_string(&capability).expect("serializes");
            assert_eq!(stored, format!("\"{capability}\""));
            assert_eq!(serde_json::from_str::<Capability>(&stored).expect("reads back"), capability);
        }
        assert!(serde_json::from_str::<Capability>("\"network\"").is_err());
        let mut sorted = Capability::ALL.to_vec();
        sorted.sort();
        let names: Vec<&str> = sorted.into_iter().map(Capability::name).collect();
        assert_eq!(names, ["cancellation", "http", "images", "jobs", "log", "requirements"]);
    }

    #[test]
    fn contract_interfaces_name_every_capability_but_http() {
        assert_eq!(Capability::of_contract_interface("jobs"), Some(Capability::Jobs));
        assert_eq!(Capability::of_contract_interface("log"), Some(Capability::Log));
        assert_eq!(Capability::of_contract_interface("http"), None, "http is wasi:http, not the contract's");
        assert_eq!(Capability::of_contract_interface("types"), None);
    }
}
