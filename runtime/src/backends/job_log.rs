//! A job's output: scrubbed of the launch's secrets ([`super::redact`]),
//! streamed to the terminal as it comes, written (bounded) to the job's log
//! file, and kept in a small in-memory tail for `job.logs()`.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Which stream a chunk of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Where live job output goes besides the log file (the terminal, usually).
pub trait OutputSink: Send + Sync {
    fn write(&self, stream: Stream, bytes: &[u8]);
}

/// Writes job stdout to our stdout and job stderr to our stderr.
pub struct TerminalOutput;

impl OutputSink for TerminalOutput {
    fn write(&self, stream: Stream, bytes: &[u8]) {
        // A closed terminal must not fail the job: ignore write errors.
        let _ = match stream {
            Stream::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes).and_then(|()| out.flush())
            }
            Stream::Stderr => {
                let mut err = std::io::stderr().lock();
                err.write_all(bytes).and_then(|()| err.flush())
            }
        };
    }
}

/// Bytes of output kept in memory for `job.logs()`.
const TAIL_BYTES: usize = 256 << 10;

struct LogState {
    /// Per stream (stdout, stderr): bytes that may still begin a secret.
    held: [Vec<u8>; 2],
    file: Option<File>,
    written: u64,
    truncated: bool,
    tail: VecDeque<u8>,
}

/// One job's output.
pub struct JobLog {
    path: PathBuf,
    limit: u64,
    sink: Arc<dyn OutputSink>,
    redactor: Arc<super::redact::Redactor>,
    state: Mutex<LogState>,
}

impl JobLog {
    /// A log file at `path` that keeps at most `limit` bytes, forwarding live
    /// output to `sink`.
    pub fn create(path: &Path, limit: u64, sink: Arc<dyn OutputSink>) -> std::io::Result<Self> {
        let file = File::create(path)?;
        Ok(Self {
            path: path.to_owned(),
            limit,
            sink,
            redactor: Arc::new(super::redact::Redactor::none()),
            state: Mutex::new(LogState {
                held: [Vec::new(), Vec::new()],
                file: Some(file),
                written: 0,
                truncated: false,
                tail: VecDeque::new(),
            }),
        })
    }

    /// Scrub `redactor`'s secrets from everything this log passes on.
    pub fn redacting(mut self, redactor: Arc<super::redact::Redactor>) -> Self {
        self.redactor = redactor;
        self
    }

    /// The output ended: pass on what was held back as a possible secret's
    /// start. Later writes are still scrubbed; calling it again is harmless.
    pub fn finish(&self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            self.record(stream, &[], true);
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Record a chunk of output.
    pub fn write(&self, stream: Stream, bytes: &[u8]) {
        self.record(stream, bytes, false);
    }

    fn record(&self, stream: Stream, chunk: &[u8], end: bool) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let index = match stream {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        };
        let scrubbed = self.redactor.scrub(&mut state.held[index], chunk, end);
        if scrubbed.is_empty() {
            return;
        }
        let bytes = scrubbed.as_slice();
        state.tail.extend(bytes);
        let excess = state.tail.len().saturating_sub(TAIL_BYTES);
        state.tail.drain(..excess);
        let room = self.limit.saturating_sub(state.written);
        let keep = (bytes.len() as u64).min(room) as usize;
        if let Some(file) = state.file.as_mut()
            && keep > 0
            && file.write_all(&bytes[..keep]).is_err()
        {
            state.file = None;
        }
        state.written += keep as u64;
        if keep < bytes.len() && !state.truncated {
            state.truncated = true;
            let note = format!("\n[stepbox: log limit of {} bytes reached; further output is not kept]\n", self.limit);
            if let Some(file) = state.file.as_mut() {
                let _ = file.write_all(note.as_bytes());
            }
        }
        drop(state);
        // Outside the lock (a slow terminal must not hold up `job.logs()`);
        // each stream has one writer, so its chunks stay in order.
        self.sink.write(stream, bytes);
    }

    /// The last `max` bytes of output, as text.
    pub fn tail(&self, max: usize) -> String {
        let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let skip = state.tail.len().saturating_sub(max);
        let bytes: Vec<u8> = state.tail.iter().skip(skip).copied().collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// The last `max` bytes of a log file on disk.
pub fn file_tail(path: &Path, max: u64) -> std::io::Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
