//! Every job of one launch: how the host owns them. Submissions run in
//! their own tasks, so a job is registered even if the guest is stopped
//! mid-call; once the launch ends or is cancelled the registry is closed
//! (later submissions get `cancelled`) and every job still running is
//! cancelled and awaited.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use stepbox_backends::backends::{JobLog, RunningJob};

/// A job the launch submitted.
pub struct TrackedJob {
    /// The runtime's id (the one the guest sees).
    pub id: String,
    pub name: String,
    pub job: Arc<dyn RunningJob>,
    pub log: Arc<JobLog>,
}

#[derive(Default)]
struct Registry {
    closed: bool,
    /// Submissions accepted but not yet registered or refused.
    in_flight: usize,
    /// Submissions ever started, for the per-launch limit and numbering.
    started: usize,
    jobs: Vec<Arc<TrackedJob>>,
    /// Tasks that record each job's end in the database.
    recorders: Vec<JoinHandle<()>>,
}

/// Why a submission could not start.
pub enum NotAdmitted {
    /// The launch is over or being cancelled.
    Closed,
    /// The per-launch job limit is reached.
    Limit(usize),
}

/// Every job of one launch.
#[derive(Default)]
pub struct JobRegistry {
    inner: Mutex<Registry>,
    settled: Notify,
    /// True once the launch is closing: a submission still waiting to start
    /// its job (for GPUs) gives up.
    closing: tokio::sync::watch::Sender<bool>,
}

impl JobRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reserve a place for a new job; returns its sequence number (from 1).
    pub fn begin(&self, limit: usize) -> Result<usize, NotAdmitted> {
        let mut registry = self.lock();
        if registry.closed {
            return Err(NotAdmitted::Closed);
        }
        if registry.started >= limit {
            return Err(NotAdmitted::Limit(limit));
        }
        registry.started += 1;
        registry.in_flight += 1;
        Ok(registry.started)
    }

    /// Register a job the backend accepted. Returns false when the launch was
    /// closed meanwhile: the caller must then cancel the job itself.
    pub fn register(&self, job: Arc<TrackedJob>, recorder: JoinHandle<()>) -> bool {
        let mut registry = self.lock();
        registry.recorders.push(recorder);
        let accepted = !registry.closed;
        if accepted {
            registry.jobs.push(job);
        }
        registry.in_flight -= 1;
        drop(registry);
        self.settled.notify_waiters();
        accepted
    }

    /// What a submission watches to stop waiting when the launch closes.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Give back a place reserved with [`JobRegistry::begin`] when the
    /// submission failed before [`JobRegistry::register`] settled it.
    pub fn abandon(&self) {
        self.lock().in_flight -= 1;
        self.settled.notify_waiters();
    }

    /// Every job the launch registered, in the order they were submitted.
    pub fn all(&self) -> Vec<Arc<TrackedJob>> {
        self.lock().jobs.clone()
    }

    /// Jobs still running.
    pub fn running(&self) -> Vec<Arc<TrackedJob>> {
        let jobs = self.lock().jobs.clone();
        jobs.into_iter().filter(|job| !job.job.status().state.is_terminal()).collect()
    }

    /// Accept no more jobs, cancel every running job (each gets `grace`
    /// between SIGTERM and SIGKILL), and wait until all of them have ended
    /// and their ends are recorded. Returns the jobs that had to be cancelled.
    pub async fn close_and_cancel(&self, grace: Duration) -> Vec<Arc<TrackedJob>> {
        self.lock().closed = true;
        self.closing.send_replace(true);
        // Wait for submissions in flight to register (or refuse) their jobs.
        loop {
            let notified = self.settled.notified();
            if self.lock().in_flight == 0 {
                break;
            }
            notified.await;
        }
        let running = self.running();
        let cancels: Vec<_> = running
            .iter()
            .map(|job| {
                let job = Arc::clone(job);
                tokio::spawn(async move { job.job.cancel(grace).await })
            })
            .collect();
        for cancel in cancels {
            let _ = cancel.await;
        }
        let recorders = std::mem::take(&mut self.lock().recorders);
        for recorder in recorders {
            let _ = recorder.await;
        }
        running
    }
}
