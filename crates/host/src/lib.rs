//! stepbox-host: the WebAssembly host. It loads and checks flavor
//! components, instantiates them with capability-limited host functions
//! (one module per capability under [`host`]), and runs the operations the
//! CLI offers: registering flavors and step operators, launching steps,
//! supervising detached runs (see docs/ARCHITECTURE.md, "The crates").
//!
//! - [`contract`]: the contract's WIT and version (the SDK's own file);
//!   [`bindings`]: the host bindings generated from it;
//! - [`engine`], [`limits`], [`component`], [`instance`], [`inspect`]:
//!   wasmtime, limits, loading and checking components and the
//!   precompiled-component cache, one fresh store per call;
//! - [`host`]: the WIT imports, one module per capability;
//! - [`context`], [`flavors`], [`oci_flavors`], [`trust`], [`step_operators`],
//!   [`launch`], [`conformance`]: the operations;
//! - [`supervisor`], [`follow`]: detached runs, and following them from
//!   another process; [`display`]: text from outside, made safe to print.

pub mod bindings;
pub mod builtin;
pub mod component;
pub mod conformance;
pub mod context;
pub mod contract;
pub mod display;
pub mod engine;
pub mod flavor_update;
pub mod flavors;
pub mod follow;
pub mod host;
pub mod inspect;
pub mod instance;
pub mod launch;
pub mod limits;
pub mod oci_flavors;
pub mod step_operators;
pub mod supervisor;
pub mod trust;

/// The contract version this runtime implements (the SDK's, see [`contract`]).
pub const CONTRACT_VERSION: &str = contract::VERSION;
/// The contract's WIT package name.
pub const CONTRACT_PACKAGE: &str = contract::PACKAGE;
