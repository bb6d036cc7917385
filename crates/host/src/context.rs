//! The handles every operation needs: the state directory and database, and
//! (created only when a component must be loaded) the engine and its cache.

use std::path::Path;

use crate::component::ComponentCache;
use crate::engine::StepboxEngine;
use stepbox_store::home::{Home, HomeError};
use stepbox_store::store::{Db, StoreError};

/// Failure to open the state.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Home(#[from] HomeError),
    #[error("cannot open the state database in {dir}: {source}")]
    Store { dir: String, source: StoreError },
}

/// An open stepbox state.
#[derive(Clone)]
pub struct Stepbox {
    pub home: Home,
    pub db: Db,
}

impl Stepbox {
    /// Open the state at `home`, creating it if needed.
    pub fn open(home: Home) -> Result<Self, OpenError> {
        home.ensure()?;
        let db = Db::open(&home.database())
            .map_err(|source| OpenError::Store { dir: home.root().display().to_string(), source })?;
        Ok(Self { home, db })
    }

    /// Open the state at a path.
    pub fn open_at(root: &Path) -> Result<Self, OpenError> {
        Self::open(Home::at(root.to_owned()))
    }

    /// The engine (started on first use) and the precompiled-component cache.
    pub fn cache(&self) -> anyhow::Result<ComponentCache> {
        Ok(ComponentCache::new(StepboxEngine::shared()?, self.home.cache_dir()))
    }
}
