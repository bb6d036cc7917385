//! The `requirements` capability. Declared by the contract; this release
//! answers every call with an `unsupported` error value (uv-managed
//! environments are the next milestone).

use crate::bindings::requirements::{Environment, EnvironmentSpec, Host};
use crate::bindings::types::Error;
use crate::host::HostState;

impl Host for HostState {
    async fn install(&mut self, spec: EnvironmentSpec) -> wasmtime::Result<Result<Environment, Error>> {
        tracing::debug!("requirements.install({} requirements) is not implemented yet", spec.requirements.len());
        Ok(Err(Error::Unsupported(
            "requirements.install is not implemented by this stepbox yet: run the job in the host environment \
             (runtime::host) with its requirements already installed"
                .to_owned(),
        )))
    }
}
