//! Runs (one per launch) and the jobs each one submitted.
//!
//! A run is recorded before the flavor is instantiated and a job before the
//! flavor learns its id, so a record exists for everything that ever ran.

use std::fmt;
use std::str::FromStr;

use rusqlite::{Row, params};
use serde::Serialize;

use super::{Db, StoreError, json_column};
use stepbox_backends::backends::JobState;

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunState {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Ok(match text {
            "running" => RunState::Running,
            "succeeded" => RunState::Succeeded,
            "failed" => RunState::Failed,
            "cancelled" => RunState::Cancelled,
            other => return Err(format!("unknown run state `{other}`")),
        })
    }
}

/// One launch of a step.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub id: String,
    pub step_operator: String,
    pub flavor: String,
    pub flavor_sha256: String,
    pub pipeline: String,
    pub run_name: String,
    pub step: String,
    pub state: RunState,
    pub exit_code: Option<i32>,
    pub message: Option<String>,
    /// The process that ran the launch.
    pub pid: u32,
    /// That process beyond its PID (start time, boot); `None` in runs
    /// recorded by a stepbox before 0.1 kept it.
    #[serde(skip)]
    pub supervisor: Option<stepbox_backends::processes::Identity>,
    /// The launch request, as JSON (environment values are not stored).
    pub request: serde_json::Value,
    pub started_at: String,
    pub ended_at: Option<String>,
    /// The exit code of the launch itself, once it has ended (what
    /// `stepbox wait` exits with).
    pub outcome_code: Option<u8>,
}

/// One job a run submitted.
#[derive(Debug, Clone, Serialize)]
pub struct JobRecord {
    pub id: String,
    pub run_id: String,
    pub seq: u32,
    pub name: String,
    pub backend: String,
    /// The backend's own id (a process id for local jobs).
    pub external_id: Option<String>,
    pub command: Vec<String>,
    pub state: JobState,
    pub exit_code: Option<i32>,
    pub message: Option<String>,
    pub log_path: String,
    pub submitted_at: String,
    pub ended_at: Option<String>,
    /// The UUIDs of the GPUs leased to it on this machine.
    pub gpus: Vec<String>,
}

const RUN_COLUMNS: &str = "id, step_operator, flavor, flavor_sha256, pipeline, run_name, step, state, \
                           exit_code, message, pid, request, started_at, ended_at, outcome_code, supervisor";
const JOB_COLUMNS: &str = "id, run_id, seq, name, backend, external_id, command, state, exit_code, \
                           message, log_path, submitted_at, ended_at, gpus";

fn corrupt(what: &str, message: String) -> StoreError {
    StoreError::Corrupt { what: what.to_owned(), message }
}

/// A run's row before its text columns are decoded: state, request, supervisor.
type RunRow = (RunRecord, String, String, Option<String>);

fn run_from_row(row: &Row<'_>) -> rusqlite::Result<RunRow> {
    Ok((
        RunRecord {
            id: row.get(0)?,
            step_operator: row.get(1)?,
            flavor: row.get(2)?,
            flavor_sha256: row.get(3)?,
            pipeline: row.get(4)?,
            run_name: row.get(5)?,
            step: row.get(6)?,
            state: RunState::Running,
            exit_code: row.get(8)?,
            message: row.get(9)?,
            pid: row.get::<_, i64>(10)? as u32,
            request: serde_json::Value::Null,
            started_at: row.get(12)?,
            ended_at: row.get(13)?,
            outcome_code: row.get::<_, Option<i64>>(14)?.and_then(|code| u8::try_from(code).ok()),
            supervisor: None,
        },
        row.get(7)?,
        row.get(11)?,
        row.get(15)?,
    ))
}

fn decode_run((mut run, state, request, supervisor): RunRow) -> Result<RunRecord, StoreError> {
    let what = format!("run {}", run.id);
    run.state = state.parse().map_err(|message| corrupt(&what, message))?;
    run.request = json_column(&what, &request)?;
    run.supervisor = supervisor.map(|text| text.parse()).transpose().map_err(|message| corrupt(&what, message))?;
    Ok(run)
}

fn job_from_row(row: &Row<'_>) -> rusqlite::Result<(JobRecord, String, String, String)> {
    Ok((
        JobRecord {
            id: row.get(0)?,
            run_id: row.get(1)?,
            seq: row.get::<_, i64>(2)? as u32,
            name: row.get(3)?,
            backend: row.get(4)?,
            external_id: row.get(5)?,
            command: Vec::new(),
            state: JobState::Pending,
            exit_code: row.get(8)?,
            message: row.get(9)?,
            log_path: row.get(10)?,
            submitted_at: row.get(11)?,
            ended_at: row.get(12)?,
            gpus: Vec::new(),
        },
        row.get(6)?,
        row.get(7)?,
        row.get(13)?,
    ))
}

fn decode_job((mut job, command, state, gpus): (JobRecord, String, String, String)) -> Result<JobRecord, StoreError> {
    let what = format!("job {}", job.id);
    job.command = json_column(&what, &command)?;
    job.gpus = json_column(&what, &gpus)?;
    job.state = state.parse().map_err(|message| corrupt(&what, message))?;
    Ok(job)
}

/// The runs that could be read, and each damaged record's id with its error.
pub type RunListing = (Vec<RunRecord>, Vec<(String, StoreError)>);

/// A run id given by a user could not be resolved.
#[derive(Debug)]
pub enum RunLookup {
    Found(Box<RunRecord>),
    Missing,
    Ambiguous(Vec<String>),
}

impl Db {
    pub fn insert_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        let run = run.clone();
        self.write(move |tx| {
            tx.execute(
                &format!("INSERT INTO runs ({RUN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"),
                params![
                    run.id,
                    run.step_operator,
                    run.flavor,
                    run.flavor_sha256,
                    run.pipeline,
                    run.run_name,
                    run.step,
                    run.state.as_str(),
                    run.exit_code,
                    run.message,
                    run.pid as i64,
                    run.request.to_string(),
                    run.started_at,
                    run.ended_at,
                    run.outcome_code,
                    run.supervisor.as_ref().map(ToString::to_string),
                ],
            )?;
            Ok(())
        })
    }

    /// Record how a run ended.
    pub fn finish_run(
        &self,
        id: &str,
        state: RunState,
        exit_code: Option<i32>,
        message: Option<&str>,
        outcome_code: u8,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE runs SET state = ?2, exit_code = ?3, message = ?4, ended_at = ?5, outcome_code = ?6 \
                 WHERE id = ?1 AND state = 'running'",
                params![id, state.as_str(), exit_code, message, super::now(), outcome_code],
            )?;
            Ok(())
        })
    }

    /// Find a run by its id or an unambiguous prefix of it.
    pub fn find_run(&self, id_or_prefix: &str) -> Result<RunLookup, StoreError> {
        // Run ids are UUIDs: anything else (an empty string, `%`) names no run,
        // rather than matching the only one there is.
        if !is_run_id_prefix(id_or_prefix) {
            return Ok(RunLookup::Missing);
        }
        let pattern = format!("{id_or_prefix}%");
        self.read(|conn| {
            let mut statement =
                conn.prepare(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id LIKE ?1 ORDER BY started_at LIMIT 11"))?;
            let rows: Vec<_> = statement.query_map([pattern], run_from_row)?.collect::<Result<_, _>>()?;
            if let Some(exact) = rows.iter().position(|row| row.0.id == id_or_prefix) {
                let row = rows.into_iter().nth(exact).map(decode_run).transpose()?;
                return Ok(row.map_or(RunLookup::Missing, |run| RunLookup::Found(Box::new(run))));
            }
            match rows.len() {
                0 => Ok(RunLookup::Missing),
                1 => Ok(RunLookup::Found(Box::new(decode_run(
                    rows.into_iter().next().ok_or_else(|| corrupt("runs", "row vanished".into()))?,
                )?))),
                _ => Ok(RunLookup::Ambiguous(rows.into_iter().map(|row| row.0.id).collect())),
            }
        })
    }

    /// The newest run launched for the caller's step-run id (`--step-run-id`,
    /// ZenML's), if any.
    pub fn run_for_step_run(&self, step_run_id: &str) -> Result<Option<String>, StoreError> {
        self.read(|conn| {
            let mut statement = conn.prepare(
                "SELECT id FROM runs WHERE json_extract(request, '$.step_run_id') = ?1 \
                 ORDER BY started_at DESC LIMIT 1",
            )?;
            let mut rows = statement.query_map([step_run_id], |row| row.get::<_, String>(0))?;
            Ok(rows.next().transpose()?)
        })
    }

    /// The most recent runs, newest first. A record that cannot be read (a
    /// damaged row) comes back in the second list, with its id where that
    /// can be read, instead of failing the whole listing.
    pub fn runs(&self, limit: u32) -> Result<RunListing, StoreError> {
        self.read(|conn| {
            let mut statement =
                conn.prepare(&format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY started_at DESC, id LIMIT ?1"))?;
            let mut rows = statement.query([limit])?;
            let mut good = Vec::new();
            let mut bad = Vec::new();
            while let Some(row) = rows.next()? {
                let id = row.get::<_, String>(0).unwrap_or_else(|_| "(an unreadable id)".to_owned());
                match run_from_row(row).map_err(StoreError::from).and_then(decode_run) {
                    Ok(run) => good.push(run),
                    Err(error) => bad.push((id, error)),
                }
            }
            Ok((good, bad))
        })
    }

    /// Record a job about to be submitted to its backend.
    pub fn insert_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        let job = job.clone();
        self.write(move |tx| {
            tx.execute(
                &format!(
                    "INSERT INTO jobs ({JOB_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
                ),
                params![
                    job.id,
                    job.run_id,
                    job.seq,
                    job.name,
                    job.backend,
                    job.external_id,
                    serde_json::to_string(&job.command).unwrap_or_default(),
                    job.state.as_str(),
                    job.exit_code,
                    job.message,
                    job.log_path,
                    job.submitted_at,
                    job.ended_at,
                    serde_json::to_string(&job.gpus).unwrap_or_else(|_| "[]".to_owned()),
                ],
            )?;
            Ok(())
        })
    }

    /// Record that the backend accepted a job, with its own id for it and
    /// the GPUs it leased (UUIDs).
    pub fn job_started(&self, id: &str, external_id: &str, gpus: &[String]) -> Result<(), StoreError> {
        let gpus = serde_json::to_string(gpus).map_err(|error| corrupt(&format!("job {id}"), error.to_string()))?;
        self.write(|tx| {
            tx.execute(
                "UPDATE jobs SET external_id = ?2, state = 'running', gpus = ?3 WHERE id = ?1 AND state = 'pending'",
                params![id, external_id, gpus],
            )?;
            Ok(())
        })
    }

    /// Record a job's terminal state.
    pub fn finish_job(
        &self,
        id: &str,
        state: JobState,
        exit_code: Option<i32>,
        message: Option<&str>,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE jobs SET state = ?2, exit_code = ?3, message = ?4, ended_at = ?5 WHERE id = ?1",
                params![id, state.as_str(), exit_code, message, super::now()],
            )?;
            Ok(())
        })
    }

    /// Leave a message on a job without changing its state (one that may
    /// still be running must not be recorded ended).
    pub fn note_job(&self, id: &str, message: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute("UPDATE jobs SET message = ?2 WHERE id = ?1", params![id, message])?;
            Ok(())
        })
    }

    /// The jobs of a run, in submission order.
    pub fn jobs_of(&self, run_id: &str) -> Result<Vec<JobRecord>, StoreError> {
        self.read(|conn| {
            let mut statement =
                conn.prepare(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE run_id = ?1 ORDER BY seq"))?;
            let rows = statement.query_map([run_id], job_from_row)?;
            rows.map(|row| decode_job(row?)).collect()
        })
    }
}

/// Whether `text` can begin a run id: a non-empty run of hex digits and dashes
/// (run ids are UUIDs), no longer than one.
pub fn is_run_id_prefix(text: &str) -> bool {
    !text.is_empty() && text.len() <= 36 && text.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}
