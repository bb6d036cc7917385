//! A step operator's grants as stored: one typed field per kind of
//! [`Grant`], changed only through [`Grants::grant`] and [`Grants::revoke`]
//! and written back out by [`Grants::describe`].
//!
//! The stored form (JSON in the step operator's row) is the one stepbox has
//! always written: a field per kind, values as the text they were granted
//! with. Typed values are read back through their own parsers, so a
//! hand-edited store with a value no grant accepts is an error naming it,
//! never a value silently dropped.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::egress::{CredentialGrant, EgressRules, OriginPattern};
use super::grant::{Ceiling, Grant, GrantError, Permission, Revocation};
use super::images::RegistryCredential;
use super::job_env::{EnvPattern, SecretBinding};
use crate::capability::Capability;

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
    /// Origins outgoing HTTP may reach; see [`super::egress`].
    pub http_origins: Vec<OriginPattern>,
    /// Whether outgoing HTTP may reach names that resolve to private ranges.
    pub http_private: bool,
    /// Credentials the host adds to outgoing requests, one per origin.
    pub http_credentials: Vec<CredentialGrant>,
    /// Registry logins for `images` pulls and pushes, one per registry.
    pub registry_credentials: Vec<RegistryCredential>,
    /// Environment variables (names, or prefixes ending in `*`) the flavor
    /// may set on a job besides the launch's own (see [`super::job_env`]).
    pub job_env: Vec<EnvPattern>,
    /// Secrets bound to job variables by the user, one per variable: the
    /// only way a secret reaches a job's environment.
    pub secret_env: Vec<SecretBinding>,
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
    /// Most CPUs a job may ask for.
    pub max_cpu: Option<f64>,
    /// Most GPUs a job may ask for.
    pub max_gpu: Option<u32>,
    /// Most bytes of memory a job may ask for.
    pub max_memory: Option<u64>,
    /// Longest timeout a job may have (and the timeout of jobs that set none).
    pub max_job_timeout: Option<u64>,
}

impl Grants {
    /// Apply one `--grant` value.
    pub fn grant(&mut self, text: &str) -> Result<(), GrantError> {
        self.insert(text.parse()?);
        Ok(())
    }

    /// Remove a grant: as given to `--grant`, the identifying part of a
    /// keyed one (`secret-env=VAR`), or a ceiling by name (`max-gpu`).
    pub fn revoke(&mut self, text: &str) -> Result<(), GrantError> {
        let Revocation { name, key } = Revocation::parse(text)?;
        // Whatever the kind, its granted values are the ones `grants()` lists: keep
        // every other one, in order.
        let mut kept = Grants::default();
        for grant in self.grants().into_iter().filter(|grant| !(grant.name() == name && key_of(grant) == key)) {
            kept.insert(grant);
        }
        *self = kept;
        Ok(())
    }

    /// Add one grant, replacing the one with the same key (a second
    /// `secret-env=VAR=…` rebinds VAR; a second `max-gpu=` replaces it).
    pub fn insert(&mut self, grant: Grant) {
        match grant {
            Grant::Capability(capability) => {
                self.capabilities.insert(capability);
            }
            Grant::Permission(permission) => *self.permission_mut(permission) = true,
            Grant::Backend(backend) => push_unique(&mut self.backends, backend),
            Grant::JobEnv(pattern) => push_unique(&mut self.job_env, pattern),
            Grant::SecretEnv(binding) => {
                self.secret_env.retain(|bound| bound.var != binding.var);
                self.secret_env.push(binding);
            }
            Grant::Image(image) => push_unique(&mut self.images, image),
            Grant::WritableDir(dir) => push_unique(&mut self.writable_dirs, dir),
            Grant::ReadableDir(dir) => push_unique(&mut self.readable_dirs, dir),
            Grant::HttpOrigin(pattern) => push_unique(&mut self.http_origins, pattern),
            Grant::HttpCredential(credential) => {
                self.http_credentials.retain(|granted| granted.origin != credential.origin);
                self.http_credentials.push(credential);
            }
            Grant::RayAddress(address) => push_unique(&mut self.ray_addresses, address),
            Grant::Secret(secret) => push_unique(&mut self.secrets, secret),
            Grant::Registry(registry) => push_unique(&mut self.registries, registry),
            Grant::RegistryCredential(credential) => {
                self.registry_credentials.retain(|granted| granted.registry != credential.registry);
                self.registry_credentials.push(credential);
            }
            Grant::BaseImage(image) => push_unique(&mut self.base_images, image),
            Grant::Ceiling(Ceiling::Cpu(n)) => self.max_cpu = Some(n),
            Grant::Ceiling(Ceiling::Gpu(n)) => self.max_gpu = Some(n),
            Grant::Ceiling(Ceiling::Memory(n)) => self.max_memory = Some(n),
            Grant::Ceiling(Ceiling::JobTimeout(n)) => self.max_job_timeout = Some(n),
        }
    }

    /// Every grant, in the order `describe()` lists them.
    pub fn grants(&self) -> Vec<Grant> {
        let mut out: Vec<Grant> = self.capabilities.iter().copied().map(Grant::Capability).collect();
        out.extend(self.backends.iter().cloned().map(Grant::Backend));
        out.extend(self.job_env.iter().cloned().map(Grant::JobEnv));
        out.extend(self.secret_env.iter().cloned().map(Grant::SecretEnv));
        out.extend(self.writable_dirs.iter().cloned().map(Grant::WritableDir));
        out.extend(self.readable_dirs.iter().cloned().map(Grant::ReadableDir));
        out.extend(self.images.iter().cloned().map(Grant::Image));
        out.extend(self.http_origins.iter().cloned().map(Grant::HttpOrigin));
        out.extend(self.http_private.then_some(Grant::Permission(Permission::HttpPrivate)));
        out.extend(self.http_credentials.iter().cloned().map(Grant::HttpCredential));
        out.extend(self.ray_addresses.iter().cloned().map(Grant::RayAddress));
        out.extend(self.secrets.iter().cloned().map(Grant::Secret));
        out.extend(self.registries.iter().cloned().map(Grant::Registry));
        out.extend(self.registry_credentials.iter().cloned().map(Grant::RegistryCredential));
        out.extend(self.base_images.iter().cloned().map(Grant::BaseImage));
        for permission in [
            Permission::ArbitraryCommands,
            Permission::Trusted,
            Permission::JobNetwork,
            Permission::RequirementUrls,
            Permission::SourceBuilds,
            Permission::FlavorPackages,
        ] {
            out.extend(self.permission(permission).then_some(Grant::Permission(permission)));
        }
        out.extend(self.max_cpu.map(|n| Grant::Ceiling(Ceiling::Cpu(n))));
        out.extend(self.max_gpu.map(|n| Grant::Ceiling(Ceiling::Gpu(n))));
        out.extend(self.max_memory.map(|n| Grant::Ceiling(Ceiling::Memory(n))));
        out.extend(self.max_job_timeout.map(|n| Grant::Ceiling(Ceiling::JobTimeout(n))));
        out
    }

    /// The `--grant` values that would recreate these grants.
    pub fn describe(&self) -> Vec<String> {
        self.grants().iter().map(Grant::to_string).collect()
    }

    /// Whether the yes/no grant `permission` is given.
    pub fn permission(&self, permission: Permission) -> bool {
        match permission {
            Permission::ArbitraryCommands => self.arbitrary_commands,
            Permission::Trusted => self.trusted,
            Permission::JobNetwork => self.job_network,
            Permission::HttpPrivate => self.http_private,
            Permission::RequirementUrls => self.requirement_urls,
            Permission::SourceBuilds => self.source_builds,
            Permission::FlavorPackages => self.flavor_packages,
        }
    }

    fn permission_mut(&mut self, permission: Permission) -> &mut bool {
        match permission {
            Permission::ArbitraryCommands => &mut self.arbitrary_commands,
            Permission::Trusted => &mut self.trusted,
            Permission::JobNetwork => &mut self.job_network,
            Permission::HttpPrivate => &mut self.http_private,
            Permission::RequirementUrls => &mut self.requirement_urls,
            Permission::SourceBuilds => &mut self.source_builds,
            Permission::FlavorPackages => &mut self.flavor_packages,
        }
    }

    /// Whether `capability` is granted (`log` and `cancellation` always are).
    pub fn allows(&self, capability: Capability) -> bool {
        !capability.needs_grant() || self.capabilities.contains(&capability)
    }

    /// Every stored secret these grants let the host use for the flavor:
    /// `secret=`, `secret-env=` bindings, HTTP and registry credentials.
    pub fn secret_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.secrets.clone();
        names.extend(self.secret_env.iter().map(|binding| binding.secret.clone()));
        names.extend(self.http_credentials.iter().map(|credential| credential.secret.clone()));
        names.extend(self.registry_credentials.iter().map(|credential| credential.secret.clone()));
        names.sort();
        names.dedup();
        names
    }

    /// The rules outgoing HTTP is checked against.
    pub fn egress_rules(&self) -> EgressRules {
        EgressRules {
            origins: self.http_origins.clone(),
            private_ranges: self.http_private,
            credentials: self.http_credentials.clone(),
        }
    }
}

/// What identifies a granted value among those of its kind: what a
/// [`Revocation`] names.
fn key_of(grant: &Grant) -> String {
    match grant {
        Grant::Capability(_) | Grant::Permission(_) | Grant::Ceiling(_) => String::new(),
        Grant::SecretEnv(binding) => binding.var.clone(),
        Grant::HttpCredential(credential) => credential.origin.to_string(),
        Grant::RegistryCredential(credential) => credential.registry.clone(),
        other => other.value().unwrap_or_default(),
    }
}

fn push_unique<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if !list.contains(&item) {
        list.push(item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::test_support::granted;

    #[test]
    fn nothing_but_log_and_cancellation_is_granted_by_default() {
        let grants = Grants::default();
        assert!(grants.allows(Capability::Log));
        assert!(grants.allows(Capability::Cancellation));
        for capability in Capability::grantable() {
            assert!(!grants.allows(capability), "{capability}");
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
    fn the_stored_form_is_the_granted_text_and_bad_stored_values_are_named() {
        let grants = granted(&[
            "jobs",
            "http-origin=https://api.example.com",
            "http-credential=https://api.example.com=bearer:token",
            "secret-env=DB=db-pass",
            "job-env=MLFLOW_*",
            "registry-credential=registry.example.com=basic:login",
        ]);
        let stored = serde_json::to_value(&grants).expect("serializes");
        assert_eq!(stored["http_origins"], serde_json::json!(["https://api.example.com:443"]));
        assert_eq!(stored["http_credentials"], serde_json::json!(["https://api.example.com:443=bearer:token"]));
        assert_eq!(stored["secret_env"], serde_json::json!(["DB=db-pass"]));
        assert_eq!(stored["job_env"], serde_json::json!(["MLFLOW_*"]));
        assert_eq!(stored["registry_credentials"], serde_json::json!(["registry.example.com=basic:login"]));
        assert_eq!(serde_json::from_value::<Grants>(stored).expect("reads back"), grants);
        // A value no grant accepts (a hand-edited store) is an error naming it, not dropped.
        let edited = serde_json::json!({"http_origins": ["ftp://example.com"]});
        let error = serde_json::from_value::<Grants>(edited).expect_err("refused").to_string();
        assert!(error.contains("ftp://example.com"), "{error}");
    }
}
