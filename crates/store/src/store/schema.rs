//! The database schema and its migrations, tracked with `PRAGMA user_version`.

use rusqlite::{Connection, Transaction};

use super::StoreError;

/// Migrations in order; the schema version is the number applied.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE flavors (
    name            TEXT PRIMARY KEY,
    sha256          TEXT NOT NULL,
    size            INTEGER NOT NULL,
    version         TEXT NOT NULL,
    display_name    TEXT NOT NULL,
    description     TEXT NOT NULL,
    docs_url        TEXT,
    config_schema   TEXT NOT NULL,
    settings_schema TEXT NOT NULL,
    shape           TEXT NOT NULL,
    source_path     TEXT NOT NULL,
    registered_at   TEXT NOT NULL
);
CREATE TABLE step_operators (
    name       TEXT PRIMARY KEY,
    flavor     TEXT NOT NULL REFERENCES flavors(name),
    config     TEXT NOT NULL,
    limits     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE runs (
    id             TEXT PRIMARY KEY,
    step_operator  TEXT NOT NULL,
    flavor         TEXT NOT NULL,
    flavor_sha256  TEXT NOT NULL,
    pipeline       TEXT NOT NULL,
    run_name       TEXT NOT NULL,
    step           TEXT NOT NULL,
    state          TEXT NOT NULL,
    exit_code      INTEGER,
    message        TEXT,
    pid            INTEGER NOT NULL,
    request        TEXT NOT NULL,
    started_at     TEXT NOT NULL,
    ended_at       TEXT
);
CREATE INDEX runs_by_start ON runs(started_at);
CREATE TABLE jobs (
    id           TEXT PRIMARY KEY,
    run_id       TEXT NOT NULL REFERENCES runs(id),
    seq          INTEGER NOT NULL,
    name         TEXT NOT NULL,
    backend      TEXT NOT NULL,
    external_id  TEXT,
    command      TEXT NOT NULL,
    state        TEXT NOT NULL,
    exit_code    INTEGER,
    message      TEXT,
    log_path     TEXT NOT NULL,
    submitted_at TEXT NOT NULL,
    ended_at     TEXT
);
CREATE INDEX jobs_by_run ON jobs(run_id, seq);
"#,
    r#"
ALTER TABLE step_operators ADD COLUMN grants TEXT NOT NULL DEFAULT '{}';
"#,
    // The exit code `stepbox launch` gave (or would give) the run: what
    // `stepbox wait` exits with for a run launched elsewhere.
    r#"
ALTER TABLE runs ADD COLUMN outcome_code INTEGER;
"#,
    // Who the supervisor is beyond its PID (`processes::Identity`): PID,
    // start time and boot, so a reused PID is never taken for it.
    r#"
ALTER TABLE runs ADD COLUMN supervisor TEXT;
"#,
    // Flavor signatures (issue 19): the keys the user trusts, each for
    // registry scopes, and how each flavor's origin was checked. Flavors
    // registered before were registered from files.
    r#"
CREATE TABLE trusted_keys (
    name        TEXT PRIMARY KEY,
    scopes      TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    added_at    TEXT NOT NULL
);
ALTER TABLE flavors ADD COLUMN provenance TEXT NOT NULL DEFAULT '{"kind":"file"}';
"#,
    // Flavor versions (issue 19): `flavors` holds each flavor's current
    // version, `flavor_versions` every version registered (the current one
    // too), by digest; a step operator may be pinned to one (`pin`: JSON
    // {"sha256", "held"}, NULL to follow the current version).
    r#"
CREATE TABLE flavor_versions (
    name            TEXT NOT NULL,
    sha256          TEXT NOT NULL,
    size            INTEGER NOT NULL,
    version         TEXT NOT NULL,
    display_name    TEXT NOT NULL,
    description     TEXT NOT NULL,
    docs_url        TEXT,
    config_schema   TEXT NOT NULL,
    settings_schema TEXT NOT NULL,
    shape           TEXT NOT NULL,
    source_path     TEXT NOT NULL,
    registered_at   TEXT NOT NULL,
    provenance      TEXT NOT NULL,
    PRIMARY KEY (name, sha256)
);
INSERT INTO flavor_versions SELECT name, sha256, size, version, display_name, description, docs_url,
    config_schema, settings_schema, shape, source_path, registered_at, provenance FROM flavors;
ALTER TABLE step_operators ADD COLUMN pin TEXT;
"#,
    // GPU leases (issue 20): the UUIDs of the GPUs a job held, a JSON array.
    r#"
ALTER TABLE jobs ADD COLUMN gpus TEXT NOT NULL DEFAULT '[]';
"#,
];

/// Whether the schema is behind this stepbox (a cheap read, no lock).
pub(super) fn needs_migration(conn: &Connection) -> Result<bool, StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    Ok(version != MIGRATIONS.len() as i64)
}

/// Bring the schema up to date inside `tx` (another process may have done
/// it since [`needs_migration`] looked, so look again under the lock).
pub(super) fn migrate(tx: &Transaction<'_>) -> Result<(), StoreError> {
    let version: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::TooNew { found: version, known });
    }
    for migration in &MIGRATIONS[version as usize..] {
        tx.execute_batch(migration)?;
    }
    if version < known {
        tx.pragma_update(None, "user_version", known)?;
    }
    Ok(())
}
