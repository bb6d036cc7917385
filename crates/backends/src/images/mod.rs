//! A daemonless OCI image builder, in the manner of ko and jib: no Docker
//! daemon, no build container. An image is the base image's layers,
//! untouched, then a dependency layer (the step's requirements installed by
//! uv for the image's platform into `/opt/stepbox/site-packages`, which goes
//! on `PYTHONPATH`), then a code layer (the step's source directory, minus
//! ignored files, at the image's working directory).
//!
//! Every blob lives in stepbox's own OCI layout (`$STEPBOX_HOME/images`).
//! Layers are reproducible (see [`layer`]) and the dependency layer is cached
//! by its inputs, so a change to code alone rebuilds only the code layer. The
//! result is listed in that layout and, when a target repository is given,
//! pushed over the OCI distribution API; either way it is digest-pinned.

pub mod layer;
pub mod layout;
pub mod registry;

use std::path::{Path, PathBuf};

use oci_client::manifest::{OCI_IMAGE_MEDIA_TYPE, OciDescriptor};
use serde_json::{Value, json};
use thiserror::Error;

use crate::environments::{EnvironmentError, NormalizedSpec, Uv};
use layer::Layer;
use layout::Layout;

/// Where the dependency layer puts packages inside the image.
pub const SITE_PACKAGES: &str = "/opt/stepbox/site-packages";
/// Never copied into a code layer: version-control metadata (history, and
/// often credentials in remotes) has no place in an image.
pub use crate::source_files::ALWAYS_IGNORED;

/// The working directory (and code location) when the spec names none.
pub const DEFAULT_WORKDIR: &str = "/app";

const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// A registry reference, or `oci:PATH[:TAG]` for a local layout.
    pub base: String,
    pub requirements: NormalizedSpec,
    /// The step's source directory and ignore patterns, if code is included.
    pub source: Option<(PathBuf, Vec<String>)>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub entrypoint: Vec<String>,
    /// The repository to push to (`host[:port]/path`).
    pub target: Option<String>,
    /// Whether source distributions may be built (on the host).
    pub source_builds: bool,
    /// Logins for registries that need them (the others are read and
    /// written anonymously).
    pub logins: Vec<registry::Login>,
}

/// A built image.
#[derive(Debug, Clone)]
pub struct Built {
    /// Digest-pinned: `repository@sha256:…`, or `oci:LAYOUT:NAME` when it was
    /// not pushed.
    pub reference: String,
    pub manifest_digest: String,
    /// Every layer's digest, base layers first.
    pub layers: Vec<String>,
}

/// Why an image could not be built.
#[derive(Debug, Error)]
pub enum ImageError {
    #[error("`{reference}` is not an image reference: {message}")]
    Reference { reference: String, message: String },
    #[error("cannot read the base image {base}: {message}")]
    Base { base: String, message: String },
    #[error(transparent)]
    Requirements(#[from] EnvironmentError),
    #[error("cannot push the image to {target}: {message}")]
    Push { target: String, message: String },
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ImageError {
    let context = context.into();
    move |source| ImageError::Io { context, source }
}

/// Builds images into one local layout.
pub struct Builder {
    layout: Layout,
}

impl Builder {
    /// A builder keeping its blobs in the layout at `root`.
    pub fn new(root: &Path) -> Result<Self, ImageError> {
        Ok(Self { layout: Layout::create(root).map_err(io_error(format!("cannot create {}", root.display())))? })
    }

    /// Build `request`; `progress` gets a line per step.
    pub async fn build(&self, request: &BuildRequest, progress: &(dyn Fn(&str) + Sync)) -> Result<Built, ImageError> {
        let target = match &request.target {
            Some(target) => Some(
                registry::parse(target)
                    .map_err(|message| ImageError::Reference { reference: target.clone(), message })?,
            ),
            None => None,
        };
        let (base_layers, mut config) = self.base(request, target.as_ref(), progress).await?;
        let mut layers: Vec<(OciDescriptor, Layer)> = base_layers;

        if !request.requirements.requirements().is_empty() {
            let layer = self.dependency_layer(request, &config, progress).await?;
            layers.push((descriptor(&layer), layer));
        }
        let workdir = request.working_dir.clone().unwrap_or_else(|| DEFAULT_WORKDIR.to_owned());
        if let Some((source, ignore)) = &request.source {
            progress(&format!("adding the code layer from {}", source.display()));
            let layer = self.code_layer(source, ignore, &workdir)?;
            layers.push((descriptor(&layer), layer));
        }
        edit_config(&mut config, request, &workdir, &layers);

        let config_bytes = serde_json::to_vec(&config).map_err(|e| io_error("cannot encode the config")(e.into()))?;
        let config_digest = self.layout.write_blob(&config_bytes).map_err(io_error("cannot store the config"))?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_IMAGE_MEDIA_TYPE,
            "config": { "mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": config_bytes.len() },
            "layers": layers.iter().map(|(d, _)| json!({ "mediaType": d.media_type, "digest": d.digest, "size": d.size })).collect::<Vec<_>>(),
        });
        let manifest_bytes =
            serde_json::to_vec(&manifest).map_err(|e| io_error("cannot encode the manifest")(e.into()))?;
        let manifest_digest = self.layout.write_blob(&manifest_bytes).map_err(io_error("cannot store the manifest"))?;
        let name = format!("stepbox-{}", &manifest_digest["sha256:".len()..][..16]);
        self.layout
            .tag(&name, &manifest_digest, manifest_bytes.len() as u64, OCI_IMAGE_MEDIA_TYPE)
            .map_err(io_error("cannot list the image in the local layout"))?;
        let layer_digests: Vec<String> = layers.iter().map(|(d, _)| d.digest.clone()).collect();

        let reference = match &target {
            Some(target) => {
                let mut blobs = layer_digests.clone();
                blobs.push(config_digest.clone());
                let client = registry::client(&[target.registry()]);
                let base = registry::parse(&request.base).ok().filter(|_| !request.base.starts_with("oci:"));
                registry::push(
                    &client,
                    &request.logins,
                    target,
                    base.as_ref(),
                    registry::Pushed {
                        layout: &self.layout,
                        blobs: &blobs,
                        manifest: &manifest_bytes,
                        manifest_digest: &manifest_digest,
                        media_type: OCI_IMAGE_MEDIA_TYPE,
                    },
                    progress,
                )
                .await
                .map_err(|message| ImageError::Push { target: target.whole(), message })?
            }
            None => format!("oci:{}:{name}", self.layout.root().display()),
        };
        progress(&format!("built {reference}"));
        Ok(Built { reference, manifest_digest, layers: layer_digests })
    }

    /// The base image's layers (in the local layout) and its config.
    async fn base(
        &self,
        request: &BuildRequest,
        target: Option<&oci_client::Reference>,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<(Vec<(OciDescriptor, Layer)>, Value), ImageError> {
        let base_error = |message: String| ImageError::Base { base: request.base.clone(), message };
        let (descriptors, config) = match request.base.strip_prefix("oci:") {
            Some(local) => self.base_from_layout(local).map_err(base_error)?,
            None => {
                let reference = registry::parse(&request.base)
                    .map_err(|message| ImageError::Reference { reference: request.base.clone(), message })?;
                let mut registries = vec![reference.registry()];
                registries.extend(target.map(|t| t.registry()));
                let client = registry::client(&registries);
                progress(&format!("reading the base image {}", request.base));
                let pulled = registry::pull_base(&client, &request.logins, &reference, &self.layout, progress)
                    .await
                    .map_err(base_error)?;
                (pulled.layers, pulled.config)
            }
        };
        let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
            .as_array()
            .map(|ids| ids.iter().filter_map(|id| id.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        if diff_ids.len() != descriptors.len() {
            return Err(ImageError::Base {
                base: request.base.clone(),
                message: format!("its config lists {} layers but its manifest {}", diff_ids.len(), descriptors.len()),
            });
        }
        let layers = descriptors
            .into_iter()
            .zip(diff_ids)
            .map(|(mut descriptor, diff_id)| {
                // Docker media types name the same bytes; an OCI manifest uses OCI names.
                descriptor.media_type = oci_layer_type(&descriptor.media_type);
                let layer = Layer { digest: descriptor.digest.clone(), diff_id, size: descriptor.size as u64 };
                (descriptor, layer)
            })
            .collect();
        Ok((layers, config))
    }

    /// A base image from a local layout `PATH[:NAME]`, its blobs copied into ours.
    fn base_from_layout(&self, spec: &str) -> Result<(Vec<OciDescriptor>, Value), String> {
        let (path, name) = match spec.rsplit_once(':') {
            Some((path, name)) if !name.contains('/') => (path, Some(name)),
            _ => (spec, None),
        };
        let other = Layout::open(Path::new(path)).map_err(|e| e.to_string())?;
        let entry = other.find_manifest(name).map_err(|e| e.to_string())?;
        let digest = entry["digest"].as_str().ok_or("its index entry has no digest")?;
        let manifest: oci_client::manifest::OciImageManifest =
            serde_json::from_slice(&other.read_blob(digest).map_err(|e| e.to_string())?)
                .map_err(|e| format!("its manifest is not an image manifest: {e}"))?;
        let config: Value =
            serde_json::from_slice(&other.read_blob(&manifest.config.digest).map_err(|e| e.to_string())?)
                .map_err(|e| format!("its config is not JSON: {e}"))?;
        for layer in &manifest.layers {
            if !self.layout.has_blob(&layer.digest) {
                let from = other.blob_path(&layer.digest).map_err(|e| e.to_string())?;
                let to = self.layout.blob_path(&layer.digest).map_err(|e| e.to_string())?;
                std::fs::copy(&from, &to).map_err(|e| format!("cannot copy {}: {e}", from.display()))?;
            }
        }
        Ok((manifest.layers, config))
    }

    /// The requirements installed for the image's platform, cached by input.
    async fn dependency_layer(
        &self,
        request: &BuildRequest,
        config: &Value,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<Layer, ImageError> {
        let platform = uv_platform(config);
        let python = python_version(config);
        let key = {
            use sha2::Digest;
            let mut hasher = sha2::Sha256::new();
            hasher.update(format!("deps-v1\n{platform}\n{}\n{SITE_PACKAGES}\n", python.as_deref().unwrap_or("")));
            for requirement in request.requirements.requirements() {
                hasher.update(format!("{requirement}\n"));
            }
            hex::encode(hasher.finalize())
        };
        let cache = self.layout.root().join("cache");
        std::fs::create_dir_all(&cache).map_err(io_error("cannot create the layer cache"))?;
        let entry = cache.join(format!("deps-{key}.json"));
        if let Some(layer) = std::fs::read(&entry)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Layer>(&bytes).ok())
            .filter(|layer| self.layout.has_blob(&layer.digest))
        {
            progress(&format!("reusing the dependency layer {}", registry::short(&layer.digest)));
            return Ok(layer);
        }
        progress(&format!(
            "installing {} for {platform}{}",
            request.requirements.describe(),
            python.as_deref().map(|v| format!(", Python {v}")).unwrap_or_default()
        ));
        let work = tempfile::tempdir_in(self.layout.root()).map_err(io_error("cannot make a work directory"))?;
        let site = work.path().join("site-packages");
        let requirements_file = work.path().join("requirements.txt");
        std::fs::write(&requirements_file, request.requirements.requirements().join("\n") + "\n")
            .map_err(io_error("cannot write the requirements"))?;
        let uv = Uv::locate().await?;
        uv.install_for_platform(
            &site,
            &requirements_file,
            &platform,
            python.as_deref(),
            request.source_builds,
            progress,
        )
        .await?;
        let entries = layer::entries_under(&site, Path::new(SITE_PACKAGES.trim_start_matches('/')), |path, _| {
            // Byte-code caches differ from run to run and are rebuilt anyway.
            !path.components().any(|c| c.as_os_str() == "__pycache__")
        })
        .map_err(io_error("cannot read the installed packages"))?;
        let layer = self.write_layer(&entries)?;
        crate::files::write_atomically(&entry, &serde_json::to_vec(&layer).unwrap_or_default())
            .map_err(io_error("cannot record the dependency layer"))?;
        Ok(layer)
    }

    /// The step's source directory at `workdir`, minus ignored files:
    /// [`ALWAYS_IGNORED`], the patterns given, and those in the directory's
    /// `.stepboxignore` if it has one.
    fn code_layer(&self, source: &Path, ignore: &[String], workdir: &str) -> Result<Layer, ImageError> {
        let rules = crate::source_files::ignore_rules(source, ignore).map_err(|message| ImageError::Io {
            context: "cannot read the source directory's ignore rules".to_owned(),
            source: std::io::Error::other(message),
        })?;
        let prefix = Path::new(workdir.trim_start_matches('/'));
        let entries =
            layer::entries_under(source, prefix, |path, is_dir| crate::source_files::ships(&rules, path, is_dir))
                .map_err(io_error(format!("cannot read {}", source.display())))?;
        self.write_layer(&entries)
    }

    fn write_layer(&self, entries: &[layer::Entry]) -> Result<Layer, ImageError> {
        let temp = self.layout.temp_file().map_err(io_error("cannot create a layer file"))?;
        let layer = layer::write_layer(entries, temp.path()).map_err(io_error("cannot write a layer"))?;
        self.layout.adopt_blob(temp, &layer.digest).map_err(io_error("cannot store a layer"))?;
        Ok(layer)
    }
}

fn descriptor(layer: &Layer) -> OciDescriptor {
    OciDescriptor {
        media_type: LAYER_MEDIA_TYPE.to_owned(),
        digest: layer.digest.clone(),
        size: layer.size as i64,
        ..Default::default()
    }
}

/// The OCI name of a layer media type (Docker's names map one to one).
fn oci_layer_type(media_type: &str) -> String {
    match media_type {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => LAYER_MEDIA_TYPE.to_owned(),
        "application/vnd.docker.image.rootfs.diff.tar" => "application/vnd.oci.image.layer.v1.tar".to_owned(),
        other => other.to_owned(),
    }
}

/// uv's `--python-platform` for the image's OS and architecture.
fn uv_platform(config: &Value) -> String {
    let arch = match config["architecture"].as_str().unwrap_or("amd64") {
        "arm64" => "aarch64",
        _ => "x86_64",
    };
    format!("{arch}-manylinux_2_28")
}

/// The image's Python `major.minor`, when its config says (`PYTHON_VERSION`,
/// as the official Python images set it).
fn python_version(config: &Value) -> Option<String> {
    let env = config["config"]["Env"].as_array()?;
    let value = env.iter().filter_map(Value::as_str).find_map(|var| var.strip_prefix("PYTHON_VERSION="))?;
    let mut parts = value.split('.');
    Some(format!("{}.{}", parts.next()?, parts.next()?))
}

/// Add the new layers, environment, working directory, user and entrypoint.
fn edit_config(config: &mut Value, request: &BuildRequest, workdir: &str, layers: &[(OciDescriptor, Layer)]) {
    config["rootfs"] =
        json!({ "type": "layers", "diff_ids": layers.iter().map(|(_, l)| l.diff_id.clone()).collect::<Vec<_>>() });
    let mut env: Vec<String> = config["config"]["Env"]
        .as_array()
        .map(|vars| vars.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let mut set = |name: &str, value: String| {
        env.retain(|var| var.split_once('=').map(|(n, _)| n) != Some(name));
        env.push(format!("{name}={value}"));
    };
    if !request.requirements.requirements().is_empty() {
        set("PYTHONPATH", SITE_PACKAGES.to_owned());
    }
    for (name, value) in &request.env {
        set(name, value.clone());
    }
    config["config"]["Env"] = json!(env);
    config["config"]["WorkingDir"] = json!(workdir);
    if let Some(user) = &request.user {
        config["config"]["User"] = json!(user);
    }
    if !request.entrypoint.is_empty() {
        config["config"]["Entrypoint"] = json!(request.entrypoint);
    }
    // Fixed, so that the same inputs give the same image.
    config["created"] = json!("1970-01-01T00:00:00Z");
    let mut history = config["history"].as_array().cloned().unwrap_or_default();
    history.push(json!({ "created": "1970-01-01T00:00:00Z", "created_by": "stepbox images.build" }));
    config["history"] = json!(history);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The paths in a layer blob.
    fn paths_in(layout: &Layout, layer: &Layer) -> Vec<String> {
        let blob = std::fs::File::open(layout.blob_path(&layer.digest).expect("digest")).expect("blob");
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(blob));
        let entries = archive.entries().expect("a tar");
        entries.map(|entry| entry.expect("entry").path().expect("path").display().to_string()).collect()
    }

    #[test]
    fn the_config_gets_the_layers_environment_user_entrypoint_and_fixed_times() {
        let mut config = json!({
            "architecture": "amd64",
            "created": "2026-01-01T00:00:00Z",
            "config": { "Env": ["PATH=/usr/bin:/bin", "LANG=C.UTF-8"], "Cmd": ["python3"] },
            "rootfs": { "type": "layers", "diff_ids": ["sha256:base"] },
        });
        let request = BuildRequest {
            base: "base".into(),
            requirements: NormalizedSpec::new(&["six".to_owned()], None).expect("valid"),
            source: None,
            env: vec![("LANG".into(), "en_GB.UTF-8".into()), ("STEP".into(), "1".into())],
            working_dir: None,
            user: Some("1000:1000".into()),
            entrypoint: vec!["python3".into(), "-u".into()],
            target: None,
            source_builds: false,
            logins: Vec::new(),
        };
        let layer = |id: &str| (OciDescriptor::default(), Layer { digest: String::new(), diff_id: id.into(), size: 0 });
        edit_config(&mut config, &request, "/app", &[layer("sha256:base"), layer("sha256:deps")]);
        assert_eq!(config["rootfs"]["diff_ids"], json!(["sha256:base", "sha256:deps"]));
        assert_eq!(
            config["config"]["Env"],
            json!(["PATH=/usr/bin:/bin", "PYTHONPATH=/opt/stepbox/site-packages", "LANG=en_GB.UTF-8", "STEP=1"])
        );
        assert_eq!(config["config"]["User"], "1000:1000");
        assert_eq!(config["config"]["Entrypoint"], json!(["python3", "-u"]));
        assert_eq!(config["config"]["WorkingDir"], "/app");
        assert_eq!(config["config"]["Cmd"], json!(["python3"]), "the base's Cmd is kept");
        assert_eq!(config["created"], "1970-01-01T00:00:00Z", "fixed, so equal inputs give equal digests");
        assert_eq!(uv_platform(&config), "x86_64-manylinux_2_28");
        assert_eq!(python_version(&json!({"config": {"Env": ["PYTHON_VERSION=3.12.4"]}})), Some("3.12".into()));
    }

    #[test]
    fn the_code_layer_leaves_out_version_control_and_ignored_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let source = dir.path().join("src");
        std::fs::create_dir_all(source.join(".git")).expect("mkdir");
        std::fs::write(source.join(".git/config"), "[remote] url = https://token@example.invalid").expect("write");
        std::fs::write(source.join(".stepboxignore"), "secrets.env\n").expect("write");
        std::fs::write(source.join("secrets.env"), "API_KEY=1").expect("write");
        std::fs::write(source.join("debug.log"), "noise").expect("write");
        std::fs::write(source.join("step.py"), "print('hi')").expect("write");
        let builder = Builder::new(&dir.path().join("layout")).expect("builder");
        let layer = builder.code_layer(&source, &["*.log".to_owned()], "/app").expect("code layer");
        let paths = paths_in(&builder.layout, &layer);
        assert!(paths.contains(&"app/step.py".to_owned()), "{paths:?}");
        for left_out in [".git", "secrets.env", "debug.log"] {
            assert!(!paths.iter().any(|p| p.contains(left_out)), "{left_out} is in {paths:?}");
        }
    }
}
