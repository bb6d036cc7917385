//! Step operators: a name, a flavor, the flavor's configuration, and limit
//! overrides.

use std::collections::BTreeMap;

use rusqlite::{Row, params};
use serde::{Deserialize, Serialize};

use super::{Db, StoreError, json_column, optional};
use crate::policy::Grants;

/// Which version of its flavor a step operator runs, when not the current one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlavorPin {
    /// The version's component sha256.
    pub sha256: String,
    /// Held back by a flavor update its grants did not cover (released by
    /// the grant that covers it), rather than pinned by the user.
    pub held: bool,
}

/// One registered step operator.
#[derive(Debug, Clone, Serialize)]
pub struct StepOperatorRecord {
    pub name: String,
    pub flavor: String,
    /// The flavor's configuration, validated by the flavor at registration.
    pub config: serde_json::Value,
    /// Limit overrides (limit name → value), on top of the defaults.
    pub limits: BTreeMap<String, String>,
    /// What the flavor may do.
    pub grants: Grants,
    /// The flavor version it is pinned to; `None` follows the current one.
    pub pin: Option<FlavorPin>,
    pub created_at: String,
    pub updated_at: String,
}

type Raw = (StepOperatorRecord, String, String, String, Option<String>);

fn from_row(row: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok((
        StepOperatorRecord {
            name: row.get(0)?,
            flavor: row.get(1)?,
            config: serde_json::Value::Null,
            limits: BTreeMap::new(),
            grants: Grants::default(),
            pin: None,
            created_at: row.get(4)?,
            updated_at: row.get(5)?,
        },
        row.get(2)?,
        row.get(3)?,
        row.get(6)?,
        row.get(7)?,
    ))
}

fn decode((mut record, config, limits, grants, pin): Raw) -> Result<StepOperatorRecord, StoreError> {
    let what = format!("step operator {}", record.name);
    record.config = json_column(&what, &config)?;
    record.limits = json_column(&what, &limits)?;
    record.grants = json_column(&what, &grants)?;
    record.pin = pin.map(|pin| json_column(&what, &pin)).transpose()?;
    Ok(record)
}

const COLUMNS: &str = "name, flavor, config, limits, created_at, updated_at, grants, pin";

/// Pin step operator `name` to a version of its flavor (`None`: follow the
/// current one), inside a transaction.
pub fn pin_in(tx: &rusqlite::Transaction<'_>, name: &str, pin: Option<&FlavorPin>) -> Result<bool, StoreError> {
    let pin = pin.map(|pin| serde_json::to_string(pin).unwrap_or_default());
    Ok(tx.execute(
        "UPDATE step_operators SET pin = ?2, updated_at = ?3 WHERE name = ?1",
        params![name, pin, super::now()],
    )? > 0)
}

impl Db {
    /// Insert a new step operator; returns false if the name is taken.
    pub fn insert_step_operator(&self, record: &StepOperatorRecord) -> Result<bool, StoreError> {
        let record = record.clone();
        self.write(move |tx| {
            let inserted = tx.execute(
                &format!("INSERT OR IGNORE INTO step_operators ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
                params![
                    record.name,
                    record.flavor,
                    record.config.to_string(),
                    serde_json::to_string(&record.limits).unwrap_or_default(),
                    record.created_at,
                    record.updated_at,
                    serde_json::to_string(&record.grants).unwrap_or_default(),
                    record.pin.as_ref().map(|pin| serde_json::to_string(pin).unwrap_or_default()),
                ],
            )?;
            Ok(inserted > 0)
        })
    }

    /// Replace a step operator's configuration, limits, grants and pin;
    /// returns false if it does not exist.
    pub fn update_step_operator(
        &self,
        name: &str,
        config: &serde_json::Value,
        limits: &BTreeMap<String, String>,
        grants: &Grants,
        pin: Option<&FlavorPin>,
    ) -> Result<bool, StoreError> {
        let (name, config) = (name.to_owned(), config.to_string());
        let limits = serde_json::to_string(limits).unwrap_or_default();
        let grants = serde_json::to_string(grants).unwrap_or_default();
        let pin = pin.map(|pin| serde_json::to_string(pin).unwrap_or_default());
        self.write(move |tx| {
            let updated = tx.execute(
                "UPDATE step_operators SET config = ?2, limits = ?3, grants = ?4, pin = ?5, updated_at = ?6 WHERE name = ?1",
                params![name, config, limits, grants, pin, super::now()],
            )?;
            Ok(updated > 0)
        })
    }

    /// Pin step operator `name` to a version of its flavor (`None`: follow
    /// the current one); returns false if it does not exist.
    pub fn pin_step_operator(&self, name: &str, pin: Option<&FlavorPin>) -> Result<bool, StoreError> {
        let pin = pin.cloned();
        self.write(move |tx| pin_in(tx, name, pin.as_ref()))
    }

    pub fn step_operator(&self, name: &str) -> Result<Option<StepOperatorRecord>, StoreError> {
        self.read(|conn| {
            let row = optional(conn.query_row(
                &format!("SELECT {COLUMNS} FROM step_operators WHERE name = ?1"),
                [name],
                from_row,
            ))?;
            row.map(decode).transpose()
        })
    }

    /// Every step operator, by name.
    pub fn step_operators(&self) -> Result<Vec<StepOperatorRecord>, StoreError> {
        self.read(|conn| {
            let mut statement = conn.prepare(&format!("SELECT {COLUMNS} FROM step_operators ORDER BY name"))?;
            let rows = statement.query_map([], from_row)?;
            rows.map(|row| decode(row?)).collect()
        })
    }

    /// The names of the step operators that use `flavor`.
    pub fn step_operators_using(&self, flavor: &str) -> Result<Vec<String>, StoreError> {
        self.read(|conn| {
            let mut statement = conn.prepare("SELECT name FROM step_operators WHERE flavor = ?1 ORDER BY name")?;
            let rows = statement.query_map([flavor], |row| row.get(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    pub fn delete_step_operator(&self, name: &str) -> Result<bool, StoreError> {
        self.write(|tx| Ok(tx.execute("DELETE FROM step_operators WHERE name = ?1", [name])? > 0))
    }
}
