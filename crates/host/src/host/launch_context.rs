//! What every capability shares of the launch in progress: its run, the
//! step the caller asked for, its grants and limits, its audit record, its
//! cancellation, and what it made (environments, images) that its jobs may
//! use. Each capability's own state lives in its module (`jobs::JobsCtx`,
//! …; see [`super::Launch`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::limits::Limits;
use stepbox_store::home::Home;
use stepbox_store::policy::Grants;
use stepbox_store::store::Db;

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
    /// The values of every secret the launch can reach, scrubbed from job
    /// output before anyone sees it.
    pub redactor: Arc<stepbox_backends::backends::redact::Redactor>,
    /// Every host call of the launch, with its decision.
    pub audit: super::audit::Audit,
    /// Python environments this launch installed: the ones its jobs may name.
    pub environments: Mutex<BTreeMap<String, stepbox_backends::environments::Environment>>,
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
