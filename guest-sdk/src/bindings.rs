//! Bindings generated from the stepbox contract this SDK targets: the newest
//! of its versioned copies, `wit/since_v0.2.1/operator.wit`. The contract
//! ships inside this crate (`cargo package` includes `wit/`), so the SDK
//! builds from crates.io alone.
//!
//! Flavor authors rarely need these directly: the crate root re-exports the
//! types a flavor works with.

wit_bindgen::generate!({
    path: "wit/since_v0.2.1",
    world: "flavor",
    pub_export_macro: true,
    export_macro_name: "export",
    default_bindings_module: "stepbox_guest::bindings",
});
