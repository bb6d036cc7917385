//! Registered flavors: their metadata, schemas and what they import.

use rusqlite::Row;
use serde::{Deserialize, Serialize};

use super::{Db, StoreError, json_column, optional};
use crate::shape::ComponentShape;

/// Registered flavors that could be decoded, and the names of those that
/// could not, with the reason.
pub type FlavorListing = (Vec<FlavorRecord>, Vec<(String, StoreError)>);

/// How a registered flavor's origin was established.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Provenance {
    /// A file the user named by its path.
    File,
    /// From a registry, signed by a key the user trusts for it.
    Signed {
        /// The name the key is trusted under.
        key: String,
        /// The key's fingerprint.
        fingerprint: String,
        /// The scope it is trusted for.
        scope: String,
    },
    /// From a registry, registered with `--allow-unsigned`: no signature
    /// was checked.
    Unsigned,
    /// Shipped with the stepbox that registered it (`builtin:NAME`), its
    /// file matching the sha256 the installation's index lists.
    Builtin {
        /// The sha256 the index listed.
        sha256: String,
    },
}

impl std::fmt::Display for Provenance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Provenance::File => f.write_str("a local file (no signature checked)"),
            Provenance::Signed { key, fingerprint, scope } => {
                write!(f, "signed by the trusted key `{key}` ({fingerprint}), trusted for {scope}")
            }
            Provenance::Unsigned => f.write_str("UNSIGNED: registered from a registry with --allow-unsigned"),
            Provenance::Builtin { .. } => f.write_str("shipped with stepbox (matching the sha256 its index lists)"),
        }
    }
}

/// One registered flavor.
#[derive(Debug, Clone, Serialize)]
pub struct FlavorRecord {
    pub name: String,
    pub sha256: String,
    pub size: u64,
    pub version: String,
    pub display_name: String,
    pub description: String,
    pub docs_url: Option<String>,
    /// JSON Schema of the step operator configuration.
    pub config_schema: serde_json::Value,
    /// JSON Schema of the per-step settings.
    pub settings_schema: serde_json::Value,
    pub shape: ComponentShape,
    /// Where it was registered from: the file's canonical path, or the
    /// registry reference pinned to the digest it was pulled at
    /// (`oci://REGISTRY/REPOSITORY:TAG@sha256:…`).
    pub source_path: String,
    /// How its origin was checked.
    pub provenance: Provenance,
    pub registered_at: String,
}

const COLUMNS: &str = "name, sha256, size, version, display_name, description, docs_url, \
                       config_schema, settings_schema, shape, source_path, registered_at, provenance";

fn from_row(row: &Row<'_>) -> rusqlite::Result<(FlavorRecord, [String; 4])> {
    Ok((
        FlavorRecord {
            name: row.get(0)?,
            sha256: row.get(1)?,
            size: row.get::<_, i64>(2)? as u64,
            version: row.get(3)?,
            display_name: row.get(4)?,
            description: row.get(5)?,
            docs_url: row.get(6)?,
            config_schema: serde_json::Value::Null,
            settings_schema: serde_json::Value::Null,
            shape: ComponentShape::default(),
            source_path: row.get(10)?,
            provenance: Provenance::File,
            registered_at: row.get(11)?,
        },
        [row.get(7)?, row.get(8)?, row.get(9)?, row.get(12)?],
    ))
}

/// Rows decoded into a listing: a record that cannot be decoded is reported
/// by name instead of failing the whole listing.
fn listing(
    rows: impl Iterator<Item = rusqlite::Result<(FlavorRecord, [String; 4])>>,
) -> Result<FlavorListing, StoreError> {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for row in rows {
        let parts = row?;
        let name = parts.0.name.clone();
        match decode(parts) {
            Ok(record) => good.push(record),
            Err(error) => bad.push((name, error)),
        }
    }
    Ok((good, bad))
}

fn decode(parts: (FlavorRecord, [String; 4])) -> Result<FlavorRecord, StoreError> {
    let (mut record, [config, settings, shape, provenance]) = parts;
    let what = format!("flavor {}", record.name);
    record.config_schema = json_column(&what, &config)?;
    record.settings_schema = json_column(&what, &settings)?;
    record.shape = json_column(&what, &shape)?;
    record.provenance = json_column(&what, &provenance)?;
    Ok(record)
}

impl Db {
    /// Make `flavor` its name's current version, and keep it among the
    /// name's versions.
    pub fn put_flavor(&self, flavor: &FlavorRecord) -> Result<(), StoreError> {
        self.put_flavor_with(flavor, |_| Ok(()))
    }

    /// [`Db::put_flavor`], and `also` in the same transaction (pinning the
    /// step operators an update holds back, say).
    pub fn put_flavor_with(
        &self,
        flavor: &FlavorRecord,
        also: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let value = |text: String| rusqlite::types::Value::Text(text);
        let row = [
            value(flavor.name.clone()),
            value(flavor.sha256.clone()),
            rusqlite::types::Value::Integer(flavor.size as i64),
            value(flavor.version.clone()),
            value(flavor.display_name.clone()),
            value(flavor.description.clone()),
            flavor.docs_url.clone().map_or(rusqlite::types::Value::Null, value),
            value(flavor.config_schema.to_string()),
            value(flavor.settings_schema.to_string()),
            value(serde_json::to_string(&flavor.shape).unwrap_or_default()),
            value(flavor.source_path.clone()),
            value(flavor.registered_at.clone()),
            value(serde_json::to_string(&flavor.provenance).unwrap_or_default()),
        ];
        self.write(move |tx| {
            const VALUES: &str = "?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13";
            tx.execute(
                &format!("INSERT OR REPLACE INTO flavor_versions ({COLUMNS}) VALUES ({VALUES})"),
                rusqlite::params_from_iter(row.iter()),
            )?;
            tx.execute(
                &format!(
                    "INSERT INTO flavors ({COLUMNS}) VALUES ({VALUES})
                     ON CONFLICT(name) DO UPDATE SET sha256 = excluded.sha256, size = excluded.size,
                       version = excluded.version, display_name = excluded.display_name,
                       description = excluded.description, docs_url = excluded.docs_url,
                       config_schema = excluded.config_schema, settings_schema = excluded.settings_schema,
                       shape = excluded.shape, source_path = excluded.source_path,
                       registered_at = excluded.registered_at, provenance = excluded.provenance"
                ),
                rusqlite::params_from_iter(row.iter()),
            )?;
            also(tx)
        })
    }

    /// The version of flavor `name` whose component has `sha256`, if registered.
    pub fn flavor_version(&self, name: &str, sha256: &str) -> Result<Option<FlavorRecord>, StoreError> {
        self.read(|conn| {
            let row = optional(conn.query_row(
                &format!("SELECT {COLUMNS} FROM flavor_versions WHERE name = ?1 AND sha256 = ?2"),
                [name, sha256],
                from_row,
            ))?;
            row.map(decode).transpose()
        })
    }

    /// Every registered version of every flavor (of `name` only, when
    /// given), by name and then registration time.
    pub fn flavor_versions(&self, name: Option<&str>) -> Result<FlavorListing, StoreError> {
        self.read(|conn| {
            let mut statement = conn.prepare(&format!(
                "SELECT {COLUMNS} FROM flavor_versions WHERE ?1 IS NULL OR name = ?1 ORDER BY name, registered_at"
            ))?;
            let rows = statement.query_map([name], from_row)?;
            listing(rows)
        })
    }

    /// Forget one version of a flavor (never its current one); returns
    /// whether it was registered.
    pub fn delete_flavor_version(&self, name: &str, sha256: &str) -> Result<bool, StoreError> {
        self.write(|tx| {
            Ok(tx.execute(
                "DELETE FROM flavor_versions WHERE name = ?1 AND sha256 = ?2
                   AND sha256 NOT IN (SELECT sha256 FROM flavors WHERE name = ?1)",
                [name, sha256],
            )? > 0)
        })
    }

    /// The flavor called `name`, if registered.
    pub fn flavor(&self, name: &str) -> Result<Option<FlavorRecord>, StoreError> {
        self.read(|conn| {
            let row =
                optional(conn.query_row(&format!("SELECT {COLUMNS} FROM flavors WHERE name = ?1"), [name], from_row))?;
            row.map(decode).transpose()
        })
    }

    /// Every registered flavor, by name. A record that cannot be decoded is
    /// reported in the second list instead of failing the whole listing.
    pub fn flavors(&self) -> Result<FlavorListing, StoreError> {
        self.read(|conn| {
            let mut statement = conn.prepare(&format!("SELECT {COLUMNS} FROM flavors ORDER BY name"))?;
            let rows = statement.query_map([], from_row)?;
            listing(rows)
        })
    }

    /// Delete a flavor and all its versions; returns whether it existed.
    pub fn delete_flavor(&self, name: &str) -> Result<bool, StoreError> {
        self.write(|tx| {
            tx.execute("DELETE FROM flavor_versions WHERE name = ?1", [name])?;
            Ok(tx.execute("DELETE FROM flavors WHERE name = ?1", [name])? > 0)
        })
    }

    /// How many registered flavor versions use the component with this sha256.
    pub fn flavors_with_sha(&self, sha256: &str) -> Result<u64, StoreError> {
        self.read(|conn| {
            Ok(conn.query_row("SELECT COUNT(*) FROM flavor_versions WHERE sha256 = ?1", [sha256], |row| {
                row.get::<_, i64>(0)
            })? as u64)
        })
    }
}
