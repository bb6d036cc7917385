//! Container images for jobs (the `images` capability; a step operator must
//! grant it, and the registries and base images it may use).

use crate::bindings::stepbox::operator::images as wit;
use crate::{ConfigError, Error, JobSpec, LaunchError, LaunchRequest, Runtime};

pub use wit::{Image, ImageSpec};

/// Build (or reuse) an image, pushed to `spec.target` when given; returns a
/// digest-pinned reference. Blocks while it builds.
pub fn build(spec: &ImageSpec) -> Result<Image, Error> {
    wit::build(spec)
}

/// An image spec on `base` with nothing added yet.
pub fn on(base: &str) -> ImageSpec {
    ImageSpec {
        base: base.to_owned(),
        requirements: Vec::new(),
        include_source: false,
        ignore: Vec::new(),
        env: Vec::new(),
        working_dir: None,
        user: None,
        entrypoint: Vec::new(),
        target: None,
    }
}

/// Make `spec` run in the image `reference` (on a backend that runs images).
pub fn run_in(spec: &mut JobSpec, reference: &str) {
    spec.runtime = Runtime::Image(reference.to_owned());
}

/// Where a built image holds the step's code unless the config says
/// otherwise (serde default for a `code_dir` field).
pub fn default_code_dir() -> String {
    "/app".to_owned()
}

/// The image a step runs in: the one the launch brings, else one built on
/// `base` with the step's requirements and its source directory (in
/// `code_dir`, also the working directory) and pushed to `repository`.
/// `base_field` names the config field `base` comes from, for the error
/// when it is missing.
pub fn step_image(
    request: &LaunchRequest,
    base: Option<&str>,
    base_field: &str,
    repository: Option<&str>,
    code_dir: &str,
    ignore: &[String],
) -> Result<String, LaunchError> {
    if let Some(image) = &request.image {
        return Ok(image.clone());
    }
    let Some(base) = base else {
        return Err(ConfigError::field(base_field, "is needed to build an image (or launch with an image)").into());
    };
    let mut spec = on(base);
    spec.requirements = request.requirements.clone();
    spec.include_source = true;
    spec.ignore = ignore.to_vec();
    spec.working_dir = Some(code_dir.to_owned());
    spec.target = repository.map(str::to_owned);
    crate::info!("building an image for step {} on {base}", request.step_name);
    Ok(build(&spec)?.reference)
}
