//! Loading a `.wasm` file as a flavor: telling what it is, checking it
//! against the contract, and caching its precompiled form.
//!
//! Compiling a component is slow (milliseconds for Rust flavors, seconds for
//! Python and JavaScript), so registration compiles once and writes the
//! artifact to `$STEPBOX_HOME/cache/<wasm sha256>-<engine key>.cwasm`; every
//! later load memory-maps it. A precompiled artifact is native code, so only
//! files this runtime wrote, in its own owner-only directory, are loaded.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use thiserror::Error;
use wasmtime::component::Component;

use crate::engine::StepboxEngine;
use crate::{CONTRACT_PACKAGE, CONTRACT_VERSION};

/// The export every flavor must have.
pub fn operator_export() -> String {
    format!("{CONTRACT_PACKAGE}/operator@{CONTRACT_VERSION}")
}

/// The capability interfaces this runtime provides, by WIT interface name.
pub const CAPABILITIES: &[&str] = &["log", "cancellation", "jobs", "requirements", "images", "types"];

/// Capabilities every flavor has without a grant: they only inform.
pub const ALWAYS_GRANTED: &[&str] = &["log", "cancellation"];

/// Whether a step operator must grant `capability` for a flavor importing it.
pub fn needs_grant(capability: &str) -> bool {
    !ALWAYS_GRANTED.contains(&capability)
}

/// Whether a flavor built against contract `version` runs on this host: the
/// same 0.MINOR (or MAJOR) series, at a patch level this host has reached.
/// Within a series, releases only add interfaces and functions.
pub fn compatible_contract(version: &str) -> bool {
    let parse = |text: &str| -> Option<(u64, u64, u64)> {
        let mut parts = text.split('.').map(|part| part.parse::<u64>().ok());
        let parsed = (parts.next()??, parts.next()??, parts.next()??);
        parts.next().is_none().then_some(parsed)
    };
    match (parse(version), parse(CONTRACT_VERSION)) {
        (Some((major, minor, patch)), Some((our_major, our_minor, our_patch))) => {
            let same_series = if our_major == 0 { major == 0 && minor == our_minor } else { major == our_major };
            same_series && (minor, patch) <= (our_minor, our_patch)
        }
        _ => false,
    }
}

/// Why a file cannot be used as a flavor.
#[derive(Debug, Error)]
pub enum ComponentError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a regular file (a device, a pipe or a directory): name the .wasm file itself")]
    NotAFile { path: PathBuf },
    #[error(
        "{path} is {size} bytes, over the {MAX_COMPONENT_BYTES}-byte limit for a flavor component: is it the right file?"
    )]
    TooLarge { path: PathBuf, size: u64 },
    #[error("{0} is not a WebAssembly file (it does not start with the `\\0asm` magic bytes)")]
    NotWasm(String),
    #[error(
        "{0} is a core WebAssembly module, not a component. Flavors are components: build for the `wasm32-wasip2` target (cargo build --target wasm32-wasip2), or wrap a module with `wasm-tools component new`"
    )]
    CoreModule(String),
    #[error("{path} is not valid WebAssembly: {message}")]
    Invalid { path: String, message: String },
    #[error(
        "{path} was built against contract {found}, but this stepbox implements {CONTRACT_PACKAGE}@{CONTRACT_VERSION}. Rebuild the flavor against {CONTRACT_PACKAGE}@{CONTRACT_VERSION} (stepbox-guest {CONTRACT_VERSION}), or use a stepbox that supports {found}"
    )]
    ContractVersion { path: String, found: String },
    #[error(
        "{path} is a component of another world: it exports [{exports}] but not `{expected}`. A flavor must implement the `flavor` world of {CONTRACT_PACKAGE}@{CONTRACT_VERSION}",
        expected = operator_export()
    )]
    NotAFlavor { path: String, exports: String },
    #[error(
        "{path} imports `{import}`, which stepbox does not provide. A flavor may import the {CONTRACT_PACKAGE}@{CONTRACT_VERSION} capabilities (log, cancellation, jobs, requirements, images), WASI 0.2 interfaces, and wasi:http (the `http` capability)"
    )]
    UnknownImport { path: String, import: String },
    #[error("cannot compile {path}: {message}")]
    Compile { path: String, message: String },
    #[error("cannot write the compiled component to {path}: {source}")]
    Cache { path: PathBuf, source: std::io::Error },
}

/// The largest component file stepbox reads (a Python flavor with its
/// interpreter is about 40 MB): checked before reading, so `/dev/zero` or a
/// multi-gigabyte file is refused at once instead of filling memory.
pub const MAX_COMPONENT_BYTES: u64 = 256 << 20;

/// The bytes of the component file at `path`: a regular file of at most
/// [`MAX_COMPONENT_BYTES`], refused before anything is read otherwise.
pub fn read_component_file(path: &Path) -> Result<Vec<u8>, ComponentError> {
    use std::io::Read;
    let read_error = |source| ComponentError::Read { path: path.to_owned(), source };
    let file = fs::File::open(path).map_err(read_error)?;
    let metadata = file.metadata().map_err(read_error)?;
    if !metadata.is_file() {
        return Err(ComponentError::NotAFile { path: path.to_owned() });
    }
    if metadata.len() > MAX_COMPONENT_BYTES {
        return Err(ComponentError::TooLarge { path: path.to_owned(), size: metadata.len() });
    }
    // The file may grow while it is read: never take more than the bound.
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    file.take(MAX_COMPONENT_BYTES + 1).read_to_end(&mut bytes).map_err(read_error)?;
    if bytes.len() as u64 > MAX_COMPONENT_BYTES {
        return Err(ComponentError::TooLarge { path: path.to_owned(), size: bytes.len() as u64 });
    }
    Ok(bytes)
}

/// The sha256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What a component imports and exports, sorted into what matters to a user.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ComponentShape {
    /// The stepbox capabilities it imports, by interface name (`jobs`, `log`, …).
    pub capabilities: Vec<String>,
    /// The WASI interfaces it imports, with versions.
    pub wasi: Vec<String>,
    /// Everything it exports.
    pub exports: Vec<String>,
}

/// Refuse anything that is not a component, before compiling it.
pub fn check_binary(path: &str, bytes: &[u8]) -> Result<(), ComponentError> {
    if !bytes.starts_with(b"\0asm") {
        return Err(ComponentError::NotWasm(path.to_owned()));
    }
    if wasmparser::Parser::is_core_wasm(bytes) {
        return Err(ComponentError::CoreModule(path.to_owned()));
    }
    if !wasmparser::Parser::is_component(bytes) {
        return Err(ComponentError::Invalid {
            path: path.to_owned(),
            message: "unknown WebAssembly version or layer".to_owned(),
        });
    }
    Ok(())
}

/// Check a compiled component against the contract and describe it.
pub fn check_shape(
    engine: &StepboxEngine,
    path: &str,
    component: &Component,
) -> Result<ComponentShape, ComponentError> {
    let engine = engine.engine();
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(name, _)| name.to_owned()).collect();
    let mut imports = Vec::new();
    for (name, item) in ty.imports(engine) {
        use wasmtime::component::types::ComponentItem;
        let calls_functions = match item.ty {
            ComponentItem::ComponentInstance(instance) => {
                instance.exports(engine).any(|(_, item)| matches!(item.ty, ComponentItem::ComponentFunc(_)))
            }
            _ => true,
        };
        imports.push(Import { name: name.to_owned(), calls_functions });
    }
    check_names(path, &exports, &imports)
}

/// One of a component's imports.
#[derive(Debug, Clone)]
pub struct Import {
    pub name: String,
    /// Whether it imports any function. An interface imported only for its
    /// types (a flavor naming `jobs.job-state` in its report, say) is no
    /// capability: nothing in it can be called.
    pub calls_functions: bool,
}

/// Check a component's top-level export and import names against the
/// contract, and sort its imports into capabilities and WASI interfaces.
pub fn check_names(path: &str, exports: &[String], imports: &[Import]) -> Result<ComponentShape, ComponentError> {
    let prefix = format!("{CONTRACT_PACKAGE}/operator@");
    match exports.iter().find_map(|name| name.strip_prefix(&prefix)) {
        Some(version) if compatible_contract(version) => {}
        Some(other) => {
            return Err(ComponentError::ContractVersion {
                path: path.to_owned(),
                found: format!("{CONTRACT_PACKAGE}@{other}"),
            });
        }
        None => return Err(ComponentError::NotAFlavor { path: path.to_owned(), exports: exports.join(", ") }),
    }
    let mut shape = ComponentShape { exports: exports.to_vec(), ..ComponentShape::default() };
    for import in imports {
        classify_import(path, import, &mut shape)?;
    }
    shape.capabilities.sort();
    shape.wasi.sort();
    Ok(shape)
}

fn classify_import(path: &str, import: &Import, shape: &mut ComponentShape) -> Result<(), ComponentError> {
    let name = import.name.as_str();
    let unknown = || ComponentError::UnknownImport { path: path.to_owned(), import: name.to_owned() };
    if let Some(rest) = name.strip_prefix(&format!("{CONTRACT_PACKAGE}/")) {
        let (interface, version) = rest.split_once('@').ok_or_else(unknown)?;
        if !compatible_contract(version) {
            return Err(ComponentError::ContractVersion {
                path: path.to_owned(),
                found: format!("{CONTRACT_PACKAGE}@{version}"),
            });
        }
        if !CAPABILITIES.contains(&interface) {
            return Err(unknown());
        }
        if interface != "types" && import.calls_functions {
            shape.capabilities.push(interface.to_owned());
        }
        return Ok(());
    }
    // Outgoing HTTP is the `http` capability: granted, and checked per request.
    if name.starts_with("wasi:http/") && name.contains("@0.2.") {
        if !shape.capabilities.iter().any(|c| c == "http") {
            shape.capabilities.push("http".to_owned());
        }
        shape.wasi.push(name.to_owned());
        return Ok(());
    }
    if name.starts_with("wasi:") && name.contains("@0.2.") {
        shape.wasi.push(name.to_owned());
        return Ok(());
    }
    Err(unknown())
}

/// Compiles components and keeps their precompiled artifacts.
pub struct ComponentCache {
    engine: StepboxEngine,
    dir: PathBuf,
}

impl ComponentCache {
    /// A cache in `dir`, which must be private to this user.
    pub fn new(engine: StepboxEngine, dir: PathBuf) -> Self {
        Self { engine, dir }
    }

    fn artifact(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine.compatibility_key()))
    }

    /// Compile `bytes` (whose sha256 is `sha256`), write the artifact, and
    /// return the component. Compiles once: the artifact is what is loaded.
    pub fn compile(&self, path: &str, sha256: &str, bytes: &[u8]) -> Result<Component, ComponentError> {
        let compiled = self
            .engine
            .engine()
            .precompile_component(bytes)
            .map_err(|error| ComponentError::Compile { path: path.to_owned(), message: format!("{error:#}") })?;
        let artifact = self.artifact(sha256);
        write_atomically(&artifact, &compiled)
            .map_err(|source| ComponentError::Cache { path: artifact.clone(), source })?;
        // SAFETY: `compiled` was produced by this engine a moment ago.
        unsafe { Component::deserialize(self.engine.engine(), &compiled) }
            .map_err(|error| ComponentError::Compile { path: path.to_owned(), message: format!("{error:#}") })
    }

    /// Load the component whose source is the blob at `blob` with `sha256`:
    /// from the cache when this engine compiled it before, otherwise compile
    /// it again (after checking the blob still has the expected hash).
    pub fn load(&self, blob: &Path, sha256: &str) -> Result<Component, ComponentError> {
        let artifact = self.artifact(sha256);
        if artifact.is_file() {
            // SAFETY: the cache directory is private to this user and holds
            // only artifacts this runtime wrote with `precompile_component`;
            // wasmtime additionally checks the engine compatibility header.
            match unsafe { Component::deserialize_file(self.engine.engine(), &artifact) } {
                Ok(component) => return Ok(component),
                Err(error) => {
                    tracing::warn!("ignoring unusable cached artifact {}: {error:#}", artifact.display());
                }
            }
        }
        let display = blob.display().to_string();
        let bytes = fs::read(blob).map_err(|source| ComponentError::Read { path: blob.to_owned(), source })?;
        let actual = sha256_hex(&bytes);
        if actual != sha256 {
            return Err(ComponentError::Invalid {
                path: display,
                message: format!(
                    "its sha256 is {actual}, but {sha256} was registered; the file was changed after registration. Register the flavor again"
                ),
            });
        }
        self.compile(&display, sha256, &bytes)
    }
}

/// Write `bytes` to `path` through a temporary file and a rename, so readers
/// never see half a file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|error| error.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavors_of_the_same_contract_series_are_accepted_up_to_this_patch() {
        assert_eq!(CONTRACT_VERSION, "0.2.1", "update this table with the contract");
        for (version, accepted) in [
            ("0.2.0", true),
            ("0.2.1", true),
            ("0.2.2", false), // may import what this host lacks
            ("0.3.0", false),
            ("0.1.9", false),
            ("1.2.1", false),
            ("0.2", false),
            ("0.2.1-rc1", false),
        ] {
            assert_eq!(compatible_contract(version), accepted, "{version}");
        }
    }

    #[test]
    fn a_flavor_built_against_an_earlier_patch_keeps_its_capabilities() {
        let exports = ["stepbox:operator/operator@0.2.0".to_owned()];
        let import = |name: &str, calls_functions| Import { name: name.to_owned(), calls_functions };
        let imports = [
            import("stepbox:operator/log@0.2.0", true),
            import("stepbox:operator/jobs@0.2.0", true),
            import("stepbox:operator/cancellation@0.2.1", true),
            import("stepbox:operator/images@0.2.1", false),
        ];
        let shape = check_names("old.wasm", &exports, &imports).expect("accepted");
        assert_eq!(shape.capabilities, ["cancellation", "jobs", "log"], "images is imported for its types only");
        let future = check_names("new.wasm", &["stepbox:operator/operator@0.3.0".to_owned()], &[]).unwrap_err();
        assert!(future.to_string().contains("built against contract stepbox:operator@0.3.0"), "{future}");
    }
}
