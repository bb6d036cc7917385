//! stepbox: a WebAssembly-sandboxed runtime for step-operator flavors.
//!
//! A flavor is a WebAssembly component implementing the
//! `stepbox:operator` contract ([`contract`]: the SDK's `guest-sdk/wit/`). The runtime
//! registers flavors, configures step operators, and launches steps: it
//! instantiates the flavor with no ambient authority and a small set of
//! capability-limited host functions, and blocks until the step's jobs end.
//!
//! The modules, from the bottom up:
//! - [`home`]: where state lives (`$STEPBOX_HOME`); [`files`]: writing a file whole or not at all;
//! - [`store`]: the SQLite state database;
//! - [`engine`], [`limits`], [`component`]: wasmtime, limits, loading and
//!   checking components, the precompiled-component cache;
//! - [`backends`]: where jobs run (knows nothing of wasm);
//! - [`host`]: the WIT imports, one module per capability;
//! - [`policy`]: what one step operator's flavor may do;
//! - [`secrets`]: named credentials the host applies for a flavor;
//! - [`flavors`], [`step_operators`], [`launch`]: the operations the CLI offers;
//! - [`supervisor`], [`follow`]: detached runs, and following them from another process;
//!   [`processes`]: proving a process is stepbox's before signalling it;
//! - [`cli`]: the `stepbox` command.

pub mod backends;
pub mod bindings;
pub mod capability;
pub mod cli;
pub mod component;
pub mod conformance;
pub mod contained_panics;
pub mod context;
#[path = "../../guest-sdk/src/contract.rs"]
pub mod contract;
pub mod display;
pub mod engine;
pub mod environments;
pub mod exit;
pub mod files;
pub mod flavors;
pub mod follow;
pub mod home;
pub mod host;
pub mod images;
pub mod inspect;
pub mod instance;
pub mod launch;
pub mod limits;
pub mod pause_points;
pub mod policy;
pub mod processes;
pub mod programs;
pub mod scaffold;
pub mod secrets;
pub mod source_files;
pub mod step_operators;
pub mod store;
pub mod supervisor;
pub mod units;

/// The contract version this runtime implements (the SDK's, see [`contract`]).
pub const CONTRACT_VERSION: &str = contract::VERSION;
/// The contract's WIT package name.
pub const CONTRACT_PACKAGE: &str = contract::PACKAGE;
