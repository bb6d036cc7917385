//! Flavors from OCI registries: `stepbox flavor push FILE REF` publishes a
//! component as a Wasm artifact, and `stepbox flavor register oci://REF`
//! pulls one by tag or digest and registers it pinned to the digest it was
//! pulled at (a tag is never looked up again on its own).
//!
//! Logins come from `--registry-credential HOST=basic:SECRET`, the same form
//! and secrets as the `registry-credential` grant of the images capability.

use stepbox_backends::images::registry::Login;
use stepbox_backends::wasm_oci::{self, ComponentWorld, Pushed};
use stepbox_store::policy::RegistryCredential;
use stepbox_store::store::FlavorRecord;

use crate::component::{self, MAX_COMPONENT_BYTES};
use crate::context::Stepbox;
use crate::flavors::{self, FlavorError, Source};

/// Parse `--registry-credential` values and read their logins.
pub fn logins(stepbox: &Stepbox, credentials: &[String]) -> Result<Vec<Login>, FlavorError> {
    let secrets = stepbox.home.secrets();
    credentials
        .iter()
        .map(|text| {
            let credential = RegistryCredential::parse(text).map_err(|why| {
                FlavorError::Input(format!(
                    "--registry-credential {text}: {why}; the form is HOST[:PORT]=basic:SECRET, e.g. registry.example.com=basic:registry-login"
                ))
            })?;
            Login::from_secret(&credential.registry, &credential.secret, &secrets).map_err(FlavorError::Input)
        })
        .collect()
}

/// Push the component file at `path` to `reference` (`REGISTRY/REPO:TAG`).
/// The file must be a component; it need not be registered.
pub async fn push(
    path: &std::path::Path,
    reference: &str,
    logins: &[Login],
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Pushed, FlavorError> {
    let shown = path.display().to_string();
    let bytes = component::read_component_file(path)?;
    let inspection = crate::inspect::inspect(&shown, &bytes);
    if let Some(problem) = inspection.problem {
        return Err(FlavorError::Input(format!("not a flavor stepbox can register, so not pushed: {problem}")));
    }
    let world = ComponentWorld { exports: inspection.exports, imports: inspection.imports, target: None };
    let file_name =
        path.file_name().map_or_else(|| "flavor.wasm".to_owned(), |name| name.to_string_lossy().into_owned());
    Ok(wasm_oci::push(reference, logins, &bytes, &file_name, world, progress).await?)
}

/// Pull `reference` (`oci://REGISTRY/REPO:TAG` or `…@sha256:…`) and
/// register it, recording the digest it was pulled at.
pub async fn register(
    stepbox: &Stepbox,
    reference: &str,
    replace: bool,
    logins: &[Login],
    progress: &(dyn Fn(&str) + Sync),
) -> Result<FlavorRecord, FlavorError> {
    let pulled = wasm_oci::pull(reference, logins, MAX_COMPONENT_BYTES, progress).await?;
    let label = pulled.repository.rsplit('/').next().unwrap_or(&pulled.repository).to_owned();
    let source = Source { shown: reference.to_owned(), label, recorded: pulled.pinned() };
    flavors::register_bytes(stepbox, &source, &pulled.component, replace).await
}
