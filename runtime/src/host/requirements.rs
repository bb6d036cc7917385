//! The `requirements` capability. Declared by the contract; this release
//! answers every call with an `unsupported` error value (uv-managed
//! environments are the next milestone).

use crate::bindings::requirements::{Environment, EnvironmentSpec, Host};
use crate::bindings::types::Error;
use crate::host::HostState;
use crate::host::audit::Decision;

impl Host for HostState {
    async fn install(&mut self, spec: EnvironmentSpec) -> wasmtime::Result<Result<Environment, Error>> {
        let bytes = spec.requirements.iter().map(String::len).sum::<usize>()
            + spec.python_version.as_ref().map_or(0, String::len);
        self.logger.check_argument("a requirements list", bytes)?;
        tracing::debug!("requirements.install({} requirements) is not implemented yet", spec.requirements.len());
        let message = "requirements.install is not implemented by this stepbox yet: run the job in the host \
                       environment (runtime::host) with its requirements already installed";
        if let Some(launch) = &self.launch {
            let args = serde_json::json!({ "requirements": spec.requirements, "python_version": spec.python_version });
            launch.audit.record("requirements.install", args, Decision::Refused(message.to_owned()));
        }
        Ok(Err(Error::Unsupported(message.to_owned())))
    }
}
