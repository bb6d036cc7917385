//! Write stepbox step-operator flavors in Rust.
//!
//! A flavor is a WebAssembly component that the stepbox runtime runs in a
//! sandbox. With this crate a flavor is one type that implements [`Flavor`]
//! and one call to [`export_flavor!`]; build it with
//! `cargo build --target wasm32-wasip2 --release` and register the `.wasm`
//! with `stepbox flavor register`.
//!
//! ```no_run
//! use serde::Deserialize;
//! use stepbox_guest::{schemars::JsonSchema, ConfigError, Flavor, FlavorInfo, LaunchError,
//!                     LaunchReport, LaunchRequest, NoSettings};
//!
//! /// How this flavor is configured when a step operator is registered.
//! #[derive(Deserialize, JsonSchema)]
//! #[serde(deny_unknown_fields)]
//! struct Config {
//!     /// Cancel the step after this many seconds.
//!     timeout_seconds: Option<u64>,
//! }
//!
//! struct Local;
//!
//! impl Flavor for Local {
//!     type Config = Config;
//!     type Settings = NoSettings;
//!
//!     fn info() -> FlavorInfo {
//!         FlavorInfo::new("my-local", "My local flavor", env!("CARGO_PKG_VERSION"))
//!             .description("Runs the step on this machine.")
//!     }
//!
//!     fn validate(config: &Config) -> Result<(), ConfigError> {
//!         match config.timeout_seconds {
//!             Some(0) => Err(ConfigError::field("timeout_seconds", "must be at least 1")),
//!             _ => Ok(()),
//!         }
//!     }
//!
//!     fn launch(config: Config, _: NoSettings, request: LaunchRequest)
//!         -> Result<LaunchReport, LaunchError> {
//!         let mut spec = stepbox_guest::jobs::entrypoint_spec(&request);
//!         spec.timeout_seconds = config.timeout_seconds;
//!         stepbox_guest::jobs::run_to_completion(spec)
//!     }
//! }
//!
//! stepbox_guest::export_flavor!(Local);
//! ```

pub mod bindings;
pub mod cancellation;
pub mod contract;
mod errors;
mod flavor;
#[cfg(feature = "http")]
pub mod http;
pub mod images;
pub mod jobs;
pub mod log;
pub mod remote;
pub mod requirements;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use bindings::exports::stepbox::operator::operator::{ConfigError, LaunchError, LaunchReport, LaunchRequest};
pub use bindings::stepbox::operator::jobs::{JobSpec, JobState, JobStatus, Runtime};
pub use bindings::stepbox::operator::types::{EnvVar, Error, Resources};
pub use flavor::{Flavor, FlavorInfo, NoSettings};
pub use schemars;

/// The contract version this SDK builds flavors against (see [`contract`]).
pub const CONTRACT_VERSION: &str = contract::VERSION;

/// Export a type that implements [`Flavor`] as the component's `operator`.
///
/// Call it once, at the root of the flavor crate (a `cdylib`).
#[macro_export]
macro_rules! export_flavor {
    ($flavor:ty) => {
        const _: () = {
            struct StepboxExport;

            impl $crate::bindings::exports::stepbox::operator::operator::Guest for StepboxExport {
                fn metadata() -> $crate::bindings::exports::stepbox::operator::operator::FlavorMetadata {
                    $crate::__private::metadata::<$flavor>()
                }

                fn validate_config(config: ::std::string::String) -> ::std::result::Result<(), $crate::ConfigError> {
                    $crate::__private::validate_config::<$flavor>(&config)
                }

                fn launch(
                    config: ::std::string::String,
                    request: $crate::LaunchRequest,
                ) -> ::std::result::Result<$crate::LaunchReport, $crate::LaunchError> {
                    $crate::__private::launch::<$flavor>(&config, request)
                }
            }

    $crate::bindings::export!(StepboxExport with_types_in $crate::bindings);
        };
    };
}
