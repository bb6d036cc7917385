//! The `images` capability. Declared by the contract; this release answers
//! every call with an `unsupported` error value (the daemonless OCI builder
//! is the next milestone).

use crate::bindings::images::{Host, Image, ImageSpec};
use crate::bindings::types::Error;
use crate::host::HostState;

impl Host for HostState {
    async fn build(&mut self, spec: ImageSpec) -> wasmtime::Result<Result<Image, Error>> {
        tracing::debug!("images.build(base {}) is not implemented yet", spec.base);
        Ok(Err(Error::Unsupported(
            "images.build is not implemented by this stepbox yet: pass a prebuilt image to the launch instead"
                .to_owned(),
        )))
    }
}

impl crate::bindings::types::Host for HostState {}
