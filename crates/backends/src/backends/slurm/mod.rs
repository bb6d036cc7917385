//! The Slurm job backend, and its pieces: the batch script and `sbatch`
//! options for a job, reading `scontrol show job`, and what every Slurm job
//! state means for a job.
//!
//! stepbox drives Slurm through its commands (`sbatch`, `scontrol`,
//! `scancel`) rather than slurmrestd: they authenticate the submitting user
//! with munge as every Slurm site already does, need no JWT keys or a
//! separately run daemon, and their output is stable across the Slurm
//! releases whose REST API versions (v0.0.38 … v0.0.41) are not. The REST
//! path stays possible behind the same three operations (submit, show,
//! cancel) in [`backend`].

pub mod backend;
pub mod script;
pub mod state;

pub use backend::SlurmBackend;
