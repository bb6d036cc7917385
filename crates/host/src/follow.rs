//! Following a run's output from another process (`stepbox wait --follow`,
//! which the ZenML integration uses to show a step's output in the
//! pipeline's terminal): the new bytes of each of the run's job logs, in the
//! order the jobs were recorded.
//!
//! The logs are the files the run's supervisor writes, so what is shown is
//! already scrubbed of the launch's secrets and bounded by its `log-bytes`
//! limit; reading them needs no cooperation from the supervisor.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};

use stepbox_store::store::JobRecord;

/// Most bytes copied from one job's log per call, so one chatty job cannot
/// hold up the others or the wait.
const MAX_BYTES_PER_CALL: u64 = 4 << 20;

/// How far each job's log has been shown.
#[derive(Debug, Default)]
pub struct LogFollower {
    shown: HashMap<String, u64>,
}

impl LogFollower {
    /// A follower that has shown nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Copy to `out` what `jobs` wrote since the last call (at most
    /// [`MAX_BYTES_PER_CALL`] per job). A log that cannot be read (not
    /// created yet, removed) is skipped; only a failure of `out` is an error.
    /// Returns whether some log still holds bytes not shown.
    pub fn copy_new(&mut self, jobs: &[JobRecord], out: &mut impl Write) -> std::io::Result<bool> {
        let mut more = false;
        for job in jobs {
            let shown = self.shown.entry(job.id.clone()).or_insert(0);
            let Ok(mut file) = File::open(&job.log_path) else { continue };
            let Ok(length) = file.metadata().map(|metadata| metadata.len()) else { continue };
            if length <= *shown || file.seek(SeekFrom::Start(*shown)).is_err() {
                continue;
            }
            let mut bytes = Vec::new();
            if file.take(MAX_BYTES_PER_CALL).read_to_end(&mut bytes).is_err() || bytes.is_empty() {
                continue;
            }
            out.write_all(&bytes)?;
            *shown += bytes.len() as u64;
            more |= length > *shown;
        }
        out.flush()?;
        Ok(more)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stepbox_backends::backends::JobState;

    fn job(id: &str, log: &std::path::Path) -> JobRecord {
        JobRecord {
            id: id.to_owned(),
            run_id: "r".to_owned(),
            seq: 0,
            name: id.to_owned(),
            backend: "local".to_owned(),
            external_id: None,
            command: Vec::new(),
            state: JobState::Running,
            exit_code: None,
            message: None,
            log_path: log.display().to_string(),
            submitted_at: String::new(),
            ended_at: None,
            gpus: Vec::new(),
        }
    }

    #[test]
    fn each_byte_of_each_log_is_shown_once_in_job_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (first, second) = (dir.path().join("a.log"), dir.path().join("b.log"));
        std::fs::write(&first, "one\n").expect("write");
        let jobs = [job("a", &first), job("b", &second)];
        let mut follower = LogFollower::new();
        let mut out = Vec::new();
        assert!(!follower.copy_new(&jobs, &mut out).expect("copy"), "b's log does not exist yet: skipped");
        std::fs::write(&second, "two\n").expect("write");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&first)
            .and_then(|mut f| f.write_all(b"three\n"))
            .expect("append");
        follower.copy_new(&jobs, &mut out).expect("copy");
        follower.copy_new(&jobs, &mut out).expect("nothing new");
        assert_eq!(String::from_utf8_lossy(&out), "one\nthree\ntwo\n");
    }

    #[test]
    fn a_large_log_comes_in_bounded_pieces() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("big.log");
        std::fs::write(&log, vec![b'x'; MAX_BYTES_PER_CALL as usize + 10]).expect("write");
        let jobs = [job("big", &log)];
        let mut follower = LogFollower::new();
        let mut out = Vec::new();
        assert!(follower.copy_new(&jobs, &mut out).expect("copy"), "more is left");
        assert_eq!(out.len() as u64, MAX_BYTES_PER_CALL);
        assert!(!follower.copy_new(&jobs, &mut out).expect("copy"));
        assert_eq!(out.len() as u64, MAX_BYTES_PER_CALL + 10);
    }

    #[test]
    fn a_reader_that_went_away_is_an_error() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("a.log");
        std::fs::write(&log, "x").expect("write");
        let error = LogFollower::new().copy_new(&[job("a", &log)], &mut Closed).expect_err("closed");
        assert_eq!(error.kind(), std::io::ErrorKind::BrokenPipe);
    }
}
