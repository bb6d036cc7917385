//! Python environments for jobs, made with uv and shared between launches.
//!
//! An environment is keyed by a hash of its normalized requirements and
//! Python version and kept in `$STEPBOX_HOME/envs/<handle>/`. Building one
//! takes an exclusive lock on `envs/<handle>.lock`, so when many launches ask
//! for the same set at once one builds while the others wait, then all use
//! it. The last thing a build writes is its marker file; a directory without
//! one (a build that failed or was interrupted) is never used, and the next
//! build starts it afresh. The lock is an `flock`, released by the kernel if
//! its holder dies.

pub mod spec;
pub mod uv;

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use spec::{NormalizedSpec, SpecError};
pub use uv::Uv;

/// The file whose presence says an environment is complete.
const MARKER: &str = "stepbox-environment.json";

/// A complete environment.
#[derive(Debug, Clone, PartialEq)]
pub struct Environment {
    /// What a job spec names to run in it.
    pub handle: String,
    /// The virtual environment's root (`VIRTUAL_ENV`).
    pub root: PathBuf,
    /// Its Python interpreter.
    pub python: PathBuf,
}

impl Environment {
    /// The directory to put first on a job's PATH.
    pub fn bin_dir(&self) -> PathBuf {
        self.root.join("bin")
    }

    /// What a confined job in this environment must see, read-only: the
    /// environment, and the prefix of the interpreter it was made from
    /// (`home` in `pyvenv.cfg`: a pyenv or uv-managed Python often lives
    /// under a home directory, which the sandbox does not show).
    pub fn mounts(&self) -> Vec<PathBuf> {
        let mut mounts = vec![self.root.clone()];
        let config = fs::read_to_string(self.root.join("pyvenv.cfg")).unwrap_or_default();
        let home = config.lines().find_map(|line| {
            let (key, value) = line.split_once('=')?;
            (key.trim() == "home").then(|| PathBuf::from(value.trim()))
        });
        // `home` is the interpreter's bin directory; its parent is the prefix (stdlib included).
        if let Some(prefix) = home.as_deref().and_then(std::path::Path::parent)
            && prefix.is_absolute()
            && prefix.parent().is_some()
            && prefix.is_dir()
        {
            mounts.push(prefix.to_owned());
        }
        mounts
    }

    /// The normalized requirements it was built from (engines that build
    /// their own environments, such as Ray, install these).
    pub fn requirements(&self) -> Result<Vec<String>, EnvironmentError> {
        let path = self.root.join(MARKER);
        let text = fs::read(&path).map_err(io_error(format!("cannot read {}", path.display())))?;
        let marker: Marker = serde_json::from_slice(&text).map_err(|error| EnvironmentError::Io {
            context: format!("cannot read {}", path.display()),
            source: std::io::Error::other(error),
        })?;
        Ok(marker.requirements)
    }
}

/// What the marker records about an environment.
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    requirements: Vec<String>,
    python_version: Option<String>,
    uv: String,
    created_at: String,
}

/// Why an environment could not be made.
#[derive(Debug, Error)]
pub enum EnvironmentError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(
        "uv is needed to install Python requirements, but {0}. Install it (`pip install uv`, or see \
         https://docs.astral.sh/uv/), or point STEPBOX_UV at it"
    )]
    UvMissing(String),
    /// uv ran and failed; the message is uv's own.
    #[error("uv could not {action}:\n{message}")]
    Uv { action: &'static str, message: String },
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> EnvironmentError {
    let context = context.into();
    move |source| EnvironmentError::Io { context, source }
}

/// The environments under one stepbox home.
#[derive(Debug, Clone)]
pub struct Environments {
    dir: PathBuf,
}

impl Environments {
    /// The environments kept in `dir` (`$STEPBOX_HOME/envs`).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The complete environment with this handle, if there is one.
    pub fn get(&self, handle: &str) -> Option<Environment> {
        if !spec::is_handle(handle) {
            return None;
        }
        let root = self.dir.join(handle);
        root.join(MARKER).is_file().then(|| environment(handle, &root))
    }

    /// The environment for `spec`: reused when complete (without looking
    /// for uv), otherwise built with uv (or awaited while another process
    /// builds it). `progress`
    /// receives a line for each step and each line uv prints. Packages come
    /// from wheels only unless `source_builds`.
    pub async fn ensure(
        &self,
        spec: &NormalizedSpec,
        source_builds: bool,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<Environment, EnvironmentError> {
        let handle = spec.handle();
        if let Some(ready) = self.get(&handle) {
            return Ok(ready);
        }
        fs::create_dir_all(&self.dir).map_err(io_error(format!("cannot create {}", self.dir.display())))?;
        let lock_path = self.dir.join(format!("{handle}.lock"));
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(format!("cannot open {}", lock_path.display())))?;
        let lock = match lock.try_lock() {
            Ok(()) => lock,
            Err(fs::TryLockError::WouldBlock) => {
                progress(&format!("waiting for another launch that is building environment {handle}"));
                tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
                    .await
                    .map_err(|join| EnvironmentError::Io {
                        context: "waiting for the environment lock".to_owned(),
                        source: std::io::Error::other(join),
                    })?
                    .map_err(io_error(format!("cannot lock {}", lock_path.display())))?
            }
            Err(fs::TryLockError::Error(error)) => {
                return Err(io_error(format!("cannot lock {}", lock_path.display()))(error));
            }
        };
        // Someone else may have finished it while we waited.
        if let Some(ready) = self.get(&handle) {
            return Ok(ready);
        }
        let result = match Uv::locate().await {
            Ok(uv) => self.build(spec, &handle, &uv, source_builds, progress).await,
            Err(error) => Err(error),
        };
        if result.is_err() {
            // Nothing half-made is kept; a crash that skips this is caught
            // by the missing marker on the next build.
            let _ = fs::remove_dir_all(self.dir.join(&handle));
        }
        drop(lock);
        result
    }

    async fn build(
        &self,
        spec: &NormalizedSpec,
        handle: &str,
        uv: &Uv,
        source_builds: bool,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<Environment, EnvironmentError> {
        let root = self.dir.join(handle);
        if root.exists() {
            progress(&format!("removing the incomplete environment {handle} left by an earlier attempt"));
            fs::remove_dir_all(&root).map_err(io_error(format!("cannot remove {}", root.display())))?;
        }
        let described = spec.describe();
        progress(&format!("creating environment {handle} ({described})"));
        uv.create_venv(&root, spec.python_version(), progress).await?;
        if !spec.requirements().is_empty() {
            let requirements = root.join("requirements.txt");
            fs::write(&requirements, spec.requirements().join("\n") + "\n")
                .map_err(io_error(format!("cannot write {}", requirements.display())))?;
            uv.install(&root, &requirements, source_builds, progress).await?;
        }
        let marker = Marker {
            requirements: spec.requirements().to_vec(),
            python_version: spec.python_version().map(str::to_owned),
            uv: uv.version().to_owned(),
            created_at: crate::timestamps::now(),
        };
        let text = serde_json::to_vec_pretty(&marker).map_err(|error| EnvironmentError::Io {
            context: "cannot encode the environment marker".to_owned(),
            source: std::io::Error::other(error),
        })?;
        crate::files::write_atomically(&root.join(MARKER), &text)
            .map_err(io_error(format!("cannot finish {}", root.display())))?;
        progress(&format!("environment {handle} is ready"));
        Ok(environment(handle, &root))
    }
}

fn environment(handle: &str, root: &Path) -> Environment {
    Environment { handle: handle.to_owned(), root: root.to_owned(), python: root.join("bin").join("python") }
}
