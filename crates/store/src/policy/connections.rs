//! A job's backend options checked against the grants: option keys the
//! backend knows, engine addresses the step operator was granted, and
//! secrets it may use, resolved to their values for the backend alone.

use std::collections::BTreeSet;

use super::{Denial, Grants, Refused};
use stepbox_backends::backends::catalogue::{BackendInfo, BackendOptions, OptionKind};
use stepbox_backends::secrets::{SecretError, Secrets};

/// Longest value of a text option.
const MAX_OPTION_BYTES: usize = 256;

/// `scheme://host:port` of an `http`/`https` URL, the form grants keep.
pub fn origin(address: &str) -> Result<String, String> {
    let url = url::Url::parse(address).map_err(|error| format!("`{address}` is not a URL: {error}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{address}` is not an http or https address"));
    }
    let host = url.host_str().ok_or_else(|| format!("`{address}` has no host"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("`{address}` carries credentials: store them as a secret instead"));
    }
    let port = url.port_or_known_default().ok_or_else(|| format!("`{address}` has no port"))?;
    Ok(format!("{}://{host}:{port}", url.scheme()))
}

/// Check `requested` options' keys for `backend` without resolving
/// addresses or secrets: what a dry run records.
pub fn unresolved_options(backend: &BackendInfo, requested: &[(String, String)]) -> Result<BackendOptions, Refused> {
    let mut options = BackendOptions::default();
    for (key, value) in requested {
        let option = known_option(backend, key)?;
        options.set(option.key, value.clone());
    }
    Ok(options)
}

fn known_option(
    backend: &BackendInfo,
    key: &str,
) -> Result<&'static stepbox_backends::backends::catalogue::BackendOption, Refused> {
    backend.option(key).ok_or_else(|| {
        Refused::Invalid(format!(
            "the `{}` backend has no option `{key}` (its options: {}); `stepbox backends` lists every backend's options",
            backend.name,
            backend.keys()
        ))
    })
}

/// The job option every backend takes: `NAME=SECRET` sets the job's
/// variable `NAME` to the stored secret `SECRET` (granted with
/// `--grant secret=SECRET`); the host fills it in, the flavor never sees it.
pub const SECRET_ENV: &str = "secret-env";

/// `(key, value)` pairs: job options, or (variable, secret name) pairs.
pub type Pairs = Vec<(String, String)>;

/// Split the `secret-env` options from the backend's own: (variable, secret name) pairs, and the rest.
pub fn split_secret_env(requested: &[(String, String)]) -> Result<(Pairs, Pairs), Refused> {
    let mut secret_env = Vec::new();
    let mut rest = Vec::new();
    for (key, value) in requested {
        if key != SECRET_ENV {
            rest.push((key.clone(), value.clone()));
            continue;
        }
        let (name, secret) = value.split_once('=').ok_or_else(|| {
            Refused::Invalid(format!(
                "`{SECRET_ENV}={value}` is not NAME=SECRET, e.g. secret-env=DB_PASSWORD=db-password"
            ))
        })?;
        if !stepbox_backends::units::is_env_name(name) {
            return Err(Refused::Invalid(format!(
                "`{name}` in `{SECRET_ENV}` is not a valid environment variable name"
            )));
        }
        if secret_env.iter().any(|(seen, _): &(String, String)| seen == name) {
            return Err(Refused::Invalid(format!("`{SECRET_ENV}` sets `{name}` twice")));
        }
        secret_env.push((name.to_owned(), secret.to_owned()));
    }
    Ok((secret_env, rest))
}

impl Grants {
    /// The values of `secret_env`'s secrets. The user decides which secret
    /// lands in which variable: each (variable, secret) pair must be bound by
    /// a `secret-env=VAR=SECRET` grant ([`Grants::check_secret_env`]), and
    /// the secret stored. A flavor can only ask for granted bindings.
    pub fn secret_env(
        &self,
        secret_env: &[(String, String)],
        secrets: &Secrets,
    ) -> Result<Vec<(String, stepbox_backends::secrets::SecretValue)>, Refused> {
        self.check_secret_env(secret_env)?;
        secret_env.iter().map(|(name, secret)| Ok((name.clone(), self.stored_secret(secret, secrets)?))).collect()
    }

    /// Every (variable, secret) pair must be a binding the user granted.
    pub fn check_secret_env(&self, secret_env: &[(String, String)]) -> Result<(), Refused> {
        match secret_env.iter().find(|(name, secret)| !self.secret_env_bound(name, secret)) {
            Some((name, secret)) => Err(Refused::Denied(Denial {
                rule: "secret-env",
                message: format!(
                    "the job asks for the secret `{secret}` in the variable `{name}`, and the user has not bound them: \
                     grant it with --grant secret-env={name}={secret} (a `secret={secret}` grant alone no longer lets \
                     the flavor choose the variable)"
                ),
            })),
            None => Ok(()),
        }
    }

    /// Whether the user bound the secret `secret` to the variable `name`.
    pub fn secret_env_bound(&self, name: &str, secret: &str) -> bool {
        self.secret_env.iter().any(|binding| binding.var == name && binding.secret == secret)
    }

    /// Check `requested` options for `backend` and resolve addresses and
    /// secrets. An address option left out defaults to the only granted one.
    pub fn backend_options(
        &self,
        backend: &BackendInfo,
        requested: &[(String, String)],
        secrets: &Secrets,
    ) -> Result<BackendOptions, Refused> {
        let mut options = BackendOptions::default();
        let mut seen = BTreeSet::new();
        for (key, value) in requested {
            let option = known_option(backend, key)?;
            if !seen.insert(option.key) {
                return Err(Refused::Invalid(format!("the backend option `{key}` is given twice")));
            }
            match option.kind {
                OptionKind::Text => options.set(option.key, text_value(key, value)?),
                OptionKind::Address { grant } => options.set(option.key, self.address(grant, Some(value))?),
                OptionKind::Secret => options.set_secret(option.key, self.secret_value(value, secrets)?),
            }
        }
        for option in backend.options {
            if let OptionKind::Address { grant } = option.kind
                && !seen.contains(option.key)
            {
                options.set(option.key, self.address(grant, None)?);
            }
        }
        Ok(options)
    }

    /// The granted addresses for `grant`.
    fn addresses(&self, grant: &str) -> &[String] {
        match grant {
            "ray-address" => &self.ray_addresses,
            _ => &[],
        }
    }

    /// The address a job may use: the one asked for if granted, else the
    /// only granted one.
    fn address(&self, grant: &'static str, requested: Option<&str>) -> Result<String, Refused> {
        let granted = self.addresses(grant);
        let Some(requested) = requested else {
            return match granted {
                [only] => Ok(only.clone()),
                [] => Err(Refused::Denied(Denial {
                    rule: "addresses",
                    message: format!(
                        "the job names no engine address and none is granted; grant one with --grant {grant}=ADDRESS"
                    ),
                })),
                _ => Err(Refused::Invalid(format!(
                    "several addresses are granted ({}); the job must name one",
                    granted.join(", ")
                ))),
            };
        };
        let origin = origin(requested).map_err(Refused::Invalid)?;
        if granted.contains(&origin) {
            return Ok(origin);
        }
        Err(Refused::Denied(Denial {
            rule: "addresses",
            message: format!(
                "the address {origin} is not granted to this step operator (granted: {}); grant it with --grant {grant}={origin}",
                if granted.is_empty() { "none".to_owned() } else { granted.join(", ") }
            ),
        }))
    }

    /// A granted secret's value.
    fn secret_value(&self, name: &str, secrets: &Secrets) -> Result<stepbox_backends::secrets::SecretValue, Refused> {
        if !self.secrets.iter().any(|granted| granted == name) {
            return Err(Refused::Denied(Denial {
                rule: "secrets",
                message: format!(
                    "the secret `{name}` is not granted to this step operator; grant it with --grant secret={name}"
                ),
            }));
        }
        self.stored_secret(name, secrets)
    }

    /// A secret's stored value, whatever grant allowed it.
    fn stored_secret(&self, name: &str, secrets: &Secrets) -> Result<stepbox_backends::secrets::SecretValue, Refused> {
        secrets.get(name).map_err(|error| match error {
            SecretError::NotFound(_) => Refused::Invalid(format!(
                "the secret `{name}` is granted but not stored; store it with `stepbox secret set {name}`"
            )),
            other => Refused::Invalid(other.to_string()),
        })
    }
}

/// A text option: short, printable, no leading `-` (it becomes a flag's value).
fn text_value(key: &str, value: &str) -> Result<String, Refused> {
    let fine = !value.is_empty()
        && value.len() <= MAX_OPTION_BYTES
        && !value.starts_with('-')
        && value.chars().all(|c| !c.is_control() && !c.is_whitespace());
    if fine {
        Ok(value.to_owned())
    } else {
        Err(Refused::Invalid(format!(
            "the backend option `{key}` must be 1-{MAX_OPTION_BYTES} printable characters without spaces, not starting with `-`, got {value:?}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_env_options_are_split_from_the_backends_and_checked() {
        let pairs =
            |list: &[(&str, &str)]| list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        let (secret_env, rest) =
            split_secret_env(&pairs(&[("partition", "gpu"), ("secret-env", "DB_PASSWORD=db-pass")])).expect("splits");
        assert_eq!(secret_env, pairs(&[("DB_PASSWORD", "db-pass")]));
        assert_eq!(rest, pairs(&[("partition", "gpu")]));
        for (value, message) in
            [("DB_PASSWORD", "is not NAME=SECRET"), ("1BAD=db-pass", "not a valid environment variable name")]
        {
            let refused = split_secret_env(&pairs(&[("secret-env", value)])).err();
            assert!(matches!(&refused, Some(Refused::Invalid(m)) if m.contains(message)), "{value}: {refused:?}");
        }
        let twice = split_secret_env(&pairs(&[("secret-env", "A=x"), ("secret-env", "A=y")])).err();
        assert!(matches!(&twice, Some(Refused::Invalid(m)) if m.contains("sets `A` twice")), "{twice:?}");
    }
    use stepbox_backends::backends::catalogue;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn origins_are_normalised_and_credentials_refused() {
        assert_eq!(origin("http://127.0.0.1:8265/").as_deref(), Ok("http://127.0.0.1:8265"));
        assert_eq!(origin("https://ray.example.com/api").as_deref(), Ok("https://ray.example.com:443"));
        assert!(origin("ftp://host:21").is_err());
        assert!(origin("http://user:pw@host:8265").is_err());
        assert!(origin("not a url").is_err());
    }

    #[test]
    fn options_are_checked_against_the_backend_and_the_grants() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secrets = Secrets::at(dir.path().join("secrets"));
        secrets.set("ray-token", b"t0ken").expect("set");
        let ray = catalogue::backend("ray").expect("ray");
        let slurm = catalogue::backend("slurm").expect("slurm");
        let mut grants = Grants::default();

        // Table: (backend, options, grants to add first, expected outcome).
        type Case<'a> = (&'a BackendInfo, &'a [(&'a str, &'a str)], &'a [&'a str], Result<&'a str, &'a str>);
        let cases: &[Case] = &[
            (slurm, &[("partition", "debug")], &[], Ok("partition=debug")),
            (
                slurm,
                &[("partiton", "debug")],
                &[],
                Err("has no option `partiton` (its options: partition, account, qos)"),
            ),
            (slurm, &[("qos", "--uid=0")], &[], Err("not starting with `-`")),
            (slurm, &[("qos", "a"), ("qos", "b")], &[], Err("given twice")),
            (ray, &[], &[], Err("--grant ray-address=ADDRESS")),
            (
                ray,
                &[("address", "http://10.0.0.9:8265")],
                &["ray-address=http://127.0.0.1:8265/"],
                Err("--grant ray-address=http://10.0.0.9:8265"),
            ),
            (ray, &[], &[], Ok("address=http://127.0.0.1:8265")),
            (ray, &[("address", "http://127.0.0.1:8265")], &[], Ok("address=http://127.0.0.1:8265")),
            (ray, &[("token-secret", "ray-token")], &[], Err("--grant secret=ray-token")),
            (ray, &[("token-secret", "ray-token")], &["secret=ray-token"], Ok("secret")),
            (ray, &[("token-secret", "other")], &["secret=other"], Err("stepbox secret set other")),
            (ray, &[], &["ray-address=http://127.0.0.2:8265"], Err("the job must name one")),
        ];
        for (backend, options, add, expected) in cases {
            for grant in *add {
                grants.grant(grant).expect("grant");
            }
            let outcome = grants.backend_options(backend, &pairs(options), &secrets);
            match (expected, outcome) {
                (Ok("secret"), Ok(resolved)) => {
                    assert_eq!(resolved.secret("token-secret").map(|v| v.expose()), Some("t0ken"))
                }
                (Ok(expected), Ok(resolved)) => {
                    let (key, value) = expected.split_once('=').expect("k=v");
                    assert_eq!(resolved.get(key), Some(value), "{options:?}");
                }
                (Err(expected), Err(Refused::Denied(denial))) => {
                    assert!(denial.message.contains(expected), "{options:?}: {}", denial.message)
                }
                (Err(expected), Err(Refused::Invalid(message))) => {
                    assert!(message.contains(expected), "{options:?}: {message}")
                }
                (expected, outcome) => panic!("{options:?}: expected {expected:?}, got {outcome:?}"),
            }
        }
    }
}
