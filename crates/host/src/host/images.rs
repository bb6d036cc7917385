//! The `images` capability: build an image for the step with the daemonless
//! builder ([`stepbox_backends::images`]): a granted base image, the step's requirements
//! and its source directory, pushed to a granted registry.

use std::sync::Arc;

use wasmtime::component::{HasData, Linker};

use super::{FlavorLogger, HostState, LaunchContext};
use crate::bindings::images::{Host, Image, ImageSpec};
use crate::bindings::log::Level;
use crate::bindings::types::Error;
use crate::host::audit::Decision;
use stepbox_backends::environments::NormalizedSpec;
use stepbox_backends::images::{BuildRequest, Builder, ImageError};

/// How a launch's images are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImagesCtx {
    /// Built with the daemonless builder under the home's `images/`, on a
    /// granted base image, pushed to a granted registry.
    Build,
    /// The dry run's twin (`stepbox flavor test`): the spec's checks, and a
    /// made-up digest of the target; nothing pulled, built or pushed, so
    /// the base-image and registry grants are not asked for.
    DryRun,
}

/// What `images` sees of an instance.
pub struct ImagesView<'a> {
    launch: Option<(&'a Arc<LaunchContext>, ImagesCtx)>,
    logger: &'a Arc<FlavorLogger>,
}

/// The `images` capability, for the linker.
struct ImagesCapability;

impl HasData for ImagesCapability {
    type Data<'a> = ImagesView<'a>;
}

fn view(state: &mut HostState) -> ImagesView<'_> {
    let launch = state.launch.as_ref().and_then(|launch| Some((&launch.shared, launch.images?)));
    ImagesView { launch, logger: &state.logger }
}

/// Link `images`.
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    crate::bindings::images::add_to_linker::<HostState, ImagesCapability>(linker, view)
}

impl Host for ImagesView<'_> {
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
        let Some((launch, ctx)) = self.launch else {
            return Ok(Err(Error::Unsupported(
                "images can only be built while a step is being launched, by a step operator granted `images`".into(),
            )));
        };
        let args = serde_json::json!({
            "base": spec.base,
            "requirements": spec.requirements,
            "include_source": spec.include_source,
            "ignore": spec.ignore,
            "env": crate::host::audit::redacted_env(spec.env.iter().map(|var| var.name.as_str())),
            "working_dir": spec.working_dir,
            "user": spec.user,
            "entrypoint": spec.entrypoint,
            "target": spec.target,
        });
        let result = build_checked(Arc::clone(self.logger), launch, ctx, spec).await;
        launch.audit.record("images.build", args, Decision::of(&result));
        Ok(result)
    }
}

/// Check the spec against the grants, then build.
async fn build_checked(
    logger: Arc<FlavorLogger>,
    launch: &LaunchContext,
    ctx: ImagesCtx,
    spec: ImageSpec,
) -> Result<Image, Error> {
    let denied = |denial: stepbox_store::policy::Denial| {
        logger.note(Level::Warn, &denial.to_string());
        Error::Denied(denial.to_string())
    };
    let registry = match &spec.target {
        Some(target) => Some(
            stepbox_backends::images::registry::parse(target)
                .map_err(|message| Error::Invalid(format!("`{target}` is not an image repository: {message}")))?,
        ),
        None => None,
    };
    if let Some(var) = spec.env.iter().find(|var| !stepbox_backends::units::is_env_name(&var.name)) {
        return Err(Error::Invalid(format!("`{}` is not a valid environment variable name", var.name)));
    }
    if spec.working_dir.as_deref().is_some_and(|dir| !dir.starts_with('/')) {
        return Err(Error::Invalid("the image's working directory must be an absolute path".to_owned()));
    }
    // What the image runs is the caller's: its packages (the step's), its
    // environment (the job-env rule) and no entrypoint of the flavor's
    // (podman would run it before the step's command).
    let requirements =
        NormalizedSpec::new(&spec.requirements, None).map_err(|error| Error::Invalid(error.to_string()))?;
    launch
        .grants
        .flavor_requirements(requirements.requirements(), requirements.direct_references(), &launch.caller_requirements)
        .map_err(denied)?;
    let env: Vec<(String, String)> = spec.env.iter().map(|var| (var.name.clone(), var.value.clone())).collect();
    launch.grants.job_env(&env, &launch.environment).map_err(denied)?;
    if !spec.entrypoint.is_empty() && !launch.grants.arbitrary_commands {
        return Err(denied(stepbox_store::policy::Denial {
            rule: "entrypoint-only",
            message: format!(
                "the image would start with the flavor's entrypoint {:?} before the step's command; only step \
                 operators granted `arbitrary-commands` may set one",
                spec.entrypoint
            ),
        }));
    }
    if ctx == ImagesCtx::DryRun {
        let repository = spec.target.as_deref().unwrap_or("dry-run.invalid/stepbox");
        let reference = format!("{repository}@sha256:{}", "0".repeat(64));
        launch.remember_image(&reference);
        return Ok(Image { reference });
    }
    // What a real build touches: the base image it pulls, the registry it pushes to.
    launch.grants.base_image(&spec.base).map_err(denied)?;
    if let Some(registry) = &registry {
        launch.grants.push_registry(registry.registry()).map_err(denied)?;
    }
    let request = BuildRequest {
        base: spec.base,
        requirements,
        source: spec.include_source.then(|| (launch.source_root.clone(), spec.ignore)),
        env: spec.env.into_iter().map(|var| (var.name, var.value)).collect(),
        working_dir: spec.working_dir,
        user: spec.user,
        entrypoint: spec.entrypoint,
        target: spec.target,
        source_builds: launch.grants.source_builds,
        logins: registry_logins(launch)?,
    };
    let builder = Builder::new(&launch.home.images_dir()).map_err(failed)?;
    let progress = |line: &str| logger.note(Level::Info, &format!("images: {line}"));
    let built = builder.build(&request, &progress).await.map_err(failed)?;
    launch.remember_image(&built.reference);
    Ok(Image { reference: built.reference })
}

/// The logins of the step operator's `registry-credential` grants, read
/// from their secrets (`{"username": …, "password": …}`).
fn registry_logins(launch: &LaunchContext) -> Result<Vec<stepbox_backends::images::registry::Login>, Error> {
    let secrets = launch.home.secrets();
    launch
        .grants
        .registry_credentials
        .iter()
        .map(|credential| {
            stepbox_backends::images::registry::Login::from_secret(&credential.registry, &credential.secret, &secrets)
                .map_err(Error::Failed)
        })
        .collect()
}

fn failed(error: ImageError) -> Error {
    match error {
        ImageError::Reference { .. } => Error::Invalid(error.to_string()),
        other => Error::Failed(other.to_string()),
    }
}
