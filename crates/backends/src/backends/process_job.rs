//! What every process-backed job shares (local processes, `podman run`):
//! the channels between the job's handle and its supervisor task, the wait
//! for exit / timeout / cancel, copying the child's output into the job log,
//! and turning an exit status into a verdict.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::AsyncReadExt;
use tokio::process::Child;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use async_trait::async_trait;

use super::{JobLog, JobState, JobStatus, RunningJob, Stream};

/// How long the output readers get to drain once the job has ended.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The host's side of a supervised job: its status, and a way to ask for
/// cancellation. `RunningJob` implementations delegate to it.
pub struct JobHandle {
    status: watch::Receiver<JobStatus>,
    cancel: watch::Sender<Option<Duration>>,
}

/// The supervisor's side: where it publishes the verdict and hears cancels.
pub struct SupervisorLink {
    pub status: watch::Sender<JobStatus>,
    pub cancel: watch::Receiver<Option<Duration>>,
}

/// A connected handle and supervisor link for a running job.
pub fn link() -> (JobHandle, SupervisorLink) {
    let (status_tx, status_rx) = watch::channel(JobStatus::running());
    let (cancel_tx, cancel_rx) = watch::channel(None);
    (JobHandle { status: status_rx, cancel: cancel_tx }, SupervisorLink { status: status_tx, cancel: cancel_rx })
}

impl JobHandle {
    /// The current status, without waiting.
    pub fn status(&self) -> JobStatus {
        self.status.borrow().clone()
    }

    /// Wait until the supervisor has published a terminal status.
    pub async fn wait(&self) -> JobStatus {
        let mut status = self.status.clone();
        match status.wait_for(|status| status.state.is_terminal()).await {
            Ok(status) => status.clone(),
            // The supervisor is gone without a verdict (the runtime is shutting down).
            Err(_) => self.status.borrow().clone(),
        }
    }

    /// Ask for cancellation with `grace` (the first request wins), then wait.
    pub async fn cancel(&self, grace: Duration) -> JobStatus {
        self.cancel.send_if_modified(|current| {
            let first = current.is_none();
            if first {
                *current = Some(grace);
            }
            first
        });
        self.wait().await
    }
}

/// A job the host follows through its [`JobHandle`], whatever runs it (a
/// local process group, a container, a Slurm or Ray job): what every
/// backend's `submit` returns.
pub struct SupervisedJob {
    external_id: String,
    handle: JobHandle,
    gpus: Vec<String>,
}

impl SupervisedJob {
    /// A job known to its backend as `external_id`.
    pub fn new(external_id: String, handle: JobHandle) -> Self {
        Self { external_id, handle, gpus: Vec::new() }
    }

    /// The same, holding the GPUs `gpus` (UUIDs).
    pub fn with_gpus(mut self, gpus: Vec<String>) -> Self {
        self.gpus = gpus;
        self
    }
}

#[async_trait]
impl RunningJob for SupervisedJob {
    fn external_id(&self) -> String {
        self.external_id.clone()
    }

    fn status(&self) -> JobStatus {
        self.handle.status()
    }

    async fn wait(&self) -> JobStatus {
        self.handle.wait().await
    }

    async fn cancel(&self, grace: Duration) -> JobStatus {
        self.handle.cancel(grace).await
    }

    fn gpus(&self) -> Vec<String> {
        self.gpus.clone()
    }
}

/// What ended the wait on a job's main process.
pub enum Ending {
    /// It exited on its own.
    Exited(std::io::Result<ExitStatus>),
    /// Its timeout passed: stop it with the default grace.
    TimedOut,
    /// Cancellation was asked for, with this grace period.
    Cancelled(Duration),
}

/// Wait for `child` to exit, `timeout` to pass, or a cancel request.
pub async fn wait_for_ending(
    child: &mut Child,
    timeout: Option<Duration>,
    cancel: &mut watch::Receiver<Option<Duration>>,
    default_grace: Duration,
) -> Ending {
    let deadline = async {
        match timeout {
            Some(timeout) => tokio::time::sleep(timeout).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        exit = child.wait() => Ending::Exited(exit),
        () = deadline => Ending::TimedOut,
        requested = cancel.wait_for(Option::is_some) => {
            Ending::Cancelled(requested.ok().and_then(|grace| *grace).unwrap_or(default_grace))
        }
    }
}

/// Copy the child's stdout and stderr into the job log.
pub fn spawn_readers(child: &mut Child, log: &Arc<JobLog>) -> Vec<JoinHandle<()>> {
    let mut readers = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        readers.push(tokio::spawn(copy_into(stdout, Arc::clone(log), Stream::Stdout)));
    }
    if let Some(stderr) = child.stderr.take() {
        readers.push(tokio::spawn(copy_into(stderr, Arc::clone(log), Stream::Stderr)));
    }
    readers
}

async fn copy_into(mut from: impl tokio::io::AsyncRead + Unpin, log: Arc<JobLog>, stream: Stream) {
    let mut buffer = vec![0; 8192];
    while let Ok(n @ 1..) = from.read(&mut buffer).await {
        log.write_paced(stream, &buffer[..n]).await;
    }
}

/// Let the readers finish what the job wrote, but not forever (a process
/// that inherited the pipes may keep them open).
pub async fn drain(readers: Vec<JoinHandle<()>>) {
    for reader in readers {
        let abort = reader.abort_handle();
        if tokio::time::timeout(DRAIN_TIMEOUT, reader).await.is_err() {
            abort.abort();
        }
    }
}

/// How a job ended, from its exit status and what ended it.
pub fn verdict(exit: std::io::Result<ExitStatus>, ended_by: Option<JobState>, timeout: Option<Duration>) -> JobStatus {
    let exit = match exit {
        Ok(exit) => exit,
        Err(error) => {
            return JobStatus {
                state: JobState::Failed,
                exit_code: None,
                message: Some(format!("lost track of the process: {error}")),
            };
        }
    };
    let exit_code = exit.code().or_else(|| exit.signal().map(|signal| 128 + signal));
    let described = match (exit.code(), exit.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("killed by signal {}", signal_name(signal)),
        _ => "ended".to_owned(),
    };
    let (state, message) = match ended_by {
        Some(JobState::TimedOut) => (
            JobState::TimedOut,
            Some(format!("timed out after {}; {described}", humantime::format_duration(timeout.unwrap_or_default()))),
        ),
        Some(JobState::Cancelled) => (JobState::Cancelled, Some(format!("cancelled; {described}"))),
        _ if exit.success() => (JobState::Succeeded, None),
        _ => (JobState::Failed, Some(described)),
    };
    JobStatus { state, exit_code, message }
}

fn signal_name(signal: i32) -> String {
    Signal::try_from(signal).map_or_else(|_| signal.to_string(), |s| s.as_str().to_owned())
}
