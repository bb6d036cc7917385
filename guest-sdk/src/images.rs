//! Container images for jobs (the `images` capability; a step operator must
//! grant it, and the registries and base images it may use).

use crate::bindings::stepbox::operator::images as wit;
use crate::{Error, JobSpec, Runtime};

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
