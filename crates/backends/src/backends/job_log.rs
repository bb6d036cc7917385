//! A job's output: scrubbed of the launch's secrets ([`super::redact`]),
//! streamed to the terminal as it comes, written (bounded) to the job's log
//! file, and kept in a small in-memory tail for `job.logs()`.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which stream a chunk of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Where live job output goes besides the log file (the terminal, usually).
pub trait OutputSink: Send + Sync {
    fn write(&self, stream: Stream, bytes: &[u8]);

    /// Whether the sink is behind but still taking output: a reader of the
    /// job's pipes should wait (asynchronously) before writing more, so a slow
    /// terminal slows the job as a plain pipe would, and loses nothing.
    fn congested(&self) -> bool {
        false
    }
}

/// Writes job stdout to our stdout and job stderr to our stderr, from one
/// thread of its own: a terminal or pipe that does not keep up (a paused
/// terminal, a log shipper that stopped reading) must never block the job's
/// supervision, its cancellation or the store. While the terminal takes
/// output, a full queue is [`OutputSink::congested`] and the job's readers wait
/// (the job slows down, nothing is lost); once it has taken nothing for
/// [`STALLED_TERMINAL`], what does not fit is dropped from the terminal (the
/// log file keeps it), and a note says how much once the writer catches up.
pub struct TerminalOutput {
    queue: std::sync::mpsc::SyncSender<(Stream, Vec<u8>)>,
    /// Bytes dropped since the last note about them.
    dropped: AtomicU64,
    /// Chunks queued and not yet written.
    pending: Arc<AtomicUsize>,
    /// When the writer last finished a chunk, in milliseconds since `started`.
    progress: Arc<AtomicU64>,
    started: Instant,
}

/// Chunks of output waiting for the terminal before more are dropped.
pub const TERMINAL_QUEUE_CHUNKS: usize = 1024;

/// How long [`TerminalOutput::drain`] waits for a terminal that takes nothing.
const STALLED_TERMINAL: Duration = Duration::from_secs(5);

impl TerminalOutput {
    /// Start the writer thread. If it cannot be started, output is dropped
    /// (and counted) rather than written from the caller's thread.
    pub fn new() -> Self {
        let (queue, chunks) = std::sync::mpsc::sync_channel::<(Stream, Vec<u8>)>(TERMINAL_QUEUE_CHUNKS);
        let pending = Arc::new(AtomicUsize::new(0));
        let written = Arc::clone(&pending);
        let started = Instant::now();
        let progress = Arc::new(AtomicU64::new(0));
        let progressed = Arc::clone(&progress);
        let writer = std::thread::Builder::new().name("terminal-output".to_owned()).spawn(move || {
            for (stream, bytes) in chunks {
                // A closed terminal must not fail the job: write errors are ignored.
                let _ = match stream {
                    Stream::Stdout => {
                        let mut out = std::io::stdout().lock();
                        out.write_all(&bytes).and_then(|()| out.flush())
                    }
                    Stream::Stderr => {
                        let mut err = std::io::stderr().lock();
                        err.write_all(&bytes).and_then(|()| err.flush())
                    }
                };
                written.fetch_sub(1, Ordering::AcqRel);
                progressed.store(started.elapsed().as_millis() as u64, Ordering::Release);
            }
        });
        if let Err(error) = writer {
            tracing::warn!("cannot start the terminal writer ({error}); job output goes to its log only");
        }
        Self { queue, dropped: AtomicU64::new(0), pending, progress, started }
    }

    /// Queue a chunk; `false` if the writer cannot take it now.
    fn queue(&self, stream: Stream, bytes: Vec<u8>) -> bool {
        if self.pending.fetch_add(1, Ordering::AcqRel) == 0 {
            // An idle writer is not a stalled one: its clock starts with the work it is given.
            // (Without this, a launch whose last output was more than STALLED_TERMINAL ago
            // exited without waiting for its closing message, which was then lost.)
            self.progress.store(self.started.elapsed().as_millis() as u64, Ordering::Release);
        }
        if self.queue.try_send((stream, bytes)).is_ok() {
            return true;
        }
        self.pending.fetch_sub(1, Ordering::AcqRel);
        false
    }

    /// Whether the writer has finished a chunk within [`STALLED_TERMINAL`].
    fn progressing(&self) -> bool {
        let last = Duration::from_millis(self.progress.load(Ordering::Acquire));
        self.started.elapsed().saturating_sub(last) < STALLED_TERMINAL
    }

    /// A message for the user, on stderr, in order with the job's output and
    /// never blocking the caller (a terminal that stopped reading must not
    /// hold up a cancellation).
    pub fn note(&self, text: &str) {
        OutputSink::write(self, Stream::Stderr, format!("{text}\n").as_bytes());
    }

    /// Wait until what is queued has been written, for as long as the
    /// terminal keeps taking it: a reader that stopped reading costs at most
    /// [`STALLED_TERMINAL`], never a hang.
    pub fn drain(&self) {
        while self.pending.load(Ordering::Acquire) > 0 && self.progressing() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Default for TerminalOutput {
    fn default() -> Self {
        Self::new()
    }
}

impl OutputSink for TerminalOutput {
    fn congested(&self) -> bool {
        self.pending.load(Ordering::Acquire) >= TERMINAL_QUEUE_CHUNKS && self.progressing()
    }

    fn write(&self, stream: Stream, bytes: &[u8]) {
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let note = format!(
                "\n[stepbox: {dropped} bytes of job output were not shown here: the terminal did not keep up; \
                 the run's log has them]\n"
            );
            if !self.queue(Stream::Stderr, note.into_bytes()) {
                self.dropped.fetch_add(dropped, Ordering::Relaxed);
            }
        }
        if !self.queue(stream, bytes.to_vec()) {
            self.dropped.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
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

    /// [`JobLog::write`], after waiting (without blocking a runtime thread)
    /// while the live output is [`OutputSink::congested`]: what readers of a
    /// job's pipes use, so a slow terminal slows the job instead of losing output.
    pub async fn write_paced(&self, stream: Stream, bytes: &[u8]) {
        while self.sink.congested() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
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
        let mut lost = None;
        if let Some(file) = state.file.as_mut()
            && keep > 0
            && let Err(error) = file.write_all(&bytes[..keep])
        {
            // A full disk, say: the terminal still gets the output, and is told the log stops here.
            state.file = None;
            lost = Some(format!(
                "\n[stepbox: cannot write the job's log {} ({error}); it ends after {} bytes, and the output from \
                 there on is only shown here]\n",
                self.path.display(),
                state.written
            ));
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
        if let Some(note) = lost {
            self.sink.write(Stream::Stderr, note.as_bytes());
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_after_a_long_quiet_spell_is_written_before_drain_returns() {
        let mut terminal = TerminalOutput::new();
        // As if the last output had been written long ago (a quiet ten-second image push, say).
        terminal.started = Instant::now().checked_sub(STALLED_TERMINAL * 2).unwrap_or_else(Instant::now);
        terminal.progress.store(0, Ordering::Release);
        terminal.note("stepbox: run 0000 failed: the closing message");
        terminal.drain();
        assert_eq!(terminal.pending.load(Ordering::Acquire), 0, "drain returned before the message was written");
    }
}
