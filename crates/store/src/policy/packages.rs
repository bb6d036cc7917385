//! What an environment or an image may hold: the step's own packages, from
//! the package index unless granted otherwise.

use super::{Denial, Grants};

impl Grants {
    /// Requirements must come from the package index (a name and a version
    /// range) unless `requirement-urls` is granted: a URL or a path would let
    /// the flavor choose the code outright.
    pub fn requirement_sources(&self, direct_references: &[String]) -> Result<(), Denial> {
        match direct_references.first() {
            Some(reference) if !self.requirement_urls => Err(Denial {
                rule: "requirement-urls",
                message: format!(
                    "the requirement `{reference}` names a URL or a path instead of a version from the package index; \
                     grant it with --grant requirement-urls"
                ),
            }),
            _ => Ok(()),
        }
    }

    /// The packages of an environment or image are the caller's: each
    /// requirement (normalized) must be one the step asked for, unless the
    /// flavor is granted `flavor-packages` (or `arbitrary-commands`, which
    /// already lets it run any code). Extra packages the grant allows must
    /// still come from the package index unless `requirement-urls`; the
    /// caller's own may name a URL or a path (the caller chose them).
    pub fn flavor_requirements(
        &self,
        requested: &[String],
        direct_references: &[String],
        caller: &[String],
    ) -> Result<(), Denial> {
        let extras: Vec<&String> = requested.iter().filter(|requirement| !caller.contains(requirement)).collect();
        let Some(first) = extras.first() else { return Ok(()) };
        if !(self.flavor_packages || self.arbitrary_commands) {
            return Err(Denial {
                rule: "flavor-packages",
                message: format!(
                    "the flavor asks for `{first}`, which the step did not ask for (its requirements: {}); the code a \
                     step runs is the caller's. Grant --grant flavor-packages only to a flavor you trust to put code \
                     into your step",
                    if caller.is_empty() { "none".to_owned() } else { caller.join(", ") }
                ),
            });
        }
        let extra_references: Vec<String> =
            direct_references.iter().filter(|reference| !caller.contains(reference)).cloned().collect();
        self.requirement_sources(&extra_references)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::test_support::{granted, strings};

    #[test]
    fn an_environment_holds_the_steps_packages_unless_the_flavor_is_granted_more() {
        let caller = strings(&["scikit-learn>=1.5", "stepbox-zenml @ file:///srv/zenml"]);
        let none: &[String] = &[];
        let url = strings(&["evil @ https://example.invalid/evil.whl"]);
        let plain = Grants::default();
        assert!(plain.flavor_requirements(&caller, &caller[1..], &caller).is_ok(), "the caller's own, URL too");
        let denial = plain.flavor_requirements(&strings(&["six"]), none, &caller).unwrap_err();
        assert_eq!(denial.rule, "flavor-packages");
        assert!(denial.message.contains("--grant flavor-packages"), "{}", denial.message);
        let trusted = granted(&["flavor-packages"]);
        assert!(trusted.flavor_requirements(&strings(&["six"]), none, &caller).is_ok());
        assert_eq!(trusted.flavor_requirements(&url, &url, &caller).map_err(|d| d.rule), Err("requirement-urls"));
        assert!(granted(&["flavor-packages", "requirement-urls"]).flavor_requirements(&url, &url, &caller).is_ok());
    }
}
