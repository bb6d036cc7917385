//! A run's outcome that the database could not take (a full disk, a damaged
//! or locked database): kept beside the run in space reserved before the run
//! started, and recorded when the database can take it again.
//!
//! Without it, a job that exited 0 on a full disk made `launch` exit 1, left
//! the run `running`, and once space returned `status` recorded the run
//! `failed` and its job `cancelled`: both false. Now the launch exits with the
//! job's outcome and says where it is kept; the first `status`, `wait` or
//! `runs list` once space returns records what really happened.
//!
//! The slot (`runs/ID/outcome.json`) is allocated with `fallocate` when the
//! run starts, so writing the outcome into it later needs no new space.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::{Db, RunState, StoreError};
use stepbox_backends::backends::JobState;

/// The slot's name in the run's directory.
pub const SLOT_FILE: &str = "outcome.json";
/// Space reserved for the outcome: room for the run's message and a few
/// hundred jobs' states; anything longer is shortened to fit.
const SLOT_BYTES: usize = 64 * 1024;

/// A run's outcome as the launch decided it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingOutcome {
    pub state: String,
    pub exit_code: Option<i32>,
    pub message: Option<String>,
    /// What `stepbox launch` exited with.
    pub outcome_code: u8,
    /// How each of its jobs ended (the database may have missed these too).
    pub jobs: Vec<PendingJob>,
}

/// How one job ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingJob {
    pub id: String,
    pub state: String,
    pub exit_code: Option<i32>,
    pub message: Option<String>,
}

/// Space reserved, before anything runs, for the run's outcome.
pub struct OutcomeSlot {
    file: File,
    path: PathBuf,
}

impl OutcomeSlot {
    /// Reserve the slot in `run_dir`.
    pub fn reserve(run_dir: &Path) -> std::io::Result<Self> {
        let path = run_dir.join(SLOT_FILE);
        let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
        // SAFETY: fallocate(2) on a descriptor we own, mode 0 (allocate, extend the size).
        let reserved = if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, SLOT_BYTES as libc::off_t) } == 0 {
            Ok(())
        } else {
            match std::io::Error::last_os_error() {
                // A file system without fallocate (some network ones): writing the blanks allocates them.
                error if error.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                    file.write_all_at(&[b' '; SLOT_BYTES], 0).and_then(|()| file.sync_data())
                }
                error => Err(error),
            }
        };
        if let Err(error) = reserved {
            let _ = std::fs::remove_file(&path);
            return Err(error);
        }
        Ok(OutcomeSlot { file, path })
    }

    /// Where the slot is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write `outcome` into the reserved space and make it durable.
    pub fn keep(&self, outcome: &PendingOutcome) -> std::io::Result<()> {
        let mut bytes = fitted(outcome)?;
        // Blanks after the JSON keep the file one JSON text however long the outcome.
        bytes.resize(SLOT_BYTES, b' ');
        self.file.write_all_at(&bytes, 0)?;
        self.file.sync_data()
    }

    /// The database took the outcome: the slot is not needed.
    pub fn release(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `outcome` as JSON in at most [`SLOT_BYTES`], shortening messages (and then
/// dropping the earliest jobs, which the database most likely has) to fit.
fn fitted(outcome: &PendingOutcome) -> std::io::Result<Vec<u8>> {
    let mut outcome = outcome.clone();
    let shorten = |message: &mut Option<String>, max: usize| {
        if let Some(text) = message.as_mut()
            && text.len() > max
        {
            let mut cut = max;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
    };
    loop {
        let bytes = serde_json::to_vec(&outcome).map_err(std::io::Error::other)?;
        if bytes.len() <= SLOT_BYTES {
            return Ok(bytes);
        }
        shorten(&mut outcome.message, 4096);
        outcome.jobs.iter_mut().for_each(|job| shorten(&mut job.message, 200));
        let bytes = serde_json::to_vec(&outcome).map_err(std::io::Error::other)?;
        if bytes.len() <= SLOT_BYTES {
            return Ok(bytes);
        }
        if outcome.jobs.is_empty() {
            return Err(std::io::Error::other("the outcome does not fit its slot"));
        }
        let drop = outcome.jobs.len().div_ceil(2);
        outcome.jobs.drain(..drop);
    }
}

/// The outcome kept in `run_dir`'s slot, if the launch wrote one. A slot
/// reserved and never written (the launch died first) holds no outcome.
pub fn read_kept(run_dir: &Path) -> Option<PendingOutcome> {
    let file = File::open(run_dir.join(SLOT_FILE)).ok()?;
    let mut bytes = Vec::new();
    file.take(SLOT_BYTES as u64 + 1).read_to_end(&mut bytes).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?.trim_matches(|c: char| c == ' ' || c == '\0');
    serde_json::from_str(text).ok()
}

impl Db {
    /// Record a kept outcome: the run's and every job's, in one transaction.
    /// Only a run still `running` is changed.
    pub fn record_kept(&self, run_id: &str, outcome: &PendingOutcome) -> Result<(), StoreError> {
        let state: RunState = outcome
            .state
            .parse()
            .map_err(|message| StoreError::Corrupt { what: format!("the kept outcome of run {run_id}"), message })?;
        self.write(|tx| {
            for job in &outcome.jobs {
                let Ok(job_state) = job.state.parse::<JobState>() else { continue };
                tx.execute(
                    "UPDATE jobs SET state = ?3, exit_code = ?4, message = ?5, ended_at = COALESCE(ended_at, ?6) \
                     WHERE id = ?1 AND run_id = ?2",
                    params![job.id, run_id, job_state.as_str(), job.exit_code, job.message, super::now()],
                )?;
            }
            tx.execute(
                "UPDATE runs SET state = ?2, exit_code = ?3, message = ?4, ended_at = ?5, outcome_code = ?6 \
                 WHERE id = ?1 AND state = 'running'",
                params![run_id, state.as_str(), outcome.exit_code, outcome.message, super::now(), outcome.outcome_code],
            )?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(jobs: usize, message_bytes: usize) -> PendingOutcome {
        PendingOutcome {
            state: "succeeded".to_owned(),
            exit_code: Some(0),
            message: Some("m".repeat(message_bytes)),
            outcome_code: 0,
            jobs: (0..jobs)
                .map(|i| PendingJob {
                    id: format!("job-{i}"),
                    state: "succeeded".to_owned(),
                    exit_code: Some(0),
                    message: Some("é".repeat(300)),
                })
                .collect(),
        }
    }

    #[test]
    fn a_kept_outcome_reads_back_and_an_unwritten_slot_holds_none() {
        let dir = tempfile::tempdir().expect("dir");
        let slot = OutcomeSlot::reserve(dir.path()).expect("reserve");
        assert_eq!(std::fs::metadata(slot.path()).expect("slot").len(), SLOT_BYTES as u64, "space is reserved");
        assert_eq!(read_kept(dir.path()), None, "reserved, not written");
        let kept = outcome(3, 10);
        slot.keep(&kept).expect("keep");
        assert_eq!(read_kept(dir.path()), Some(kept));
        assert!(OutcomeSlot::reserve(dir.path()).is_err(), "one slot per run");
        slot.release();
        assert_eq!(read_kept(dir.path()), None);
    }

    #[test]
    fn an_outcome_too_long_for_its_slot_is_shortened_to_fit() {
        let dir = tempfile::tempdir().expect("dir");
        let slot = OutcomeSlot::reserve(dir.path()).expect("reserve");
        slot.keep(&outcome(2000, 100_000)).expect("keep");
        let read = read_kept(dir.path()).expect("kept");
        assert_eq!(read.state, "succeeded");
        assert!(read.message.expect("message").len() <= 4096 + '…'.len_utf8());
        assert!(!read.jobs.is_empty() && read.jobs.len() < 2000, "the latest jobs are kept");
        assert_eq!(read.jobs.last().map(|job| job.id.as_str()), Some("job-1999"));
    }
}
