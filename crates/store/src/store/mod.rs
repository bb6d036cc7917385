//! The state database: one SQLite file in WAL mode under `$STEPBOX_HOME`, so
//! many `stepbox` processes can read and write at once.
//!
//! Every write runs in an immediate transaction and waits (up to
//! [`BUSY_TIMEOUT`]) for other writers instead of failing.

mod flavors;
pub mod pending;
mod runs;
mod schema;
mod step_operators;
mod trusted_keys;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use thiserror::Error;

pub use flavors::{FlavorRecord, Provenance};
pub use runs::{JobRecord, RunLookup, RunRecord, RunState};
pub use step_operators::{FlavorPin, StepOperatorRecord, pin_in};
pub use trusted_keys::TrustedKeyRecord;

/// WAL pages after which a commit checkpoints.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 200;

/// How long a writer waits for another one before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// Errors from the state database.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("state database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("state database holds malformed data in {what}: {message}")]
    Corrupt { what: String, message: String },
    #[error(
        "the state database was written by a newer stepbox (schema {found}, this one knows {known}); upgrade stepbox"
    )]
    TooNew { found: i64, known: i64 },
    #[error("the state database is busy: {0}")]
    Busy(String),
}

/// A handle on the state database, cheap to clone and share between tasks.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
}

impl Db {
    /// Open (and create or migrate) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        set_wal(&conn)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Every stepbox process is short-lived: checkpointing (and truncating
        // the WAL) each time one exits would make the next one pay an fsync to
        // restart it. Automatic checkpoints bound the WAL instead; a small
        // threshold bounds what each new process scans to rebuild the WAL
        // index (measured: ~0.6 ms at SQLite's default of 1000 pages).
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
        conn.pragma_update(None, "journal_size_limit", 4 << 20)?;
        let db = Self { conn: Arc::new(Mutex::new(conn)) };
        // Take the write lock only when a migration is due.
        if db.read(schema::needs_migration)? {
            db.write(schema::migrate)?;
        }
        Ok(db)
    }

    /// Run `f` on the connection (for reads and single statements).
    pub fn read<R>(&self, f: impl FnOnce(&Connection) -> Result<R, StoreError>) -> Result<R, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&conn)
    }

    /// Run `f` in an immediate transaction and commit it.
    pub fn write<R>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut conn = self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let result = f(&tx)?;
        tx.commit()?;
        Ok(result)
    }

    /// Write a consistent copy of the whole database, WAL included, to the
    /// new file `destination` (`VACUUM INTO`: a reader, so other processes
    /// go on writing meanwhile).
    pub fn backup_to(&self, destination: &str) -> Result<(), StoreError> {
        self.read(|conn| {
            conn.execute("VACUUM INTO ?1", [destination])?;
            Ok(())
        })
    }

    /// Run `f` with this database on a blocking thread, for async callers (a
    /// write may wait up to [`BUSY_TIMEOUT`] for another process).
    pub async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let db = self.clone();
        tokio::task::spawn_blocking(move || f(&db)).await.map_err(|error| StoreError::Busy(error.to_string()))?
    }
}

/// Switch to WAL. The first opener of a new database does the switch; others
/// racing it may see SQLITE_BUSY, so retry for a while.
fn set_wal(conn: &Connection) -> Result<(), StoreError> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        let mode: Result<String, _> = conn.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0));
        match mode {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(mode) => {
                return Err(StoreError::Busy(format!(
                    "could not switch the database to WAL mode (it is in {mode} mode)"
                )));
            }
            Err(rusqlite::Error::SqliteFailure(error, _))
                if error.code == rusqlite::ErrorCode::DatabaseBusy && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(error) => return Err(error.into()),
        }
    }
}

pub use stepbox_backends::timestamps::now;

/// Decode a JSON column.
fn json_column<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text)
        .map_err(|error| StoreError::Corrupt { what: what.to_owned(), message: error.to_string() })
}

/// `Option` helper so modules can use `.optional()` without importing it.
fn optional<T>(result: rusqlite::Result<T>) -> Result<Option<T>, StoreError> {
    Ok(result.optional()?)
}
