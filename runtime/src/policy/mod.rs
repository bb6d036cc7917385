//! What one step operator's flavor may do: its grants, and the checks host
//! calls make before acting.
//!
//! Nothing but `log` is granted by default. Grants are set with
//! `--grant` when a step operator is registered or updated and stored with it.
//! A flavor importing an ungranted capability is refused before it runs; a
//! call outside a grant gets a [`Denial`], returned to the guest as a `denied`
//! error value naming the rule and the grant that would allow it.

pub mod connections;
pub mod egress;
pub mod job_env;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::backends::JobResources;
use crate::capability::Capability;

/// The job backends this runtime has.
pub fn backend_names() -> Vec<&'static str> {
    crate::backends::catalogue::BACKENDS.iter().map(|info| info.name).collect()
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

/// How the host logs in to an image registry for `images` (a registry
/// the step operator must also be granted with `registry=`). The secret
/// holds `{"username": …, "password": …}`: a user and password, an access
/// token (ACR's token user, Artifact Registry's `_json_key` with the key
/// file as password), never seen by the flavor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryCredential {
    /// `host[:port]`, as in image references.
    pub registry: String,
    /// The stored secret.
    pub secret: String,
}

impl RegistryCredential {
    /// Parse `HOST[:PORT]=basic:SECRET`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (registry, credential) = text.split_once('=').ok_or("it has no `=`")?;
        if registry.is_empty() || registry.contains(['/', '@', ' ']) {
            return Err(format!("`{registry}` is not a registry host such as registry.example.com:5000"));
        }
        let secret = match credential.split_once(':') {
            Some(("basic", secret)) => secret,
            Some((scheme, _)) => {
                return Err(format!("`{scheme}` is not a registry credential scheme (there is: basic)"));
            }
            None => return Err(format!("`{credential}` is not basic:SECRET")),
        };
        crate::secrets::check_name(secret).map_err(|error| error.to_string())?;
        Ok(Self { registry: registry.to_ascii_lowercase(), secret: secret.to_owned() })
    }
}

impl fmt::Display for RegistryCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=basic:{}", self.registry, self.secret)
    }
}

impl Grants {
    /// The registry credentials, parsed.
    pub fn registry_credentials(&self) -> Vec<RegistryCredential> {
        self.registry_credentials.iter().filter_map(|c| RegistryCredential::parse(c).ok()).collect()
    }
}

/// A `--grant` that cannot be understood.
#[derive(Debug, Error, PartialEq)]
pub enum GrantError {
    #[error(
        "unknown grant `{0}`. Grants: jobs, requirements, images, arbitrary-commands, trusted, job-network, writable-dir=PATH, readable-dir=PATH, http, http-origin=ORIGIN, http-private, http-credential=ORIGIN=SCHEME:SECRET, registry-credential=HOST=basic:SECRET, job-env=NAME (or PREFIX_*), secret-env=VAR=SECRET, requirement-urls, source-builds, flavor-packages, image=REF (or PREFIX*), backend=NAME, ray-address=URL, secret=NAME, registry=HOST[:PORT], base-image=REF, max-cpu=N, max-gpu=N, max-memory=SIZE, max-job-timeout=DURATION"
    )]
    Unknown(String),
    #[error("grant `{name}`: `{value}` is not {expected}")]
    BadValue { name: String, value: String, expected: &'static str },
    #[error(
        "grant `http-credential={value}`: {reason}. The form is ORIGIN=SCHEME:SECRET, e.g. https://*.amazonaws.com=aws-sigv4:aws-keys"
    )]
    BadCredential { value: String, reason: String },
    #[error(
        "grant `registry-credential={value}`: {reason}. The form is HOST[:PORT]=basic:SECRET, the secret holding {{\"username\": …, \"password\": …}}"
    )]
    BadRegistryCredential { value: String, reason: String },
    #[error("grant `backend={0}`: this stepbox has no such job backend (it has: {backends})", backends = backend_names().join(", "))]
    UnknownBackend(String),
}

/// The grants of one step operator, as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Grants {
    /// Capabilities beyond `log` and `cancellation`: `jobs`, `requirements`, `images`, `http`.
    pub capabilities: BTreeSet<Capability>,
    /// Job backends; the first is the default. Empty means `local` once
    /// `jobs` is granted.
    pub backends: Vec<String>,
    /// Ray clusters (dashboard origins, `http://host:port`) jobs may go to.
    pub ray_addresses: Vec<String>,
    /// Stored secrets the host may apply for the flavor, by name.
    pub secrets: Vec<String>,
    /// Image registries the flavor may push to.
    pub registries: Vec<String>,
    /// Base images the flavor may build on.
    pub base_images: Vec<String>,
    /// Whether jobs may run commands other than the launch's entrypoint.
    pub arbitrary_commands: bool,
    /// Whether the flavor is trusted: its local jobs run unconfined.
    pub trusted: bool,
    /// Whether confined jobs keep the network.
    pub job_network: bool,
    /// Directories confined local jobs may write, besides the step's source
    /// root (a local ZenML store, a shared cache). A job's working directory
    /// must be inside the source root or one of these.
    pub writable_dirs: Vec<String>,
    /// Directories confined local jobs may read, besides the system's, the
    /// writable ones and their Python environment (a model cache, a dataset).
    pub readable_dirs: Vec<String>,
    /// Origins outgoing HTTP may reach (`scheme://host:port`, host may be
    /// `*.suffix`); see [`egress`].
    pub http_origins: Vec<String>,
    /// Whether outgoing HTTP may reach names that resolve to private ranges.
    pub http_private: bool,
    /// Credentials the host adds to outgoing requests, `ORIGIN=SCHEME:SECRET`.
    pub http_credentials: Vec<String>,
    /// Registry logins for `images` pulls and pushes, `HOST[:PORT]=basic:SECRET`.
    pub registry_credentials: Vec<String>,
    /// Environment variables (names, or prefixes ending in `*`) the flavor
    /// may set on a job besides the launch's own (see [`job_env`]).
    pub job_env: Vec<String>,
    /// Secrets bound to job variables by the user, `VAR=SECRET`: the only
    /// way a secret reaches a job's environment.
    pub secret_env: Vec<String>,
    /// Images (references, or prefixes ending in `*`) a job may run in
    /// besides the ones this launch built and the one the caller passed.
    pub images: Vec<String>,
    /// Whether the flavor may install packages the step did not ask for
    /// into the environment the entrypoint runs in: equal to letting the
    /// flavor run code inside the step.
    pub flavor_packages: bool,
    /// Whether `requirements` may name URLs or paths (`pkg @ https://…`)
    /// instead of versions from the package index.
    pub requirement_urls: bool,
    /// Whether `requirements` may build source distributions, which runs
    /// their build code on the host.
    pub source_builds: bool,
    pub max_cpu: Option<f64>,
    pub max_gpu: Option<u32>,
    pub max_memory: Option<u64>,
    /// Longest timeout a job may have (and the timeout of jobs that set none).
    pub max_job_timeout: Option<u64>,
}

impl Grants {
    /// Apply one `--grant` value.
    pub fn grant(&mut self, text: &str) -> Result<(), GrantError> {
        let (name, value) = match text.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim())),
            None => (text.trim(), None),
        };
        let bad =
            |expected| GrantError::BadValue { name: name.to_owned(), value: value.unwrap_or("").to_owned(), expected };
        if let (Some(capability), None) = (grantable(name), value) {
            self.capabilities.insert(capability);
            return Ok(());
        }
        match (name, value) {
            ("arbitrary-commands", None) => self.arbitrary_commands = true,
            ("trusted", None) => self.trusted = true,
            ("job-network", None) => self.job_network = true,
            ("requirement-urls", None) => self.requirement_urls = true,
            ("source-builds", None) => self.source_builds = true,
            ("backend", Some(backend)) if backend_names().contains(&backend) => {
                push_unique(&mut self.backends, backend)
            }
            ("backend", Some(backend)) => return Err(GrantError::UnknownBackend(backend.to_owned())),
            ("job-env", Some(name)) if job_env::EnvPattern::parse(name).is_some() => {
                push_unique(&mut self.job_env, name)
            }
            ("job-env", Some(_)) => return Err(bad("an environment variable name, or a prefix such as MLFLOW_*")),
            ("secret-env", Some(binding)) => {
                let (var, secret) = binding
                    .split_once('=')
                    .filter(|(var, secret)| {
                        crate::units::is_env_name(var) && crate::secrets::check_name(secret).is_ok()
                    })
                    .ok_or_else(|| bad("VAR=SECRET, a variable name and a stored secret's name"))?;
                self.secret_env.retain(|b| b.split_once('=').map(|(v, _)| v) != Some(var));
                self.secret_env.push(format!("{var}={secret}"));
            }
            ("flavor-packages", None) => self.flavor_packages = true,
            ("image", Some(image)) if !image.is_empty() && !image.contains(char::is_whitespace) => {
                push_unique(&mut self.images, image)
            }
            ("writable-dir", Some(dir)) => {
                let dir = writable_dir(dir).ok_or_else(|| bad(DIRECTORY))?;
                push_unique(&mut self.writable_dirs, &dir)
            }
            ("readable-dir", Some(dir)) => {
                let dir = writable_dir(dir).ok_or_else(|| bad(DIRECTORY))?;
                push_unique(&mut self.readable_dirs, &dir)
            }
            ("http-origin", Some(pattern)) => {
                let pattern = egress::OriginPattern::parse(pattern)
                    .map_err(|_| bad("an origin such as https://api.example.com or https://*.example.com"))?;
                push_unique(&mut self.http_origins, &pattern.to_string())
            }
            ("http-private", None) => self.http_private = true,
            ("http-credential", Some(value)) => {
                let credential = egress::CredentialGrant::parse(value)
                    .map_err(|reason| GrantError::BadCredential { value: value.to_owned(), reason })?;
                let origin = credential.origin.to_string();
                self.http_credentials.retain(|c| !c.starts_with(&format!("{origin}=")));
                self.http_credentials.push(credential.to_string());
            }
            ("ray-address", Some(address)) => {
                let origin = connections::origin(address).map_err(|_| bad("an address such as http://HOST:8265"))?;
                push_unique(&mut self.ray_addresses, &origin)
            }
            ("secret", Some(secret)) if crate::secrets::check_name(secret).is_ok() => {
                push_unique(&mut self.secrets, secret)
            }
            ("secret", Some(_)) => return Err(bad("a secret name (letters, digits, `-`, `_`, `.`)")),
            ("registry", Some(registry)) if !registry.is_empty() => push_unique(&mut self.registries, registry),
            ("registry-credential", Some(value)) => {
                let credential = RegistryCredential::parse(value)
                    .map_err(|reason| GrantError::BadRegistryCredential { value: value.to_owned(), reason })?;
                self.registry_credentials.retain(|c| !c.starts_with(&format!("{}=", credential.registry)));
                self.registry_credentials.push(credential.to_string());
            }
            ("base-image", Some(image)) if !image.is_empty() => push_unique(&mut self.base_images, image),
            ("max-cpu", Some(v)) => {
                self.max_cpu = Some(
                    v.parse()
                        .ok()
                        .filter(|n: &f64| n.is_finite() && *n > 0.0)
                        .ok_or_else(|| bad("a positive number"))?,
                )
            }
            ("max-gpu", Some(v)) => self.max_gpu = Some(v.parse().map_err(|_| bad("a whole number"))?),
            ("max-memory", Some(v)) => {
                self.max_memory = Some(crate::units::parse_memory(v).map_err(|_| bad("a size such as 8GiB"))?)
            }
            ("max-job-timeout", Some(v)) => {
                let duration = humantime::parse_duration(v).ok().filter(|d| !d.is_zero());
                self.max_job_timeout = Some(duration.ok_or_else(|| bad("a duration such as 2h"))?.as_secs().max(1));
            }
            _ => return Err(GrantError::Unknown(text.to_owned())),
        }
        Ok(())
    }

    /// Remove a grant: a capability, `arbitrary-commands`, a `backend=…`,
    /// `registry=…` or `base-image=…` entry, or a ceiling by name (`max-gpu`).
    pub fn revoke(&mut self, text: &str) -> Result<(), GrantError> {
        let (name, value) = match text.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim())),
            None => (text.trim(), None),
        };
        if let (Some(capability), None) = (grantable(name), value) {
            self.capabilities.remove(&capability);
            return Ok(());
        }
        match (name, value) {
            ("arbitrary-commands", None) => self.arbitrary_commands = false,
            ("trusted", None) => self.trusted = false,
            ("job-network", None) => self.job_network = false,
            ("requirement-urls", None) => self.requirement_urls = false,
            ("source-builds", None) => self.source_builds = false,
            ("backend", Some(v)) => self.backends.retain(|b| b != v),
            ("job-env", Some(v)) => self.job_env.retain(|n| n != v),
            ("secret-env", Some(v)) => {
                let var = v.split_once('=').map_or(v, |(var, _)| var);
                self.secret_env.retain(|b| b.split_once('=').map(|(v, _)| v) != Some(var))
            }
            ("flavor-packages", None) => self.flavor_packages = false,
            ("image", Some(v)) => self.images.retain(|i| i != v),
            ("writable-dir", Some(v)) => {
                let dir = writable_dir(v).unwrap_or_else(|| v.to_owned());
                self.writable_dirs.retain(|d| *d != dir)
            }
            ("readable-dir", Some(v)) => {
                let dir = writable_dir(v).unwrap_or_else(|| v.to_owned());
                self.readable_dirs.retain(|d| *d != dir)
            }
            ("http-origin", Some(v)) => {
                let pattern = egress::OriginPattern::parse(v).map_or_else(|_| v.to_owned(), |p| p.to_string());
                self.http_origins.retain(|o| *o != pattern)
            }
            ("http-private", None) => self.http_private = false,
            ("http-credential", Some(v)) => {
                let origin = egress::OriginPattern::parse(v.rsplit_once('=').map_or(v, |(o, _)| o))
                    .map_or_else(|_| v.to_owned(), |p| p.to_string());
                self.http_credentials.retain(|c| !c.starts_with(&format!("{origin}=")))
            }
            ("ray-address", Some(v)) => {
                let origin = connections::origin(v).unwrap_or_else(|_| v.to_owned());
                self.ray_addresses.retain(|a| *a != origin)
            }
            ("secret", Some(v)) => self.secrets.retain(|n| n != v),
            ("registry", Some(v)) => self.registries.retain(|r| r != v),
            ("registry-credential", Some(v)) => {
                let registry = v.split_once('=').map_or(v, |(registry, _)| registry);
                self.registry_credentials.retain(|c| !c.starts_with(&format!("{registry}=")))
            }
            ("base-image", Some(v)) => self.base_images.retain(|i| i != v),
            ("max-cpu", None) => self.max_cpu = None,
            ("max-gpu", None) => self.max_gpu = None,
            ("max-memory", None) => self.max_memory = None,
            ("max-job-timeout", None) => self.max_job_timeout = None,
            _ => return Err(GrantError::Unknown(text.to_owned())),
        }
        Ok(())
    }

    /// Whether `capability` is granted (`log` and `cancellation` always are).
    pub fn allows(&self, capability: Capability) -> bool {
        !capability.needs_grant() || self.capabilities.contains(&capability)
    }

    /// Whether the capability named `capability` (as a component's shape
    /// records it, such as `jobs`) is granted; a name that is no capability
    /// is not.
    pub fn allows_capability(&self, capability: &str) -> bool {
        capability.parse().is_ok_and(|capability| self.allows(capability))
    }

    /// The `--grant` values that would recreate these grants.
    pub fn describe(&self) -> Vec<String> {
        let mut out: Vec<String> = self.capabilities.iter().map(Capability::to_string).collect();
        out.extend(self.backends.iter().map(|b| format!("backend={b}")));
        out.extend(self.job_env.iter().map(|n| format!("job-env={n}")));
        out.extend(self.secret_env.iter().map(|b| format!("secret-env={b}")));
        out.extend(self.writable_dirs.iter().map(|d| format!("writable-dir={d}")));
        out.extend(self.readable_dirs.iter().map(|d| format!("readable-dir={d}")));
        out.extend(self.images.iter().map(|i| format!("image={i}")));
        out.extend(self.http_origins.iter().map(|o| format!("http-origin={o}")));
        if self.http_private {
            out.push("http-private".to_owned());
        }
        out.extend(self.http_credentials.iter().map(|c| format!("http-credential={c}")));
        out.extend(self.ray_addresses.iter().map(|a| format!("ray-address={a}")));
        out.extend(self.secrets.iter().map(|n| format!("secret={n}")));
        out.extend(self.registries.iter().map(|r| format!("registry={r}")));
        out.extend(self.registry_credentials.iter().map(|c| format!("registry-credential={c}")));
        out.extend(self.base_images.iter().map(|i| format!("base-image={i}")));
        if self.arbitrary_commands {
            out.push("arbitrary-commands".to_owned());
        }
        if self.trusted {
            out.push("trusted".to_owned());
        }
        if self.job_network {
            out.push("job-network".to_owned());
        }
        if self.requirement_urls {
            out.push("requirement-urls".to_owned());
        }
        if self.source_builds {
            out.push("source-builds".to_owned());
        }
        if self.flavor_packages {
            out.push("flavor-packages".to_owned());
        }
        if let Some(n) = self.max_cpu {
            out.push(format!("max-cpu={n}"));
        }
        if let Some(n) = self.max_gpu {
            out.push(format!("max-gpu={n}"));
        }
        if let Some(n) = self.max_memory {
            out.push(format!("max-memory={}B", n));
        }
        if let Some(n) = self.max_job_timeout {
            out.push(format!("max-job-timeout={}", humantime::format_duration(Duration::from_secs(n))));
        }
        out
    }

    /// Every stored secret these grants let the host use for the flavor:
    /// `secret=`, `secret-env=` bindings, HTTP and registry credentials.
    pub fn secret_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.secrets.clone();
        names.extend(self.secret_env.iter().filter_map(|b| b.split_once('=').map(|(_, secret)| secret.to_owned())));
        names.extend(
            self.http_credentials.iter().filter_map(|c| egress::CredentialGrant::parse(c).ok()).map(|c| c.secret),
        );
        names.extend(self.registry_credentials().into_iter().map(|c| c.secret));
        names.sort();
        names.dedup();
        names
    }

    /// The rules outgoing HTTP is checked against. Origins were checked when
    /// granted; one that no longer parses (a hand-edited store) is dropped.
    pub fn egress_rules(&self) -> egress::EgressRules {
        egress::EgressRules {
            origins: self.http_origins.iter().filter_map(|o| egress::OriginPattern::parse(o).ok()).collect(),
            private_ranges: self.http_private,
            credentials: self.http_credentials.iter().filter_map(|c| egress::CredentialGrant::parse(c).ok()).collect(),
        }
    }

    /// How a local job is confined: None for trusted flavors. It may write
    /// the step's `source_root` and the `writable-dir`s, read the
    /// `readable-dir`s and the caller's `read_dirs`, and never sees
    /// stepbox's `home`.
    ///
    /// Paths are resolved (symbolic links, `..`) when they exist, so that
    /// they are bound where a resolved working directory lies, and the home
    /// is found inside a bound directory however it was named.
    pub fn confinement(
        &self,
        source_root: &Path,
        home: &Path,
        read_dirs: &[PathBuf],
    ) -> Option<crate::backends::Confinement> {
        let resolved = |path: &Path| path.canonicalize().unwrap_or_else(|_| path.to_owned());
        let paths = |dirs: &[String]| dirs.iter().map(|dir| resolved(Path::new(dir))).collect::<Vec<_>>();
        let mut writable = vec![resolved(source_root)];
        writable.extend(paths(&self.writable_dirs));
        (!self.trusted).then(|| crate::backends::Confinement {
            network: self.job_network,
            writable,
            readable: paths(&self.readable_dirs).into_iter().chain(read_dirs.iter().map(|dir| resolved(dir))).collect(),
            hidden: vec![resolved(home)],
        })
    }

    /// Where a job that runs on this machine's files (not in an image) may
    /// work: inside the step's source root or a `writable-dir` grant, checked
    /// after resolving `..` and symbolic links. Returns the resolved path.
    ///
    /// Whatever the grants, a working directory never overlaps stepbox's
    /// `home` (inside it, or holding it): a Ray job ships its working
    /// directory to the cluster, and the home holds the secrets.
    pub fn working_dir(&self, dir: &Path, source_root: &Path, home: &Path) -> Result<PathBuf, Refused> {
        let resolved = dir.canonicalize().map_err(|error| {
            Refused::Invalid(format!("the working directory {} cannot be used: {error}", dir.display()))
        })?;
        let home = home.canonicalize().unwrap_or_else(|_| home.to_owned());
        if overlap(&resolved, &home) {
            return Err(Refused::Denied(Denial {
                rule: "working-dir",
                message: format!(
                    "the job's working directory {} overlaps stepbox's home {}, which holds the secrets and other \
                     runs; no grant allows it",
                    resolved.display(),
                    home.display()
                ),
            }));
        }
        if self.arbitrary_commands {
            return Ok(resolved);
        }
        let allowed = std::iter::once(source_root.to_owned())
            .chain(self.writable_dirs.iter().map(PathBuf::from))
            .filter_map(|root| root.canonicalize().ok())
            .any(|root| resolved.starts_with(root));
        if allowed {
            return Ok(resolved);
        }
        Err(Refused::Denied(Denial {
            rule: "working-dir",
            message: format!(
                "the job's working directory {} (resolved: {}) is outside the step's source root {} and every \
                 `writable-dir` grant; a job may work only where the caller lets it write. Grant it with --grant \
                 writable-dir={}",
                dir.display(),
                resolved.display(),
                source_root.display(),
                resolved.display()
            ),
        }))
    }

    /// The backend a job goes to: the one it names, if granted, or the default.
    pub fn backend(&self, requested: Option<&str>) -> Result<String, Denial> {
        let granted: Vec<&str> =
            if self.backends.is_empty() { vec!["local"] } else { self.backends.iter().map(String::as_str).collect() };
        match requested {
            None => Ok(granted[0].to_owned()),
            Some(name) if granted.contains(&name) => Ok(name.to_owned()),
            Some(name) => Err(Denial {
                rule: "backends",
                message: format!(
                    "the backend `{name}` is not granted to this step operator (granted: {}); grant it with --grant backend={name}",
                    granted.join(", ")
                ),
            }),
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

    /// A job's environment is an allow-list (see [`job_env`]): each variable
    /// the flavor sets must be the launch's own with the same value, or
    /// granted by name or prefix (`job-env=NAME`, `job-env=PREFIX_*`), or
    /// the flavor granted `arbitrary-commands`.
    pub fn job_env(&self, env: &[(String, String)], launch_env: &[(String, String)]) -> Result<(), Denial> {
        if self.arbitrary_commands {
            return Ok(());
        }
        for (name, value) in env {
            let from_launch = launch_env.iter().any(|(n, v)| n == name && v == value);
            let granted = self.job_env.iter().filter_map(|g| job_env::EnvPattern::parse(g)).any(|p| p.allows(name));
            if !from_launch && !granted {
                return Err(Denial { rule: "job-env", message: job_env::denial_message(name) });
            }
        }
        Ok(())
    }

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

    /// An image may be pushed only to a granted registry (`host[:port]`).
    pub fn push_registry(&self, registry: &str) -> Result<(), Denial> {
        if self.registries.iter().any(|granted| granted == registry) {
            return Ok(());
        }
        Err(Denial {
            rule: "registries",
            message: format!(
                "pushing to the registry `{registry}` is not granted to this step operator{}; grant it with --grant registry={registry}",
                granted_list(&self.registries)
            ),
        })
    }

    /// An image may be built only on a granted base image: one equal to a
    /// `base-image=` grant, or starting with one that ends in `*`.
    pub fn base_image(&self, base: &str) -> Result<(), Denial> {
        // A prefix grant must not be escaped with `..` (`oci:/srv/bases/../../etc`).
        if base.split(['/', ':']).any(|part| part == "..") {
            return Err(Denial {
                rule: "base-images",
                message: format!("the base image `{base}` contains `..`; name it without relative path parts"),
            });
        }
        let allowed = self.base_images.iter().any(|granted| match granted.strip_suffix('*') {
            Some(prefix) => base.starts_with(prefix),
            None => granted == base,
        });
        if allowed {
            return Ok(());
        }
        Err(Denial {
            rule: "base-images",
            message: format!(
                "building on the base image `{base}` is not granted to this step operator{}; grant it with --grant base-image={base}",
                granted_list(&self.base_images)
            ),
        })
    }

    /// A job's resources and timeout must stay within the ceilings. Returns
    /// the timeout to apply (the ceiling when the job asks for none).
    pub fn resources(&self, resources: &JobResources, timeout: Option<u64>) -> Result<Option<u64>, Denial> {
        let over = |rule: &'static str, asked: String, allowed: String, grant: &str| Denial {
            rule,
            message: format!(
                "the job asks for {asked}, but this step operator allows at most {allowed}; raise it with --grant {grant}"
            ),
        };
        check_resources(resources)?;
        if let (Some(asked), Some(max)) = (resources.cpu_count, self.max_cpu)
            && asked > max
        {
            return Err(over("max-cpu", format!("{asked} CPUs"), format!("{max}"), "max-cpu=N"));
        }
        if let (Some(asked), Some(max)) = (resources.gpu_count, self.max_gpu)
            && asked > max
        {
            return Err(over("max-gpu", format!("{asked} GPUs"), format!("{max}"), "max-gpu=N"));
        }
        if let (Some(asked), Some(max)) = (resources.memory_bytes, self.max_memory)
            && asked > max
        {
            return Err(over(
                "max-memory",
                format!("{asked} bytes of memory"),
                format!("{max} bytes"),
                "max-memory=SIZE",
            ));
        }
        match (timeout, self.max_job_timeout) {
            (Some(asked), Some(max)) if asked > max => Err(over(
                "max-job-timeout",
                format!("a timeout of {asked}s"),
                format!("{max}s"),
                "max-job-timeout=DURATION",
            )),
            (None, max) => Ok(max),
            (asked, _) => Ok(asked),
        }
    }
}

/// Whether one of two (resolved) paths lies inside the other.
pub fn overlap(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// What a `writable-dir=` or `readable-dir=` value must be.
const DIRECTORY: &str =
    "an absolute directory path other than `/`, without `..`, control characters or trailing spaces";

/// Longest GPU class name.
const MAX_GPU_CLASS: usize = 64;

/// What any job's resources must be before a ceiling is compared: a CPU
/// count that is a finite positive number (NaN would pass every `>`), a
/// memory size above zero, and a GPU class that is a plain name (letters,
/// digits, `-`, `_`, `.`), since it reaches backends' flag syntax
/// (`--gres=gpu:CLASS:N`, Ray's `accelerator_type:CLASS`).
pub fn check_resources(resources: &JobResources) -> Result<(), Denial> {
    let invalid = |message: String| Denial { rule: "resources", message };
    if let Some(cpus) = resources.cpu_count
        && !(cpus.is_finite() && cpus > 0.0)
    {
        return Err(invalid(format!("the job asks for {cpus} CPUs; a CPU count must be a finite number above 0")));
    }
    if resources.memory_bytes == Some(0) {
        return Err(invalid("the job asks for 0 bytes of memory; leave memory unset or ask for more".to_owned()));
    }
    if let Some(class) = &resources.gpu_class {
        let plain = !class.is_empty()
            && class.len() <= MAX_GPU_CLASS
            && class.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !plain {
            return Err(invalid(format!(
                "the GPU class {class:?} is not a plain name (1-{MAX_GPU_CLASS} letters, digits, `-`, `_`, `.`), \
                 such as h100 or nvidia-a100"
            )));
        }
    }
    Ok(())
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

/// The capability `name`, if a step operator grants it (`log` and
/// `cancellation` every flavor has).
fn grantable(name: &str) -> Option<Capability> {
    name.parse::<Capability>().ok().filter(|capability| capability.needs_grant())
}

/// ` (granted: a, b)`, or nothing when none is.
fn granted_list(items: &[String]) -> String {
    if items.is_empty() { String::new() } else { format!(" (granted: {})", items.join(", ")) }
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

fn push_unique(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|existing| existing == item) {
        list.push(item.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn granted(grants: &[&str]) -> Grants {
        let mut g = Grants::default();
        for grant in grants {
            g.grant(grant).expect(grant);
        }
        g
    }

    #[test]
    fn registry_credentials_parse_replace_and_revoke() {
        let mut grants = Grants::default();
        grants.grant("registry-credential=Registry.Example.com:5000=basic:login").expect("parses");
        grants.grant("registry-credential=registry.example.com:5000=basic:other").expect("replaces");
        assert_eq!(grants.registry_credentials, ["registry.example.com:5000=basic:other"]);
        assert_eq!(grants.registry_credentials()[0].secret, "other");
        for (bad, message) in [
            ("registry-credential=registry.example.com", "no `=`"),
            ("registry-credential=registry.example.com/path=basic:x", "not a registry host"),
            ("registry-credential=registry.example.com=aws-ecr:x", "there is: basic"),
            ("registry-credential=registry.example.com=basic:../x", "secret"),
        ] {
            let error = grants.grant(bad).expect_err(bad).to_string();
            assert!(error.contains(message) && error.contains("HOST[:PORT]=basic:SECRET"), "{bad}: {error}");
        }
        grants.revoke("registry-credential=registry.example.com:5000").expect("revokes");
        assert!(grants.registry_credentials.is_empty());
    }

    #[test]
    fn nothing_but_log_and_cancellation_is_granted_by_default() {
        let grants = Grants::default();
        assert!(grants.allows_capability("log"));
        assert!(grants.allows_capability("cancellation"));
        for capability in Capability::grantable() {
            assert!(!grants.allows_capability(capability.name()), "{capability}");
        }
        assert!(!grants.arbitrary_commands);
    }

    #[test]
    fn grants_parse_and_describe_themselves() {
        let cases: &[(&str, &str)] = &[
            ("jobs", "jobs"),
            ("backend=local", "backend=local"),
            ("registry=localhost:5000", "registry=localhost:5000"),
            ("arbitrary-commands", "arbitrary-commands"),
            ("trusted", "trusted"),
            ("job-network", "job-network"),
            ("requirement-urls", "requirement-urls"),
            ("source-builds", "source-builds"),
            ("job-env=PYTHONPATH", "job-env=PYTHONPATH"),
            ("job-env=MLFLOW_*", "job-env=MLFLOW_*"),
            ("secret-env=DB_PASSWORD=db-pass", "secret-env=DB_PASSWORD=db-pass"),
            ("readable-dir=/srv/models/", "readable-dir=/srv/models"),
            ("image=ghcr.io/acme/*", "image=ghcr.io/acme/*"),
            ("flavor-packages", "flavor-packages"),
            ("writable-dir=/home/me/.config/zenml/", "writable-dir=/home/me/.config/zenml"),
            ("http", "http"),
            ("http-origin=https://*.AmazonAWS.com", "http-origin=https://*.amazonaws.com:443"),
            ("http-private", "http-private"),
            (
                "http-credential=https://api.example.com=bearer:api-token",
                "http-credential=https://api.example.com:443=bearer:api-token",
            ),
            ("backend=slurm", "backend=slurm"),
            ("ray-address=http://127.0.0.1:8265/", "ray-address=http://127.0.0.1:8265"),
            ("secret=ray-token", "secret=ray-token"),
            ("max-gpu=2", "max-gpu=2"),
            ("max-job-timeout=2h", "max-job-timeout=2h"),
        ];
        for (grant, described) in cases {
            let grants = granted(&[grant]);
            assert_eq!(grants.describe(), vec![described.to_string()], "{grant}");
            let mut revoked = grants.clone();
            let name = if grant.starts_with("max-") { grant.split('=').next().unwrap_or(grant) } else { grant };
            revoked.revoke(name).expect(name);
            assert_eq!(revoked, Grants::default(), "revoke {name}");
        }
    }

    #[test]
    fn bad_grants_name_the_problem() {
        let cases = [
            ("network", "unknown grant `network`"),
            ("backend=kubernetes", "no such job backend"),
            ("ray-address=ftp://host:21", "is not an address such as http://HOST:8265"),
            ("secret=../etc/passwd", "is not a secret name"),
            ("max-gpu=lots", "is not a whole number"),
            ("max-cpu=0", "is not a positive number"),
            ("max-memory=big", "is not a size"),
            ("max-job-timeout=0s", "is not a duration"),
            ("job-env=NOT A NAME", "is not an environment variable name"),
            ("writable-dir=relative/dir", "is not an absolute directory path"),
            ("writable-dir=/home/me/../../etc", "is not an absolute directory path"),
            ("writable-dir=/", "is not an absolute directory path"),
            // Found by fuzzing: a trailing space could not be granted again from describe().
            ("readable-dir=/data /", "without `..`, control characters or trailing spaces"),
            ("writable-dir=/data\0/x", "without `..`, control characters or trailing spaces"),
            ("http-origin=ftp://example.com", "is not an origin such as https://api.example.com"),
        ];
        for (grant, message) in cases {
            let error = Grants::default().grant(grant).unwrap_err();
            assert!(error.to_string().contains(message), "{grant}: {error}");
        }
    }

    #[test]
    fn commands_other_than_the_entrypoint_are_denied_by_default() {
        let grants = Grants::default();
        let entrypoint = strings(&["python", "-m", "step"]);
        let cases: &[(&[&str], bool)] = &[
            (&["python", "-m", "step"], true),
            (&["python", "-m", "other"], false),
            (&["sh", "-c", "python -m step"], false),
            (&["python", "-m", "step", "--extra"], false),
            (&[], false),
        ];
        for (command, allowed) in cases {
            let result = grants.command(&strings(command), &entrypoint);
            assert_eq!(result.is_ok(), *allowed, "{command:?}");
            if let Err(denial) = result {
                assert_eq!(denial.rule, "entrypoint-only");
                assert!(denial.message.contains("arbitrary-commands"));
            }
        }
        let trusted = granted(&["arbitrary-commands"]);
        assert!(trusted.command(&strings(&["rm", "-rf", "/tmp/x"]), &strings(&["true"])).is_ok());
    }

    #[test]
    fn a_job_environment_is_the_callers_plus_granted_names_only() {
        let pairs = |items: &[(&str, &str)]| -> Vec<(String, String)> {
            items.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
        };
        let launch_env = pairs(&[("PYTHONPATH", "/srv/step"), ("ZENML_RUN", "1")]);
        // (grants, job env, allowed)
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], bool);
        let cases: &[Case] = &[
            (&[], &[("ZENML_RUN", "1"), ("PYTHONPATH", "/srv/step")], true),
            (&[], &[("ZENML_RUN", "2")], false),
            (&[], &[("PYTHONUNBUFFERED", "1")], false),
            (&[], &[("HOME", "/tmp/evil")], false),
            (&[], &[("ZENML_STORE_URL", "http://evil")], false),
            (&[], &[("PYENV_VERSION", "system")], false),
            (&[], &[("PYTHONPATH", "/tmp/evil")], false),
            (&[], &[("LD_PRELOAD", "/tmp/evil.so")], false),
            (&["job-env=LD_PRELOAD"], &[("LD_PRELOAD", "/opt/jemalloc.so")], true),
            (&["job-env=LD_PRELOAD"], &[("LD_LIBRARY_PATH", "/tmp")], false),
            (&["job-env=MLFLOW_*"], &[("MLFLOW_TRACKING_URI", "http://mlflow:5000")], true),
            (&["job-env=MLFLOW_*"], &[("MLFLOWX", "1")], false),
            (&["arbitrary-commands"], &[("LD_PRELOAD", "/tmp/evil.so")], true),
        ];
        for (grants, env, allowed) in cases {
            let result = granted(grants).job_env(&pairs(env), &launch_env);
            assert_eq!(result.is_ok(), *allowed, "{grants:?} {env:?}");
            if let Err(denial) = result {
                assert_eq!(denial.rule, "job-env");
                assert!(denial.message.contains("--grant job-env="), "{}", denial.message);
            }
        }
    }

    #[test]
    fn secret_env_bindings_are_the_users() {
        let mut grants = granted(&["secret-env=DB_PASSWORD=db-pass", "secret-env=TOKEN=api"]);
        assert!(grants.secret_env_bound("DB_PASSWORD", "db-pass"));
        assert!(!grants.secret_env_bound("PYTHONIOENCODING", "db-pass"), "the flavor cannot move it");
        assert!(!grants.secret_env_bound("DB_PASSWORD", "api"), "nor swap the secret");
        grants.grant("secret-env=DB_PASSWORD=other").expect("rebinds");
        assert!(grants.secret_env_bound("DB_PASSWORD", "other") && !grants.secret_env_bound("DB_PASSWORD", "db-pass"));
        grants.revoke("secret-env=DB_PASSWORD").expect("revokes");
        assert_eq!(grants.describe(), ["secret-env=TOKEN=api"]);
        for bad in ["secret-env=NOEQUALS", "secret-env=1BAD=x", "secret-env=NAME=../x"] {
            assert!(Grants::default().grant(bad).unwrap_err().to_string().contains("VAR=SECRET"), "{bad}");
        }
        let names = granted(&["secret=ray", "secret-env=A=db", "http-credential=https://api.example.com=bearer:tok"]);
        assert_eq!(names.secret_names(), ["db", "ray", "tok"]);
    }

    #[test]
    fn a_working_directory_must_be_where_the_caller_lets_jobs_write() {
        let root = tempfile::tempdir().expect("a directory");
        let source = root.path().join("step");
        let shared = root.path().join("shared");
        std::fs::create_dir_all(source.join("sub")).expect("mkdir");
        std::fs::create_dir_all(&shared).expect("mkdir");
        std::os::unix::fs::symlink("/etc", source.join("etc-link")).expect("symlink");
        let home = root.path().join("shared/stepbox-home");
        std::fs::create_dir_all(home.join("secrets")).expect("mkdir");
        std::fs::create_dir_all(shared.join("work")).expect("mkdir");
        let grants = granted(&[&format!("writable-dir={}", shared.display())]);
        let resolved = |dir: &Path| grants.working_dir(dir, &source, &home);
        assert!(resolved(&source).is_ok());
        assert!(resolved(&source.join("sub")).is_ok());
        assert!(resolved(&source.join("sub/..")).is_ok());
        assert!(resolved(&shared.join("work")).is_ok());
        // The home never, even inside a grant, nor a directory holding it.
        for overlapping in [home.join("secrets"), shared.clone()] {
            match resolved(&overlapping) {
                Err(Refused::Denied(denial)) => {
                    assert!(denial.message.contains("stepbox's home"), "{denial}")
                }
                other => panic!("{}: {other:?}", overlapping.display()),
            }
        }
        for outside in
            [Path::new("/etc"), Path::new("/etc/../etc"), Path::new("/"), &source.join("etc-link"), &source.join("..")]
        {
            match resolved(outside) {
                Err(Refused::Denied(denial)) => {
                    assert_eq!(denial.rule, "working-dir");
                    // `/` and the temporary root hold the home: refused for that first.
                    let why = ["--grant writable-dir=", "stepbox's home"];
                    assert!(why.iter().any(|w| denial.message.contains(w)), "{}", denial.message);
                }
                other => panic!("{}: {other:?}", outside.display()),
            }
        }
        assert!(matches!(resolved(Path::new("/nonexistent/dir")), Err(Refused::Invalid(_))));
        assert!(granted(&["arbitrary-commands"]).working_dir(Path::new("/etc"), &source, &home).is_ok());
        let denial = granted(&["arbitrary-commands"]).working_dir(&home, &source, &home);
        assert!(denial.is_err(), "not even with arbitrary-commands");
    }

    #[test]
    fn resources_are_checked_before_any_ceiling() {
        let job = |cpu: Option<f64>, class: Option<&str>| JobResources {
            cpu_count: cpu,
            gpu_count: class.map(|_| 1),
            gpu_class: class.map(str::to_owned),
            memory_bytes: None,
        };
        for bad in
            [job(Some(f64::NAN), None), job(Some(f64::INFINITY), None), job(Some(-1.0), None), job(Some(0.0), None)]
        {
            assert_eq!(check_resources(&bad).map_err(|d| d.rule), Err("resources"), "{bad:?}");
        }
        for class in ["h100:8,shard", "a100 --gres=gpu:8", "", "x\ny", &"a".repeat(65)] {
            assert!(check_resources(&job(None, Some(class))).is_err(), "{class:?}");
        }
        for class in ["h100", "nvidia-a100", "A100_80GB", "tesla.v100"] {
            assert!(check_resources(&job(Some(2.0), Some(class))).is_ok(), "{class}");
        }
        // NaN no longer slips under a ceiling.
        assert!(granted(&["max-cpu=4"]).resources(&job(Some(f64::NAN), None), None).is_err());
    }

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

    #[test]
    fn images_need_granted_registries_and_base_images() {
        let grants = granted(&[
            "registry=127.0.0.1:5000",
            "base-image=127.0.0.1:5000/python:3.11",
            "base-image=oci:/srv/bases/*",
        ]);
        assert!(grants.push_registry("127.0.0.1:5000").is_ok());
        let denial = grants.push_registry("registry.example").unwrap_err();
        assert_eq!(denial.rule, "registries");
        assert!(denial.message.contains("--grant registry=registry.example"), "{}", denial.message);
        assert!(grants.base_image("127.0.0.1:5000/python:3.11").is_ok());
        assert!(grants.base_image("oci:/srv/bases/python:3.12").is_ok());
        assert!(grants.base_image("oci:/srv/bases/../../etc:x").is_err(), "a prefix grant cannot be escaped");
        let denial = grants.base_image("127.0.0.1:5000/python:3.12").unwrap_err();
        assert_eq!(denial.rule, "base-images");
        assert!(denial.message.contains("--grant base-image="), "{}", denial.message);
    }

    #[test]
    fn backends_default_to_local_and_refuse_ungranted_ones() {
        let grants = granted(&["jobs"]);
        assert_eq!(grants.backend(None), Ok("local".to_owned()));
        assert_eq!(grants.backend(Some("local")), Ok("local".to_owned()));
        let denial = grants.backend(Some("slurm")).unwrap_err();
        assert_eq!(denial.rule, "backends");
        assert!(denial.message.contains("--grant backend=slurm"));
    }

    #[test]
    fn resource_ceilings_deny_what_exceeds_them() {
        let grants = granted(&["max-cpu=4", "max-gpu=0", "max-memory=8GiB", "max-job-timeout=1h"]);
        let job =
            |cpu, gpu, memory| JobResources { cpu_count: cpu, gpu_count: gpu, gpu_class: None, memory_bytes: memory };
        // (job resources, job timeout, the timeout applied or the rule that denies)
        type Case = (JobResources, Option<u64>, Result<Option<u64>, &'static str>);
        let cases: &[Case] = &[
            (job(Some(2.0), None, None), None, Ok(Some(3600))),
            (job(Some(4.5), None, None), None, Err("max-cpu")),
            (job(None, Some(1), None), None, Err("max-gpu")),
            (job(None, None, Some(16 << 30)), None, Err("max-memory")),
            (job(None, None, Some(1 << 30)), Some(60), Ok(Some(60))),
            (job(None, None, None), Some(7200), Err("max-job-timeout")),
        ];
        for (resources, timeout, expected) in cases {
            let result = grants.resources(resources, *timeout);
            match expected {
                Ok(applied) => assert_eq!(result, Ok(*applied), "{resources:?}"),
                Err(rule) => {
                    let denial = result.unwrap_err();
                    assert_eq!(denial.rule, *rule);
                    assert!(denial.message.contains("--grant"), "{}", denial.message);
                }
            }
        }
        // No ceilings: anything goes, and no timeout is imposed.
        assert_eq!(Grants::default().resources(&job(Some(64.0), Some(8), None), None), Ok(None));
    }
}
