//! Which environment variables a flavor may give a job: an allow-list.
//!
//! A job's environment is the caller's: the launch's own environment (what
//! `stepbox launch --env` and ZenML passed), repeated with the same values.
//! A flavor may add or change a variable only when the user granted its name
//! (`job-env=NAME`) or a prefix (`job-env=PREFIX_*`); secrets reach a job
//! only through `secret-env=VAR=SECRET` bindings the user typed (see
//! [`super::Grants::secret_env`]). Everything else is denied, whatever the
//! variable: a list of dangerous names (`LD_PRELOAD`, `PYTHONPATH`, …) can
//! never be complete (`HOME` moves Python's user site, `ZENML_STORE_URL`
//! points a step at another server, `PYENV_VERSION` swaps the interpreter).

use std::fmt;
use std::str::FromStr;

/// A `job-env` grant: a variable name, or a prefix ending in `*`. Stored as its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvPattern {
    text: String,
}

impl EnvPattern {
    /// Parse a grant's value: `NAME` or `PREFIX*` (the prefix itself a
    /// valid name start, so `*` alone, which would allow everything, is refused).
    pub fn parse(text: &str) -> Option<Self> {
        let name = text.strip_suffix('*').unwrap_or(text);
        stepbox_backends::units::is_env_name(name).then(|| Self { text: text.to_owned() })
    }

    /// Whether the pattern allows the variable `name` (exact, case-sensitive,
    /// as the kernel and every program compare names).
    pub fn allows(&self, name: &str) -> bool {
        match self.text.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == self.text,
        }
    }
}

impl fmt::Display for EnvPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for EnvPattern {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
            .ok_or_else(|| format!("`{text}` is not an environment variable name or a prefix such as MLFLOW_*"))
    }
}

/// A `secret-env=VAR=SECRET` grant: the user's binding of a stored secret to
/// one job variable. Stored as `VAR=SECRET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretBinding {
    /// The job's environment variable.
    pub var: String,
    /// The stored secret's name.
    pub secret: String,
}

impl SecretBinding {
    /// Parse `VAR=SECRET`: a variable name and a valid secret name.
    pub fn parse(text: &str) -> Option<Self> {
        let (var, secret) = text.split_once('=')?;
        let valid = stepbox_backends::units::is_env_name(var) && stepbox_backends::secrets::check_name(secret).is_ok();
        valid.then(|| Self { var: var.to_owned(), secret: secret.to_owned() })
    }
}

impl fmt::Display for SecretBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.var, self.secret)
    }
}

impl FromStr for SecretBinding {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text).ok_or_else(|| format!("`{text}` is not VAR=SECRET"))
    }
}

super::stored_as_text!(EnvPattern, SecretBinding);

/// The denial message for a variable the flavor set on its own authority.
pub fn denial_message(name: &str) -> String {
    format!(
        "the job sets `{name}`, which the launch's own environment does not give it with that value; a flavor may \
         pass only the caller's variables unchanged, or the ones the step operator is granted: --grant job-env={name} \
         (or a prefix, --grant job-env=PREFIX_*)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_allow_their_name_or_prefix_only() {
        // (pattern, name, allowed)
        let cases: &[(&str, &str, bool)] = &[
            ("MY_FLAG", "MY_FLAG", true),
            ("MY_FLAG", "my_flag", false),
            ("MY_FLAG", "MY_FLAG2", false),
            ("MLFLOW_*", "MLFLOW_TRACKING_URI", true),
            ("MLFLOW_*", "MLFLOWX", false),
        ];
        for (pattern, name, allowed) in cases {
            let parsed = EnvPattern::parse(pattern).expect(pattern);
            assert_eq!(parsed.allows(name), *allowed, "{pattern} {name}");
        }
        for bad in ["*", "", "1ABC", "A B", "A*B"] {
            assert!(EnvPattern::parse(bad).is_none(), "{bad}");
        }
    }
}
