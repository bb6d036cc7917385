//! The Slurm job backend: `sbatch` submits the batch script, `scontrol
//! show job` follows it, `scancel` stops it, and the job's output files are
//! copied into its log as they grow.
//!
//! Shared filesystem: the batch script, the output files and any Python
//! environment a job names live under `$STEPBOX_HOME`, and the job's
//! working directory is a path on this machine. The compute nodes must see
//! them at the same paths (the usual shared home or project filesystem).

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::script::{OutputFiles, Placement, batch_script, sbatch_args};
use super::state::{parse_fields, status_of};
use crate::backends::remote::{self, EngineError, EngineJob, with_retries};
use crate::backends::{
    BackendError, JobBackend, JobLog, JobRequest, JobRuntime, JobStatus, OrphanedJob, RunningJob, Stream,
};

/// The variable naming the directory of Slurm's commands (default: PATH).
pub const SLURM_BIN_VAR: &str = "STEPBOX_SLURM_BIN";
/// How long one Slurm command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// PATH for jobs when neither the job nor stepbox has one.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// Output is copied from the job's files in pieces of this size.
const READ_CHUNK: usize = 64 << 10;

/// Runs jobs on the Slurm cluster this machine's Slurm commands reach.
pub struct SlurmBackend {
    grace: Duration,
    /// Where each job's script and output files go (one directory per job).
    jobs_dir: PathBuf,
}

impl SlurmBackend {
    /// A backend keeping job files under `jobs_dir`, stopping jobs with `grace`.
    pub fn new(grace: Duration, jobs_dir: PathBuf) -> Self {
        Self { grace, jobs_dir }
    }
}

/// Slurm's commands, found on PATH or in `STEPBOX_SLURM_BIN`.
#[derive(Debug, Clone)]
struct Commands {
    sbatch: PathBuf,
    scontrol: PathBuf,
    scancel: PathBuf,
}

impl Commands {
    fn locate() -> Result<Self, String> {
        let dir = std::env::var_os(SLURM_BIN_VAR).filter(|dir| !dir.is_empty()).map(PathBuf::from);
        let find = |name: &str| match &dir {
            Some(dir) => {
                let path = dir.join(name);
                crate::programs::is_executable(&path)
                    .then_some(path)
                    .ok_or_else(|| format!("{SLURM_BIN_VAR} is {}, which has no `{name}`", dir.display()))
            }
            None => crate::programs::on_path(name).ok_or_else(|| {
                format!(
                    "the Slurm backend needs `{name}`, which is not on PATH: install Slurm's client commands \
                     (Debian: slurm-client) or point {SLURM_BIN_VAR} at their directory"
                )
            }),
        };
        Ok(Self { sbatch: find("sbatch")?, scontrol: find("scontrol")?, scancel: find("scancel")? })
    }
}

/// Run a Slurm command with exactly `env` (plus `SLURM_CONF` if stepbox has
/// one), bounded by [`COMMAND_TIMEOUT`]. Its stdout on success.
async fn run(program: &Path, args: &[String], env: &[(String, String)]) -> Result<String, EngineError> {
    let mut command = tokio::process::Command::new(program);
    command.args(args).env_clear().envs(env.iter().map(|(k, v)| (k, v))).kill_on_drop(true);
    if let Some(conf) = std::env::var_os("SLURM_CONF") {
        command.env("SLURM_CONF", conf);
    }
    let name = program.file_name().map_or_else(|| program.display().to_string(), |n| n.to_string_lossy().into_owned());
    let output = match tokio::time::timeout(COMMAND_TIMEOUT, command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(error)) => return Err(EngineError::Refused(format!("cannot run {}: {error}", program.display()))),
        Err(_) => {
            return Err(EngineError::Unreachable(format!("`{name}` did not finish in {}s", COMMAND_TIMEOUT.as_secs())));
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let message = if stderr.is_empty() { format!("`{name}` failed ({})", output.status) } else { stderr };
    Err(if controller_unreachable(&message) {
        EngineError::Unreachable(message)
    } else {
        EngineError::Refused(message)
    })
}

/// Whether Slurm's message says the controller did not answer (as opposed
/// to refusing the request).
fn controller_unreachable(message: &str) -> bool {
    [
        "Unable to contact slurm controller",
        "Socket timed out",
        "Connection refused",
        "Zero Bytes were transmitted",
        "Slurm backup controller in standby mode",
        "temporarily unable",
    ]
    .iter()
    .any(|needle| message.contains(needle))
}

/// The job's environment for `sbatch --export=ALL`: the job's variables,
/// PATH (the environment's `bin` first), and nothing that would configure
/// `sbatch` itself.
fn job_environment(request: &JobRequest) -> Result<Vec<(String, String)>, BackendError> {
    if let Some((name, _)) =
        request.env.iter().find(|(name, _)| name.starts_with("SBATCH_") || name.starts_with("SLURM_"))
    {
        return Err(BackendError::Invalid(format!(
            "the job sets `{name}`: variables starting with SBATCH_ or SLURM_ configure sbatch itself, and the \
             Slurm backend does not pass them; use the backend options (partition, account, qos) instead"
        )));
    }
    let mut env: Vec<(String, String)> = request.env.iter().filter(|(name, _)| name != "PATH").cloned().collect();
    let path = match request.env.iter().find(|(name, _)| name == "PATH") {
        Some((_, path)) => path.clone(),
        None => std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_owned()),
    };
    match &request.runtime {
        JobRuntime::Host => env.push(("PATH".to_owned(), path)),
        JobRuntime::Environment(environment) => {
            env.push(("PATH".to_owned(), format!("{}:{path}", environment.bin_dir().display())));
            env.retain(|(name, _)| name != "VIRTUAL_ENV");
            env.push(("VIRTUAL_ENV".to_owned(), environment.root.display().to_string()));
        }
        JobRuntime::Image(image) => {
            return Err(BackendError::Unsupported(format!(
                "the Slurm backend runs host programs and Python environments, not images ({image}); \
                 use the container backend, or install the step's requirements with requirements.install"
            )));
        }
    }
    Ok(env)
}

/// The directory for one job's files, owner-only.
fn job_dir(root: &Path, id: &str) -> Result<PathBuf, BackendError> {
    let dir = root.join(id);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|error| BackendError::Failed(format!("cannot create {}: {error}", dir.display())))?;
    Ok(dir)
}

fn write_script(path: &Path, script: &str) -> Result<(), BackendError> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o700)
        .open(path)
        .map_err(|error| BackendError::Failed(format!("cannot write {}: {error}", path.display())))?;
    file.write_all(script.as_bytes())
        .map_err(|error| BackendError::Failed(format!("cannot write {}: {error}", path.display())))
}

/// `sbatch --parsable` prints `JOBID` or `JOBID;CLUSTER`.
fn parse_job_id(stdout: &str) -> Option<String> {
    let id = stdout.trim().split(';').next()?.trim();
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then(|| id.to_owned())
}

#[async_trait]
impl JobBackend for SlurmBackend {
    /// `scancel` the recorded Slurm job id, through the commands a launch uses.
    fn stop_orphan(&self, job: &OrphanedJob<'_>) -> Result<(), String> {
        let id = job.external_id.filter(|id| !id.is_empty()).ok_or("its Slurm job id was never recorded")?;
        let mut command = std::process::Command::new(Commands::locate()?.scancel);
        command.arg(id).env_clear();
        if let Some(conf) = std::env::var_os("SLURM_CONF") {
            command.env("SLURM_CONF", conf);
        }
        crate::backends::run_to_end(&mut command).map(|_| ())
    }

    fn name(&self) -> &'static str {
        "slurm"
    }

    async fn submit(&self, request: JobRequest) -> Result<Arc<dyn RunningJob>, BackendError> {
        let commands = Commands::locate().map_err(BackendError::Unsupported)?;
        let env = job_environment(&request)?;
        let script = batch_script(&request.command).map_err(BackendError::Invalid)?;
        let dir = job_dir(&self.jobs_dir, &request.id)?;
        let script_path = dir.join("job.sh");
        write_script(&script_path, &script)?;
        let (stdout, stderr) = (dir.join("stdout"), dir.join("stderr"));
        let placement = Placement {
            partition: request.options.get("partition").map(str::to_owned),
            account: request.options.get("account").map(str::to_owned),
            qos: request.options.get("qos").map(str::to_owned),
        };
        let mut args = sbatch_args(
            &format!("stepbox-{}", request.name),
            OutputFiles { stdout: &stdout, stderr: &stderr },
            request.working_dir.as_deref(),
            &request.resources,
            request.timeout,
            &placement,
        );
        args.push(format!("--comment=stepbox job {}", request.id));
        args.push(script_path.display().to_string());
        let printed = with_retries("Slurm", "submit the job", || run(&commands.sbatch, &args, &env))
            .await
            .map_err(|error| BackendError::Failed(format!("sbatch: {}", error.message())))?;
        let slurm_id = parse_job_id(&printed)
            .ok_or_else(|| BackendError::Failed(format!("sbatch printed no job id: {}", printed.trim())))?;
        tracing::debug!("job {} is Slurm job {slurm_id}", request.id);
        let job = SlurmJob { id: slurm_id, commands, stdout, stderr, offsets: Mutex::new([0, 0]) };
        Ok(remote::follow(Arc::new(job), request.log, request.timeout, self.grace))
    }
}

/// One submitted batch job.
struct SlurmJob {
    id: String,
    commands: Commands,
    stdout: PathBuf,
    stderr: PathBuf,
    /// Bytes of stdout and stderr already copied into the log.
    offsets: Mutex<[u64; 2]>,
}

impl SlurmJob {
    async fn scontrol(&self) -> Result<String, EngineError> {
        let args = ["show".to_owned(), "job".to_owned(), "-o".to_owned(), self.id.clone()];
        run(&self.commands.scontrol, &args, &[]).await
    }
}

#[async_trait]
impl EngineJob for SlurmJob {
    fn engine(&self) -> &'static str {
        "Slurm"
    }

    fn external_id(&self) -> String {
        self.id.clone()
    }

    async fn poll(&self, stop_requested: bool) -> Result<JobStatus, EngineError> {
        let line = self.scontrol().await.map_err(|error| match error {
            EngineError::Refused(message) if message.contains("Invalid job id") => EngineError::Refused(format!(
                "Slurm no longer knows job {} (it forgets ended jobs after MinJobAge): {message}",
                self.id
            )),
            other => other,
        })?;
        let fields = parse_fields(line.lines().next().unwrap_or_default());
        if fields.get("JobId") != Some(&self.id) {
            return Err(EngineError::Refused(format!("scontrol did not describe job {}: {}", self.id, line.trim())));
        }
        Ok(status_of(&fields, stop_requested))
    }

    async fn collect_output(&self, log: &JobLog) {
        let mut offsets = *self.offsets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for (index, (path, stream)) in
            [(&self.stdout, Stream::Stdout), (&self.stderr, Stream::Stderr)].into_iter().enumerate()
        {
            offsets[index] += copy_new_bytes(path, offsets[index], stream, log).await;
        }
        *self.offsets.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = offsets;
    }

    async fn stop(&self, force: bool) -> Result<(), EngineError> {
        // Slurm's own cancel first: SIGTERM to the batch script and its
        // steps, SIGKILL after the cluster's KillWait, and the job ends
        // CANCELLED. Once stepbox's grace is over, SIGKILL to all of it.
        let mut args = Vec::new();
        if force {
            args.extend(["--full".to_owned(), "--signal=KILL".to_owned()]);
        }
        args.push(self.id.clone());
        with_retries("Slurm", "cancel the job", || run(&self.commands.scancel, &args, &[])).await.map(|_| ())
    }
}

/// Copy what `path` holds past `offset` into the log, a chunk at a time;
/// returns the bytes copied.
async fn copy_new_bytes(path: &Path, offset: u64, stream: Stream, log: &JobLog) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let Ok(mut file) = tokio::fs::File::open(path).await else { return 0 };
    if file.seek(std::io::SeekFrom::Start(offset)).await.is_err() {
        return 0;
    }
    let mut copied = 0;
    let mut buffer = vec![0; READ_CHUNK];
    while let Ok(read @ 1..) = file.read(&mut buffer).await {
        log.write_paced(stream, &buffer[..read]).await;
        copied += read as u64;
    }
    copied
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sbatch_output_gives_the_job_id() {
        assert_eq!(parse_job_id("42\n").as_deref(), Some("42"));
        assert_eq!(parse_job_id("42;cluster\n").as_deref(), Some("42"));
        assert_eq!(parse_job_id("Submitted batch job 42"), None);
        assert_eq!(parse_job_id(""), None);
    }

    #[test]
    fn controller_outages_are_told_from_refusals() {
        assert!(controller_unreachable(
            "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)"
        ));
        assert!(!controller_unreachable(
            "sbatch: error: Batch job submission failed: Invalid partition name specified"
        ));
    }
}
