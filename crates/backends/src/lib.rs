//! stepbox-backends: where a step's work runs, and what it runs in. Nothing
//! here knows WebAssembly, the state database or a step operator's grants:
//! the crates above decide what is allowed and hand these modules checked
//! requests (see docs/ARCHITECTURE.md, "The crates").
//!
//! - [`backends`]: the job backends (local processes, podman containers,
//!   Slurm, Ray, the dry run) and their life cycle, orphans included;
//! - [`environments`]: Python environments for a step's requirements (uv);
//! - [`images`]: daemonless OCI image builds and pushes;
//! - [`secrets`]: named credentials, stored owner-only;
//! - [`gpus`]: this machine's GPUs and exclusive leases on them;
//! - [`processes`], [`programs`]: proving a process is stepbox's before
//!   signalling it; finding the programs backends run;
//! - [`addresses`]: what kind of network address a name resolved to;
//! - [`files`], [`source_files`], [`units`], [`timestamps`], [`exit`],
//!   [`pause_points`], [`contained_panics`]: the small shared pieces.

pub mod addresses;
pub mod backends;
pub mod contained_panics;
pub mod environments;
pub mod exit;
pub mod files;
pub mod gpus;
pub mod images;
pub mod pause_points;
pub mod processes;
pub mod programs;
pub mod secrets;
pub mod source_files;
pub mod timestamps;
pub mod units;
pub mod wasm_oci;
