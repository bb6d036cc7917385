//! The `requirements` capability: a Python environment holding exactly the
//! requirements the flavor names (the step's own, unless `flavor-packages`),
//! made (or reused) with uv, for jobs of this launch to run in. uv's output
//! is shown as progress while it works.

use std::path::Path;
use std::sync::Arc;

use wasmtime::component::{HasData, Linker};

use super::{FlavorLogger, HostState, LaunchContext};
use crate::bindings::log::Level;
use crate::bindings::requirements::{Environment, EnvironmentSpec, Host};
use crate::bindings::types::Error;
use crate::host::audit::Decision;
use stepbox_backends::environments::{EnvironmentError, Environments, NormalizedSpec};

/// How a launch's environments are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequirementsCtx {
    /// With uv, under the home's `environments/` (reused when they exist).
    Install,
    /// The dry run's twin (`stepbox flavor test`): the same checks, and the
    /// handle a real install would give, with nothing installed.
    DryRun,
}

/// What `requirements` sees of an instance.
pub struct RequirementsView<'a> {
    launch: Option<(&'a Arc<LaunchContext>, RequirementsCtx)>,
    logger: &'a Arc<FlavorLogger>,
}

/// The `requirements` capability, for the linker.
struct RequirementsCapability;

impl HasData for RequirementsCapability {
    type Data<'a> = RequirementsView<'a>;
}

fn view(state: &mut HostState) -> RequirementsView<'_> {
    let launch = state.launch.as_ref().and_then(|launch| Some((&launch.shared, launch.requirements?)));
    RequirementsView { launch, logger: &state.logger }
}

/// Link `requirements`.
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    crate::bindings::requirements::add_to_linker::<HostState, RequirementsCapability>(linker, view)
}

impl Host for RequirementsView<'_> {
    async fn install(&mut self, spec: EnvironmentSpec) -> wasmtime::Result<Result<Environment, Error>> {
        let bytes = spec.requirements.iter().map(String::len).sum::<usize>()
            + spec.python_version.as_ref().map_or(0, String::len);
        self.logger.check_argument("a requirements list", bytes)?;
        let Some((launch, ctx)) = self.launch else {
            return Ok(Err(Error::Unsupported(
                "requirements can only be installed while a step is being launched, by a step operator granted \
                 `requirements`"
                    .into(),
            )));
        };
        let args = serde_json::json!({ "requirements": spec.requirements, "python_version": spec.python_version });
        let result = install_checked(Arc::clone(self.logger), launch, ctx, &spec).await;
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
    logger: Arc<FlavorLogger>,
    launch: &LaunchContext,
    ctx: RequirementsCtx,
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
    match ctx {
        RequirementsCtx::DryRun => {
            let handle = normalized.handle();
            let root = launch.home.environments_dir().join(&handle);
            let python = root.join("bin").join("python");
            Ok(stepbox_backends::environments::Environment { handle, root, python })
        }
        RequirementsCtx::Install => {
            let environments = Environments::new(launch.home.environments_dir());
            let progress = |line: &str| logger.note(Level::Info, &format!("requirements: {line}"));
            environments.ensure(&normalized, launch.grants.source_builds, &progress).await.map_err(failed)
        }
    }
}

fn failed(error: EnvironmentError) -> Error {
    match error {
        EnvironmentError::Spec(spec) => Error::Invalid(spec.to_string()),
        other => Error::Failed(other.to_string()),
    }
}
