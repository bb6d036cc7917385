//! stepbox: a WebAssembly-sandboxed runtime for step-operator flavors.
//!
//! A flavor is a WebAssembly component implementing the `stepbox:operator`
//! contract (the SDK's `guest-sdk/wit/`). The runtime registers flavors,
//! configures step operators, and launches steps: it instantiates the flavor
//! with no ambient authority and a small set of capability-limited host
//! functions, and blocks until the step's jobs end.
//!
//! This crate is the `stepbox` command ([`cli`], [`scaffold`]) on top of
//! three crates whose arrows point one way, which it re-exports so that
//! `stepbox::policy::Grants` and the like name one thing wherever they are
//! used (see docs/ARCHITECTURE.md, "The crates"):
//!
//! - `stepbox-backends`: where jobs run and what they run in (no wasm);
//! - `stepbox-store`: capabilities, grants and policy, the state database;
//! - `stepbox-host`: wasmtime, the capabilities' host functions, launches.

pub mod cli;
pub mod scaffold;

pub use stepbox_backends::{
    backends, contained_panics, environments, exit, files, gpus, images, pause_points, processes, programs, secrets,
    source_files, timestamps, units, wasm_oci,
};
pub use stepbox_host::{
    CONTRACT_PACKAGE, CONTRACT_VERSION, bindings, builtin, component, conformance, context, contract, display, engine,
    flavor_update, flavors, follow, host, inspect, instance, launch, limits, oci_flavors, step_operators, supervisor,
    trust,
};
pub use stepbox_store::{capability, home, policy, shape, store, trust_scope};
