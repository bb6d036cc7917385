//! Bindings generated from the stepbox contract (`wit/operator.wit`).
//!
//! Flavor authors rarely need these directly: the crate root re-exports the
//! types a flavor works with.

wit_bindgen::generate!({
    path: "../wit",
    world: "flavor",
    pub_export_macro: true,
    export_macro_name: "export",
    default_bindings_module: "stepbox_guest::bindings",
});
