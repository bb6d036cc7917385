//! The command line's shape: every command, flag and help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::output::Format;

/// Run step-operator flavors as sandboxed WebAssembly components.
///
/// A flavor (a .wasm component) decides where and how a pipeline step runs;
/// stepbox runs it with no ambient authority and blocks until the step's
/// jobs are done.
#[derive(Debug, Parser)]
#[command(name = "stepbox", version, propagate_version = true)]
#[command(after_help = "\
Quick tour:
  stepbox flavor register target/wasm32-wasip2/guest/stepbox_flavor_local.wasm
  stepbox step-operator register local --flavor local --grant jobs
  stepbox launch --step-operator local --pipeline p --run r1 --step train -- python train.py
  stepbox runs list

Exit codes of `stepbox launch`: the job's own exit code when a job ran; 64 bad input,
70 flavor error, 77 denied by policy, 124 job timed out, 129/130/143 cancelled by SIGHUP/SIGINT/SIGTERM.")]
pub struct Cli {
    /// State directory [default: $STEPBOX_HOME, else ~/.local/share/stepbox]
    #[arg(long, global = true, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// More log output (-v debug, -vv trace); STEPBOX_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register, list, describe and delete flavors (.wasm components)
    #[command(subcommand)]
    Flavor(FlavorCommand),
    /// Configure step operators: a flavor plus its configuration
    #[command(subcommand, name = "step-operator", visible_alias = "so")]
    StepOperator(StepOperatorCommand),
    /// Run one step through a step operator and wait for it to finish
    Launch(Box<LaunchArgs>),
    /// Start a launch detached under a supervisor and print its run id at once
    #[command(after_help = "\
Takes the same arguments as `stepbox launch`. The launch runs in its own session, with its output
in $STEPBOX_HOME/runs/RUN/supervisor.log; follow it from any process with `stepbox status`,
`stepbox wait` and `stepbox cancel`.

Example:
  run=$(stepbox submit --step-operator local --pipeline p --run r1 --step s -- python step.py)
  stepbox wait \"$run\"")]
    Submit(Box<LaunchArgs>),
    /// Show a run's state (running, succeeded, failed, cancelled) and exit code
    Status {
        /// The run id (or an unambiguous prefix)
        #[arg(required_unless_present = "step_run_id")]
        run: Option<String>,
        /// Find the run by the caller's step-run id instead (the --step-run-id it was launched with)
        #[arg(long, conflicts_with = "run", value_name = "ID")]
        step_run_id: Option<String>,
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// Wait for a run to end; exit with the code `stepbox launch` would have
    Wait {
        /// The run id (or an unambiguous prefix)
        #[arg(required_unless_present = "step_run_id")]
        run: Option<String>,
        /// Find the run by the caller's step-run id instead (the --step-run-id it was launched with)
        #[arg(long, conflicts_with = "run", value_name = "ID")]
        step_run_id: Option<String>,
        /// Show the jobs' output (stdout and stderr, scrubbed of secrets) on stdout as it is written
        #[arg(long, short)]
        follow: bool,
    },
    /// Cancel a run: stop its jobs, and wait until they have stopped
    Cancel {
        /// The run id (or an unambiguous prefix)
        #[arg(required_unless_present = "step_run_id")]
        run: Option<String>,
        /// Find the run by the caller's step-run id instead (the --step-run-id it was launched with)
        #[arg(long, conflicts_with = "run", value_name = "ID")]
        step_run_id: Option<String>,
        /// Why, in the caller's words: recorded as the run's message
        /// ("cancelled by `stepbox cancel`: REASON")
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Inspect past and running launches
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Copy the state database (flavors, step operators, runs) into one self-contained file
    #[command(after_help = "\
state.db is kept in SQLite's WAL mode: recent changes live in state.db-wal until a checkpoint, so a
copy of state.db alone may miss them. `stepbox backup` writes a consistent, complete copy while
other stepbox commands go on. Back up the flavors/ and secrets/ directories beside it with it.

To restore: stop every stepbox process, remove state.db-wal and state.db-shm, and copy the backup
to $STEPBOX_HOME/state.db.

Example:
  stepbox backup ~/stepbox-state-$(date +%F).db")]
    Backup {
        /// Where to write the copy (a new file: an existing one is never overwritten)
        destination: std::path::PathBuf,
    },
    /// List the limits a step operator can override, with their defaults
    Limits,
    /// List the job backends, the options each takes and the grants they need
    Backends,
    /// List this machine's GPUs (index, UUID, model, memory) and which run holds each
    #[command(after_help = "\
GPUs are read through NVML (the NVIDIA driver's libnvidia-ml.so.1, loaded when needed: stepbox
runs CPU steps on machines without it). STEPBOX_GPU_INVENTORY=FILE describes devices instead
(tests, dry runs): {\"gpus\": [{\"index\", \"uuid\", \"model\", \"memory_bytes\", \"device\"}],
\"control_devices\": [...]}.

A job asking for GPUs on the local or container backend leases that many (of its class, matched
against the model: `h200` matches `NVIDIA H200`), waits while they are held, and sees only them.")]
    Gpus {
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// Start a new flavor project (Rust, Python or JavaScript) that builds and registers as it comes
    #[command(after_help = "\
Examples:
  stepbox new my-flavor --lang rust     # cargo build --target wasm32-wasip2 --release
  stepbox new my-flavor --lang python   # ./build.sh (componentize-py)
  stepbox new my-flavor --lang js       # npm install && npm run build (componentize-js)

The project includes the contract this stepbox implements (wit/), a build command and a README
that goes on to `stepbox flavor test`, `flavor register` and a first launch.")]
    New {
        /// The flavor's name: lowercase letters, digits, `-` and `_`
        name: String,
        /// The language to write it in
        #[arg(long, value_enum)]
        lang: crate::scaffold::Lang,
        /// Where to create it [default: ./NAME]
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Store named secrets that step operators can be granted by name
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Keys trusted to sign flavors from registries, each for a registry scope
    #[command(subcommand)]
    Trust(TrustCommand),
}

#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Trust a public key to sign the flavors of a registry or repository prefix
    #[command(after_help = "\
A flavor registered from a registry (`stepbox flavor register oci://…`) must be signed by a key
trusted for its repository; a scope is a registry, or a registry and a repository prefix matched
on whole path segments (registry.example.com/team covers registry.example.com/team/local, never
registry.example.com/team-b/local).

The key is an ECDSA P-256 public key in PEM: cosign.pub from `cosign generate-key-pair`, or
`openssl ec -in signing.key -pubout`.

Examples:
  stepbox trust add platform-team --key ./cosign.pub --scope registry.example.com/flavors
  stepbox trust add vendor --key ./vendor.pub --scope registry.example.com/vendor/sagemaker")]
    Add {
        /// The name to trust it under (shown by `trust list` and kept by the flavors it verifies)
        name: String,
        /// The public key file (PEM `PUBLIC KEY`)
        #[arg(long, value_name = "KEY.pub")]
        key: PathBuf,
        /// Where its signatures count: REGISTRY or REGISTRY/PREFIX (repeatable)
        #[arg(long = "scope", value_name = "REGISTRY[/PREFIX]", required = true)]
        scopes: Vec<String>,
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// List the trusted keys and their scopes
    List {
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// Stop trusting a key (flavors it verified stay registered)
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Store a secret, read from stdin or a file (never from the command line)
    #[command(after_help = "\
Examples:
  printf %s \"$RAY_TOKEN\" | stepbox secret set ray-token
  stepbox secret set ray-token --from-file ./token.txt
  stepbox step-operator update ray --grant secret=ray-token

The value is kept in $STEPBOX_HOME/secrets/NAME with mode 0600. A flavor never sees it: the host
applies it (as a backend credential) where the step operator's grants allow.")]
    Set {
        /// The secret's name: letters, digits, `-`, `_`, `.`
        name: String,
        /// Read the value from this file instead of stdin
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
    },
    /// List the stored secrets' names (never their values)
    List {
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// Delete a stored secret
    Delete {
        /// The secret's name
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum FlavorCommand {
    /// Check, compile and register a flavor component, from a file or a registry
    #[command(after_help = "\
Examples:
  stepbox flavor register builtin:local              # shipped with stepbox: flavor list --available
  stepbox flavor register ./my_flavor.wasm
  stepbox flavor register --replace ./my_flavor.wasm   # a new build of the same flavor
  stepbox flavor register oci://registry.example.com/flavors/local:1.0
  stepbox flavor register oci://registry.example.com/flavors/local@sha256:<digest>

A flavor from a registry is registered pinned to the manifest digest it was pulled at; the tag is
not looked up again on its own (`flavor describe` shows the digest). The artifact must be a Wasm
component in the CNCF Wasm OCI layout (what `stepbox flavor push` and `wkg oci push` write), and
signed (`stepbox flavor sign`, or `cosign sign --key`) by a key trusted for its repository
(`stepbox trust add`), unless --allow-unsigned is given.
Exit codes: 64 not a flavor (or not found, or failing its digest), 69 the registry cannot be
reached, 77 the registry wants or refused a login, or no trusted key signed it.
docs/DISTRIBUTING.md has the whole story.")]
    Register {
        /// The component file, `builtin:NAME` (`flavor list --available`), or
        /// `oci://REGISTRY/REPOSITORY:TAG` (or `@sha256:DIGEST`)
        source: String,
        /// Replace a registered flavor of the same name
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        pull: PullArgs,
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// Publish a flavor component to an OCI registry as a Wasm artifact
    #[command(after_help = "\
Writes the CNCF Wasm OCI artifact layout (config application/vnd.wasm.config.v0+json, one
application/wasm layer), which `wkg oci pull` reads, and prints the manifest digest to pin.
Registries on loopback are spoken to over plain HTTP, every other one over HTTPS.

Examples:
  stepbox flavor push ./local.wasm registry.example.com/flavors/local:1.0
  stepbox secret set registry-login   # {\"username\": \"…\", \"password\": \"…\"}
  stepbox flavor push ./local.wasm registry.example.com/flavors/local:1.0 \\
      --registry-credential registry.example.com=basic:registry-login")]
    Push {
        /// The component file
        path: PathBuf,
        /// Where to push it: REGISTRY/REPOSITORY:TAG
        reference: String,
        #[command(flatten)]
        registry: RegistryArgs,
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// Sign a flavor in its registry, as `cosign sign --key` does
    #[command(after_help = "\
Writes a cosign key-pair signature of the artifact's manifest digest beside it, at the tag
sha256-<hex>.sig (cosign's \"simple signing\" layout, which `cosign verify --key cosign.pub
--insecure-ignore-tlog` reads). Signing the same digest with the same key again changes nothing.

The key is cosign's private key file (`cosign generate-key-pair`; its password is read from
COSIGN_PASSWORD, empty when unset) or an unencrypted P-256 key in PEM (`openssl genpkey
-algorithm EC -pkeyopt ec_paramgen_curve:P-256`).

Examples:
  stepbox flavor push ./local.wasm registry.example.com/flavors/local:1.0
  COSIGN_PASSWORD=… stepbox flavor sign registry.example.com/flavors/local:1.0 --key cosign.key")]
    Sign {
        /// What to sign: REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:DIGEST
        reference: String,
        /// The private key file
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        #[command(flatten)]
        registry: RegistryArgs,
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// Update a flavor to a new version, showing first what the new version asks for
    #[command(after_help = "\
Before anything changes, shows the new version's contract, the capabilities and WASI interfaces it
imports that the registered version does not, how its configuration and settings schemas changed,
and for each step operator of the flavor whether it moves to the new version or stays where it is:
a step operator whose grants do not cover the new version (or whose configuration the new version
refuses) keeps the version it has until `stepbox step-operator update NAME --grant …` covers it.
Every version stays registered by its sha256 (`flavor list`), and a step operator can be pinned to
one (`step-operator update NAME --pin SHA256`).

SOURCE is a file, builtin:NAME or an oci:// reference; by default, where the current version came
from (the same file, this stepbox's builtin flavor of that name, or the same registry tag looked up
again now: a tag is never looked up on its own).
Asks for confirmation on a terminal; elsewhere --yes is needed to apply.

Examples:
  stepbox flavor update local ./target/wasm32-wasip2/release/local.wasm
  stepbox flavor update sagemaker                    # the tag it was registered from, again
  stepbox flavor update sagemaker oci://registry.example.com/flavors/sagemaker:2.0 --yes")]
    Update {
        /// The registered flavor
        name: String,
        /// The new version: a component file or oci://REGISTRY/REPOSITORY:TAG (or @sha256:DIGEST)
        source: Option<String>,
        /// Apply without asking
        #[arg(long, short = 'y', conflicts_with = "dry_run")]
        yes: bool,
        /// Only show what the update would change
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        pull: PullArgs,
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// Show what a .wasm file is and asks for, without registering or running it
    #[command(after_help = "\
Reads the component's imports and exports from the file: nothing is compiled or run. Exits 0 when
the file is a flavor stepbox can register, 64 when it is not (the reason is printed).

Example:
  stepbox flavor inspect ./vendor_flavor.wasm")]
    Inspect {
        /// The file to inspect
        path: PathBuf,
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// Check that a .wasm file behaves as a flavor must: a conformance test
    #[command(after_help = "\
Checks, each reported pass or fail:
  component        the file is a component of this contract, and registers
  metadata         name, version, description set; both schemas valid JSON Schema
  accepts-sample   validate-config accepts the sample configuration (--config, or {})
  rejects-garbage  validate-config refuses a wrongly typed value, with a message
  launch           a dry-run launch succeeds, and every job it submits runs the entrypoint

Nothing is run and nothing is registered: the checks use a throwaway state directory (sharing
the precompiled-component cache), and every job backend only records what it is given. Exits 0
when every check passes, 1 when one fails.

Examples:
  stepbox flavor test ./my_flavor.wasm
  stepbox flavor test ./container.wasm --config base_image=python:3.12-slim -o json")]
    Test {
        /// The component file
        path: PathBuf,
        /// A key and value of the sample configuration, typed by the flavor's schema (repeatable)
        #[arg(short, long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// Per-step settings for the dry-run launch, a JSON object
        #[arg(long, value_name = "JSON")]
        settings: Option<String>,
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// List registered flavors (and their older versions), or the builtin ones
    List {
        /// List the flavors shipped with stepbox instead (register one with builtin:NAME)
        #[arg(long)]
        available: bool,
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// Show a flavor's metadata, schemas and the capabilities it imports
    Describe {
        name: String,
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// Delete a flavor that no step operator uses, or one of its older versions
    Delete {
        name: String,
        /// Delete only this older version (its sha256, 8 or more hex digits), if no step operator runs it
        #[arg(long = "sha256", value_name = "SHA256")]
        sha256: Option<String>,
    },
}

/// How a flavor is taken from a registry.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Take a flavor from a registry without a signature by a trusted key (recorded, and shown by
    /// `flavor describe`)
    #[arg(long)]
    pub allow_unsigned: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// How stepbox logs in to registries.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Log in to a registry with the user and password kept in a secret, which holds
    /// {"username": …, "password": …} (repeatable; the same form as the registry-credential grant)
    #[arg(long = "registry-credential", value_name = "HOST=basic:SECRET")]
    pub credentials: Vec<String>,
}

/// Configuration given on the command line.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// A configuration key and value; values are typed by the flavor's schema (repeatable)
    #[arg(short, long = "config", value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// The whole configuration as a JSON object, from a file
    #[arg(long, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// Override a limit, e.g. guest-cpu=5s or guest-memory=128MiB (repeatable; `stepbox limits` lists them)
    #[arg(long = "limit", value_name = "NAME=VALUE")]
    pub limits: Vec<String>,
    /// Grant the flavor a capability or a permission (repeatable; `--help` lists every grant).
    /// Nothing but logging is granted by default
    #[arg(long = "grant", value_name = "GRANT", long_help = crate::policy::grant::help())]
    pub grants: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum StepOperatorCommand {
    /// Register a step operator; the flavor validates its configuration
    #[command(after_help = "\
Examples:
  stepbox step-operator register local --flavor local --grant jobs
  stepbox step-operator register slow --flavor local --grant jobs --config timeout_seconds=3600
  stepbox step-operator register gpu --flavor local --grant jobs --grant max-gpu=1 --config-file gpu.json

A flavor may use only what its step operator grants: `stepbox flavor describe FLAVOR` lists the
capabilities it imports, and a launch is refused until each of them is granted.")]
    Register {
        name: String,
        /// The flavor to use
        #[arg(short, long)]
        flavor: String,
        #[command(flatten)]
        config: ConfigArgs,
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// List step operators
    List {
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// Show a step operator's flavor and configuration
    Describe {
        name: String,
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// Change a step operator's configuration (validated again by the flavor)
    #[command(after_help = "\
Examples:
  stepbox step-operator update slow --config timeout_seconds=7200
  stepbox step-operator update slow --unset timeout_seconds
  stepbox step-operator update slow --grant max-job-timeout=2h --revoke arbitrary-commands
  stepbox step-operator update slow --config-file new.json   # replaces the whole configuration
  stepbox step-operator update slow --pin c6a0663c   # run this version of its flavor (`flavor list`)
  stepbox step-operator update slow --unpin          # follow the flavor's current version again

A step operator held on an older version of its flavor by `stepbox flavor update` (its grants did
not cover the new one) moves to the current version as soon as an update grants what it needs.")]
    Update {
        name: String,
        #[command(flatten)]
        config: ConfigArgs,
        /// Remove a configuration key (repeatable)
        #[arg(long, value_name = "KEY")]
        unset: Vec<String>,
        /// Remove a limit override, back to the default (repeatable)
        #[arg(long, value_name = "NAME")]
        unset_limit: Vec<String>,
        /// Take back a grant: as given to --grant, a keyed one by its key (secret-env=VAR,
        /// http-credential=ORIGIN, registry-credential=HOST), or a ceiling by name such as max-gpu
        /// (repeatable)
        #[arg(long, value_name = "GRANT")]
        revoke: Vec<String>,
        /// Run this registered version of the flavor, named by its sha256 (8 or more hex digits)
        #[arg(long, value_name = "SHA256", conflicts_with = "unpin")]
        pin: Option<String>,
        /// Follow the flavor's current version (undo --pin, or leave a version an update held it on)
        #[arg(long)]
        unpin: bool,
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// Delete a step operator
    Delete { name: String },
}

/// Arguments of `stepbox launch`, mirroring ZenML's step-operator launch.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  stepbox launch --step-operator local --pipeline training --run run-42 --step trainer \\
      --env DATA=/data --cpu 2 --memory 4GiB -- python -m my_steps.trainer
  stepbox launch --step-operator local --pipeline p --run r --step s \\
      --settings '{\"timeout_seconds\": 60}' -- ./step.sh

The launch blocks until the step finishes and streams its output. Ctrl-C or SIGTERM cancels
every job the launch started (their whole process groups) and records the run as cancelled.

Exit codes: the job's own exit code when a job ran (128+N when killed by signal N);
64 bad input, 70 flavor error, 77 denied by policy, 124 the job timed out,
129/130/143 cancelled by SIGHUP/SIGINT/SIGTERM.")]
pub struct LaunchArgs {
    /// The step operator to launch with
    #[arg(long, short = 's')]
    pub step_operator: String,
    /// Pipeline name
    #[arg(long)]
    pub pipeline: String,
    /// Pipeline run name
    #[arg(long)]
    pub run: String,
    /// Step name
    #[arg(long)]
    pub step: String,
    /// The caller's run id (ZenML's); a new one by default
    #[arg(long)]
    pub run_id: Option<String>,
    /// The caller's step-run id; a new one by default
    #[arg(long)]
    pub step_run_id: Option<String>,
    /// A Python requirement of the step (repeatable)
    #[arg(long = "requirement", short = 'r', value_name = "REQ")]
    pub requirements: Vec<String>,
    /// An environment variable for the step (repeatable)
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read more environment variables from stdin, as one JSON object of
    /// strings: values that must not appear in a process list (credentials)
    #[arg(long)]
    pub env_stdin: bool,
    /// Read environment variables from this JSON file, then delete it (how
    /// `stepbox submit` hands --env-stdin to its supervisor)
    #[arg(long, hide = true, value_name = "FILE")]
    pub env_file_consume: Option<PathBuf>,
    /// CPUs the step needs (may be fractional)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub cpu: Option<f64>,
    /// GPUs the step needs
    #[arg(long, value_name = "N")]
    pub gpu: Option<u32>,
    /// The GPU class (matched against the model name, e.g. h200), with --gpu N
    #[arg(long, value_name = "CLASS", requires = "gpu")]
    pub gpu_class: Option<String>,
    /// Memory the step needs: 512MiB, 4GiB, 2GB, …
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Per-step settings for the flavor, a JSON object
    #[arg(long, value_name = "JSON")]
    pub settings: Option<String>,
    /// The step's source directory [default: the current directory]
    #[arg(long, value_name = "DIR")]
    pub source_root: Option<PathBuf>,
    /// An image already built for the step
    #[arg(long, value_name = "REF")]
    pub image: Option<String>,
    /// A directory the step's confined jobs may read, besides the system's,
    /// their Python environment and the source root (the pipeline's own
    /// interpreter, a dataset); repeatable. The caller names it, so no grant
    /// is needed
    #[arg(long = "read-dir", value_name = "DIR")]
    pub read_dirs: Vec<PathBuf>,
    /// The run's id, chosen by `stepbox submit` for the launch it starts
    #[arg(long, hide = true, value_name = "ID")]
    pub record_id: Option<String>,
    /// The step's entrypoint command
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List recent runs, newest first
    List {
        /// How many runs to show
        #[arg(long, short = 'n', default_value_t = 20)]
        limit: u32,
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// Show one run: state, exit code, jobs and the tail of the job log
    Show {
        /// The run id, or an unambiguous prefix of it
        id: String,
        /// Bytes of log tail to show
        #[arg(long, default_value_t = 2048, value_name = "BYTES")]
        tail: u64,
        /// Show the audit record: every host call the flavor made and the decision on it
        #[arg(long)]
        audit: bool,
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
}

#[cfg(test)]
mod tests {
    /// Clap checks a command line's shape (unique names, valid conflicts)
    /// only when it is built: a mistake would otherwise panic at the first
    /// run of the command it is in.
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory as _;
        super::Cli::command().debug_assert();
    }
}
