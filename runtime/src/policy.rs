//! What one step operator's flavor may do, and the checks host calls make
//! before acting. A check that fails yields a [`Denial`] naming the rule; the
//! host returns it to the guest as a `denied` error value, never a trap.

use std::fmt;

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

/// The grants of one step operator.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Job backends the flavor may submit to; the first is the default.
    pub backends: Vec<String>,
    /// Whether jobs may run commands other than the launch's entrypoint.
    pub arbitrary_commands: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self { backends: vec!["local".to_owned()], arbitrary_commands: false }
    }
}

impl Policy {
    /// The backend a job goes to: the one it names, if granted, or the default.
    pub fn backend<'a>(&'a self, requested: Option<&'a str>) -> Result<&'a str, Denial> {
        let default = self.backends.first().map(String::as_str);
        match (requested, default) {
            (Some(name), _) if self.backends.iter().any(|granted| granted == name) => Ok(name),
            (Some(name), _) => Err(Denial {
                rule: "backends",
                message: format!(
                    "the backend `{name}` is not granted to this step operator (granted: {})",
                    self.backends.join(", ")
                ),
            }),
            (None, Some(default)) => Ok(default),
            (None, None) => {
                Err(Denial { rule: "backends", message: "no job backend is granted to this step operator".to_owned() })
            }
        }
    }

    /// A job must run the launch's entrypoint command unless the step
    /// operator is granted `arbitrary-commands` (decision 3).
    pub fn command(&self, command: &[String], entrypoint: &[String]) -> Result<(), Denial> {
        if self.arbitrary_commands || command == entrypoint {
            return Ok(());
        }
        Err(Denial {
            rule: "entrypoint-only",
            message: format!(
                "a job must run the launch's entrypoint command {entrypoint:?}, but this one runs {command:?}. \
                 Only step operators granted `arbitrary-commands` may run other commands; grant it to trusted flavors only"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn commands_other_than_the_entrypoint_are_denied_by_default() {
        let policy = Policy::default();
        let entrypoint = strings(&["python", "-m", "step"]);
        let cases: &[(&[&str], bool)] = &[
            (&["python", "-m", "step"], true),
            (&["python", "-m", "other"], false),
            (&["sh", "-c", "python -m step"], false),
            (&["python", "-m", "step", "--extra"], false),
            (&[], false),
        ];
        for (command, allowed) in cases {
            let result = policy.command(&strings(command), &entrypoint);
            assert_eq!(result.is_ok(), *allowed, "{command:?}");
            if let Err(denial) = result {
                assert_eq!(denial.rule, "entrypoint-only");
                assert!(denial.message.contains("arbitrary-commands"));
            }
        }
    }

    #[test]
    fn arbitrary_commands_grant_allows_any_command() {
        let policy = Policy { arbitrary_commands: true, ..Policy::default() };
        assert!(policy.command(&strings(&["rm", "-rf", "/tmp/x"]), &strings(&["true"])).is_ok());
    }

    #[test]
    fn backends_default_to_the_first_grant_and_refuse_others() {
        let policy = Policy::default();
        assert_eq!(policy.backend(None), Ok("local"));
        assert_eq!(policy.backend(Some("local")), Ok("local"));
        let denial = policy.backend(Some("slurm")).unwrap_err();
        assert_eq!(denial.rule, "backends");
        assert!(denial.message.contains("slurm"));
    }
}
