//! The audit record of a launch: every host call the flavor made, with its
//! arguments and the decision taken, one JSON object per line in
//! `runs/<id>/audit.jsonl`.
//!
//! Lines are appended as calls happen, so a launch that is killed still
//! leaves its record. Environment values are never written (they may be
//! credentials): only their names.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

/// The file name of a run's audit record.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// What the host decided about a call.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "decision", content = "reason", rename_all = "kebab-case")]
pub enum Decision {
    Allowed,
    Denied(String),
    Refused(String),
    Failed(String),
    LimitHit(String),
}

impl Decision {
    /// The decision a call's result records: allowed, or why not.
    pub fn of<T>(result: &Result<T, crate::bindings::types::Error>) -> Self {
        use crate::bindings::types::Error;
        match result {
            Ok(_) => Decision::Allowed,
            Err(Error::Denied(message)) => Decision::Denied(message.clone()),
            Err(Error::Failed(message)) => Decision::Failed(message.clone()),
            Err(Error::Invalid(message) | Error::Unsupported(message) | Error::Cancelled(message)) => {
                Decision::Refused(message.clone())
            }
        }
    }
}

#[derive(Serialize)]
struct Entry<'a> {
    seq: u64,
    at: String,
    call: &'a str,
    args: serde_json::Value,
    #[serde(flatten)]
    decision: Decision,
}

/// Entries kept per launch; a flavor polling in a loop must not fill the disk.
const MAX_ENTRIES: u64 = 10_000;

/// Appends a launch's audit entries.
pub struct Audit {
    file: Mutex<Option<(File, u64)>>,
}

impl Audit {
    /// An audit record at `path` (a missing file only loses the record).
    pub fn create(path: &Path) -> Self {
        let file = File::create(path)
            .map_err(|error| tracing::warn!("cannot write the audit record {}: {error}", path.display()));
        Self { file: Mutex::new(file.ok().map(|file| (file, 0))) }
    }

    /// An audit that records nothing (calls outside a launch).
    pub fn none() -> Self {
        Self { file: Mutex::new(None) }
    }

    /// Record one call.
    pub fn record(&self, call: &str, args: serde_json::Value, decision: Decision) {
        let mut guard = self.file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some((file, seq)) = guard.as_mut() else { return };
        *seq += 1;
        if *seq > MAX_ENTRIES {
            if *seq == MAX_ENTRIES + 1 {
                let note = format!(
                    "{{\"seq\":{seq},\"note\":\"audit limit of {MAX_ENTRIES} entries reached; later calls are not recorded\"}}\n"
                );
                let _ = file.write_all(note.as_bytes());
            }
            return;
        }
        let entry = Entry { seq: *seq, at: stepbox_store::store::now(), call, args, decision };
        let Ok(mut line) = serde_json::to_vec(&entry) else { return };
        line.push(b'\n');
        if file.write_all(&line).is_err() {
            *guard = None;
        }
    }
}

/// Environment variables as they go into the record: names only.
pub fn redacted_env<'a>(names: impl Iterator<Item = &'a str>) -> serde_json::Value {
    serde_json::Value::Object(names.map(|name| (name.to_owned(), serde_json::Value::from("<redacted>"))).collect())
}
