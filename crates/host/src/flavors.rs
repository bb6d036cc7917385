//! Flavor registration: check a `.wasm`, compile it once, ask it who it is,
//! and keep it content-addressed; and listing, describing and deleting.
//!
//! Listing reads only the database and checks each file's presence, so one
//! broken or deleted file never hides the others.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use thiserror::Error;

use crate::component::{self, ComponentError};
use crate::context::Stepbox;
use crate::host::FlavorLogger;
use crate::instance::{GuestFailure, Prepared};
use crate::limits::Limits;
use stepbox_backends::exit;
use stepbox_store::store::{FlavorRecord, Provenance, StoreError};

/// Why a flavor operation failed.
#[derive(Debug, Error)]
pub enum FlavorError {
    #[error("no flavor named `{0}` is registered; `stepbox flavor list` shows the registered ones")]
    NotFound(String),
    #[error(
        "a different flavor named `{name}` is already registered (sha256 {existing}). Use `stepbox flavor register --replace {path}` to replace it, or `stepbox flavor delete {name}` first"
    )]
    AlreadyRegistered { name: String, existing: String, path: String },
    #[error(transparent)]
    Component(#[from] ComponentError),
    #[error("{path}: the flavor's metadata is not acceptable: {message}")]
    BadMetadata { path: String, message: String },
    #[error("{path}: {failure}")]
    Guest { path: String, failure: GuestFailure },
    #[error(
        "the flavor `{name}` is used by the step operators {users}; delete them first (`stepbox step-operator delete NAME`)"
    )]
    InUse { name: String, users: String },
    #[error(
        "the component file of flavor `{name}` is missing or unreadable ({path}); register the flavor again with `stepbox flavor register --replace PATH`"
    )]
    MissingFile { name: String, path: String },
    #[error(transparent)]
    Registry(#[from] stepbox_backends::wasm_oci::WasmOciError),
    /// A flavor from a registry without a signature by a key trusted for it.
    #[error("{reason}; nothing was registered. {}", untrusted_way_out(.reason, .repository))]
    Untrusted { reason: stepbox_backends::wasm_oci::signature::Unverified, repository: String },
    /// A signing key that cannot be used.
    #[error(transparent)]
    Key(#[from] stepbox_backends::wasm_oci::keys::KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Bad input the user can correct (a malformed option, a file that is not a flavor).
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Internal(String),
}

impl FlavorError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            FlavorError::Guest { .. } => exit::FLAVOR_ERROR,
            FlavorError::Registry(error) => error.exit_code(),
            FlavorError::Untrusted { .. } => exit::DENIED,
            FlavorError::Store(_) | FlavorError::Internal(_) => exit::INTERNAL,
            _ => exit::BAD_INPUT,
        }
    }
}

/// What to do about a flavor no trusted key vouches for.
fn untrusted_way_out(reason: &stepbox_backends::wasm_oci::signature::Unverified, repository: &str) -> String {
    use stepbox_backends::wasm_oci::signature::Unverified;
    let anyway = "or, to register it unverified (the flavor's record keeps that), add --allow-unsigned";
    match reason {
        Unverified::Unsigned { .. } => format!(
            "Its publisher signs it with `stepbox flavor sign {repository}@DIGEST --key KEY` (or `cosign sign --key KEY`); {anyway}"
        ),
        Unverified::UntrustedKey { .. } | Unverified::OtherScope { .. } => format!(
            "If you trust its publisher, trust their public key for it: `stepbox trust add NAME --key KEY.pub --scope {repository}` (`stepbox trust list` shows what is trusted); {anyway}"
        ),
        Unverified::OtherDigest { .. } | Unverified::BadPayload { .. } => format!(
            "The registry holds a signature that is not this artifact's: ask its publisher to sign this digest; {anyway}"
        ),
    }
}

/// Register the component at `path`. With `replace`, a flavor of the same
/// name gets a new version; registering the very same file again is a no-op.
pub async fn register(stepbox: &Stepbox, path: &Path, replace: bool) -> Result<FlavorRecord, FlavorError> {
    let (source, bytes) = file_source(path)?;
    register_bytes(stepbox, &source, bytes, replace).await
}

/// The component file at `path`, read, and where it came from.
pub fn file_source(path: &Path) -> Result<(Source, Vec<u8>), FlavorError> {
    let shown = path.display().to_string();
    let bytes = component::read_component_file(path)?;
    let source_path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let label = path.file_name().map_or(shown.clone(), |name| name.to_string_lossy().into_owned());
    let source = Source { shown, label, recorded: source_path.display().to_string(), provenance: Provenance::File };
    Ok((source, bytes))
}

/// Where a component being registered came from.
pub struct Source {
    /// How errors name it, as the user wrote it (a path, an `oci://` reference).
    pub shown: String,
    /// How its log lines are labelled (a file name).
    pub label: String,
    /// What the flavor record keeps: the canonical path, or the pinned
    /// `oci://…@sha256:…` reference.
    pub recorded: String,
    /// How its origin was checked.
    pub provenance: Provenance,
}

/// A component checked, compiled and asked who it is: a flavor version
/// ready to register, not registered yet.
pub struct Examined {
    /// What registering it records.
    pub record: FlavorRecord,
    /// The compiled component, to ask it things (`validate-config`).
    pub prepared: Prepared,
    bytes: Vec<u8>,
}

/// Check and compile `bytes`, a component from `source`, and read its
/// metadata: everything registering does but writing.
pub async fn examine(stepbox: &Stepbox, source: &Source, bytes: Vec<u8>) -> Result<Examined, FlavorError> {
    let shown = source.shown.clone();
    component::check_binary(&shown, &bytes)?;
    let sha256 = component::sha256_hex(&bytes);
    let cache = stepbox.cache().map_err(|e| FlavorError::Internal(format!("{e:#}")))?;
    let compiled = cache.compile(&shown, &sha256, &bytes)?;
    let engine = crate::engine::StepboxEngine::shared().map_err(|e| FlavorError::Internal(format!("{e:#}")))?;
    let shape = component::check_shape(&engine, &shown, &compiled)?;
    let prepared = Prepared::new(engine, compiled).map_err(|e| FlavorError::Internal(format!("{e:#}")))?;
    let logger = Arc::new(FlavorLogger::new(&source.label, None, &Limits::for_query()));
    let metadata =
        prepared.metadata(logger).await.map_err(|failure| FlavorError::Guest { path: shown.clone(), failure })?;
    let bad = |message: String| FlavorError::BadMetadata { path: shown.clone(), message };
    check_metadata_sizes(&metadata).map_err(bad)?;
    if !valid_name(&metadata.name) {
        return Err(bad(format!(
            "its name `{}` must be 1-63 lowercase letters, digits, `-` or `_`, starting with a letter",
            crate::display::visible(&metadata.name)
        )));
    }
    let config_schema = parse_schema(&metadata.config_schema).map_err(|m| bad(format!("config schema: {m}")))?;
    let settings_schema = parse_schema(&metadata.settings_schema).map_err(|m| bad(format!("settings schema: {m}")))?;
    let record = FlavorRecord {
        name: metadata.name,
        sha256,
        size: bytes.len() as u64,
        version: metadata.version,
        display_name: metadata.display_name,
        description: metadata.description,
        docs_url: metadata.docs_url,
        config_schema,
        settings_schema,
        shape,
        source_path: source.recorded.clone(),
        provenance: source.provenance.clone(),
        registered_at: stepbox_store::store::now(),
    };
    Ok(Examined { record, prepared, bytes })
}

/// Store an examined version and make it its flavor's current one; in the
/// same transaction, pin the step operators in `pins` (`None`: follow the
/// current version from now on).
pub fn install(
    stepbox: &Stepbox,
    examined: &Examined,
    pins: &[(String, Option<stepbox_store::store::FlavorPin>)],
) -> Result<(), FlavorError> {
    let blob = stepbox.home.flavor_blob(&examined.record.sha256);
    if !blob.is_file() {
        stepbox_backends::files::write_atomically(&blob, &examined.bytes)
            .map_err(|e| FlavorError::Internal(format!("cannot store {}: {e}", blob.display())))?;
    }
    stepbox.db.put_flavor_with(&examined.record, |tx| {
        for (operator, pin) in pins {
            stepbox_store::store::pin_in(tx, operator, pin.as_ref())?;
        }
        Ok(())
    })?;
    Ok(())
}

/// Check, compile and register `bytes`, a component from `source`. A new
/// version of a registered flavor needs `replace`, and is registered as
/// `stepbox flavor update --yes` would: the old version stays, and step
/// operators whose grants do not cover the new one stay on it.
pub async fn register_bytes(
    stepbox: &Stepbox,
    source: &Source,
    bytes: Vec<u8>,
    replace: bool,
) -> Result<FlavorRecord, FlavorError> {
    let examined = examine(stepbox, source, bytes).await?;
    register_examined(stepbox, examined, &source.shown, replace).await
}

/// Register a version [`examine`] checked (see [`register_bytes`]).
pub async fn register_examined(
    stepbox: &Stepbox,
    examined: Examined,
    shown: &str,
    replace: bool,
) -> Result<FlavorRecord, FlavorError> {
    match stepbox.db.flavor(&examined.record.name)? {
        Some(existing) if existing.sha256 != examined.record.sha256 => {
            if !replace {
                return Err(FlavorError::AlreadyRegistered {
                    name: examined.record.name,
                    existing: existing.sha256,
                    path: shown.to_owned(),
                });
            }
            let plan = crate::flavor_update::plan(stepbox, &existing, &examined).await?;
            crate::flavor_update::apply(stepbox, &plan, &examined)?;
        }
        _ => install(stepbox, &examined, &[])?,
    }
    Ok(examined.record)
}

fn valid_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Most bytes of one schema a flavor may declare.
pub const MAX_SCHEMA_BYTES: usize = 1 << 20;
/// Most bytes of one of the short metadata texts (name, version, display
/// name, description, docs URL).
pub const MAX_METADATA_TEXT_BYTES: usize = 16 << 10;

/// The flavor's metadata is stored and printed: each part is bounded, so a
/// 50 MB schema is refused at registration instead of stored (twice).
fn check_metadata_sizes(metadata: &crate::bindings::operator::FlavorMetadata) -> Result<(), String> {
    let schemas = [("config schema", &metadata.config_schema), ("settings schema", &metadata.settings_schema)];
    for (what, text) in schemas {
        if text.len() > MAX_SCHEMA_BYTES {
            return Err(format!(
                "its {what} is {} bytes; a schema may be at most {MAX_SCHEMA_BYTES} bytes (1 MiB)",
                text.len()
            ));
        }
    }
    let texts = [
        ("name", Some(&metadata.name)),
        ("version", Some(&metadata.version)),
        ("display name", Some(&metadata.display_name)),
        ("description", Some(&metadata.description)),
        ("docs URL", metadata.docs_url.as_ref()),
    ];
    for (what, text) in texts {
        if let Some(text) = text
            && text.len() > MAX_METADATA_TEXT_BYTES
        {
            return Err(format!(
                "its {what} is {} bytes; it may be at most {MAX_METADATA_TEXT_BYTES} bytes",
                text.len()
            ));
        }
    }
    Ok(())
}

fn parse_schema(text: &str) -> Result<serde_json::Value, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    match value {
        serde_json::Value::Object(_) | serde_json::Value::Bool(_) => Ok(value),
        _ => Err("a JSON Schema must be an object or a boolean".to_owned()),
    }
}

/// A flavor as listed, with the state of its component file.
#[derive(Debug, Serialize)]
pub struct FlavorListing {
    #[serde(flatten)]
    pub record: FlavorRecord,
    /// `ok`, or what is wrong with the component file.
    pub status: String,
    /// The step operators that run this version.
    pub used_by: Vec<String>,
    /// Its other registered versions, oldest first.
    pub versions: Vec<VersionListing>,
}

/// An older registered version of a flavor.
#[derive(Debug, Serialize)]
pub struct VersionListing {
    pub version: String,
    pub sha256: String,
    pub source_path: String,
    pub provenance: Provenance,
    pub registered_at: String,
    /// The capabilities it imports.
    pub capabilities: Vec<stepbox_store::capability::Capability>,
    /// `ok`, or what is wrong with its component file.
    pub status: String,
    /// The step operators pinned (or held) on it.
    pub used_by: Vec<String>,
}

/// Every registered flavor, each with its older versions. Unreadable
/// records come back as errors beside the good ones rather than failing
/// the listing.
pub fn list(stepbox: &Stepbox) -> Result<(Vec<FlavorListing>, Vec<String>), FlavorError> {
    let (records, mut broken) = stepbox.db.flavors()?;
    let (versions, broken_versions) = stepbox.db.flavor_versions(None)?;
    broken.extend(broken_versions);
    let operators = stepbox.db.step_operators()?;
    let listings = records.into_iter().map(|record| listing(stepbox, record, &versions, &operators)).collect();
    let broken = broken.into_iter().map(|(name, error)| format!("{name}: {error}")).collect();
    Ok((listings, broken))
}

fn listing(
    stepbox: &Stepbox,
    record: FlavorRecord,
    versions: &[FlavorRecord],
    operators: &[stepbox_store::store::StepOperatorRecord],
) -> FlavorListing {
    let runs = |sha256: &str, current: bool| -> Vec<String> {
        let on = |op: &&stepbox_store::store::StepOperatorRecord| match &op.pin {
            Some(pin) => pin.sha256 == sha256,
            None => current,
        };
        operators.iter().filter(|op| op.flavor == record.name).filter(on).map(|op| op.name.clone()).collect()
    };
    let older = versions
        .iter()
        .filter(|v| v.name == record.name && v.sha256 != record.sha256)
        .map(|v| VersionListing {
            version: v.version.clone(),
            sha256: v.sha256.clone(),
            source_path: v.source_path.clone(),
            provenance: v.provenance.clone(),
            registered_at: v.registered_at.clone(),
            capabilities: v.shape.capabilities.clone(),
            status: file_status(stepbox, v),
            used_by: runs(&v.sha256, false),
        })
        .collect();
    let status = file_status(stepbox, &record);
    let used_by = runs(&record.sha256, true);
    FlavorListing { record, status, used_by, versions: older }
}

fn file_status(stepbox: &Stepbox, record: &FlavorRecord) -> String {
    let blob = stepbox.home.flavor_blob(&record.sha256);
    match std::fs::metadata(&blob) {
        Ok(meta) if meta.len() == record.size => {
            match crate::component::check_artifacts(&stepbox.home.cache_dir(), &record.sha256) {
                Ok(()) => "ok".to_owned(),
                Err(damage) => format!("precompiled copy damaged ({damage}); the next launch compiles it again"),
            }
        }
        Ok(_) => "component file changed".to_owned(),
        Err(_) => "component file missing".to_owned(),
    }
}

/// One flavor by name, with its older versions.
pub fn get(stepbox: &Stepbox, name: &str) -> Result<FlavorListing, FlavorError> {
    let record = stepbox.db.flavor(name)?.ok_or_else(|| FlavorError::NotFound(name.to_owned()))?;
    let (versions, _) = stepbox.db.flavor_versions(Some(name))?;
    let operators = stepbox.db.step_operators()?;
    Ok(listing(stepbox, record, &versions, &operators))
}

/// Delete the older version of flavor `name` whose sha256 starts with
/// `prefix`. Refused for the current version and for one a step operator runs.
pub fn delete_version(stepbox: &Stepbox, name: &str, prefix: &str) -> Result<String, FlavorError> {
    let listing = get(stepbox, name)?;
    let wanted = prefix.strip_prefix("sha256:").unwrap_or(prefix).to_ascii_lowercase();
    if listing.record.sha256.starts_with(&wanted) && wanted.len() >= 8 {
        return Err(FlavorError::Input(format!(
            "sha256 {} is the current version of `{name}`; `stepbox flavor delete {name}` deletes the flavor",
            listing.record.sha256
        )));
    }
    let matching: Vec<&VersionListing> =
        listing.versions.iter().filter(|v| wanted.len() >= 8 && v.sha256.starts_with(&wanted)).collect();
    let [version] = matching.as_slice() else {
        let known: Vec<String> = listing
            .versions
            .iter()
            .map(|v| format!("{} ({})", &v.sha256[..12.min(v.sha256.len())], v.version))
            .collect();
        return Err(FlavorError::Input(format!(
            "--sha256 {prefix}: name one older version of `{name}` by its sha256 (8 or more hex digits); its older versions: {}",
            if known.is_empty() { "none".to_owned() } else { known.join(", ") }
        )));
    };
    if !version.used_by.is_empty() {
        return Err(FlavorError::InUse {
            name: format!("{name} (version sha256 {})", version.sha256),
            users: version.used_by.join(", "),
        });
    }
    stepbox.db.delete_flavor_version(name, &version.sha256)?;
    if stepbox.db.flavors_with_sha(&version.sha256)? == 0 {
        let _ = std::fs::remove_file(stepbox.home.flavor_blob(&version.sha256));
    }
    Ok(version.sha256.clone())
}

/// Delete a flavor. Refused while step operators use it.
pub fn delete(stepbox: &Stepbox, name: &str) -> Result<(), FlavorError> {
    let record = stepbox.db.flavor(name)?.ok_or_else(|| FlavorError::NotFound(name.to_owned()))?;
    let users = stepbox.db.step_operators_using(name)?;
    if !users.is_empty() {
        return Err(FlavorError::InUse { name: name.to_owned(), users: users.join(", ") });
    }
    let (versions, _) = stepbox.db.flavor_versions(Some(name))?;
    stepbox.db.delete_flavor(name)?;
    let shas = std::iter::once(record.sha256).chain(versions.into_iter().map(|version| version.sha256));
    for sha256 in shas {
        if stepbox.db.flavors_with_sha(&sha256)? == 0 {
            let _ = std::fs::remove_file(stepbox.home.flavor_blob(&sha256));
        }
    }
    Ok(())
}

/// The version of its flavor a step operator runs: the one it is pinned
/// to, or the flavor's current one.
pub fn for_operator(
    stepbox: &Stepbox,
    operator: &stepbox_store::store::StepOperatorRecord,
) -> Result<FlavorRecord, FlavorError> {
    match &operator.pin {
        None => Ok(get(stepbox, &operator.flavor)?.record),
        Some(pin) => stepbox.db.flavor_version(&operator.flavor, &pin.sha256)?.ok_or_else(|| {
            FlavorError::Input(format!(
                "step operator `{}` is pinned to version sha256 {} of the flavor `{}`, which is no longer registered; pin it to a registered one (`stepbox flavor list` shows them) with `stepbox step-operator update {} --pin SHA256`, or follow the current one with --unpin",
                operator.name, pin.sha256, operator.flavor, operator.name
            ))
        }),
    }
}

/// Load a registered flavor's component, ready to instantiate.
pub fn prepare(stepbox: &Stepbox, record: &FlavorRecord) -> Result<Prepared, FlavorError> {
    let blob = stepbox.home.flavor_blob(&record.sha256);
    if !blob.is_file() {
        return Err(FlavorError::MissingFile { name: record.name.clone(), path: blob.display().to_string() });
    }
    let cache = stepbox.cache().map_err(|e| FlavorError::Internal(format!("{e:#}")))?;
    let started = std::time::Instant::now();
    let component = cache.load(&blob, &record.sha256)?;
    tracing::debug!(micros = started.elapsed().as_micros() as u64, "loaded the precompiled flavor");
    let engine = crate::engine::StepboxEngine::shared().map_err(|e| FlavorError::Internal(format!("{e:#}")))?;
    Prepared::new(engine, component).map_err(|e| FlavorError::Internal(format!("{e:#}")))
}

#[cfg(test)]
mod tests {
    use super::{MAX_METADATA_TEXT_BYTES, MAX_SCHEMA_BYTES, check_metadata_sizes, valid_name};
    use crate::bindings::operator::FlavorMetadata;

    #[test]
    fn metadata_past_its_bounds_is_refused_naming_the_part() {
        let metadata = || FlavorMetadata {
            name: "big".into(),
            display_name: "Big".into(),
            version: "1.0.0".into(),
            description: "d".into(),
            docs_url: None,
            config_schema: "{}".into(),
            settings_schema: "{}".into(),
        };
        assert!(check_metadata_sizes(&metadata()).is_ok());
        let mut schema = metadata();
        schema.config_schema = format!("{{\"description\": \"{}\"}}", "x".repeat(MAX_SCHEMA_BYTES));
        let error = check_metadata_sizes(&schema).unwrap_err();
        assert!(error.contains("config schema") && error.contains("1 MiB"), "{error}");
        let mut settings = metadata();
        settings.settings_schema = " ".repeat(50 << 20);
        assert!(check_metadata_sizes(&settings).unwrap_err().contains("settings schema"));
        let mut description = metadata();
        description.description = "x".repeat(MAX_METADATA_TEXT_BYTES + 1);
        assert!(check_metadata_sizes(&description).unwrap_err().contains("description"));
    }

    #[test]
    fn flavor_names_are_lowercase_identifiers() {
        for name in ["local", "my-flavor", "sage_maker2"] {
            assert!(valid_name(name), "{name}");
        }
        for name in ["", "Local", "2fast", "a b", "ünï", &"x".repeat(64)] {
            assert!(!valid_name(name), "{name}");
        }
    }
}
