//! Keys the user trusts to sign flavors, each for the registry scopes it
//! was added with (`stepbox trust add`).

use rusqlite::{Row, params};
use serde::Serialize;

use super::{Db, StoreError, json_column, optional};
use crate::trust_scope::TrustScope;

/// One trusted key.
#[derive(Debug, Clone, Serialize)]
pub struct TrustedKeyRecord {
    /// The name it was added under.
    pub name: String,
    /// Where its signatures count.
    pub scopes: Vec<TrustScope>,
    /// The public key, PEM (`PUBLIC KEY`).
    pub public_key: String,
    /// `sha256:` and the hex SHA-256 of the key's SPKI DER.
    pub fingerprint: String,
    pub added_at: String,
}

const COLUMNS: &str = "name, scopes, public_key, fingerprint, added_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<(TrustedKeyRecord, String)> {
    Ok((
        TrustedKeyRecord {
            name: row.get(0)?,
            scopes: Vec::new(),
            public_key: row.get(2)?,
            fingerprint: row.get(3)?,
            added_at: row.get(4)?,
        },
        row.get(1)?,
    ))
}

fn decode((mut record, scopes): (TrustedKeyRecord, String)) -> Result<TrustedKeyRecord, StoreError> {
    record.scopes = json_column(&format!("trusted key {}", record.name), &scopes)?;
    Ok(record)
}

impl Db {
    /// Trust a key. Returns `false`, changing nothing, when a key of that
    /// name is already trusted.
    pub fn add_trusted_key(&self, key: &TrustedKeyRecord) -> Result<bool, StoreError> {
        let key = key.clone();
        let scopes = serde_json::to_string(&key.scopes).map_err(|error| StoreError::Corrupt {
            what: format!("trusted key {}", key.name),
            message: error.to_string(),
        })?;
        self.write(move |tx| {
            let added = tx.execute(
                &format!(
                    "INSERT INTO trusted_keys ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(name) DO NOTHING"
                ),
                params![key.name, scopes, key.public_key, key.fingerprint, key.added_at],
            )?;
            Ok(added > 0)
        })
    }

    /// The trusted key called `name`, if any.
    pub fn trusted_key(&self, name: &str) -> Result<Option<TrustedKeyRecord>, StoreError> {
        self.read(|conn| {
            let row = optional(conn.query_row(
                &format!("SELECT {COLUMNS} FROM trusted_keys WHERE name = ?1"),
                [name],
                from_row,
            ))?;
            row.map(decode).transpose()
        })
    }

    /// Every trusted key, by name.
    pub fn trusted_keys(&self) -> Result<Vec<TrustedKeyRecord>, StoreError> {
        self.read(|conn| {
            let mut statement = conn.prepare(&format!("SELECT {COLUMNS} FROM trusted_keys ORDER BY name"))?;
            let rows = statement.query_map([], from_row)?;
            rows.map(|row| decode(row?)).collect()
        })
    }

    /// Stop trusting a key; returns whether it was trusted.
    pub fn remove_trusted_key(&self, name: &str) -> Result<bool, StoreError> {
        self.write(|tx| Ok(tx.execute("DELETE FROM trusted_keys WHERE name = ?1", [name])? > 0))
    }
}
