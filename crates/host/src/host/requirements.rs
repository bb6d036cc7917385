//! The `requirements` capability: a Python environment holding exactly the
//! requirements the flavor names (the step's own, unless `flavor-packages`),
//! made (or reused) with uv, for jobs of this launch to run in. uv's output
//! is shown as progress while it works.

use std::path::Path;

use crate::bindings::log::Level;
use crate::bindings::requirements::{Environment, EnvironmentSpec, Host};
use crate::bindings::types::Error;
use crate::host::HostState;
use crate::host::audit::Decision;
use stepbox_backends::environments::{EnvironmentError, Environments, NormalizedSpec};

impl Host for HostState {
    async fn install(&mut self, spec: EnvironmentSpec) -> wasmtime::Result<Result<Environment, Error>> {
        let bytes = spec.requirements.iter().map(String::len).sum::<usize>()
            + spec.python_version.as_ref().map_or(0, String::len);
        self.logger.check_argument("a requirements list", bytes)?;
        let Some(launch) = self.launch.clone() else {
            return Ok(Err(Error::Unsupported(
                "requirements can only be installed while a step is being launched".into(),
            )));
        };
        let args = serde_json::json!({ "requirements": spec.requirements, "python_version": spec.python_version });
        let result = install_checked(std::sync::Arc::clone(&self.logger), &launch, &spec).await;
        launch.audit.record("requirements.install", args, Decision::of(&result));
        if let Ok(environment) = &result {
            launch.remember_environment(environment.clone());
        }
        // The interpreter relative to the environment: where the host keeps
        // environments (its home's layout) is none of the flavor's business.
        Ok(result.map(|environment| Environment {
            handle: environment.handle.clone(),
            python: environment
                .python
                .strip_prefix(&environment.root)
                .unwrap_or(Path::new("bin/python"))
                .display()
                .to_string(),
        }))
    }
}

/// Normalize the spec, then reuse or build its environment.
async fn install_checked(
    logger: std::sync::Arc<crate::host::FlavorLogger>,
    launch: &crate::host::LaunchContext,
    spec: &EnvironmentSpec,
) -> Result<stepbox_backends::environments::Environment, Error> {
    let normalized = NormalizedSpec::new(&spec.requirements, spec.python_version.as_deref())
        .map_err(|error| Error::Invalid(error.to_string()))?;
    launch
        .grants
        .flavor_requirements(normalized.requirements(), normalized.direct_references(), &launch.caller_requirements)
        .map_err(|denial| {
            logger.note(Level::Warn, &denial.to_string());
            Error::Denied(denial.to_string())
        })?;
    if launch.dry_run {
        // The handle a real install would give, without installing.
        let handle = normalized.handle();
        let root = launch.home.environments_dir().join(&handle);
        let python = root.join("bin").join("python");
        return Ok(stepbox_backends::environments::Environment { handle, root, python });
    }
    let environments = Environments::new(launch.home.environments_dir());
    let progress = |line: &str| logger.note(Level::Info, &format!("requirements: {line}"));
    environments.ensure(&normalized, launch.grants.source_builds, &progress).await.map_err(failed)
}

fn failed(error: EnvironmentError) -> Error {
    match error {
        EnvironmentError::Spec(spec) => Error::Invalid(spec.to_string()),
        other => Error::Failed(other.to_string()),
    }
}
