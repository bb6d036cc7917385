//! The exit codes of `stepbox`, so scripts and the ZenML integration can tell
//! outcomes apart.
//!
//! A launch whose job ran exits with the job's own exit code (a job killed by
//! signal N gives 128 + N). Everything else uses codes from `sysexits.h`,
//! which jobs rarely use:

/// Success.
pub const OK: u8 = 0;
/// Something went wrong inside stepbox itself (I/O, database, …).
pub const INTERNAL: u8 = 1;
/// Bad input: unknown names, invalid arguments, a file that is not a flavor,
/// a configuration the flavor refuses. Nothing was run.
pub const BAD_INPUT: u8 = 64;
/// A service stepbox needs could not be reached (a registry's host does not
/// answer); nothing changed, and trying again later may work.
pub const UNAVAILABLE: u8 = 69;
/// The flavor failed: it returned an error, trapped, or hit a limit.
pub const FLAVOR_ERROR: u8 = 70;
/// The job's program could not be executed (not executable), as a shell
/// reports it.
pub const CANNOT_EXECUTE: u8 = 126;
/// The job's program does not exist (not on the job's PATH, or no such
/// file), as a shell reports it; the same whether the job is confined or not.
pub const PROGRAM_NOT_FOUND: u8 = 127;
/// The job ran past its timeout and was stopped (as `timeout(1)` exits).
pub const TIMED_OUT: u8 = 124;
/// The flavor asked for something its step operator's grants do not allow,
/// or a registry refused stepbox's login.
pub const DENIED: u8 = 77;
/// The launch was cancelled by SIGINT (Ctrl-C).
pub const CANCELLED_SIGINT: u8 = 130;
/// The launch was cancelled by SIGHUP (its terminal closed).
pub const CANCELLED_SIGHUP: u8 = 129;
/// The launch was cancelled by SIGTERM.
pub const CANCELLED_SIGTERM: u8 = 143;
/// Nobody reads stdout any more (`stepbox runs list | head`): the command
/// stopped printing, quietly, with the status a shell shows for a program
/// that SIGPIPE ended (128 + 13). stepbox keeps SIGPIPE ignored so that a
/// closed pipe never kills a launch mid-run.
pub const CLOSED_PIPE: u8 = 141;
