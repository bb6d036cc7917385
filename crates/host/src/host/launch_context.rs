//! What the host knows about the launch in progress: its run, its grants and
//! limits, its backends, and every job it has submitted.
//!
//! The [`JobRegistry`] is how the host owns jobs. Submissions run in their own
//! tasks, so a job is registered even if the guest is stopped mid-call; once
//! the launch ends or is cancelled the registry is closed (later submissions
//! get `cancelled`) and every job still running is cancelled and awaited.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::limits::Limits;
use stepbox_backends::backends::{JobBackend, JobLog, OutputSink, RunningJob};
use stepbox_store::home::Home;
use stepbox_store::policy::Grants;
use stepbox_store::store::Db;

/// A job the launch submitted.
pub struct TrackedJob {
    /// The runtime's id (the one the guest sees).
    pub id: String,
    pub name: String,
    pub job: Arc<dyn RunningJob>,
    pub log: Arc<JobLog>,
}

/// The launch a flavor instance is running.
pub struct LaunchContext {
    pub run_id: String,
    pub db: Db,
    pub home: Home,
    /// What the flavor may do.
    pub grants: Grants,
    pub limits: Limits,
    /// The command a job must run unless `arbitrary-commands` is granted.
    pub entrypoint: Vec<String>,
    /// The environment the launch gave the step; a job may repeat a guarded
    /// variable from it (see [`stepbox_store::policy::job_env`]).
    pub environment: Vec<(String, String)>,
    /// The step's source directory: the default working directory of jobs.
    pub source_root: PathBuf,
    /// The step's requirements as the caller gave them, normalized as
    /// environments normalize them: the packages an environment or image may
    /// hold without `flavor-packages` (none when they do not parse).
    pub caller_requirements: Vec<String>,
    /// The image the caller passed (`--image`), which jobs may run in.
    pub image: Option<String>,
    /// Directories the caller lets confined jobs read (`--read-dir`).
    pub read_dirs: Vec<PathBuf>,
    /// Images `images.build` made during this launch, which jobs may run in.
    pub built_images: Mutex<Vec<String>>,
    pub backends: BTreeMap<&'static str, Arc<dyn JobBackend>>,
    /// Where live job output goes.
    pub output: Arc<dyn OutputSink>,
    /// The values of every secret the launch can reach, scrubbed from job
    /// output before anyone sees it.
    pub redactor: Arc<stepbox_backends::backends::redact::Redactor>,
    pub jobs: JobRegistry,
    /// Every host call of the launch, with its decision.
    pub audit: super::audit::Audit,
    /// Python environments this launch installed: the ones its jobs may name.
    pub environments: Mutex<BTreeMap<String, stepbox_backends::environments::Environment>>,
    /// A dry run (`stepbox flavor test`): environments and images are not
    /// made, backend options are recorded unresolved, and every backend is
    /// a [`stepbox_backends::backends::dry_run::DryRunBackend`].
    pub dry_run: bool,
    /// Set once the launch is being cancelled; the flavor sees it through
    /// the `cancellation` interface.
    pub cancellation: Cancellation,
}

/// Whether a launch is being cancelled, and why. Set once; later requests
/// keep the first reason.
pub struct Cancellation {
    reason: tokio::sync::watch::Sender<Option<String>>,
}

impl Default for Cancellation {
    fn default() -> Self {
        Self { reason: tokio::sync::watch::channel(None).0 }
    }
}

impl Cancellation {
    /// Cancel the launch for `reason` (the first reason stays).
    pub fn request(&self, reason: &str) {
        self.reason.send_if_modified(|current| match current {
            Some(_) => false,
            None => {
                *current = Some(reason.to_owned());
                true
            }
        });
    }

    /// The reason, once cancelled.
    pub fn reason(&self) -> Option<String> {
        self.reason.borrow().clone()
    }

    /// Resolves with the reason once the launch is cancelled.
    pub async fn requested(&self) -> String {
        let mut receiver = self.reason.subscribe();
        loop {
            if let Some(reason) = receiver.borrow_and_update().clone() {
                return reason;
            }
            if receiver.changed().await.is_err() {
                // Cannot happen while `self` holds the sender; never resolve.
                std::future::pending::<()>().await;
            }
        }
    }
}

impl LaunchContext {
    /// Let this launch's jobs run in `environment`.
    pub fn remember_environment(&self, environment: stepbox_backends::environments::Environment) {
        let mut known = self.environments.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        known.insert(environment.handle.clone(), environment);
    }

    /// Let this launch's jobs run in an image `images.build` made.
    pub fn remember_image(&self, reference: &str) {
        self.built_images.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(reference.to_owned());
    }

    /// A job may run in an image this launch built, the one the caller
    /// passed, or one the user granted (`image=REF`, `image=PREFIX*`): the
    /// image's programs are what the step runs.
    pub fn image_allowed(&self, image: &str) -> Result<(), stepbox_store::policy::Denial> {
        let built =
            self.built_images.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).iter().any(|b| b == image);
        let granted = self.grants.images.iter().any(|granted| match granted.strip_suffix('*') {
            Some(prefix) => image.starts_with(prefix) && !image[prefix.len()..].contains(".."),
            None => granted == image,
        });
        if built || granted || self.image.as_deref() == Some(image) || self.grants.arbitrary_commands {
            return Ok(());
        }
        Err(stepbox_store::policy::Denial {
            rule: "images",
            message: format!(
                "the job would run in the image {image}, which this launch did not build and the caller did not \
                 pass; the image's programs are what the step runs. Pass it with --image, or grant it with \
                 --grant image={image}"
            ),
        })
    }

    /// The environment `handle` names, if this launch installed it.
    pub fn environment(&self, handle: &str) -> Option<stepbox_backends::environments::Environment> {
        self.environments.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(handle).cloned()
    }
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

    /// Give back a place reserved with [`JobRegistry::begin`] when the
    /// submission failed.
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
