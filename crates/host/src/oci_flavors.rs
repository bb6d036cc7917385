//! Flavors from OCI registries: `stepbox flavor push FILE REF` publishes a
//! component as a Wasm artifact, `stepbox flavor sign REF --key K` signs it
//! as `cosign sign --key` does, and `stepbox flavor register oci://REF`
//! pulls one by tag or digest, verifies it is signed by a key trusted for
//! its repository ([`crate::trust`]), and registers it pinned to the digest
//! it was pulled at (a tag is never looked up again on its own).
//!
//! Logins come from `--registry-credential HOST=basic:SECRET`, the same form
//! and secrets as the `registry-credential` grant of the images capability.

use stepbox_backends::images::registry::Login;
use stepbox_backends::wasm_oci::keys::PrivateKey;
use stepbox_backends::wasm_oci::{self, ComponentWorld, Pushed, Signed, signature};
use stepbox_store::policy::RegistryCredential;
use stepbox_store::store::{FlavorRecord, Provenance};

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

/// Pull `reference` (`oci://REGISTRY/REPO:TAG` or `…@sha256:…`), check
/// that a key trusted for its repository signed it (unless
/// `allow_unsigned`), and register it, recording the digest it was pulled
/// at and how it was verified.
pub async fn register(
    stepbox: &Stepbox,
    reference: &str,
    replace: bool,
    allow_unsigned: bool,
    logins: &[Login],
    progress: &(dyn Fn(&str) + Sync),
) -> Result<FlavorRecord, FlavorError> {
    let (source, bytes) = fetch(stepbox, reference, allow_unsigned, logins, progress).await?;
    flavors::register_bytes(stepbox, &source, bytes, replace).await
}

/// Pull `reference` and check its signature against the trust policy
/// (unless `allow_unsigned`): the component, and where it came from.
pub async fn fetch(
    stepbox: &Stepbox,
    reference: &str,
    allow_unsigned: bool,
    logins: &[Login],
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(Source, Vec<u8>), FlavorError> {
    let trusted = crate::trust::keys(stepbox)?;
    let pulled = wasm_oci::pull(reference, logins, MAX_COMPONENT_BYTES, !allow_unsigned, progress).await?;
    let provenance = if allow_unsigned {
        Provenance::Unsigned
    } else {
        let candidates: Vec<_> = trusted.iter().map(|key| key.candidate(&pulled.repository)).collect();
        let verified = signature::verify(&pulled.repository, &pulled.digest, &pulled.signatures, &candidates)
            .map_err(|reason| FlavorError::Untrusted { reason, repository: pulled.repository.clone() })?;
        progress(&format!("verified: signed by the trusted key `{}` ({})", verified.key, verified.fingerprint));
        Provenance::Signed { key: verified.key, fingerprint: verified.fingerprint, scope: verified.scope }
    };
    let label = pulled.repository.rsplit('/').next().unwrap_or(&pulled.repository).to_owned();
    let source = Source { shown: reference.to_owned(), label, recorded: pulled.pinned(), provenance };
    Ok((source, pulled.component))
}

/// Sign the flavor artifact `reference` in its registry with the private
/// key in `key_path` (a cosign key is opened with `COSIGN_PASSWORD`, empty
/// when unset), as `cosign sign --key` would.
pub async fn sign(
    reference: &str,
    key_path: &std::path::Path,
    logins: &[Login],
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Signed, FlavorError> {
    let text = crate::trust::read_key_file(key_path)?;
    let password = std::env::var(wasm_oci::keys::PASSWORD_VARIABLE).unwrap_or_default();
    let key = PrivateKey::from_pem(&key_path.display().to_string(), &text, password.as_bytes())?;
    Ok(wasm_oci::sign(reference, logins, &key, progress).await?)
}
