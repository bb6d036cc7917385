//! Where stepbox keeps its state: `$STEPBOX_HOME`, by default
//! `~/.local/share/stepbox`.
//!
//! ```text
//! state.db                  SQLite (WAL): flavors, step operators, runs, jobs
//! flavors/<sha256>.wasm     registered components, content-addressed
//! cache/<sha256>-<engine>.sealed.cwasm   precompiled components (trusted native code;
//!                           STEPBOX_CACHE_DIR moves them, to share one cache)
//! runs/<run-id>/            job logs and the flavor's log for each run
//! secrets/<name>            named secrets, mode 0600 (`stepbox secret set`)
//! gpus/<UUID>.lock          GPU leases (STEPBOX_GPU_LEASE_DIR moves them, to
//!                           share this machine's GPUs between homes)
//! ```

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// The variable naming a GPU lease directory shared between homes.
pub const GPU_LEASE_DIR_VARIABLE: &str = "STEPBOX_GPU_LEASE_DIR";

/// Problems with the state directory.
#[derive(Debug, Error)]
pub enum HomeError {
    #[error("cannot tell where to keep stepbox's state: set STEPBOX_HOME or HOME")]
    NoHome,
    #[error("cannot create {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
}

/// The state directory and the paths inside it.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
    /// Precompiled components: `$STEPBOX_CACHE_DIR`, else `cache/` in the root.
    cache: PathBuf,
}

impl Home {
    /// `$STEPBOX_HOME`, else `$XDG_DATA_HOME/stepbox`, else `~/.local/share/stepbox`.
    pub fn from_env() -> Result<Self, HomeError> {
        if let Some(home) = std::env::var_os("STEPBOX_HOME").filter(|v| !v.is_empty()) {
            return Ok(Self::at(PathBuf::from(home)));
        }
        if let Some(data) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            return Ok(Self::at(PathBuf::from(data).join("stepbox")));
        }
        let home = std::env::var_os("HOME").filter(|v| !v.is_empty()).ok_or(HomeError::NoHome)?;
        Ok(Self::at(PathBuf::from(home).join(".local/share/stepbox")))
    }

    /// A state directory at `root`; nothing is created until [`Home::ensure`].
    pub fn at(root: PathBuf) -> Self {
        let cache = std::env::var_os("STEPBOX_CACHE_DIR")
            .filter(|dir| !dir.is_empty())
            .map_or_else(|| root.join("cache"), PathBuf::from);
        Self { root, cache }
    }

    /// This home with its precompiled components kept in `cache` instead.
    pub fn with_cache(mut self, cache: PathBuf) -> Self {
        self.cache = cache;
        self
    }

    /// Create the directory tree, readable by its owner only.
    pub fn ensure(&self) -> Result<(), HomeError> {
        for dir in [self.root.clone(), self.flavors_dir(), self.cache_dir(), self.runs_dir()] {
            private_dir(&dir)?;
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn database(&self) -> PathBuf {
        self.root.join("state.db")
    }

    pub fn flavors_dir(&self) -> PathBuf {
        self.root.join("flavors")
    }

    /// Where a registered component with this sha256 is kept.
    pub fn flavor_blob(&self, sha256: &str) -> PathBuf {
        self.flavors_dir().join(format!("{sha256}.wasm"))
    }

    /// Precompiled components. `STEPBOX_CACHE_DIR` lets several homes share
    /// one (entries are keyed by the component's digest and the engine's
    /// settings, and written atomically); it is made private like the rest.
    pub fn cache_dir(&self) -> PathBuf {
        self.cache.clone()
    }

    /// Python environments made by `requirements.install`.
    pub fn environments_dir(&self) -> PathBuf {
        self.root.join("envs")
    }

    /// The OCI layout of built images and cached blobs.
    pub fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    /// Named secrets, one owner-only file each.
    pub fn secrets_dir(&self) -> PathBuf {
        self.root.join("secrets")
    }

    /// The named secrets kept here.
    pub fn secrets(&self) -> stepbox_backends::secrets::Secrets {
        stepbox_backends::secrets::Secrets::at(self.secrets_dir())
    }

    /// GPU leases: one `flock`ed file per GPU UUID (stepbox_backends::gpus::leases).
    /// `$STEPBOX_GPU_LEASE_DIR`, when set, is shared by every home that names
    /// it (several homes of one user on one machine then share its GPUs
    /// fairly); a relative one is taken from the current directory.
    pub fn gpus_dir(&self) -> PathBuf {
        match std::env::var_os(GPU_LEASE_DIR_VARIABLE).filter(|dir| !dir.is_empty()) {
            Some(dir) => std::path::absolute(&dir).unwrap_or_else(|_| PathBuf::from(dir)),
            None => self.root.join("gpus"),
        }
    }

    pub fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }

    /// The directory of one run's logs, created on demand.
    pub fn run_dir(&self, run_id: &str) -> Result<PathBuf, HomeError> {
        let dir = self.runs_dir().join(run_id);
        private_dir(&dir)?;
        Ok(dir)
    }
}

/// Create `dir` (and parents) with mode 0700, and make an existing one
/// private: it holds job logs, and precompiled components are native code
/// that only this user may be able to write.
fn private_dir(dir: &Path) -> Result<(), HomeError> {
    let error = |source| HomeError::Create { path: dir.to_owned(), source };
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(error)?;
    let mode = fs::metadata(dir).map_err(error)?.permissions().mode();
    if mode & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(error)?;
    }
    Ok(())
}
