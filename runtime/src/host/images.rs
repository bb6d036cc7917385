//! The `images` capability. Declared by the contract; this release answers
//! every call with an `unsupported` error value (the daemonless OCI builder
//! is the next milestone).

use crate::bindings::images::{Host, Image, ImageSpec};
use crate::bindings::types::Error;
use crate::host::HostState;
use crate::host::audit::Decision;

impl Host for HostState {
    async fn build(&mut self, spec: ImageSpec) -> wasmtime::Result<Result<Image, Error>> {
        let strings = |list: &[String]| list.iter().map(String::len).sum::<usize>();
        let optional = |text: &Option<String>| text.as_ref().map_or(0, String::len);
        let bytes = spec.base.len()
            + strings(&spec.requirements)
            + strings(&spec.ignore)
            + spec.env.iter().map(|var| var.name.len() + var.value.len()).sum::<usize>()
            + optional(&spec.working_dir)
            + optional(&spec.user)
            + strings(&spec.entrypoint)
            + optional(&spec.target);
        self.logger.check_argument("an image spec", bytes)?;
        tracing::debug!("images.build(base {}) is not implemented yet", spec.base);
        let message =
            "images.build is not implemented by this stepbox yet: pass a prebuilt image to the launch instead";
        if let Some(launch) = &self.launch {
            let args = serde_json::json!({
                "base": spec.base,
                "requirements": spec.requirements,
                "include_source": spec.include_source,
                "env": crate::host::audit::redacted_env(spec.env.iter().map(|var| var.name.as_str())),
                "target": spec.target,
            });
            launch.audit.record("images.build", args, Decision::Refused(message.to_owned()));
        }
        Ok(Err(Error::Unsupported(message.to_owned())))
    }
}

impl crate::bindings::types::Host for HostState {}
