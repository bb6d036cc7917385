//! What a flavor's component imports and exports, as checked when it was
//! registered and stored with it: the data, without the checker (which
//! needs wasmtime and lives in `stepbox-host`'s `component`).

use crate::capability::Capability;

/// What a component imports and exports, sorted into what matters to a user.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ComponentShape {
    /// The stepbox capabilities it imports (stored by name: `jobs`, `log`, …), sorted by name.
    pub capabilities: Vec<Capability>,
    /// The WASI interfaces it imports, with versions.
    pub wasi: Vec<String>,
    /// Everything it exports.
    pub exports: Vec<String>,
}
