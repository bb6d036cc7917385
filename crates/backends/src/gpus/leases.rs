//! Exclusive GPU leases across processes: one `flock`ed file per GPU UUID
//! under `$STEPBOX_HOME/gpus`, held by the launch that runs the job and
//! released when the job ends or when that launch dies (the kernel drops a
//! `flock` with its holder's last descriptor, SIGKILL included: nothing to
//! reclaim by hand, and no PID to trust).
//!
//! - Lock files are never deleted: deleting one lets a waiter lock the old
//!   inode while a newcomer locks a new one (two holders).
//! - A lease of several GPUs is all or nothing: under a short-held
//!   `.leasing` lock, each candidate is tried without blocking; on a miss the
//!   ones taken are let go and the launch waits and tries again.
//! - The holder writes who it is (run, job, process) into the file it
//!   locked, so that `stepbox gpus` and a waiting launch can name it; what a
//!   dead holder wrote is ignored, because its lock is gone.
//! - Waiters are served first come, first served among those that want the
//!   same GPUs: a launch that must wait takes a ticket (a `flock`ed file in
//!   `queue/`, named by when it began waiting, listing the GPUs it could
//!   use), and no launch takes a GPU that an older live ticket could use. A
//!   launch asking for two GPUs is not overtaken forever by launches asking
//!   for one; a ticket whose waiter died is unlocked, so it no longer counts
//!   and is removed.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Read;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{Gpu, GpuRequest, Inventory};

/// How often a waiting launch tries again.
const RETRY: Duration = Duration::from_millis(200);
/// How soon a launch tries again when another was choosing at the same moment.
const CONTENDED_RETRY: Duration = Duration::from_millis(5);
/// The most of a lock file read back as its holder.
const MAX_HOLDER_BYTES: u64 = 4096;

/// Who holds a GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The run (`pipeline/run`) and step whose job has it.
    pub run: String,
    /// The job's id.
    pub job: String,
    /// The launch process holding the lock.
    pub pid: u32,
    /// When it was taken, seconds since the Unix epoch.
    pub since: u64,
    /// That process told apart from any later one with its PID
    /// ([`crate::processes::Identity`]); absent in older records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
}

impl Holder {
    /// This process, taking a lease for job `job` of run `run`.
    pub fn this_process(run: &str, job: &str) -> Self {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let process = crate::processes::Identity::current().map(|identity| identity.to_string());
        Holder { run: run.to_owned(), job: job.to_owned(), pid: std::process::id(), since, process }
    }

    /// Whether the launch that took the lease still runs. When it does not
    /// but the lock is held, the job outlived its launch (a SIGKILLed
    /// launch's container, an unconfined job's processes) and still has the
    /// GPUs.
    pub fn launch_alive(&self) -> bool {
        match self.process.as_deref().map(str::parse::<crate::processes::Identity>) {
            Some(Ok(identity)) => identity.is_alive(),
            // An older or unreadable record: its PID is all there is.
            _ => crate::processes::Identity::of(self.pid).is_some(),
        }
    }

    /// Whether what a lock file holds is fit to print: a job that inherited
    /// the file could have written anything there.
    fn is_plain(&self) -> bool {
        let plain = |text: &str| text.len() <= 256 && !text.chars().any(char::is_control);
        plain(&self.run) && plain(&self.job)
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.launch_alive() {
            write!(f, "run {} (job {}, stepbox pid {})", self.run, self.job, self.pid)
        } else {
            write!(
                f,
                "run {} (job {}; its launch, pid {}, has ended but the job still runs: `stepbox runs show {}` stops it)",
                self.run, self.job, self.pid, self.run
            )
        }
    }
}

/// Whether a GPU is free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Occupancy {
    Free,
    /// Held; by whom, when the holder has written it yet.
    Held(Option<Holder>),
}

/// GPUs a job holds until this value is dropped.
#[derive(Debug)]
pub struct Lease {
    gpus: Vec<Gpu>,
    files: Vec<File>,
    control_devices: Vec<PathBuf>,
}

impl Lease {
    /// The leased GPUs, in index order.
    pub fn gpus(&self) -> &[Gpu] {
        &self.gpus
    }

    /// The machine's NVIDIA control nodes, which a job using its GPUs needs too.
    pub fn control_devices(&self) -> &[PathBuf] {
        &self.control_devices
    }

    /// The locked files' descriptors: a job that may outlive its launch
    /// (an unconfined one) inherits them, so the lease lasts as long as any
    /// of its processes does.
    pub fn descriptors(&self) -> Vec<RawFd> {
        self.files.iter().map(AsRawFd::as_raw_fd).collect()
    }
}

/// Why a job could not have the GPUs it asked for.
#[derive(Debug, Error)]
pub enum LeaseError {
    #[error("the job asks for {asked}, but this machine has no GPU stepbox can lease: {why}")]
    NoGpus { asked: String, why: String },
    #[error(
        "the job asks for {asked}, but this machine has {have}: ask for at most {most}, or run the step on a backend with more"
    )]
    TooMany { asked: String, have: String, most: usize },
    #[error("the job asks for {asked}, but no GPU here is of that class; this machine has {have}")]
    NoSuchClass { asked: String, have: String },
    #[error("the job waited {waited} for {asked} and its time ran out; they were held by: {holders}")]
    TimedOut { asked: String, waited: String, holders: String },
    #[error("cannot lease GPUs under {dir}: {reason}")]
    Io { dir: PathBuf, reason: String },
}

/// The outcome of one try.
enum Attempt {
    Taken(Lease),
    /// Not enough free GPUs, or older waiters for them: those held, with
    /// their holders, and how many waiters are ahead.
    Busy {
        held: Vec<(Gpu, Option<Holder>)>,
        ahead: usize,
    },
    /// Another launch holds `.leasing` this instant (never blocked on: a
    /// stopped process holding it must not stall every launch's try).
    Contended,
}

/// The lease directory of one stepbox home.
#[derive(Debug, Clone)]
pub struct Leases {
    dir: PathBuf,
}

impl Leases {
    /// Leases kept in `dir` (`$STEPBOX_HOME/gpus`), made on first use.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn io(&self, error: impl std::fmt::Display) -> LeaseError {
        LeaseError::Io { dir: self.dir.clone(), reason: error.to_string() }
    }

    fn open(&self, name: &str) -> Result<File, LeaseError> {
        std::fs::create_dir_all(&self.dir).map_err(|error| self.io(error))?;
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(self.dir.join(name))
            .map_err(|error| self.io(format!("{name}: {error}")))
    }

    /// Whether `gpu` is held, and by whom.
    pub fn occupancy(&self, gpu: &Gpu) -> Result<Occupancy, LeaseError> {
        let file = self.open(&lock_name(gpu))?;
        match file.try_lock() {
            Ok(()) => Ok(Occupancy::Free),
            Err(TryLockError::WouldBlock) => Ok(Occupancy::Held(read_holder(&file))),
            Err(TryLockError::Error(error)) => Err(self.io(error)),
        }
    }

    /// Take `request`'s GPUs from `inventory` for `holder`, waiting while
    /// they are held, at most `wait_limit` (no limit: until they are free).
    /// `on_wait` hears what the launch waits for, once and whenever that
    /// changes. Asking for what the machine cannot give is an error at once.
    pub async fn take(
        &self,
        inventory: &Inventory,
        request: &GpuRequest,
        holder: &Holder,
        wait_limit: Option<Duration>,
        mut on_wait: impl FnMut(&str),
    ) -> Result<Lease, LeaseError> {
        let candidates = self.candidates(inventory, request)?;
        let started = Instant::now();
        let mut last_said = String::new();
        let mut ticket: Option<Ticket> = None;
        let timed_out = |holders: String| LeaseError::TimedOut {
            asked: request.describe(),
            waited: humantime::format_duration(Duration::from_secs(started.elapsed().as_secs())).to_string(),
            holders,
        };
        loop {
            match self.try_take(&candidates, request.count as usize, holder, ticket.as_ref())? {
                Attempt::Taken(mut lease) => {
                    lease.control_devices.clone_from(&inventory.control_devices);
                    return Ok(lease);
                }
                Attempt::Contended => {
                    if wait_limit.is_some_and(|limit| started.elapsed() + CONTENDED_RETRY > limit) {
                        let leasing = self.dir.join(".leasing");
                        return Err(timed_out(format!(
                            "a stepbox process that holds {} and has not let go",
                            leasing.display()
                        )));
                    }
                    tokio::time::sleep(CONTENDED_RETRY).await;
                }
                Attempt::Busy { held, ahead } => {
                    let mut holders = describe_holders(&held);
                    if ahead > 0 {
                        let launches = if ahead == 1 { "launch" } else { "launches" };
                        holders.push_str(&format!(", with {ahead} {launches} ahead in the queue for them"));
                    }
                    if wait_limit.is_some_and(|limit| started.elapsed() + RETRY > limit) {
                        return Err(timed_out(holders));
                    }
                    if ticket.is_none() {
                        ticket = Some(self.join_queue(&candidates)?);
                    }
                    let saying = format!("waiting for {}: held by {holders}", request.describe());
                    if saying != last_said {
                        on_wait(&saying);
                        last_said = saying;
                    }
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// The GPUs that could serve `request`, or why none can.
    fn candidates<'a>(&self, inventory: &'a Inventory, request: &GpuRequest) -> Result<Vec<&'a Gpu>, LeaseError> {
        let asked = request.describe();
        if inventory.gpus.is_empty() {
            let why = inventory.absent_because.clone().unwrap_or_else(|| "none was found".to_owned());
            return Err(LeaseError::NoGpus { asked, why });
        }
        let not_leased = inventory.not_leased_note();
        if inventory.leasable().next().is_none() {
            return Err(LeaseError::NoGpus { asked, why: not_leased.unwrap_or_default() });
        }
        let mut have = inventory.models().join(", ");
        if let Some(note) = not_leased {
            have = format!("{have} ({note})");
        }
        let candidates = inventory.of_class(request.class.as_deref());
        if candidates.is_empty() {
            return Err(LeaseError::NoSuchClass { asked, have });
        }
        if candidates.len() < request.count as usize {
            return Err(LeaseError::TooMany { asked, have, most: candidates.len() });
        }
        Ok(candidates)
    }

    /// One all-or-nothing try, under the `.leasing` lock, by the waiter
    /// holding `ticket` (none: a launch that has not waited yet).
    fn try_take(
        &self,
        candidates: &[&Gpu],
        count: usize,
        holder: &Holder,
        ticket: Option<&Ticket>,
    ) -> Result<Attempt, LeaseError> {
        let leasing = self.open(".leasing")?;
        // Held only for the non-blocking tries below: microseconds.
        match leasing.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(Attempt::Contended),
            Err(TryLockError::Error(error)) => return Err(self.io(error)),
        }
        let wanted: Vec<&str> = candidates.iter().map(|gpu| gpu.uuid.as_str()).collect();
        let ahead = self
            .live_tickets()?
            .iter()
            .take_while(|(name, _)| ticket.is_none_or(|mine| *name != mine.name))
            .filter(|(_, theirs)| theirs.iter().any(|uuid| uuid == "*" || wanted.contains(&uuid.as_str())))
            .count();
        let mut taken: Vec<(Gpu, File)> = Vec::with_capacity(count);
        let mut held = Vec::new();
        for gpu in candidates {
            if taken.len() == count && ahead == 0 {
                break;
            }
            let file = self.open(&lock_name(gpu))?;
            match file.try_lock() {
                Ok(()) => taken.push(((*gpu).clone(), file)),
                Err(TryLockError::WouldBlock) => held.push(((*gpu).clone(), read_holder(&file))),
                Err(TryLockError::Error(error)) => return Err(self.io(error)),
            }
        }
        if taken.len() < count || ahead > 0 {
            // Dropping the files lets go of the ones taken.
            return Ok(Attempt::Busy { held, ahead });
        }
        taken.truncate(count);
        let record = serde_json::to_vec(holder).map_err(|error| self.io(error))?;
        for (_, file) in &taken {
            file.set_len(0).and_then(|()| file.write_all_at(&record, 0)).map_err(|error| self.io(error))?;
        }
        drop(leasing);
        let (gpus, files) = taken.into_iter().unzip();
        Ok(Attempt::Taken(Lease { gpus, files, control_devices: Vec::new() }))
    }

    /// Where the leases live.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A ticket for a waiter that could use `candidates`.
    fn join_queue(&self, candidates: &[&Gpu]) -> Result<Ticket, LeaseError> {
        let queue = self.dir.join("queue");
        std::fs::create_dir_all(&queue).map_err(|error| self.io(error))?;
        let name = format!("{:020}-{:010}-{}", since_boot_nanos(), std::process::id(), uuid::Uuid::new_v4().simple());
        let failed = |error: std::io::Error| self.io(format!("queue/{name}: {error}"));
        // Made whole (locked, its list written) under a hidden name, then
        // renamed into the queue: a ticket is never seen unlocked and swept,
        // nor seen without its list.
        let hidden = queue.join(format!(".{name}"));
        let file =
            OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&hidden).map_err(failed)?;
        let wanted: Vec<&str> = candidates.iter().map(|gpu| gpu.uuid.as_str()).collect();
        let record = serde_json::to_vec(&wanted).map_err(|error| self.io(error))?;
        let path = queue.join(&name);
        let made = file
            .try_lock()
            .map_err(std::io::Error::from)
            .and_then(|()| file.write_all_at(&record, 0))
            .and_then(|()| std::fs::rename(&hidden, &path));
        if let Err(error) = made {
            let _ = std::fs::remove_file(&hidden);
            return Err(failed(error));
        }
        Ok(Ticket { name, path, _file: file })
    }

    /// The live tickets, oldest first, with the GPUs each could use; dead
    /// waiters' tickets are removed. Called under `.leasing`.
    fn live_tickets(&self) -> Result<Vec<(String, Vec<String>)>, LeaseError> {
        let queue = self.dir.join("queue");
        let entries = match std::fs::read_dir(&queue) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(self.io(error)),
        };
        let mut live = Vec::new();
        for entry in entries.flatten() {
            // Hidden names are tickets still being made (see `join_queue`).
            let Some(name) = entry.file_name().to_str().filter(|name| !name.starts_with('.')).map(str::to_owned) else {
                continue;
            };
            let Ok(file) = File::open(entry.path()) else { continue };
            match file.try_lock() {
                // Its waiter is gone (or got its GPUs and is removing it).
                Ok(()) => {
                    let _ = std::fs::remove_file(entry.path());
                }
                Err(TryLockError::WouldBlock) => {
                    let mut text = Vec::new();
                    let _ = (&file).take(MAX_HOLDER_BYTES).read_to_end(&mut text);
                    // Written before it was queued: an unreadable list (a damaged file) wants everything.
                    let wanted: Vec<String> = serde_json::from_slice(&text).unwrap_or_else(|_| vec!["*".to_owned()]);
                    live.push((name, wanted));
                }
                Err(TryLockError::Error(error)) => return Err(self.io(error)),
            }
        }
        live.sort();
        Ok(live)
    }
}

/// A waiter's place in the queue, given up when dropped.
struct Ticket {
    name: String,
    path: PathBuf,
    _file: File,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // Removed before its lock goes with the file: nobody mistakes it for a dead waiter's.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Nanoseconds since boot, the queue's order: one clock for every process on
/// the machine that never goes back (a wall clock set back would let a
/// newcomer's ticket sort before older waiters'). Tickets do not outlive a
/// boot: their waiters' locks do not.
fn since_boot_nanos() -> u128 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given and nothing else.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) } != 0 {
        // Every Linux since 2.6.39 has it; a wall clock is the next best order.
        let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        return wall.as_nanos();
    }
    u128::from(now.tv_sec.unsigned_abs()) * 1_000_000_000 + u128::from(now.tv_nsec.unsigned_abs())
}

/// The lock file of a GPU: its UUID, checked by the inventory to be a safe name.
fn lock_name(gpu: &Gpu) -> String {
    format!("{}.lock", gpu.uuid)
}

/// What the holder of a lock file wrote, if it is readable.
fn read_holder(file: &File) -> Option<Holder> {
    let mut text = Vec::new();
    let mut reader = file.try_clone().ok()?;
    std::io::Seek::rewind(&mut reader).ok()?;
    reader.take(MAX_HOLDER_BYTES).read_to_end(&mut text).ok()?;
    serde_json::from_slice(&text).ok().filter(Holder::is_plain)
}

fn describe_holders(held: &[(Gpu, Option<Holder>)]) -> String {
    if held.is_empty() {
        return "other launches taking GPUs at the same moment".to_owned();
    }
    held.iter()
        .map(|(gpu, holder)| match holder {
            Some(holder) => format!("GPU {} ({}) by {holder}", gpu.index, gpu.uuid),
            None => format!("GPU {} ({}) by another stepbox process", gpu.index, gpu.uuid),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory(models: &[&str]) -> Inventory {
        let gpus: Vec<String> = models
            .iter()
            .enumerate()
            .map(|(index, model)| {
                format!(
                    r#"{{"index": {index}, "uuid": "GPU-{index:04}", "model": "{model}", "memory_bytes": 1, "device": "/dev/nvidia{index}"}}"#
                )
            })
            .collect();
        Inventory::from_json(&format!(r#"{{"gpus": [{}]}}"#, gpus.join(",")), "test").expect("an inventory")
    }

    fn holder(job: &str) -> Holder {
        Holder { since: 0, ..Holder::this_process("p/r", job) }
    }

    fn request(count: u32, class: Option<&str>) -> GpuRequest {
        GpuRequest { count, class: class.map(str::to_owned) }
    }

    #[tokio::test]
    async fn leases_are_exclusive_until_dropped() {
        let dir = tempfile::tempdir().expect("a dir");
        let leases = Leases::new(dir.path().join("gpus"));
        let machine = inventory(&["NVIDIA H200", "NVIDIA H200"]);
        let first = leases.take(&machine, &request(1, None), &holder("a"), None, |_| {}).await.expect("free");
        let second = leases.take(&machine, &request(1, None), &holder("b"), None, |_| {}).await.expect("free");
        assert_ne!(first.gpus()[0].uuid, second.gpus()[0].uuid);
        assert_eq!(leases.occupancy(&first.gpus()[0]).expect("reads"), Occupancy::Held(Some(holder("a"))));
        let mut heard = Vec::new();
        let error = leases
            .take(&machine, &request(1, None), &holder("c"), Some(Duration::from_millis(500)), |said| {
                heard.push(said.to_owned())
            })
            .await
            .expect_err("both are held");
        assert!(matches!(error, LeaseError::TimedOut { .. }), "{error}");
        assert!(error.to_string().contains("job a"), "{error}");
        assert_eq!(heard.len(), 1, "said once: {heard:?}");
        assert!(heard[0].contains("waiting for 1 GPU"), "{heard:?}");
        let freed = first.gpus()[0].clone();
        drop(first);
        assert_eq!(leases.occupancy(&freed).expect("reads"), Occupancy::Free);
        let third = leases.take(&machine, &request(1, None), &holder("c"), None, |_| {}).await.expect("freed");
        assert_eq!(third.gpus()[0], freed);
    }

    #[tokio::test]
    async fn several_gpus_are_all_or_nothing() {
        let dir = tempfile::tempdir().expect("a dir");
        let leases = Leases::new(dir.path());
        let machine = inventory(&["A", "A", "A"]);
        let one = leases.take(&machine, &request(1, None), &holder("a"), None, |_| {}).await.expect("free");
        let error = leases
            .take(&machine, &request(3, None), &holder("b"), Some(Duration::from_millis(300)), |_| {})
            .await
            .expect_err("one is held");
        assert!(matches!(error, LeaseError::TimedOut { .. }));
        // The two the failed try took were let go.
        let two = leases
            .take(&machine, &request(2, None), &holder("c"), Some(Duration::ZERO), |_| {})
            .await
            .expect("two free");
        assert_eq!(two.gpus().len(), 2);
        drop(one);
    }

    #[tokio::test]
    async fn waiters_are_served_in_order_and_a_newcomer_does_not_jump_the_queue() {
        let dir = tempfile::tempdir().expect("a dir");
        let leases = Leases::new(dir.path());
        let machine = inventory(&["A", "A"]);
        let first = leases.take(&machine, &request(1, None), &holder("first"), None, |_| {}).await.expect("free");
        let mut held = Some(first);
        // A waiter for both GPUs queues behind the one held.
        let leases_for_pair = leases.clone();
        let machine_for_pair = machine.clone();
        let pair = tokio::spawn(async move {
            leases_for_pair.take(&machine_for_pair, &request(2, None), &holder("pair"), None, |_| {}).await
        });
        while leases.live_tickets().expect("reads").is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // One GPU is free, but the pair waited first: a newcomer for one waits too, and says why.
        let mut heard = Vec::new();
        let error = leases
            .take(&machine, &request(1, None), &holder("newcomer"), Some(Duration::from_millis(300)), |said| {
                heard.push(said.to_owned())
            })
            .await
            .expect_err("the pair is ahead");
        assert!(error.to_string().contains("1 launch ahead in the queue"), "{error}");
        drop(held.take());
        let pair = pair.await.expect("joins").expect("the pair gets both");
        assert_eq!(pair.gpus().len(), 2);
        assert!(leases.live_tickets().expect("reads").is_empty(), "the ticket is gone with its waiter");
        // A ticket still being made (hidden, not yet locked) is neither counted nor swept away.
        let making = dir.path().join("queue/.00000000000000000001-0000000001-making");
        std::fs::write(&making, "").expect("writes");
        assert!(leases.live_tickets().expect("reads").is_empty());
        assert!(making.exists(), "a ticket being made is left to its waiter");
    }

    #[tokio::test]
    async fn a_stuck_chooser_never_blocks_a_launch_past_its_limit() {
        let dir = tempfile::tempdir().expect("a dir");
        let leases = Leases::new(dir.path());
        let machine = inventory(&["A"]);
        // Another process took `.leasing` and stopped (SIGSTOP) before letting go.
        let stuck = leases.open(".leasing").expect("opens");
        stuck.lock().expect("locks");
        let error = leases
            .take(&machine, &request(1, None), &holder("a"), Some(Duration::from_millis(100)), |_| {})
            .await
            .expect_err("cannot choose");
        assert!(error.to_string().contains(".leasing"), "{error}");
        drop(stuck);
        leases.take(&machine, &request(1, None), &holder("a"), Some(Duration::ZERO), |_| {}).await.expect("free again");
    }

    #[tokio::test]
    async fn what_a_holder_wrote_is_shown_only_when_plain_and_a_gone_launch_is_named() {
        let dir = tempfile::tempdir().expect("a dir");
        let leases = Leases::new(dir.path());
        let machine = inventory(&["A"]);
        let lease = leases.take(&machine, &request(1, None), &holder("a"), None, |_| {}).await.expect("free");
        let gpu = lease.gpus()[0].clone();
        // A job that inherited the lock file writes over the record: shown as nobody in particular.
        let forged = serde_json::json!({"run": "\u{1b}[2Jp/r", "job": "a", "pid": 1, "since": 0});
        std::fs::write(dir.path().join(lock_name(&gpu)), forged.to_string()).expect("writes");
        assert_eq!(leases.occupancy(&gpu).expect("reads"), Occupancy::Held(None));
        // A holder whose launch is gone still holds the GPU, and the way out is named.
        let gone = Holder { run: "p/r".into(), job: "train".into(), pid: u32::MAX, since: 0, process: None };
        let said = gone.to_string();
        assert!(said.contains("has ended but the job still runs") && said.contains("stepbox runs show p/r"), "{said}");
        assert!(holder("a").to_string().contains(&format!("stepbox pid {}", std::process::id())));
        // A live PID that is no longer the process that took the lease (a reused PID) is gone too.
        let reused = Holder { process: Some(format!("{}:0:not-this-boot", std::process::id())), ..holder("a") };
        assert!(!reused.launch_alive(), "{reused:?}");
    }

    #[tokio::test]
    async fn impossible_requests_fail_at_once_naming_what_exists() {
        let dir = tempfile::tempdir().expect("a dir");
        let leases = Leases::new(dir.path());
        let machine = inventory(&["NVIDIA H200", "NVIDIA H200", "NVIDIA L4"]);
        let cases = [
            (request(4, None), "this machine has 2 x NVIDIA H200, 1 x NVIDIA L4: ask for at most 3"),
            (request(2, Some("l4")), "ask for at most 1"),
            (request(1, Some("a100")), "no GPU here is of that class; this machine has 2 x NVIDIA H200, 1 x NVIDIA L4"),
        ];
        for (asked, expected) in cases {
            let error = leases.take(&machine, &asked, &holder("a"), None, |_| {}).await.expect_err("impossible");
            assert!(error.to_string().contains(expected), "{error}");
        }
        let none = Inventory::from_json(r#"{"gpus": []}"#, "none").expect("parses");
        let error = leases.take(&none, &request(1, None), &holder("a"), None, |_| {}).await.expect_err("no GPU");
        assert!(error.to_string().contains("has no GPU"), "{error}");
        let class = leases.take(&machine, &request(1, Some("l4")), &holder("a"), None, |_| {}).await.expect("an L4");
        assert_eq!(class.gpus()[0].model, "NVIDIA L4");
        // A GPU in MIG mode is never leased whole: a job there would find no GPU.
        let gpu = |index: u32, mig: bool| {
            format!(
                r#"{{"index": {index}, "uuid": "GPU-m{index}", "model": "NVIDIA H100", "memory_bytes": 1, "device": "/dev/nvidia{index}", "mig": {mig}}}"#
            )
        };
        let all_mig = Inventory::from_json(&format!(r#"{{"gpus": [{}]}}"#, gpu(0, true)), "mig").expect("parses");
        let error = leases.take(&all_mig, &request(1, None), &holder("a"), None, |_| {}).await.expect_err("MIG only");
        assert!(error.to_string().contains("no GPU stepbox can lease: GPU 0 (NVIDIA H100) is in MIG mode"), "{error}");
        let mixed = Inventory::from_json(&format!(r#"{{"gpus": [{}, {}]}}"#, gpu(0, true), gpu(1, false)), "mig")
            .expect("parses");
        let error = leases.take(&mixed, &request(2, None), &holder("a"), None, |_| {}).await.expect_err("one whole");
        assert!(error.to_string().contains("1 x NVIDIA H100 (GPU 0 (NVIDIA H100) is in MIG mode"), "{error}");
        let whole = leases.take(&mixed, &request(1, None), &holder("a"), None, |_| {}).await.expect("the whole one");
        assert_eq!(whole.gpus()[0].uuid, "GPU-m1");
    }
}
