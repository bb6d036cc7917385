//! The `jobs` capability: checks a job spec against the step operator's
//! grants, records the job, hands it to a backend, and gives the guest a
//! handle to wait on, query, read and cancel it.

mod registry;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use super::audit::{Decision, redacted_env};
use super::{FlavorLogger, HostState, LaunchContext};
use crate::bindings::jobs::{Host, HostJob, JobSpec, JobState, JobStatus, Runtime};
use crate::bindings::types::Error;
pub use registry::{JobRegistry, NotAdmitted, TrackedJob};
use stepbox_backends::backends::{self, JobBackend, JobLog, JobRequest, JobResources, JobRuntime, OutputSink};
use stepbox_backends::images::registry::Login;
use stepbox_store::store::JobRecord;

/// The `jobs` capability's state for one launch.
pub struct JobsCtx {
    /// The backends jobs may go to, by name (dry-run stand-ins in a dry run).
    pub backends: BTreeMap<&'static str, Arc<dyn JobBackend>>,
    /// Every job the launch submitted.
    pub registry: JobRegistry,
    /// Where live job output goes.
    pub output: Arc<dyn OutputSink>,
    /// Whether stored secrets are read for jobs.
    pub secrets: JobSecrets,
    /// Why a job asked for what this machine cannot give, if one did: the
    /// launch then fails as bad input (exit 64) whatever the flavor reports.
    pub unsatisfiable: std::sync::Mutex<Option<String>>,
}

/// How a job's secrets (`secret-env` bindings, secret backend options) are
/// resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobSecrets {
    /// From the home's stored secrets, for the backend alone.
    Stored,
    /// The dry run's twin (`stepbox flavor test`): the same checks, no secret
    /// read; variables are recorded empty and options unresolved.
    NotRead,
}

/// What `jobs` sees of an instance: the launch and its jobs state, and the
/// instance's resource table (the guest's `job` handles).
pub struct JobsView<'a> {
    launch: Option<(&'a Arc<LaunchContext>, &'a Arc<JobsCtx>)>,
    table: &'a mut ResourceTable,
    logger: &'a Arc<FlavorLogger>,
}

/// The `jobs` capability, for the linker.
struct JobsCapability;

impl HasData for JobsCapability {
    type Data<'a> = JobsView<'a>;
}

fn view(state: &mut HostState) -> JobsView<'_> {
    let launch = state.launch.as_ref().and_then(|launch| Some((&launch.shared, launch.jobs.as_ref()?)));
    JobsView { launch, table: &mut state.table, logger: &state.logger }
}

/// Link `jobs`.
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    crate::bindings::jobs::add_to_linker::<HostState, JobsCapability>(linker, view)
}

/// The host's side of a guest's `job` handle.
pub struct JobResource {
    tracked: Arc<TrackedJob>,
}

/// Most bytes `job.logs()` returns.
const MAX_LOG_TAIL: u64 = 256 << 10;

impl Host for JobsView<'_> {
    async fn submit(&mut self, spec: JobSpec) -> wasmtime::Result<Result<Resource<JobResource>, Error>> {
        let Some((launch, jobs)) = self.launch else {
            return Ok(Err(Error::Unsupported(
                "jobs can only be submitted while a step is being launched, by a step operator granted `jobs`"
                    .to_owned(),
            )));
        };
        // Bounded before anything copies it (the audit, the denial message).
        let bytes = spec_bytes(&spec);
        if let Err(exceeded) = self.logger.check_argument("a job spec", bytes) {
            let args = serde_json::json!({ "name": spec.name, "bytes": bytes });
            launch.audit.record("jobs.submit", args, Decision::LimitHit(exceeded.to_string()));
            return Err(exceeded.into());
        }
        let mut args = audited_spec(&spec);
        let outcome = self.submit_checked(launch, jobs, &spec).await;
        let decision = match &outcome {
            Ok(result) => {
                if let Ok(Ok(tracked)) = result.as_ref().map(|handle| self.tracked(handle)) {
                    args["job"] = tracked.id.clone().into();
                }
                Decision::of(result)
            }
            Err(trap) => Decision::LimitHit(trap.to_string()),
        };
        launch.audit.record("jobs.submit", args, decision);
        outcome
    }
}

impl JobsView<'_> {
    async fn submit_checked(
        &mut self,
        launch: &Arc<LaunchContext>,
        jobs: &Arc<JobsCtx>,
        spec: &JobSpec,
    ) -> wasmtime::Result<Result<Resource<JobResource>, Error>> {
        let (launch, jobs) = (Arc::clone(launch), Arc::clone(jobs));
        let request = match check(&launch, &jobs, spec) {
            Ok(request) => request,
            Err(error) => {
                // Counted against `log-bytes`: a flavor looping on refused
                // calls is stopped by it (host-call time is not guest CPU).
                self.logger.emit(crate::bindings::log::Level::Warn, &describe(&error))?;
                return Ok(Err(error));
            }
        };
        // Submit in a task of its own, so that the job is registered (and
        // later cancelled) even if the guest is stopped during this call.
        let submission = tokio::spawn(submit(launch, jobs, request));
        let tracked = match submission.await {
            Ok(Ok(tracked)) => tracked,
            Ok(Err(Submission::Refused(error))) => return Ok(Err(error)),
            // A limit ends the launch: a trap the guest cannot ignore.
            Ok(Err(Submission::Limit(limit))) => {
                return Err(crate::limits::LimitExceeded {
                    limit: "jobs-per-launch",
                    detail: format!("the flavor tried to submit more than {limit} jobs"),
                }
                .into());
            }
            Err(join) => return Ok(Err(Error::Failed(format!("job submission failed: {join}")))),
        };
        let handle = self.table.push(JobResource { tracked })?;
        Ok(Ok(handle))
    }
}

impl HostJob for JobsView<'_> {
    async fn id(&mut self, job: Resource<JobResource>) -> wasmtime::Result<String> {
        Ok(self.tracked(&job)?.id.clone())
    }

    async fn wait(&mut self, job: Resource<JobResource>) -> wasmtime::Result<Result<JobStatus, Error>> {
        let tracked = self.tracked(&job)?;
        self.audit_job_call("job.wait", &tracked);
        Ok(Ok(to_wit(tracked.job.wait().await)))
    }

    async fn status(&mut self, job: Resource<JobResource>) -> wasmtime::Result<Result<JobStatus, Error>> {
        let tracked = self.tracked(&job)?;
        self.audit_job_call("job.status", &tracked);
        Ok(Ok(to_wit(tracked.job.status())))
    }

    async fn logs(&mut self, job: Resource<JobResource>, max_bytes: u64) -> wasmtime::Result<Result<String, Error>> {
        let tracked = self.tracked(&job)?;
        self.audit_job_call("job.logs", &tracked);
        if tracked.job.status().state.is_terminal() {
            tracked.log.finish(); // what was held back as a possible secret's start
        }
        Ok(Ok(tracked.log.tail(max_bytes.min(MAX_LOG_TAIL) as usize)))
    }

    async fn cancel(&mut self, job: Resource<JobResource>) -> wasmtime::Result<Result<JobStatus, Error>> {
        let tracked = self.tracked(&job)?;
        self.audit_job_call("job.cancel", &tracked);
        let grace = self.launch.map_or(Duration::from_secs(10), |(launch, _)| launch.limits.cancel_grace);
        Ok(Ok(to_wit(tracked.job.cancel(grace).await)))
    }

    async fn drop(&mut self, job: Resource<JobResource>) -> wasmtime::Result<()> {
        // Dropping the handle does not cancel the job: the launch still owns it.
        self.table.delete(job)?;
        Ok(())
    }
}

impl JobsView<'_> {
    fn tracked(&self, job: &Resource<JobResource>) -> wasmtime::Result<Arc<TrackedJob>> {
        Ok(Arc::clone(&self.table.get(job)?.tracked))
    }

    fn audit_job_call(&self, call: &str, tracked: &TrackedJob) {
        if let Some((launch, _)) = self.launch {
            launch.audit.record(call, serde_json::json!({ "job": tracked.id }), Decision::Allowed);
        }
    }
}

/// Bytes of a job spec's strings: name, command, environment, working
/// directory and the rest, as one host-call argument.
fn spec_bytes(spec: &JobSpec) -> usize {
    let optional = |text: &Option<String>| text.as_ref().map_or(0, String::len);
    optional(&spec.name)
        + spec.command.iter().map(String::len).sum::<usize>()
        + spec.env.iter().map(|var| var.name.len() + var.value.len()).sum::<usize>()
        + optional(&spec.working_dir)
        + optional(&spec.backend)
        + optional(&spec.resources.gpu_class)
        + match &spec.runtime {
            Runtime::Host => 0,
            Runtime::Environment(text) | Runtime::Image(text) => text.len(),
        }
        + spec.backend_options.iter().map(|(key, value)| key.len() + value.len()).sum::<usize>()
}

/// A job spec as the audit record shows it: environment values redacted.
fn audited_spec(spec: &JobSpec) -> serde_json::Value {
    serde_json::json!({
        "name": spec.name,
        "backend": spec.backend,
        "command": spec.command,
        "env": redacted_env(spec.env.iter().map(|var| var.name.as_str())),
        "working_dir": spec.working_dir,
        "resources": {
            "cpu_count": spec.resources.cpu_count,
            "gpu_count": spec.resources.gpu_count,
            "gpu_class": spec.resources.gpu_class,
            "memory_bytes": spec.resources.memory_bytes,
        },
        "timeout_seconds": spec.timeout_seconds,
        "runtime": match &spec.runtime {
            Runtime::Host => "host".to_owned(),
            Runtime::Environment(handle) => format!("environment:{handle}"),
            Runtime::Image(image) => format!("image:{image}"),
        },
        // Values are addresses, names and secret *names*: never a secret.
        "backend_options": spec.backend_options,
    })
}

/// A job spec that passed every check, not yet recorded.
struct CheckedSpec {
    backend: &'static str,
    name: String,
    command: Vec<String>,
    env: Vec<(String, String)>,
    working_dir: Option<PathBuf>,
    resources: JobResources,
    timeout: Option<Duration>,
    runtime: JobRuntime,
    options: backends::catalogue::BackendOptions,
    registry_login: Option<Login>,
}

/// The login a `registry-credential` grant gives for the registry of the
/// job's image, read from its secret; none for other runtimes, for a
/// registry no grant names, and where secrets are not read.
fn image_login(launch: &LaunchContext, jobs: &JobsCtx, runtime: &JobRuntime) -> Result<Option<Login>, Error> {
    let JobRuntime::Image(image) = runtime else { return Ok(None) };
    if matches!(jobs.secrets, JobSecrets::NotRead) || image.starts_with("oci:") {
        return Ok(None);
    }
    let Some(registry) = stepbox_backends::images::registry::registry_of(image) else { return Ok(None) };
    let Some(credential) = launch
        .grants
        .registry_credentials
        .iter()
        .find(|credential| credential.registry.eq_ignore_ascii_case(&registry))
    else {
        return Ok(None);
    };
    Login::from_secret(&credential.registry, &credential.secret, &launch.home.secrets())
        .map(Some)
        .map_err(Error::Failed)
}

/// Validate a spec and check it against the grants. No side effects.
fn check(launch: &LaunchContext, jobs: &JobsCtx, spec: &JobSpec) -> Result<CheckedSpec, Error> {
    if spec.command.is_empty() {
        return Err(Error::Invalid("the job's command is empty".to_owned()));
    }
    if let Some(var) = spec.env.iter().find(|var| !stepbox_backends::units::is_env_name(&var.name)) {
        return Err(Error::Invalid(format!("`{}` is not a valid environment variable name", var.name)));
    }
    let denied = |denial: stepbox_store::policy::Denial| Error::Denied(denial.to_string());
    let refused = |refusal| match refusal {
        stepbox_store::policy::Refused::Denied(denial) => denied(denial),
        stepbox_store::policy::Refused::Invalid(message) => Error::Invalid(message),
    };
    let backend_name = launch.grants.backend(spec.backend.as_deref()).map_err(denied)?;
    launch.grants.command(&spec.command, &launch.entrypoint).map_err(denied)?;
    let mut env: Vec<(String, String)> = spec.env.iter().map(|var| (var.name.clone(), var.value.clone())).collect();
    // The flavor's variables: the caller's, unchanged, or granted names.
    launch.grants.job_env(&env, &launch.environment).map_err(denied)?;
    let (secret_env, backend_options) =
        stepbox_store::policy::connections::split_secret_env(&spec.backend_options).map_err(refused)?;
    if let Some((name, _)) = secret_env.iter().find(|(name, _)| env.iter().any(|(set, _)| set == name)) {
        return Err(Error::Invalid(format!("`{name}` is set both in the job's env and by secret-env")));
    }
    // Secrets land only where the user bound them (`secret-env=VAR=SECRET`).
    match jobs.secrets {
        JobSecrets::NotRead => {
            launch.grants.check_secret_env(&secret_env).map_err(refused)?;
            env.extend(secret_env.into_iter().map(|(name, _)| (name, String::new())));
        }
        JobSecrets::Stored => {
            let filled = launch.grants.secret_env(&secret_env, &launch.home.secrets()).map_err(refused)?;
            env.extend(filled.into_iter().map(|(name, value)| (name, value.expose().to_owned())));
        }
    }
    let resources = JobResources {
        cpu_count: spec.resources.cpu_count,
        gpu_count: spec.resources.gpu_count,
        gpu_class: spec.resources.gpu_class.clone(),
        memory_bytes: spec.resources.memory_bytes,
    };
    let timeout = launch.grants.resources(&resources, spec.timeout_seconds).map_err(denied)?;
    let backend = jobs
        .backends
        .keys()
        .find(|name| **name == backend_name.as_str())
        .copied()
        .ok_or_else(|| Error::Unsupported(format!("this stepbox has no `{backend_name}` job backend")))?;
    let info = backends::catalogue::backend(backend)
        .ok_or_else(|| Error::Unsupported(format!("the `{backend}` backend takes no options")))?;
    let options = match jobs.secrets {
        JobSecrets::NotRead => stepbox_store::policy::connections::unresolved_options(info, &backend_options),
        JobSecrets::Stored => launch.grants.backend_options(info, &backend_options, &launch.home.secrets()),
    }
    .map_err(refused)?;
    let runtime = match &spec.runtime {
        Runtime::Host => JobRuntime::Host,
        Runtime::Environment(handle) => JobRuntime::Environment(launch.environment(handle).ok_or_else(|| {
            Error::Invalid(format!(
                "unknown environment `{handle}`: a job can run only in an environment that requirements.install \
                 returned during this launch"
            ))
        })?),
        Runtime::Image(image) => {
            launch.image_allowed(image).map_err(denied)?;
            JobRuntime::Image(image.clone())
        }
    };
    // The step's source root is on this machine: the default for jobs that
    // run here, meaningless inside an image (which keeps its own default,
    // and whose files are the image's, not this machine's).
    let working_dir = match &spec.working_dir {
        Some(dir) if !dir.starts_with('/') => {
            return Err(Error::Invalid(format!("the working directory `{dir}` is not an absolute path")));
        }
        Some(dir) if matches!(runtime, JobRuntime::Image(_)) => Some(PathBuf::from(dir)),
        Some(dir) => Some(
            launch
                .grants
                .working_dir(std::path::Path::new(dir), &launch.source_root, launch.home.root())
                .map_err(refused)?,
        ),
        None if matches!(runtime, JobRuntime::Image(_)) => None,
        None => Some(launch.source_root.clone()),
    };
    Ok(CheckedSpec {
        backend,
        name: spec.name.clone().unwrap_or_else(|| "job".to_owned()),
        command: spec.command.clone(),
        env,
        working_dir,
        resources,
        timeout: timeout.map(Duration::from_secs),
        registry_login: image_login(launch, jobs, &runtime)?,
        runtime,
        options,
    })
}

/// Record the job, start it on its backend, register it with the launch.
/// Why a submission did not produce a job.
enum Submission {
    /// Refused or failed: an error value for the guest.
    Refused(Error),
    /// The per-launch job limit: the launch ends.
    Limit(usize),
}

async fn submit(
    launch: Arc<LaunchContext>,
    jobs: Arc<JobsCtx>,
    spec: CheckedSpec,
) -> Result<Arc<TrackedJob>, Submission> {
    let seq = match jobs.registry.begin(launch.limits.jobs_per_launch) {
        Ok(seq) => seq,
        Err(NotAdmitted::Closed) => {
            let message = "the launch is ending; no new jobs are accepted".to_owned();
            return Err(Submission::Refused(Error::Cancelled(message)));
        }
        Err(NotAdmitted::Limit(limit)) => return Err(Submission::Limit(limit)),
    };
    match start(&launch, &jobs, seq, spec).await {
        Ok(job) => Ok(job),
        Err(unstarted) => {
            if !unstarted.settled {
                jobs.registry.abandon();
            }
            Err(Submission::Refused(unstarted.error))
        }
    }
}

/// A job that did not start, and whether its place in the registry was
/// already settled (by [`JobRegistry::register`] refusing it).
struct Unstarted {
    error: Error,
    settled: bool,
}

impl From<Error> for Unstarted {
    fn from(error: Error) -> Self {
        Unstarted { error, settled: false }
    }
}

async fn start(
    launch: &Arc<LaunchContext>,
    jobs: &JobsCtx,
    seq: usize,
    spec: CheckedSpec,
) -> Result<Arc<TrackedJob>, Unstarted> {
    let failed = |what: &str, error: &dyn std::fmt::Display| Error::Failed(format!("{what}: {error}"));
    let id = uuid::Uuid::new_v4().to_string();
    let name = format!("{}-{seq}", sanitize(&spec.name));
    let run_dir = launch.home.run_dir(&launch.run_id).map_err(|e| failed("cannot create the run directory", &e))?;
    let log_path = run_dir.join(format!("{name}.log"));
    let log = JobLog::create(&log_path, launch.limits.job_log_bytes, Arc::clone(&jobs.output))
        .map_err(|e| failed("cannot create the job log", &e))?
        .redacting(Arc::clone(&launch.redactor));
    let record = JobRecord {
        id: id.clone(),
        run_id: launch.run_id.clone(),
        seq: seq as u32,
        name: name.clone(),
        backend: spec.backend.to_owned(),
        external_id: None,
        command: spec.command.clone(),
        state: backends::JobState::Pending,
        exit_code: None,
        message: None,
        log_path: log_path.display().to_string(),
        submitted_at: stepbox_store::store::now(),
        ended_at: None,
        gpus: Vec::new(),
    };
    let db = launch.db.clone();
    if let Err(error) = db.blocking(move |db| db.insert_job(&record)).await {
        return Err(failed("cannot record the job", &error).into());
    }
    let log = Arc::new(log);
    let backend = Arc::clone(&jobs.backends[spec.backend]);
    let request = JobRequest {
        id: id.clone(),
        run_id: launch.run_id.clone(),
        name: name.clone(),
        command: spec.command,
        env: spec.env,
        working_dir: spec.working_dir,
        resources: spec.resources,
        timeout: spec.timeout,
        runtime: spec.runtime,
        confinement: launch.grants.confinement(&launch.source_root, launch.home.root(), &launch.read_dirs),
        network: launch.grants.job_network,
        log: Arc::clone(&log),
        options: spec.options,
        closing: Some(jobs.registry.closing()),
        registry_login: spec.registry_login,
    };
    let job = match backend.submit(request).await {
        Ok(job) => job,
        Err(error) => {
            let message = error.to_string();
            let (job_id, recorded) = (id.clone(), message.clone());
            let finished =
                db.blocking(move |db| db.finish_job(&job_id, backends::JobState::Failed, None, Some(&recorded)));
            warn_unrecorded(&id, finished.await);
            return Err(Unstarted::from(match error {
                backends::BackendError::Invalid(m) => Error::Invalid(m),
                backends::BackendError::Unsupported(m) => Error::Unsupported(m),
                backends::BackendError::Unsatisfiable(m) => {
                    if let Ok(mut first) = jobs.unsatisfiable.lock() {
                        first.get_or_insert_with(|| m.clone());
                    }
                    Error::Unsupported(m)
                }
                backends::BackendError::Failed(_) => Error::Failed(message),
            }));
        }
    };
    let external = job.external_id();
    let gpus = job.gpus();
    let job_id = id.clone();
    warn_unrecorded(&id, db.blocking(move |db| db.job_started(&job_id, &external, &gpus)).await);
    tracing::debug!("job {id} ({name}) started on {}", spec.backend);
    let tracked = Arc::new(TrackedJob { id: id.clone(), name, job: Arc::clone(&job), log });
    let ended_log = Arc::clone(&tracked.log);
    let recorder = tokio::spawn(async move {
        let status = job.wait().await;
        ended_log.finish();
        let job_id = id.clone();
        let finished =
            db.blocking(move |db| db.finish_job(&job_id, status.state, status.exit_code, status.message.as_deref()));
        warn_unrecorded(&id, finished.await);
    });
    if !jobs.registry.register(Arc::clone(&tracked), recorder) {
        tracked.job.cancel(launch.limits.cancel_grace).await;
        let error = Error::Cancelled("the launch ended while the job was being submitted".to_owned());
        return Err(Unstarted { error, settled: true });
    }
    Ok(tracked)
}

/// A job's state change that could not be recorded is worth a warning, not a
/// failed launch: the job itself is unaffected.
fn warn_unrecorded(job_id: &str, result: Result<(), stepbox_store::store::StoreError>) {
    if let Err(error) = result {
        tracing::warn!("could not record the state of job {job_id}: {error}");
    }
}

/// A name safe for a file name: letters, digits, `-`, `_` and `.`.
fn sanitize(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .take(64)
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .collect();
    if cleaned.is_empty() || cleaned.starts_with('.') { format!("job{cleaned}") } else { cleaned }
}

fn to_wit(status: backends::JobStatus) -> JobStatus {
    JobStatus {
        state: match status.state {
            backends::JobState::Pending => JobState::Pending,
            backends::JobState::Running => JobState::Running,
            backends::JobState::Succeeded => JobState::Succeeded,
            backends::JobState::Failed => JobState::Failed,
            backends::JobState::Cancelled => JobState::Cancelled,
            backends::JobState::TimedOut => JobState::TimedOut,
        },
        exit_code: status.exit_code,
        message: status.message,
    }
}

/// One line describing a host error, for the flavor's log.
pub(crate) fn describe(error: &Error) -> String {
    match error {
        Error::Denied(m) => format!("jobs.submit denied: {m}"),
        Error::Invalid(m) => format!("jobs.submit refused an invalid spec: {m}"),
        Error::Unsupported(m) => format!("jobs.submit unsupported: {m}"),
        Error::Failed(m) => format!("jobs.submit failed: {m}"),
        Error::Cancelled(m) => format!("jobs.submit cancelled: {m}"),
    }
}
