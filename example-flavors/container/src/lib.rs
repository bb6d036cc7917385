//! `container`: runs a step in a container image with podman.
//!
//! When the launch brings an image, the step runs in it. Otherwise the flavor
//! builds one with the host's daemonless builder (`images`): the configured
//! base image, a dependency layer with the step's requirements, and a code
//! layer with the step's source directory, pushed to the configured
//! repository. Then it submits the entrypoint to the `container` backend in
//! that image and waits.

use std::collections::BTreeMap;

use serde::Deserialize;
use stepbox_guest::schemars::{self, JsonSchema};
use stepbox_guest::{ConfigError, Flavor, FlavorInfo, LaunchError, LaunchReport, LaunchRequest, images, jobs};

/// Configuration of a step operator that uses the `container` flavor.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The image to build on: a registry reference, or `oci:PATH` for a local
    /// OCI layout. Needed unless every launch brings its own image.
    base_image: Option<String>,
    /// The repository built images are pushed to, such as
    /// `registry.local:5000/steps`; without it they stay in a local layout.
    repository: Option<String>,
    /// Where the step's code goes in the image, and the job's working dir.
    #[serde(default = "stepbox_guest::images::default_code_dir")]
    code_dir: String,
    /// Ignore patterns (gitignore syntax) for the step's source directory.
    #[serde(default)]
    ignore: Vec<String>,
    /// Cancel a step that runs longer than this many seconds.
    timeout_seconds: Option<u64>,
    /// Environment variables added to every step (the step's own win).
    #[serde(default)]
    environment: BTreeMap<String, String>,
}

/// Per-step settings (`step_operator.container` in ZenML).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Run this step in this image instead of building one; the step
    /// operator must be granted it (`--grant image=REF`, or a prefix such as
    /// `image=registry.example.com/team/*`), or the caller pass it with `--image`.
    image: Option<String>,
    timeout_seconds: Option<u64>,
}

struct Container;

impl Flavor for Container {
    type Config = Config;
    type Settings = Settings;

    fn info() -> FlavorInfo {
        FlavorInfo::new("container", "Container (podman)", env!("CARGO_PKG_VERSION"))
            .description("Builds an image with the step's requirements and code, and runs the step in it with podman.")
    }

    fn validate(config: &Config) -> Result<(), ConfigError> {
        if !config.code_dir.starts_with('/') {
            return Err(ConfigError::field("code_dir", "must be an absolute path inside the image"));
        }
        if config.timeout_seconds == Some(0) {
            return Err(ConfigError::field("timeout_seconds", "must be at least 1 second"));
        }
        if config.base_image.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::field("base_image", "must not be empty"));
        }
        Ok(())
    }

    fn launch(config: Config, settings: Settings, request: LaunchRequest) -> Result<LaunchReport, LaunchError> {
        let image = match settings.image {
            Some(image) => image,
            None => images::step_image(
                &request,
                config.base_image.as_deref(),
                "base_image",
                config.repository.as_deref(),
                &config.code_dir,
                &config.ignore,
            )?,
        };
        let mut spec = jobs::entrypoint_spec(&request);
        spec.backend = Some("container".to_owned());
        spec.working_dir = None;
        spec.timeout_seconds = settings.timeout_seconds.or(config.timeout_seconds);
        jobs::add_default_env(&mut spec, config.environment);
        images::run_in(&mut spec, &image);
        stepbox_guest::info!("running step {} in {image}", request.step_name);
        jobs::run_to_completion(spec)
    }
}

stepbox_guest::export_flavor!(Container);
