//! The grant vocabulary: every value a user can give `--grant`, as one typed
//! [`Grant`].
//!
//! One table, [`KINDS`], names each grant, the form of its value, an
//! example and what it allows. Parsing, `--grant`'s help ([`help`]) and the
//! "unknown grant" error are made from it, and [`Grant`]'s `Display` writes
//! the form the table parses, so the grants a step operator describes read
//! back as the same grants (a property the `grants` fuzz target checks).
//! The capabilities (`jobs`, `http`, …) come from [`Capability`]'s own list.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use thiserror::Error;

use super::egress::{CredentialGrant, OriginPattern};
use super::images::RegistryCredential;
use super::job_env::{EnvPattern, SecretBinding};
use crate::capability::Capability;

/// One `--grant` value, parsed and normalised.
#[derive(Debug, Clone, PartialEq)]
pub enum Grant {
    /// A capability beyond `log` and `cancellation`: `jobs`, `requirements`, `images`, `http`.
    Capability(Capability),
    /// A yes/no permission (`trusted`, `job-network`, …).
    Permission(Permission),
    /// `backend=NAME`: a job backend; the first granted is the default.
    Backend(String),
    /// `job-env=NAME` or `job-env=PREFIX_*`: a variable the flavor may set on a job.
    JobEnv(EnvPattern),
    /// `secret-env=VAR=SECRET`: the stored secret SECRET in the job variable VAR.
    SecretEnv(SecretBinding),
    /// `image=REF` or `image=PREFIX*`: an image jobs may run in.
    Image(String),
    /// `writable-dir=PATH`: a directory confined jobs may write and work in.
    WritableDir(String),
    /// `readable-dir=PATH`: a directory confined jobs may read.
    ReadableDir(String),
    /// `http-origin=ORIGIN`: an origin outgoing HTTP may reach.
    HttpOrigin(OriginPattern),
    /// `http-credential=ORIGIN=SCHEME:SECRET`: how the host authenticates requests to an origin.
    HttpCredential(CredentialGrant),
    /// `ray-address=URL`: a Ray cluster jobs may go to (kept as its origin).
    RayAddress(String),
    /// `secret=NAME`: a stored secret the host may use for a backend option.
    Secret(String),
    /// `registry=HOST[:PORT]`: a registry images may be pushed to.
    Registry(String),
    /// `registry-credential=HOST=basic:SECRET`: the host's login to a registry.
    RegistryCredential(RegistryCredential),
    /// `base-image=REF` or `base-image=PREFIX*`: an image images may be built on.
    BaseImage(String),
    /// `max-cpu=N`, `max-gpu=N`, …: a ceiling on what a job may ask for.
    Ceiling(Ceiling),
}

/// The yes/no grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Jobs may run commands other than the launch's entrypoint.
    ArbitraryCommands,
    /// Local jobs run unconfined.
    Trusted,
    /// Confined jobs keep the network.
    JobNetwork,
    /// Outgoing HTTP may reach names that resolve to private ranges.
    HttpPrivate,
    /// Requirements may name URLs or paths.
    RequirementUrls,
    /// Requirements may build source distributions (their build code runs on the host).
    SourceBuilds,
    /// The flavor may install packages the step did not ask for.
    FlavorPackages,
}

/// A ceiling on a job's resources or timeout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ceiling {
    /// `max-cpu=N`: CPUs, a positive number.
    Cpu(f64),
    /// `max-gpu=N`: GPUs.
    Gpu(u32),
    /// `max-memory=SIZE`: bytes of memory.
    Memory(u64),
    /// `max-job-timeout=DURATION`: seconds; also the timeout of jobs that set none.
    JobTimeout(u64),
}

/// A `--grant` (or `--revoke`) that cannot be understood.
#[derive(Debug, Error, PartialEq)]
pub enum GrantError {
    /// No grant has this name.
    #[error("unknown grant `{0}`. Grants: {names}", names = names())]
    Unknown(String),
    /// The grant takes no value, or needs one.
    #[error("grant `{name}` is written `{form}`")]
    Form { name: String, form: String },
    /// The value is not of the grant's kind.
    #[error("grant `{name}`: `{value}` is not {expected}")]
    BadValue { name: String, value: String, expected: &'static str },
    /// The value has the grant's form but is refused, for the reason given.
    #[error("grant `{name}={value}`: {reason}. The form is {name}={form}, e.g. {name}={example}")]
    Refused { name: String, value: String, reason: String, form: &'static str, example: &'static str },
}

/// Why a value does not parse: what it should have been, or why it is refused.
enum Invalid {
    /// It is not this (`a whole number`).
    Not(&'static str),
    /// It has the right form but is refused.
    Because(String),
}

/// One grant of the table: its name, its value's form and what it allows.
pub struct GrantKind {
    /// The name before `=`.
    pub name: &'static str,
    /// The form of the value after `=` (`PATH`); `None` for a grant without one.
    pub form: Option<&'static str>,
    /// A value, for help and errors (empty for a grant without one).
    pub example: &'static str,
    /// What it allows, for `--grant`'s help.
    pub summary: &'static str,
    /// Parse the value (empty for a grant without one).
    parse: fn(&str) -> Result<Grant, Invalid>,
    /// What a `--revoke` of this kind names.
    revoke: Revoke,
}

/// What a `--revoke` of a kind names among its granted values.
#[derive(Clone, Copy)]
enum Revoke {
    /// The value, normalised as when granted (or as typed, if it no longer parses).
    Value,
    /// The kind as a whole, named with or without a value: a permission, a ceiling.
    Name,
    /// Part of the value that identifies it (`secret-env=VAR`), taken from the typed value.
    Key(fn(&str) -> String),
}

/// What a `writable-dir=` or `readable-dir=` value must be.
const DIRECTORY: &str =
    "an absolute directory path other than `/`, without `..`, control characters or trailing spaces";

/// Every grant but the capabilities (which [`Capability`] lists), in the order help shows them.
pub const KINDS: &[GrantKind] = &[
    GrantKind {
        name: "arbitrary-commands",
        form: None,
        example: "",
        summary: "jobs may run commands other than the launch's entrypoint; grant it to trusted flavors only",
        parse: |_| Ok(Grant::Permission(Permission::ArbitraryCommands)),
        revoke: Revoke::Name,
    },
    GrantKind {
        name: "trusted",
        form: None,
        example: "",
        summary: "local jobs run unconfined",
        parse: |_| Ok(Grant::Permission(Permission::Trusted)),
        revoke: Revoke::Name,
    },
    GrantKind {
        name: "job-network",
        form: None,
        example: "",
        summary: "confined jobs keep the network",
        parse: |_| Ok(Grant::Permission(Permission::JobNetwork)),
        revoke: Revoke::Name,
    },
    GrantKind {
        name: "writable-dir",
        form: Some("PATH"),
        example: "/home/me/.config/zenml",
        summary: "one more directory jobs may write and work in (a local ZenML store, a shared cache)",
        parse: |value| super::writable_dir(value).map(Grant::WritableDir).ok_or(Invalid::Not(DIRECTORY)),
        revoke: Revoke::Value,
    },
    GrantKind {
        name: "readable-dir",
        form: Some("PATH"),
        example: "/srv/models",
        summary: "one more directory confined jobs may read (a model cache, a dataset)",
        parse: |value| super::writable_dir(value).map(Grant::ReadableDir).ok_or(Invalid::Not(DIRECTORY)),
        revoke: Revoke::Value,
    },
    GrantKind {
        name: "http-origin",
        form: Some("ORIGIN"),
        example: "https://*.amazonaws.com",
        summary: "an origin outgoing HTTP (the http capability) may reach",
        parse: |value| {
            OriginPattern::parse(value)
                .map(Grant::HttpOrigin)
                .map_err(|_| Invalid::Not("an origin such as https://api.example.com or https://*.example.com"))
        },
        revoke: Revoke::Value,
    },
    GrantKind {
        name: "http-private",
        form: None,
        example: "",
        summary: "outgoing HTTP may reach names that resolve to private addresses",
        parse: |_| Ok(Grant::Permission(Permission::HttpPrivate)),
        revoke: Revoke::Name,
    },
    GrantKind {
        name: "http-credential",
        form: Some("ORIGIN=SCHEME:SECRET"),
        example: "https://*.amazonaws.com=aws-sigv4:aws-keys",
        summary: "the host authenticates requests to ORIGIN with the stored secret (bearer, aws-sigv4, \
                  google-service-account, azure-client-credentials); the flavor never sees it",
        parse: |value| CredentialGrant::parse(value).map(Grant::HttpCredential).map_err(Invalid::Because),
        revoke: Revoke::Key(|value| {
            let origin = value.rsplit_once('=').map_or(value, |(origin, _)| origin);
            OriginPattern::parse(origin).map_or_else(|_| origin.to_owned(), |pattern| pattern.to_string())
        }),
    },
    GrantKind {
        name: "registry-credential",
        form: Some("HOST[:PORT]=basic:SECRET"),
        example: "registry.example.com:5000=basic:registry-login",
        summary: "the host's login to an image registry, the secret holding {\"username\": …, \"password\": …}",
        parse: |value| RegistryCredential::parse(value).map(Grant::RegistryCredential).map_err(Invalid::Because),
        revoke: Revoke::Key(|value| value.split_once('=').map_or(value, |(host, _)| host).to_ascii_lowercase()),
    },
    GrantKind {
        name: "job-env",
        form: Some("NAME"),
        example: "MLFLOW_*",
        summary: "a variable the flavor may set on a job besides the caller's (or a prefix, PREFIX_*)",
        parse: |value| {
            EnvPattern::parse(value)
                .map(Grant::JobEnv)
                .ok_or(Invalid::Not("an environment variable name, or a prefix such as MLFLOW_*"))
        },
        revoke: Revoke::Value,
    },
    GrantKind {
        name: "secret-env",
        form: Some("VAR=SECRET"),
        example: "DB_PASSWORD=db-pass",
        summary: "the stored secret SECRET in the job variable VAR: the only way a secret reaches a job",
        parse: |value| {
            SecretBinding::parse(value)
                .map(Grant::SecretEnv)
                .ok_or(Invalid::Not("VAR=SECRET, a variable name and a stored secret's name"))
        },
        revoke: Revoke::Key(|value| value.split_once('=').map_or(value, |(var, _)| var).to_owned()),
    },
    GrantKind {
        name: "requirement-urls",
        form: None,
        example: "",
        summary: "requirements may name URLs or paths instead of versions from the package index",
        parse: |_| Ok(Grant::Permission(Permission::RequirementUrls)),
        revoke: Revoke::Name,
    },
    GrantKind {
        name: "source-builds",
        form: None,
        example: "",
        summary: "requirements may build source distributions, which runs their build code on the host",
        parse: |_| Ok(Grant::Permission(Permission::SourceBuilds)),
        revoke: Revoke::Name,
    },
    GrantKind {
        name: "flavor-packages",
        form: None,
        example: "",
        summary: "the flavor may install packages the step did not ask for: equal to running its code in the step",
        parse: |_| Ok(Grant::Permission(Permission::FlavorPackages)),
        revoke: Revoke::Name,
    },
    GrantKind {
        name: "image",
        form: Some("REF"),
        example: "ghcr.io/acme/*",
        summary: "an image jobs may run in besides the ones the launch built or the caller passed (or a prefix, PREFIX*)",
        parse: |value| {
            let plain = !value.is_empty() && !value.contains(char::is_whitespace);
            plain
                .then(|| Grant::Image(value.to_owned()))
                .ok_or(Invalid::Not("an image reference, or a prefix ending in *"))
        },
        revoke: Revoke::Value,
    },
    GrantKind {
        name: "backend",
        form: Some("NAME"),
        example: "slurm",
        summary: "a job backend (`stepbox backends` lists them); the first granted is the default, else local",
        parse: |value| {
            let names = super::backend_names();
            if names.contains(&value) {
                return Ok(Grant::Backend(value.to_owned()));
            }
            Err(Invalid::Because(format!("this stepbox has no such job backend (it has: {})", names.join(", "))))
        },
        revoke: Revoke::Value,
    },
    GrantKind {
        name: "ray-address",
        form: Some("URL"),
        example: "http://127.0.0.1:8265",
        summary: "a Ray cluster jobs may go to",
        parse: |value| {
            super::connections::origin(value)
                .map(Grant::RayAddress)
                .map_err(|_| Invalid::Not("an address such as http://HOST:8265"))
        },
        revoke: Revoke::Value,
    },
    GrantKind {
        name: "secret",
        form: Some("NAME"),
        example: "ray-token",
        summary: "a stored secret the host may use for a backend option",
        parse: |value| match stepbox_backends::secrets::check_name(value) {
            Ok(()) => Ok(Grant::Secret(value.to_owned())),
            Err(_) => Err(Invalid::Not("a secret name (letters, digits, `-`, `_`, `.`)")),
        },
        revoke: Revoke::Value,
    },
    GrantKind {
        name: "registry",
        form: Some("HOST[:PORT]"),
        example: "127.0.0.1:5000",
        summary: "a registry `images` may push to",
        parse: |value| {
            let plain = !value.is_empty() && !value.contains(char::is_whitespace);
            plain.then(|| Grant::Registry(value.to_owned())).ok_or(Invalid::Not("a registry such as HOST:PORT"))
        },
        revoke: Revoke::Value,
    },
    GrantKind {
        name: "base-image",
        form: Some("REF"),
        example: "127.0.0.1:5000/python:3.11",
        summary: "a base image `images` may build on (or a prefix, PREFIX*)",
        parse: |value| {
            let plain = !value.is_empty() && !value.contains(char::is_whitespace);
            plain
                .then(|| Grant::BaseImage(value.to_owned()))
                .ok_or(Invalid::Not("an image reference, or a prefix ending in *"))
        },
        revoke: Revoke::Value,
    },
    GrantKind {
        name: "max-cpu",
        form: Some("N"),
        example: "4",
        summary: "the most CPUs a job may ask for",
        parse: |value| {
            let cpus = value.parse().ok().filter(|n: &f64| n.is_finite() && *n > 0.0);
            cpus.map(|n| Grant::Ceiling(Ceiling::Cpu(n))).ok_or(Invalid::Not("a positive number"))
        },
        revoke: Revoke::Name,
    },
    GrantKind {
        name: "max-gpu",
        form: Some("N"),
        example: "1",
        summary: "the most GPUs a job may ask for",
        parse: |value| {
            value.parse().map(|n| Grant::Ceiling(Ceiling::Gpu(n))).map_err(|_| Invalid::Not("a whole number"))
        },
        revoke: Revoke::Name,
    },
    GrantKind {
        name: "max-memory",
        form: Some("SIZE"),
        example: "8GiB",
        summary: "the most memory a job may ask for",
        parse: |value| match stepbox_backends::units::parse_memory(value) {
            Ok(bytes) => Ok(Grant::Ceiling(Ceiling::Memory(bytes))),
            Err(_) => Err(Invalid::Not("a size such as 8GiB")),
        },
        revoke: Revoke::Name,
    },
    GrantKind {
        name: "max-job-timeout",
        form: Some("DURATION"),
        example: "2h",
        summary: "the longest timeout a job may have, and the timeout of jobs that set none",
        parse: |value| match humantime::parse_duration(value).ok().filter(|d| !d.is_zero()) {
            Some(duration) => Ok(Grant::Ceiling(Ceiling::JobTimeout(duration.as_secs().max(1)))),
            None => Err(Invalid::Not("a duration such as 2h")),
        },
        revoke: Revoke::Name,
    },
];

/// What a `--revoke` value takes back: every granted value of `kind` whose
/// key is `key` (the whole value, or the part that identifies it, such as
/// `secret-env`'s variable); a capability, a permission or a ceiling has
/// the empty key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The grant's name.
    pub name: &'static str,
    /// What identifies the value taken back (empty for a grant without one).
    pub key: String,
}

impl Grant {
    /// The grant's name, as typed before `=`.
    pub fn name(&self) -> &'static str {
        match self {
            Grant::Capability(capability) => capability.name(),
            Grant::Permission(permission) => match permission {
                Permission::ArbitraryCommands => "arbitrary-commands",
                Permission::Trusted => "trusted",
                Permission::JobNetwork => "job-network",
                Permission::HttpPrivate => "http-private",
                Permission::RequirementUrls => "requirement-urls",
                Permission::SourceBuilds => "source-builds",
                Permission::FlavorPackages => "flavor-packages",
            },
            Grant::Backend(_) => "backend",
            Grant::JobEnv(_) => "job-env",
            Grant::SecretEnv(_) => "secret-env",
            Grant::Image(_) => "image",
            Grant::WritableDir(_) => "writable-dir",
            Grant::ReadableDir(_) => "readable-dir",
            Grant::HttpOrigin(_) => "http-origin",
            Grant::HttpCredential(_) => "http-credential",
            Grant::RayAddress(_) => "ray-address",
            Grant::Secret(_) => "secret",
            Grant::Registry(_) => "registry",
            Grant::RegistryCredential(_) => "registry-credential",
            Grant::BaseImage(_) => "base-image",
            Grant::Ceiling(ceiling) => match ceiling {
                Ceiling::Cpu(_) => "max-cpu",
                Ceiling::Gpu(_) => "max-gpu",
                Ceiling::Memory(_) => "max-memory",
                Ceiling::JobTimeout(_) => "max-job-timeout",
            },
        }
    }

    /// The value after `=`, normalised; `None` for a grant without one.
    pub fn value(&self) -> Option<String> {
        Some(match self {
            Grant::Capability(_) | Grant::Permission(_) => return None,
            Grant::Backend(text)
            | Grant::Image(text)
            | Grant::WritableDir(text)
            | Grant::ReadableDir(text)
            | Grant::RayAddress(text)
            | Grant::Secret(text)
            | Grant::Registry(text)
            | Grant::BaseImage(text) => text.clone(),
            Grant::JobEnv(pattern) => pattern.to_string(),
            Grant::SecretEnv(binding) => binding.to_string(),
            Grant::HttpOrigin(pattern) => pattern.to_string(),
            Grant::HttpCredential(credential) => credential.to_string(),
            Grant::RegistryCredential(credential) => credential.to_string(),
            Grant::Ceiling(Ceiling::Cpu(n)) => n.to_string(),
            Grant::Ceiling(Ceiling::Gpu(n)) => n.to_string(),
            Grant::Ceiling(Ceiling::Memory(n)) => format!("{n}B"),
            Grant::Ceiling(Ceiling::JobTimeout(n)) => humantime::format_duration(Duration::from_secs(*n)).to_string(),
        })
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.value() {
            Some(value) => write!(f, "{}={value}", self.name()),
            None => f.write_str(self.name()),
        }
    }
}

/// `NAME` or `NAME=VALUE`, trimmed.
fn split(text: &str) -> (&str, Option<&str>) {
    match text.split_once('=') {
        Some((name, value)) => (name.trim(), Some(value.trim())),
        None => (text.trim(), None),
    }
}

/// The capability `name`, if a step operator grants it (`log` and
/// `cancellation` every flavor has).
fn grantable(name: &str) -> Option<Capability> {
    name.parse::<Capability>().ok().filter(|capability| capability.needs_grant())
}

fn kind(name: &str) -> Option<&'static GrantKind> {
    KINDS.iter().find(|kind| kind.name == name)
}

impl FromStr for Grant {
    type Err = GrantError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, value) = split(text);
        if let Some(capability) = grantable(name) {
            return match value {
                None => Ok(Grant::Capability(capability)),
                Some(_) => Err(GrantError::Form { name: name.to_owned(), form: name.to_owned() }),
            };
        }
        let kind = kind(name).ok_or_else(|| GrantError::Unknown(text.to_owned()))?;
        let value = match (kind.form, value) {
            (None, None) => "",
            (Some(_), Some(value)) => value,
            _ => return Err(GrantError::Form { name: name.to_owned(), form: kind.written() }),
        };
        (kind.parse)(value).map_err(|invalid| match invalid {
            Invalid::Not(expected) => GrantError::BadValue { name: name.to_owned(), value: value.to_owned(), expected },
            Invalid::Because(reason) => GrantError::Refused {
                name: name.to_owned(),
                value: value.to_owned(),
                reason,
                form: kind.form.unwrap_or_default(),
                example: kind.example,
            },
        })
    }
}

impl Revocation {
    /// Parse a `--revoke` value: a grant as given to `--grant`, the
    /// identifying part of a keyed one (`secret-env=VAR`,
    /// `http-credential=ORIGIN`, `registry-credential=HOST`), or a ceiling
    /// by name (`max-gpu`).
    pub fn parse(text: &str) -> Result<Self, GrantError> {
        let (name, value) = split(text);
        if let Some(capability) = grantable(name) {
            return match value {
                None => Ok(Revocation { name: capability.name(), key: String::new() }),
                Some(_) => Err(GrantError::Form { name: name.to_owned(), form: name.to_owned() }),
            };
        }
        let kind = kind(name).ok_or_else(|| GrantError::Unknown(text.to_owned()))?;
        let key = match (kind.revoke, value) {
            (Revoke::Name, None) => String::new(),
            (Revoke::Name, Some(_)) if kind.form.is_some() => String::new(),
            (Revoke::Key(key), Some(value)) => key(value),
            // A value that no longer parses (granted by an older stepbox) is revoked as typed.
            (Revoke::Value, Some(value)) => {
                Grant::from_str(text).map_or_else(|_| value.to_owned(), |grant| grant.value().unwrap_or_default())
            }
            _ => return Err(GrantError::Form { name: name.to_owned(), form: kind.written() }),
        };
        Ok(Revocation { name: kind.name, key })
    }
}

impl GrantKind {
    /// How the grant is written: `name` or `name=FORM`.
    fn written(&self) -> String {
        match self.form {
            Some(form) => format!("{}={form}", self.name),
            None => self.name.to_owned(),
        }
    }
}

/// Every grant as written, for the "unknown grant" error.
fn names() -> String {
    let capabilities = Capability::grantable().map(|capability| capability.name().to_owned());
    capabilities.chain(KINDS.iter().map(GrantKind::written)).collect::<Vec<_>>().join(", ")
}

/// `--grant`'s long help: one line per grant, from the table.
pub fn help() -> String {
    let capabilities: Vec<&str> = Capability::grantable().map(Capability::name).collect();
    let mut help = format!(
        "Grant the flavor a capability or a permission (repeatable). Nothing but logging is granted by default.\n\n  \
         {}\n      the capabilities a flavor imports (`stepbox flavor describe FLAVOR` lists them)",
        capabilities.join(", ")
    );
    for kind in KINDS {
        help.push_str(&format!("\n  {}\n      {}", kind.written(), kind.summary));
        if kind.form.is_some() {
            help.push_str(&format!(" (e.g. {}={})", kind.name, kind.example));
        }
    }
    help
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every grant of the table parses from its own example and writes
    /// itself back as a grant that parses to the same value.
    #[test]
    fn every_kind_parses_its_example_and_reads_back() {
        for kind in KINDS {
            let text = if kind.form.is_some() { format!("{}={}", kind.name, kind.example) } else { kind.name.into() };
            let grant: Grant = text.parse().unwrap_or_else(|error| panic!("{text}: {error}"));
            assert_eq!(grant.name(), kind.name, "{text}");
            let again: Grant = grant.to_string().parse().unwrap_or_else(|error| panic!("{grant}: {error}"));
            assert_eq!(again, grant, "{text}");
            assert!(help().contains(&kind.written()), "{text} is in the help");
            assert!(names().contains(&kind.written()), "{text} is in the unknown-grant error");
        }
        for capability in Capability::grantable() {
            assert_eq!(capability.name().parse::<Grant>(), Ok(Grant::Capability(capability)));
        }
    }

    #[test]
    fn a_grant_written_in_the_wrong_form_names_its_form() {
        // (typed, what the error must say)
        let cases = [
            ("backend", "grant `backend` is written `backend=NAME`"),
            ("trusted=yes", "grant `trusted` is written `trusted`"),
            ("jobs=all", "grant `jobs` is written `jobs`"),
            ("log", "unknown grant `log`"),
            ("cancellation", "unknown grant `cancellation`"),
            ("registry-credential=r.example.com=aws:x", "The form is registry-credential=HOST[:PORT]=basic:SECRET"),
        ];
        for (text, message) in cases {
            let error = text.parse::<Grant>().expect_err(text).to_string();
            assert!(error.contains(message), "{text}: {error}");
        }
    }

    #[test]
    fn revocations_name_what_they_take_back() {
        let key = |text: &str| match Revocation::parse(text) {
            Ok(Revocation { name, key }) => format!("{name} {key}"),
            Err(error) => error.to_string(),
        };
        // (typed, kind and key)
        let cases = [
            ("max-gpu", "max-gpu "),
            ("max-gpu=2", "max-gpu "),
            ("secret-env=DB_PASSWORD", "secret-env DB_PASSWORD"),
            ("secret-env=DB_PASSWORD=db-pass", "secret-env DB_PASSWORD"),
            ("http-credential=https://api.example.com", "http-credential https://api.example.com:443"),
            ("registry-credential=Registry.Example.com=basic:x", "registry-credential registry.example.com"),
            ("writable-dir=/data/", "writable-dir /data"),
            ("writable-dir=relative", "writable-dir relative"),
            ("ray-address=http://127.0.0.1:8265/", "ray-address http://127.0.0.1:8265"),
            ("trusted", "trusted "),
        ];
        for (text, expected) in cases {
            assert_eq!(key(text), expected, "{text}");
        }
        assert_eq!(Revocation::parse("http"), Ok(Revocation { name: "http", key: String::new() }));
        assert!(matches!(Revocation::parse("backend"), Err(GrantError::Form { .. })));
        assert!(matches!(Revocation::parse("network"), Err(GrantError::Unknown(_))));
    }
}
