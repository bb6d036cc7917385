//! What jobs on a remote engine (Slurm, Ray) share: following the job by
//! polling until the engine reports an end, copying its output as it
//! grows, the host's own timeout, cancellation with a grace period, and
//! bounded retries when the engine does not answer, so that an engine that
//! is down gives an error and never a hang.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::process_job::{SupervisedJob, SupervisorLink};
use super::{JobLog, JobState, JobStatus, RunningJob};

/// Attempts at a call an engine did not answer, before giving up.
pub const ATTEMPTS: u32 = 4;
/// The first pause between attempts; it doubles each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// How long a followed job may go without the engine answering.
const SILENCE_LIMIT: Duration = Duration::from_secs(60);
/// Polling starts fast (short steps finish in a second or two) and slows down.
const FIRST_POLL: Duration = Duration::from_millis(250);
const LONGEST_POLL: Duration = Duration::from_secs(2);
/// How long the engine gets to confirm a forced stop.
const CONFIRM_STOP: Duration = Duration::from_secs(30);
/// A job still pending after this long is reported, with the engine's reason.
const PENDING_NOTICE: Duration = Duration::from_secs(5);

/// Why a call to an engine failed.
#[derive(Debug, Clone)]
pub enum EngineError {
    /// The engine did not answer (connection refused, timeout, 5xx): worth
    /// another attempt.
    Unreachable(String),
    /// The engine answered and refused: another attempt would fail the same way.
    Refused(String),
}

impl EngineError {
    pub fn message(&self) -> &str {
        match self {
            EngineError::Unreachable(message) | EngineError::Refused(message) => message,
        }
    }
}

/// Run `call` until it succeeds, is refused, or `ATTEMPTS` attempts found
/// the engine unreachable; the error then says how often it was tried.
pub async fn with_retries<T, F, Fut>(engine: &str, what: &str, mut call: F) -> Result<T, EngineError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, EngineError>>,
{
    let mut pause = FIRST_BACKOFF;
    for attempt in 1..=ATTEMPTS {
        match call().await {
            Err(EngineError::Unreachable(message)) if attempt < ATTEMPTS => {
                tracing::warn!("{engine} did not answer ({what}, attempt {attempt} of {ATTEMPTS}): {message}");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(EngineError::Unreachable(message)) => {
                return Err(EngineError::Unreachable(format!(
                    "{engine} did not answer {ATTEMPTS} attempts to {what} over {}s: {message}",
                    total_backoff().as_secs()
                )));
            }
            other => return other,
        }
    }
    unreachable!("the last attempt returns")
}

fn total_backoff() -> Duration {
    (0..ATTEMPTS - 1).map(|n| FIRST_BACKOFF * 2u32.pow(n)).sum()
}

/// One job on an engine, as the follower sees it.
#[async_trait]
pub trait EngineJob: Send + Sync + 'static {
    /// The engine's name, for messages: `Slurm`, `Ray`.
    fn engine(&self) -> &'static str;
    /// The engine's id for the job.
    fn external_id(&self) -> String;
    /// Ask the engine for the job's status, once. `stop_requested` says
    /// stepbox asked for the stop (some engines report it as a failure).
    async fn poll(&self, stop_requested: bool) -> Result<JobStatus, EngineError>;
    /// Copy what the job wrote since the last call into `log`.
    async fn collect_output(&self, log: &JobLog);
    /// Ask the engine to stop the job: politely, or by force once the
    /// grace period is over.
    async fn stop(&self, force: bool) -> Result<(), EngineError>;
}

/// Start following `job` until it ends: poll, copy output, enforce
/// `timeout`, stop on cancel with the grace asked for (`default_grace` on
/// timeout).
pub fn follow(
    job: Arc<dyn EngineJob>,
    log: Arc<JobLog>,
    timeout: Option<Duration>,
    default_grace: Duration,
) -> Arc<dyn RunningJob> {
    let (handle, link) = super::process_job::link();
    let external_id = job.external_id();
    tokio::spawn(follow_to_end(job, log, timeout, default_grace, link));
    Arc::new(SupervisedJob::new(external_id, handle))
}

/// A stop stepbox asked for: why, and when to force it.
struct Stopping {
    because: JobState,
    force_at: Instant,
    forced_at: Option<Instant>,
}

async fn follow_to_end(
    job: Arc<dyn EngineJob>,
    log: Arc<JobLog>,
    timeout: Option<Duration>,
    default_grace: Duration,
    mut link: SupervisorLink,
) {
    let started = Instant::now();
    let mut pause = FIRST_POLL;
    let mut last_answer = Instant::now();
    let mut stopping: Option<Stopping> = None;
    let mut told_pending = false;
    loop {
        if stopping.is_none() {
            let cancel_grace = tokio::select! {
                () = tokio::time::sleep(pause) => None,
                requested = link.cancel.wait_for(Option::is_some) => {
                    Some(requested.ok().and_then(|grace| *grace).unwrap_or(default_grace))
                }
            };
            if let Some(grace) = cancel_grace {
                stopping = Some(request_stop(&*job, JobState::Cancelled, grace).await);
            }
        } else {
            tokio::time::sleep(pause).await;
        }
        pause = (pause * 2).min(LONGEST_POLL);
        if stopping.is_none() && timeout.is_some_and(|timeout| started.elapsed() >= timeout) {
            stopping = Some(request_stop(&*job, JobState::TimedOut, default_grace).await);
        }
        if let Some(stop) = stopping.as_mut() {
            if stop.forced_at.is_none() && Instant::now() >= stop.force_at {
                if let Err(error) = job.stop(true).await {
                    tracing::warn!(
                        "{} job {}: forced stop failed: {}",
                        job.engine(),
                        job.external_id(),
                        error.message()
                    );
                }
                stop.forced_at = Some(Instant::now());
            }
            if stop.forced_at.is_some_and(|at| at.elapsed() >= CONFIRM_STOP) {
                let last_seen = link.status.borrow().state;
                let message = format!(
                    "{} did not confirm that job {} stopped (last seen {last_seen}); check it on the engine",
                    job.engine(),
                    job.external_id()
                );
                let _ = link.status.send(JobStatus { state: stop.because, exit_code: None, message: Some(message) });
                return;
            }
        }
        job.collect_output(&log).await;
        match job.poll(stopping.is_some()).await {
            Ok(status) if status.state.is_terminal() => {
                job.collect_output(&log).await;
                let _ = link.status.send(settle(status, stopping.as_ref().map(|stop| stop.because), timeout));
                return;
            }
            Ok(status) => {
                last_answer = Instant::now();
                if status.state == JobState::Pending && !told_pending && started.elapsed() >= PENDING_NOTICE {
                    // A job waiting for resources the cluster may never have
                    // (GPUs on a CPU-only cluster) must not look like a hang.
                    told_pending = true;
                    tracing::info!(
                        "{} job {} is still pending after {}s: {}",
                        job.engine(),
                        job.external_id(),
                        started.elapsed().as_secs(),
                        status.message.as_deref().unwrap_or("the engine gives no reason")
                    );
                }
                link.status.send_if_modified(|current| {
                    let changed = current.state != status.state;
                    *current = status;
                    changed
                });
            }
            Err(error) => {
                let silent = last_answer.elapsed();
                tracing::warn!("{} job {}: {}", job.engine(), job.external_id(), error.message());
                if silent >= SILENCE_LIMIT || matches!(error, EngineError::Refused(_)) {
                    let message = format!(
                        "lost track of {} job {}: {} (no answer for {}s); the job may still be running there",
                        job.engine(),
                        job.external_id(),
                        error.message(),
                        silent.as_secs()
                    );
                    let _ = link.status.send(JobStatus {
                        state: JobState::Failed,
                        exit_code: None,
                        message: Some(message),
                    });
                    return;
                }
            }
        }
    }
}

async fn request_stop(job: &dyn EngineJob, because: JobState, grace: Duration) -> Stopping {
    tracing::debug!("{} job {}: stopping ({because})", job.engine(), job.external_id());
    let force_at = match job.stop(false).await {
        Ok(()) => Instant::now() + grace,
        Err(error) => {
            // The polite stop failed: go straight to the forced one.
            tracing::warn!("{} job {}: stop failed: {}", job.engine(), job.external_id(), error.message());
            Instant::now()
        }
    };
    Stopping { because, force_at, forced_at: None }
}

/// The final status: a stop stepbox asked for decides the state.
fn settle(status: JobStatus, stopped_because: Option<JobState>, timeout: Option<Duration>) -> JobStatus {
    match stopped_because {
        Some(JobState::TimedOut) => JobStatus {
            state: JobState::TimedOut,
            exit_code: status.exit_code,
            message: Some(format!("timed out after {}", humantime::format_duration(timeout.unwrap_or_default()))),
        },
        Some(JobState::Cancelled) if status.state != JobState::Succeeded => JobStatus {
            state: JobState::Cancelled,
            exit_code: status.exit_code,
            message: Some(status.message.unwrap_or_else(|| "cancelled".to_owned())),
        },
        _ => status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_engine_is_tried_a_bounded_number_of_times() {
        let calls = AtomicU32::new(0);
        let outcome: Result<(), _> = with_retries("Ray", "submit the job", || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(EngineError::Unreachable("connection refused".to_owned())) }
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), ATTEMPTS);
        let message = outcome.expect_err("gives up").message().to_owned();
        assert!(
            message.contains("did not answer 4 attempts to submit the job") && message.contains("connection refused"),
            "{message}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_not_retried() {
        let calls = AtomicU32::new(0);
        let outcome: Result<(), _> = with_retries("Slurm", "submit", || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(EngineError::Refused("invalid partition".to_owned())) }
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(outcome.expect_err("refused").message(), "invalid partition");
    }

    #[test]
    fn a_stop_stepbox_asked_for_decides_the_final_state() {
        let failed = JobStatus { state: JobState::Failed, exit_code: Some(143), message: None };
        assert_eq!(settle(failed.clone(), Some(JobState::Cancelled), None).state, JobState::Cancelled);
        assert_eq!(settle(failed.clone(), Some(JobState::TimedOut), None).state, JobState::TimedOut);
        assert_eq!(settle(failed, None, None).state, JobState::Failed);
        let done = JobStatus { state: JobState::Succeeded, exit_code: Some(0), message: None };
        assert_eq!(settle(done, Some(JobState::Cancelled), None).state, JobState::Succeeded, "it ended first");
    }
}
