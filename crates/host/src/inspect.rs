//! `stepbox flavor inspect`: what a `.wasm` file is and what it asks for,
//! read from its binary without compiling or running anything, so it is safe
//! and fast on any file, including an 18 MB Python flavor.

use serde::Serialize;
use wasmparser::component_types::ComponentEntityType;
use wasmparser::{Parser, Payload};

use crate::component::{self, ComponentError};

/// WASI interfaces every guest language's standard library imports; they
/// give a flavor nothing beyond what the sandbox already allows (empty
/// environment, captured output, clocks, randomness).
const MINIMAL_WASI: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
];

/// What stepbox does with a WASI interface beyond the minimal set.
fn beyond_minimal_note(interface: &str) -> &'static str {
    if interface.starts_with("wasi:filesystem/") {
        "no directory is preopened: the flavor sees no files"
    } else if interface.starts_with("wasi:sockets/") {
        "every network operation is refused"
    } else if interface.starts_with("wasi:http/") {
        "outgoing HTTP, only to the origins the step operator is granted (--grant http-origin=ORIGIN), checked and audited by the host"
    } else {
        "provided by WASI 0.2 without extra authority"
    }
}

/// A WASI import outside the minimal set, and what it means here.
#[derive(Debug, Clone, Serialize)]
pub struct WasiImport {
    pub interface: String,
    pub note: &'static str,
}

/// Everything `flavor inspect` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub path: String,
    pub size: u64,
    pub sha256: String,
    /// `component`, `core module` or `not WebAssembly`.
    pub kind: &'static str,
    /// The contract version it implements, when it exports one.
    pub contract: Option<String>,
    pub exports: Vec<String>,
    /// Everything it imports, by top-level name, with versions.
    pub imports: Vec<String>,
    /// The stepbox capabilities it imports (`log` is always granted).
    pub capabilities: Vec<stepbox_store::capability::Capability>,
    pub wasi_minimal: Vec<String>,
    pub wasi_beyond_minimal: Vec<WasiImport>,
    /// Why it cannot be registered, if it cannot.
    pub problem: Option<String>,
}

impl Inspection {
    /// Whether `stepbox flavor register` would accept it (metadata aside).
    pub fn is_flavor(&self) -> bool {
        self.problem.is_none()
    }
}

/// Inspect the bytes of the file at `path`.
pub fn inspect(path: &str, bytes: &[u8]) -> Inspection {
    let mut inspection = Inspection {
        path: path.to_owned(),
        size: bytes.len() as u64,
        sha256: component::sha256_hex(bytes),
        kind: "component",
        contract: None,
        exports: Vec::new(),
        imports: Vec::new(),
        capabilities: Vec::new(),
        wasi_minimal: Vec::new(),
        wasi_beyond_minimal: Vec::new(),
        problem: None,
    };
    if let Err(error) = component::check_binary(path, bytes) {
        inspection.kind = match error {
            ComponentError::NotWasm(_) => "not WebAssembly",
            ComponentError::CoreModule(_) => "core module",
            _ => "unknown WebAssembly",
        };
        inspection.problem = Some(error.to_string());
        return inspection;
    }
    let (exports, imports) = match top_level_names(bytes) {
        Ok(names) => names,
        Err(message) => {
            inspection.problem = Some(format!("{path} is not valid WebAssembly: {message}"));
            return inspection;
        }
    };
    let prefix = format!("{}/operator@", crate::CONTRACT_PACKAGE);
    inspection.contract =
        exports.iter().find_map(|name| name.strip_prefix(&prefix)).map(|v| format!("{}@{v}", crate::CONTRACT_PACKAGE));
    inspection.exports = exports.clone();
    inspection.imports = imports.clone();
    for name in &imports {
        if name.starts_with("wasi:") {
            let interface = name.split('@').next().unwrap_or(name);
            if MINIMAL_WASI.contains(&interface) {
                inspection.wasi_minimal.push(name.clone());
            } else {
                inspection
                    .wasi_beyond_minimal
                    .push(WasiImport { interface: name.clone(), note: beyond_minimal_note(name) });
            }
        }
    }
    let imports = match imports_with_functions(bytes, &imports) {
        Ok(imports) => imports,
        Err(message) => {
            inspection.problem = Some(format!("{path} is not valid WebAssembly: {message}"));
            return inspection;
        }
    };
    match component::check_names(path, &exports, &imports) {
        Ok(shape) => inspection.capabilities = shape.capabilities,
        Err(error) => inspection.problem = Some(error.to_string()),
    }
    inspection
}

/// Validate the component and tell, for each import, whether it imports any
/// function (an interface imported for its types only is no capability).
fn imports_with_functions(bytes: &[u8], names: &[String]) -> Result<Vec<component::Import>, String> {
    let types = wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(bytes)
        .map_err(|e| e.to_string())?;
    Ok(names
        .iter()
        .map(|name| {
            let calls_functions = match types.component_item_for_import(name).map(|item| &item.ty) {
                Some(ComponentEntityType::Instance(id)) => {
                    types[*id].exports.values().any(|item| matches!(item.ty, ComponentEntityType::Func(_)))
                }
                _ => true,
            };
            component::Import { name: name.clone(), calls_functions }
        })
        .collect())
}

/// The component's own (top-level) export and import names.
fn top_level_names(bytes: &[u8]) -> Result<(Vec<String>, Vec<String>), String> {
    let mut exports = Vec::new();
    let mut imports = Vec::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| e.to_string())? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) if depth == 0 => break,
            Payload::End(_) => depth -= 1,
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    imports.push(import.map_err(|e| e.to_string())?.name.name.to_owned());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    exports.push(export.map_err(|e| e.to_string())?.name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    Ok((exports, imports))
}
