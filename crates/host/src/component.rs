//! Loading a `.wasm` file as a flavor: telling what it is, checking it
//! against the contract, and caching its precompiled form.
//!
//! Compiling a component is slow (milliseconds for Rust flavors, seconds for
//! Python and JavaScript), so registration compiles once and writes the
//! artifact to `$STEPBOX_HOME/cache/<wasm sha256>-<engine key>.sealed.cwasm`; every
//! later load reads it. A precompiled artifact is native code, so only files
//! this runtime wrote, in its own owner-only directory, are loaded, and only
//! after their bytes match the checksum sealed into them when they were written
//! ([`seal`]): a damaged copy (bit rot, a bad copy, a truncation while a
//! launch runs) would otherwise be executed, crash every launch of the flavor
//! the same way (SIGSEGV, SIGILL, SIGBUS) or, worse, run wrongly. A damaged
//! artifact is compiled again from the registered component.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use thiserror::Error;
use wasmtime::component::Component;

use crate::engine::StepboxEngine;
use crate::{CONTRACT_PACKAGE, CONTRACT_VERSION};
use stepbox_store::capability::Capability;
/// What a component imports and exports: the stored data this module checks and fills.
pub use stepbox_store::shape::ComponentShape;

/// The export every flavor must have.
pub fn operator_export() -> String {
    format!("{CONTRACT_PACKAGE}/operator@{CONTRACT_VERSION}")
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
        // `types` holds only types: importing it is no capability.
        if interface == "types" {
            return Ok(());
        }
        let capability = Capability::of_contract_interface(interface).ok_or_else(unknown)?;
        if import.calls_functions {
            shape.capabilities.push(capability);
        }
        return Ok(());
    }
    // Outgoing HTTP is the `http` capability: granted, and checked per request.
    if name.starts_with("wasi:http/") && name.contains("@0.2.") {
        if !shape.capabilities.contains(&Capability::Http) {
            shape.capabilities.push(Capability::Http);
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
        self.dir.join(format!("{sha256}-{}{SEALED_SUFFIX}", self.engine.compatibility_key()))
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
        let sealed = seal(compiled);
        stepbox_backends::files::write_atomically(&artifact, &sealed)
            .map_err(|source| ComponentError::Cache { path: artifact.clone(), source })?;
        // The unsealed artifact an earlier stepbox wrote is never read again.
        let _ = fs::remove_file(self.dir.join(format!("{sha256}-{}.cwasm", self.engine.compatibility_key())));
        let compiled =
            unseal(&sealed).map_err(|damage| ComponentError::Compile { path: path.to_owned(), message: damage })?;
        // SAFETY: `compiled` was produced by this engine a moment ago.
        unsafe { Component::deserialize(self.engine.engine(), compiled) }
            .map_err(|error| ComponentError::Compile { path: path.to_owned(), message: format!("{error:#}") })
    }

    /// Load the component whose source is the blob at `blob` with `sha256`:
    /// from the cache when this engine compiled it before and the artifact is
    /// intact, otherwise compile it again (after checking the blob still has
    /// the expected hash).
    pub fn load(&self, blob: &Path, sha256: &str) -> Result<Component, ComponentError> {
        let artifact = self.artifact(sha256);
        match read_sealed(&artifact) {
            Ok(Some(sealed)) => match unseal(&sealed) {
                // SAFETY: the cache directory is private to this user and holds only artifacts this
                // runtime wrote with `precompile_component`, and these bytes are the ones it wrote (the
                // digest matched); they are in memory, so nothing done to the file now can reach them.
                // wasmtime additionally checks the engine compatibility header.
                Ok(compiled) => match unsafe { Component::deserialize(self.engine.engine(), compiled) } {
                    Ok(component) => return Ok(component),
                    Err(error) => {
                        tracing::warn!("ignoring unusable cached artifact {}: {error:#}", artifact.display());
                    }
                },
                Err(damage) => tracing::warn!(
                    "the precompiled copy {} is damaged ({damage}); compiling the flavor again",
                    artifact.display()
                ),
            },
            Ok(None) => {}
            Err(error) => tracing::warn!("cannot read the precompiled copy {}: {error}", artifact.display()),
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

/// How a sealed artifact's file name ends (earlier stepboxes wrote `.cwasm`
/// files without a seal; they are not read).
const SEALED_SUFFIX: &str = ".sealed.cwasm";

/// What ends every cached artifact: a checksum of the bytes before it, then
/// this tag. A file without it (written by an earlier stepbox, or cut short)
/// is not loaded.
///
/// The checksum is xxh3-128, not a cryptographic digest: it guards against
/// accidental damage (bit rot, a bad copy, a truncation), which is all it can
/// guard against, since whoever can write the owner-only cache directory can
/// write a matching digest too. It runs on every launch over artifacts of up
/// to ~40 MB (Python flavors), where sha256 cost 15 times as much
/// (docs/PERFORMANCE.md, "Compile once").
const SEAL_TAG: &[u8; 8] = b"stpbxsl2";
/// The length of the checksum.
const CHECKSUM_LEN: usize = 16;
/// The length of the seal: the checksum and the tag.
const SEAL_LEN: usize = CHECKSUM_LEN + SEAL_TAG.len();

/// The seal's checksum of `body`.
fn checksum(body: &[u8]) -> [u8; CHECKSUM_LEN] {
    xxhash_rust::xxh3::xxh3_128(body).to_le_bytes()
}

/// `compiled` with its seal appended.
pub fn seal(mut compiled: Vec<u8>) -> Vec<u8> {
    let checksum = checksum(&compiled);
    compiled.extend_from_slice(&checksum);
    compiled.extend_from_slice(SEAL_TAG);
    compiled
}

/// The artifact inside `sealed`, if its seal is there and its checksum matches.
pub fn unseal(sealed: &[u8]) -> Result<&[u8], String> {
    let Some(body_len) = sealed.len().checked_sub(SEAL_LEN) else {
        return Err(format!("{} bytes, shorter than its seal", sealed.len()));
    };
    let (body, seal) = sealed.split_at(body_len);
    let (sealed_checksum, tag) = seal.split_at(CHECKSUM_LEN);
    if tag != SEAL_TAG {
        return Err("no seal at its end: cut short, or written by an earlier stepbox".to_owned());
    }
    if checksum(body) != sealed_checksum {
        return Err("its bytes do not match the checksum sealed into it when it was written".to_owned());
    }
    Ok(body)
}

/// The bytes of the artifact at `path`, or `None` if there is none. An
/// artifact is never larger than this (a 256 MiB component compiles to less).
fn read_sealed(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    const MAX_ARTIFACT_BYTES: u64 = 2 << 30;
    let file = match fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let meta = file.metadata()?;
    if !meta.is_file() || meta.len() > MAX_ARTIFACT_BYTES {
        return Err(std::io::Error::other("not a regular file of a plausible size"));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_ARTIFACT_BYTES).read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// Whether the precompiled copies of the component `sha256` in `dir` (one
/// per engine that compiled it) are intact: `Err` names the first damaged one.
pub fn check_artifacts(dir: &Path, sha256: &str) -> Result<(), String> {
    let prefix = format!("{sha256}-");
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !(name.starts_with(&prefix) && name.ends_with(SEALED_SUFFIX)) {
            continue;
        }
        let checked = match read_sealed(&entry.path()) {
            Ok(Some(sealed)) => unseal(&sealed).map(drop),
            Ok(None) => Ok(()),
            Err(error) => Err(error.to_string()),
        };
        checked.map_err(|damage| format!("{name}: {damage}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_artifact_opens_only_while_every_byte_is_as_written() {
        let sealed = seal(b"native code".to_vec());
        assert_eq!(unseal(&sealed), Ok(&b"native code"[..]));
        for flipped in [0, 5, sealed.len() - SEAL_LEN, sealed.len() - 1] {
            let mut damaged = sealed.clone();
            damaged[flipped] ^= 0x40;
            assert!(unseal(&damaged).is_err(), "a flipped bit at {flipped} is found");
        }
        assert!(unseal(&sealed[..sealed.len() - 1]).is_err(), "cut short");
        assert!(unseal(&sealed[..10]).is_err(), "shorter than a seal");
        assert!(unseal(b"").is_err());
        assert!(unseal(b"an artifact from before seals existed, long enough to hold one").is_err());
    }

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
        assert_eq!(
            shape.capabilities,
            [Capability::Cancellation, Capability::Jobs, Capability::Log],
            "images is imported for its types only"
        );
        let future = check_names("new.wasm", &["stepbox:operator/operator@0.3.0".to_owned()], &[]).unwrap_err();
        assert!(future.to_string().contains("built against contract stepbox:operator@0.3.0"), "{future}");
    }
}
