//! One launch: record the run, instantiate the flavor with the step
//! operator's grants and limits, call `launch`, and block until it returns or
//! the launch is interrupted; then make sure no job is left running, and
//! record how the run ended.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::bindings::jobs::JobState as WitJobState;
use crate::bindings::operator::{LaunchError as WitLaunchError, LaunchReport, LaunchRequest as WitRequest};
use crate::bindings::types::{EnvVar, Resources};
use crate::context::Stepbox;
use crate::flavors::{self, FlavorError};
use crate::host::jobs::{JobRegistry, JobSecrets, JobsCtx, TrackedJob};
use crate::host::{FlavorLogger, Launch, LaunchContext};
use crate::limits::Limits;
use stepbox_backends::backends::OutputSink;
use stepbox_backends::backends::redact::Redactor;
use stepbox_backends::exit;

use stepbox_store::store::pending::{OutcomeSlot, PendingJob, PendingOutcome};
use stepbox_store::store::{RunRecord, RunState, StoreError};

/// What the caller asks to run: ZenML's launch arguments.
#[derive(Debug, Clone, Default)]
pub struct StepRequest {
    pub step_operator: String,
    pub pipeline: String,
    pub run_name: String,
    pub step: String,
    /// The caller's run id (ZenML's), generated when absent.
    pub run_id: Option<String>,
    pub step_run_id: Option<String>,
    pub requirements: Vec<String>,
    pub entrypoint: Vec<String>,
    pub environment: Vec<(String, String)>,
    pub cpu_count: Option<f64>,
    pub gpu_count: Option<u32>,
    pub gpu_class: Option<String>,
    pub memory_bytes: Option<u64>,
    /// Per-step settings, JSON.
    pub settings: Option<serde_json::Value>,
    pub source_root: PathBuf,
    pub image: Option<String>,
    /// Directories the caller lets confined jobs read (`--read-dir`).
    pub read_dirs: Vec<PathBuf>,
    /// Run nothing: every backend records the jobs it is given here
    /// (`stepbox flavor test`).
    pub dry_run: Option<stepbox_backends::backends::dry_run::Recorder>,
    /// The run's id, chosen by the caller (`stepbox submit` prints it before
    /// the launch starts); a new one when absent.
    pub record_id: Option<String>,
}

/// Why a launch was interrupted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interrupt {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
    /// SIGHUP: the terminal closed.
    Hangup,
    /// `stepbox cancel` (a SIGTERM it announced), with the reason its caller
    /// gave (`--reason`; empty for none).
    Requested(String),
    /// The launch ran past its `wall-clock` limit.
    WallClock(Duration),
}

impl std::fmt::Display for Interrupt {
    /// The reason a flavor is given through `cancellation`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Interrupt::Interrupt => f.write_str("cancelled by Ctrl-C (SIGINT)"),
            Interrupt::Terminate => f.write_str("cancelled by SIGTERM"),
            Interrupt::Hangup => f.write_str("cancelled: the terminal closed (SIGHUP)"),
            Interrupt::Requested(reason) if reason.is_empty() => f.write_str("cancelled by `stepbox cancel`"),
            Interrupt::Requested(reason) => write!(f, "cancelled by `stepbox cancel`: {reason}"),
            Interrupt::WallClock(budget) => {
                write!(f, "the launch hit its `wall-clock` limit of {}", humantime::format_duration(*budget))
            }
        }
    }
}

/// How a launch ended.
#[derive(Debug, Clone)]
pub struct LaunchOutcome {
    pub run_id: String,
    pub state: RunState,
    /// The exit code `stepbox launch` should exit with.
    pub exit_code: u8,
    /// The job's exit code, if a job decided the outcome.
    pub job_exit_code: Option<i32>,
    pub message: Option<String>,
}

/// A launch that could not start: nothing ran, no run was recorded.
#[derive(Debug, Error)]
pub enum LaunchError {
    #[error("no step operator named `{0}`; `stepbox step-operator list` shows the registered ones")]
    UnknownStepOperator(String),
    #[error("the launch needs an entrypoint command after `--`")]
    NoEntrypoint,
    #[error(
        "the flavor `{flavor}` imports {capabilities}, which step operator `{operator}` is not granted; nothing was run. Grant it with: stepbox step-operator update {operator} {grants}"
    )]
    Ungranted { flavor: String, operator: String, capabilities: String, grants: String },
    #[error(
        "the step's source root {source_root} and stepbox's home {home} overlap: the home's secrets and runs would be \
         writable by the step's jobs and ship with its code (images, Ray). Keep the home elsewhere (STEPBOX_HOME or \
         --home), or launch from another directory (--source-root)"
    )]
    SourceHoldsHome { source_root: String, home: String },
    #[error(transparent)]
    Flavor(#[from] FlavorError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl LaunchError {
    pub fn exit_code(&self) -> u8 {
        match self {
            LaunchError::UnknownStepOperator(_) | LaunchError::NoEntrypoint | LaunchError::SourceHoldsHome { .. } => {
                exit::BAD_INPUT
            }
            LaunchError::Ungranted { .. } => exit::DENIED,
            LaunchError::Flavor(error) => error.exit_code(),
            LaunchError::Store(_) | LaunchError::Internal(_) => exit::INTERNAL,
        }
    }
}

/// Run one step through its step operator's flavor, blocking until it is
/// done or `interrupted` resolves.
pub async fn launch(
    stepbox: &Stepbox,
    args: StepRequest,
    output: Arc<dyn OutputSink>,
    interrupted: impl Future<Output = Interrupt>,
) -> Result<LaunchOutcome, LaunchError> {
    if args.entrypoint.is_empty() {
        return Err(LaunchError::NoEntrypoint);
    }
    let home = stepbox.home.root().canonicalize().unwrap_or_else(|_| stepbox.home.root().to_owned());
    let source_root = args.source_root.canonicalize().unwrap_or_else(|_| args.source_root.clone());
    if stepbox_store::policy::overlap(&source_root, &home) {
        return Err(LaunchError::SourceHoldsHome {
            source_root: source_root.display().to_string(),
            home: home.display().to_string(),
        });
    }
    let operator = stepbox
        .db
        .step_operator(&args.step_operator)?
        .ok_or_else(|| LaunchError::UnknownStepOperator(args.step_operator.clone()))?;
    let flavor = flavors::for_operator(stepbox, &operator)?;
    let ungranted = crate::step_operators::ungranted(&flavor, &operator.grants);
    if !ungranted.is_empty() {
        return Err(LaunchError::Ungranted {
            flavor: flavor.name.clone(),
            operator: operator.name.clone(),
            capabilities: ungranted.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", "),
            grants: ungranted.iter().map(|c| format!("--grant {c}")).collect::<Vec<_>>().join(" "),
        });
    }
    let prepared = flavors::prepare(stepbox, &flavor)?;
    let limits = Limits::default()
        .with_overrides(&operator.limits)
        .map_err(|e| LaunchError::Internal(format!("step operator {}: {e}", operator.name)))?;
    let grants = operator.grants.clone();

    let run_id = args.record_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let request = wit_request(&args, &run_id);
    let run = RunRecord {
        id: run_id.clone(),
        step_operator: operator.name.clone(),
        flavor: flavor.name.clone(),
        flavor_sha256: flavor.sha256.clone(),
        pipeline: args.pipeline.clone(),
        run_name: args.run_name.clone(),
        step: args.step.clone(),
        state: RunState::Running,
        exit_code: None,
        message: None,
        pid: std::process::id(),
        supervisor: stepbox_backends::processes::Identity::current(),
        request: recorded_request(&request),
        started_at: stepbox_store::store::now(),
        ended_at: None,
        outcome_code: None,
    };
    stepbox.db.insert_run(&run)?;
    let run_dir = stepbox.home.run_dir(&run_id).map_err(|e| LaunchError::Internal(e.to_string()))?;
    // Room for the outcome, taken now: a disk that fills during the run cannot lose it.
    let slot = OutcomeSlot::reserve(&run_dir)
        .inspect_err(|error| tracing::warn!("cannot reserve space for the run's outcome: {error}"))
        .ok();
    let flavor_log = std::fs::File::create(run_dir.join("flavor.log")).ok();
    let logger = Arc::new(FlavorLogger::new(&flavor.name, flavor_log, &limits));

    let context = Arc::new(LaunchContext {
        run_id: run_id.clone(),
        db: stepbox.db.clone(),
        home: stepbox.home.clone(),
        grants,
        limits: limits.clone(),
        entrypoint: args.entrypoint.clone(),
        environment: args.environment.clone(),
        source_root: args.source_root.clone(),
        caller_requirements: stepbox_backends::environments::NormalizedSpec::new(&args.requirements, None)
            .map(|spec| spec.requirements().to_vec())
            .unwrap_or_default(),
        image: args.image.clone(),
        read_dirs: args.read_dirs.clone(),
        built_images: Default::default(),
        redactor: Arc::new(launch_redactor(&operator.grants, &stepbox.home.secrets())),
        audit: crate::host::audit::Audit::create(&run_dir.join(crate::host::audit::AUDIT_FILE)),
        environments: Default::default(),
        cancellation: Default::default(),
    });
    // The launch owns its jobs whether or not the flavor may submit any: the
    // registry outlives the instance, which may be dropped mid-call.
    let jobs = Arc::new(JobsCtx {
        backends: match &args.dry_run {
            Some(recorder) => stepbox_backends::backends::dry_run::standing_in(recorder),
            None => stepbox_backends::backends::standard(limits.cancel_grace, &run_dir, &stepbox.home.gpus_dir()),
        },
        registry: JobRegistry::default(),
        output,
        secrets: if args.dry_run.is_some() { JobSecrets::NotRead } else { JobSecrets::Stored },
        unsatisfiable: Default::default(),
    });
    let launch = Launch::granted(&context, &jobs, args.dry_run.is_some());
    tracing::debug!("run {run_id}: launching {} with flavor {}", args.step, flavor.name);

    let config = operator.config.to_string();
    let call = prepared.launch(launch, Arc::clone(&logger), &config, &request);
    let mut call = std::pin::pin!(call);
    let budget = limits.wall_clock;
    let result = tokio::select! {
        result = &mut call => Ok(result),
        interrupt = interrupted => Err(interrupt),
        () = tokio::time::sleep(budget) => Err(Interrupt::WallClock(budget)),
    };
    if let Err(interrupt) = &result {
        let grace = limits.cancel_grace;
        // Tell the flavor (`cancellation`), cancel the host's jobs, and give
        // the flavor `cancel-grace` to stop what it started elsewhere.
        context.cancellation.request(&interrupt.to_string());
        logger.note(
            crate::bindings::log::Level::Info,
            &format!("cancelling ({interrupt}); the flavor has {} to stop its work", humantime::format_duration(grace)),
        );
        if !flavor_returns_after_its_jobs(&jobs.registry, grace, &mut call).await {
            logger.note(
                crate::bindings::log::Level::Warn,
                &format!(
                    "the flavor did not return within `cancel-grace` ({}) of the cancellation and was stopped; work it started outside stepbox may still be running",
                    humantime::format_duration(grace)
                ),
            );
        }
    }
    // Whatever happened, the launch owns its jobs: cancel and await any still running.
    let leftover = jobs.registry.close_and_cancel(limits.cancel_grace).await;
    if result.is_ok() {
        for job in &leftover {
            logger.note(
                crate::bindings::log::Level::Warn,
                &format!("the flavor returned while job {} ({}) was still running; it was cancelled", job.id, job.name),
            );
        }
    }
    let host_jobs = jobs.registry.all();
    let mut outcome = outcome(run_id, result.map(|call| check_report(call, &host_jobs)));
    // A job asked for what this machine lacks: the caller's request is at fault, not the flavor.
    if outcome.state == RunState::Failed
        && outcome.exit_code == exit::FLAVOR_ERROR
        && let Ok(unsatisfiable) = jobs.unsatisfiable.lock()
        && let Some(why) = unsatisfiable.as_ref()
    {
        outcome.exit_code = exit::BAD_INPUT;
        outcome.message.get_or_insert_with(|| why.clone());
    }
    // The message may come from the flavor: keep the run record bounded, and
    // free of any secret value the launch could reach.
    outcome.message = outcome
        .message
        .map(|message| crate::host::log::truncate(&context.redactor.scrub_text(&message), limits.argument_bytes));
    let recorded = stepbox.db.finish_run(
        &outcome.run_id,
        outcome.state,
        outcome.job_exit_code,
        outcome.message.as_deref(),
        outcome.exit_code,
    );
    match (recorded, slot) {
        (Ok(()), slot) => slot.into_iter().for_each(OutcomeSlot::release),
        // The database cannot take it (a full disk): the outcome is not lost, nor the exit code.
        (Err(error), Some(slot)) => {
            let kept = kept_outcome(&outcome, &host_jobs);
            if let Err(keep_error) = slot.keep(&kept) {
                tracing::error!("cannot keep the run's outcome in {} either: {keep_error}", slot.path().display());
                return Err(error.into());
            }
            tracing::warn!(
                "the run's outcome could not be recorded in the state database ({error}); it is kept in {} and \
                 recorded once the database can take it (the next `stepbox status {}`, `wait` or `runs list`)",
                slot.path().display(),
                outcome.run_id
            );
        }
        (Err(error), None) => return Err(error.into()),
    }
    Ok(outcome)
}

/// The outcome and the jobs' ends, as kept when the database cannot take them.
fn kept_outcome(outcome: &LaunchOutcome, host_jobs: &[Arc<TrackedJob>]) -> PendingOutcome {
    PendingOutcome {
        state: outcome.state.as_str().to_owned(),
        exit_code: outcome.job_exit_code,
        message: outcome.message.clone(),
        outcome_code: outcome.exit_code,
        jobs: host_jobs
            .iter()
            .map(|job| {
                let status = job.job.status();
                PendingJob {
                    id: job.id.clone(),
                    state: status.state.as_str().to_owned(),
                    exit_code: status.exit_code,
                    message: status.message,
                }
            })
            .collect(),
    }
}

type CallResult = Result<Result<LaunchReport, WitLaunchError>, crate::instance::GuestFailure>;

/// At least this long is left to a cancelled flavor after the host's jobs
/// have stopped: it may have been waiting on them all along.
const FLAVOR_TIME_AFTER_JOBS: Duration = Duration::from_secs(2);

/// Cancel the launch's jobs (each with `grace`) while the flavor, told of the
/// cancellation, winds down; whether the flavor returned in time. Its time
/// runs out `grace` after the cancellation, or [`FLAVOR_TIME_AFTER_JOBS`]
/// after the last job stopped if that is later: a job that took its whole
/// grace to stop must not make the flavor waiting on it look stuck.
async fn flavor_returns_after_its_jobs(jobs: &JobRegistry, grace: Duration, call: &mut (impl Future + Unpin)) -> bool {
    let started = tokio::time::Instant::now();
    let stopping = jobs.close_and_cancel(grace);
    let mut stopping = std::pin::pin!(stopping);
    tokio::select! {
        _ = &mut stopping => {}
        _ = &mut *call => {
            stopping.await;
            return true;
        }
    }
    let left = grace.saturating_sub(started.elapsed()).max(FLAVOR_TIME_AFTER_JOBS);
    tokio::time::timeout(left, call).await.is_ok()
}

/// The scrubber for a launch's job output: every secret the step operator's
/// grants reach that is stored (one not stored cannot leak).
fn launch_redactor(grants: &stepbox_store::policy::Grants, secrets: &stepbox_backends::secrets::Secrets) -> Redactor {
    let names = grants.secret_names();
    let values =
        names.iter().filter_map(|name| secrets.get(name).ok()).flat_map(|value| Redactor::values_of(value.expose()));
    Redactor::new(values)
}

/// A flavor's report of success is believed only as far as the host can
/// check it. When the launch ran jobs on the host's backends, success must
/// name at least one of them, and every one it names must have succeeded;
/// otherwise the outcome is what the host saw: the last job it ran (a flavor
/// may retry, so earlier failures do not count against a later success).
/// A launch that ran no host job (a remote flavor) keeps its report.
fn check_report(call: CallResult, host_jobs: &[Arc<TrackedJob>]) -> CallResult {
    let Ok(Ok(report)) = &call else { return call };
    if report.state != WitJobState::Succeeded {
        return call;
    }
    let succeeded = |job: &TrackedJob| job.job.status().state == stepbox_backends::backends::JobState::Succeeded;
    let named: Vec<&Arc<TrackedJob>> = host_jobs.iter().filter(|job| report.job_ids.contains(&job.id)).collect();
    let decisive = match named.iter().find(|job| !succeeded(job)) {
        Some(failed) => *failed,
        None if !named.is_empty() => return call,
        // Naming none of the host's jobs: the last one decides (none: a remote flavor).
        None => match host_jobs.last() {
            Some(last) if !succeeded(last) => last,
            _ => return call,
        },
    };
    let status = decisive.job.status();
    let state = match status.state {
        stepbox_backends::backends::JobState::Cancelled => WitJobState::Cancelled,
        stepbox_backends::backends::JobState::TimedOut => WitJobState::TimedOut,
        _ => WitJobState::Failed,
    };
    Ok(Ok(LaunchReport {
        job_ids: report.job_ids.clone(),
        state,
        exit_code: status.exit_code,
        message: Some(format!(
            "the flavor reported success, but job {} ended {}{}; the run is recorded as the host saw its jobs",
            decisive.id,
            status.state,
            status.exit_code.map(|code| format!(" (exit code {code})")).unwrap_or_default()
        )),
    }))
}

/// Decide the run's state and the process exit code.
fn outcome(run_id: String, result: Result<CallResult, Interrupt>) -> LaunchOutcome {
    let done = |state, exit_code, job_exit_code, message: Option<String>| LaunchOutcome {
        run_id: run_id.clone(),
        state,
        exit_code,
        job_exit_code,
        message,
    };
    match result {
        Err(interrupt @ Interrupt::Interrupt) => {
            done(RunState::Cancelled, exit::CANCELLED_SIGINT, None, Some(interrupt.to_string()))
        }
        Err(interrupt @ Interrupt::WallClock(_)) => done(
            RunState::Failed,
            exit::TIMED_OUT,
            None,
            Some(format!(
                "{interrupt}; its jobs were cancelled. If it really needs more: stepbox step-operator update NAME --limit wall-clock=DURATION"
            )),
        ),
        Err(interrupt @ Interrupt::Hangup) => {
            done(RunState::Cancelled, exit::CANCELLED_SIGHUP, None, Some(interrupt.to_string()))
        }
        Err(interrupt @ (Interrupt::Terminate | Interrupt::Requested(_))) => {
            done(RunState::Cancelled, exit::CANCELLED_SIGTERM, None, Some(interrupt.to_string()))
        }
        Ok(Err(failure)) => done(RunState::Failed, exit::FLAVOR_ERROR, None, Some(failure.to_string())),
        Ok(Ok(Err(error))) => match error {
            WitLaunchError::InvalidConfig(error) => {
                let message = match error.field {
                    Some(field) if !error.message.contains(&field) => {
                        format!("{field}: {}", error.message)
                    }
                    _ => error.message,
                };
                done(
                    RunState::Failed,
                    exit::BAD_INPUT,
                    None,
                    Some(format!("invalid configuration or settings: {message}")),
                )
            }
            WitLaunchError::Denied(message) => done(RunState::Failed, exit::DENIED, None, Some(message)),
            WitLaunchError::Cancelled(message) => {
                done(RunState::Cancelled, exit::CANCELLED_SIGINT, None, Some(message))
            }
            WitLaunchError::Failed(message) => done(RunState::Failed, exit::FLAVOR_ERROR, None, Some(message)),
        },
        Ok(Ok(Ok(report))) => {
            let code = report.exit_code;
            let process_code = |fallback: u8| code.map_or(fallback, |code| u8::try_from(code).unwrap_or(fallback));
            match report.state {
                WitJobState::Succeeded => done(RunState::Succeeded, exit::OK, code, report.message),
                WitJobState::Cancelled => {
                    done(RunState::Cancelled, process_code(exit::CANCELLED_SIGINT), code, report.message)
                }
                WitJobState::TimedOut => {
                    done(RunState::Failed, exit::TIMED_OUT, code, report.message.or(Some("the job timed out".into())))
                }
                WitJobState::Failed => {
                    let code_or_one = process_code(1);
                    let exit_code = if code_or_one == 0 { 1 } else { code_or_one };
                    done(RunState::Failed, exit_code, code, report.message.or(Some("the job failed".into())))
                }
                WitJobState::Pending | WitJobState::Running => done(
                    RunState::Failed,
                    exit::FLAVOR_ERROR,
                    code,
                    Some("the flavor returned before its job finished (launch must block until the job ends)".into()),
                ),
            }
        }
    }
}

/// The request the flavor receives.
fn wit_request(args: &StepRequest, run_id: &str) -> WitRequest {
    WitRequest {
        pipeline_name: args.pipeline.clone(),
        run_name: args.run_name.clone(),
        step_name: args.step.clone(),
        run_id: args.run_id.clone().unwrap_or_else(|| run_id.to_owned()),
        step_run_id: args.step_run_id.clone().unwrap_or_else(|| run_id.to_owned()),
        requirements: args.requirements.clone(),
        entrypoint_command: args.entrypoint.clone(),
        environment: args
            .environment
            .iter()
            .map(|(name, value)| EnvVar { name: name.clone(), value: value.clone() })
            .collect(),
        resources: Resources {
            cpu_count: args.cpu_count,
            gpu_count: args.gpu_count,
            gpu_class: args.gpu_class.clone(),
            memory_bytes: args.memory_bytes,
        },
        settings: args.settings.as_ref().map_or_else(|| "{}".to_owned(), |s| s.to_string()),
        source_root: args.source_root.display().to_string(),
        image: args.image.clone(),
    }
}

/// The request as stored with the run: environment values are left out, since
/// they may hold credentials.
fn recorded_request(request: &WitRequest) -> serde_json::Value {
    serde_json::json!({
        "pipeline_name": request.pipeline_name,
        "run_name": request.run_name,
        "step_name": request.step_name,
        "run_id": request.run_id,
        "step_run_id": request.step_run_id,
        "requirements": request.requirements,
        "entrypoint_command": request.entrypoint_command,
        "environment_names": request.environment.iter().map(|var| var.name.as_str()).collect::<Vec<_>>(),
        "resources": {
            "cpu_count": request.resources.cpu_count,
            "gpu_count": request.resources.gpu_count,
            "gpu_class": request.resources.gpu_class,
            "memory_bytes": request.resources.memory_bytes,
        },
        "settings": serde_json::from_str::<serde_json::Value>(&request.settings).unwrap_or_default(),
        "source_root": request.source_root,
        "image": request.image,
    })
}
