//! Telling processes apart by more than their number.
//!
//! A PID (and so a process-group id) is handed to a new process once the old
//! one is reaped, so a number written in a record proves nothing later: a
//! `status` that signals "the recorded process group" may kill a stranger.
//! stepbox signals a process only when it can prove the process is its own:
//!
//! - [`Identity`]: a process's PID *and* its start time (`/proc/PID/stat`,
//!   field 22) *and* the boot it started in. A run records its supervisor's;
//!   a later process with the same PID has another start time or boot.
//! - [`JOB_MARKER`]: every local job starts with `STEPBOX_JOB_ID=<job id>` in
//!   its environment, which everything it starts inherits. A job whose launch
//!   died is found by that marker (the technique Jenkins' process-tree killer
//!   uses), never by a recorded group that may since be someone else's; and
//!   the marker exists before the job runs, so a launch killed between spawning
//!   a job and recording it leaves nothing that cannot be found.
//! - Signals go through a pidfd opened *before* the process is checked, so the
//!   process checked is the process signalled (where the kernel has no pidfds,
//!   before 5.3, the check and the signal are a few microseconds apart).
//!
//! What cannot be proved is left alone and said: a process that scrubbed its
//! environment (`env -i`) is not found by its marker.

use std::fmt;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::Signal;

/// The environment variable that marks a local job and everything it starts.
pub const JOB_MARKER: &str = "STEPBOX_JOB_ID";

/// How much of a process's environment is searched for the marker (the
/// kernel caps a new program's arguments and environment near this too).
const MAX_ENVIRON_BYTES: u64 = 4 << 20;

/// A process, told apart from every other process that had or will have its PID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The process id.
    pub pid: u32,
    /// Clock ticks from boot to the process's start (`/proc/PID/stat`, field 22).
    start_ticks: u64,
    /// `/proc/sys/kernel/random/boot_id`: PIDs and start times repeat across boots.
    boot_id: String,
}

impl Identity {
    /// This process.
    pub fn current() -> Option<Identity> {
        Identity::of(std::process::id())
    }

    /// The live (not zombie) process `pid` now, if there is one.
    pub fn of(pid: u32) -> Option<Identity> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let stat = Stat::parse(&stat)?;
        if !stat.is_live() {
            return None;
        }
        Some(Identity { pid, start_ticks: stat.start_ticks()?, boot_id: boot_id()? })
    }

    /// Whether this very process is still alive (not merely its PID).
    pub fn is_alive(&self) -> bool {
        Identity::of(self.pid).as_ref() == Some(self)
    }

    /// Send `signal` to this process if it is still this process. `Ok(false)`:
    /// it is gone (its PID is free or someone else's), nothing was signalled.
    pub fn signal(&self, signal: Signal) -> std::io::Result<bool> {
        signal_if(self.pid, signal, || self.is_alive())
    }
}

/// Stored as `PID:START_TICKS:BOOT_ID`.
impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.pid, self.start_ticks, self.boot_id)
    }
}

impl FromStr for Identity {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not a process identity (PID:START_TICKS:BOOT_ID)");
        let mut parts = text.splitn(3, ':');
        let pid = parts.next().and_then(|pid| pid.parse().ok()).ok_or_else(bad)?;
        let start_ticks = parts.next().and_then(|ticks| ticks.parse().ok()).ok_or_else(bad)?;
        let boot_id = parts.next().filter(|id| !id.is_empty()).ok_or_else(bad)?.to_owned();
        Ok(Identity { pid, start_ticks, boot_id })
    }
}

/// A `/proc/PID/stat` line, read the one way stepbox reads it everywhere.
pub struct Stat<'a> {
    /// The command name (field 2), without its parentheses.
    pub name: &'a str,
    /// Field 3 onwards: state, ppid, pgrp, …
    fields: Vec<&'a str>,
}

impl<'a> Stat<'a> {
    /// The command name is in parentheses and may hold anything, spaces and
    /// `)` included: the fields after it start after the last `)`.
    pub fn parse(line: &'a str) -> Option<Self> {
        let (head, rest) = line.rsplit_once(')')?;
        let (_, name) = head.split_once('(')?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.first()?;
        Some(Stat { name, fields })
    }

    /// The state letter (`R`, `S`, `Z`, …).
    pub fn state(&self) -> &'a str {
        self.fields[0]
    }

    /// Not a zombie or dead: a process that holds something and can be signalled.
    pub fn is_live(&self) -> bool {
        !matches!(self.state(), "Z" | "X")
    }

    /// The parent's PID (field 4).
    pub fn parent(&self) -> Option<i32> {
        self.field(4)
    }

    /// The process group (field 5).
    pub fn group(&self) -> Option<i32> {
        self.field(5)
    }

    /// Clock ticks from boot to the process's start (field 22).
    pub fn start_ticks(&self) -> Option<u64> {
        self.field(22)
    }

    fn field<T: FromStr>(&self, number: usize) -> Option<T> {
        self.fields.get(number.checked_sub(3)?)?.parse().ok()
    }
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|id| id.trim().to_owned())
}

/// Whether process `pid`'s environment holds `NAME=VALUE` as a whole entry.
fn environ_holds(pid: u32, entry: &[u8]) -> bool {
    let Ok(file) = std::fs::File::open(format!("/proc/{pid}/environ")) else { return false };
    let mut environ = Vec::new();
    if file.take(MAX_ENVIRON_BYTES).read_to_end(&mut environ).is_err() {
        return false;
    }
    environ.split(|byte| *byte == 0).any(|found| found == entry)
}

/// The live processes marked as job `job_id`'s (see [`JOB_MARKER`]).
pub fn marked_processes(job_id: &str) -> Vec<u32> {
    let entry = format!("{JOB_MARKER}={job_id}").into_bytes();
    let own = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()))
        .filter(|&pid| pid != own && Identity::of(pid).is_some() && environ_holds(pid, &entry))
        .collect()
}

/// SIGKILL every process marked as job `job_id`'s, again until none is left
/// (a process may fork while its group is being killed). Returns how many
/// were killed, or the ones still alive after `limit`.
pub fn kill_marked(job_id: &str, limit: Duration) -> Result<usize, Vec<u32>> {
    let entry = format!("{JOB_MARKER}={job_id}").into_bytes();
    let started = std::time::Instant::now();
    let mut killed = 0;
    loop {
        let found = marked_processes(job_id);
        if found.is_empty() {
            return Ok(killed);
        }
        if started.elapsed() > limit {
            return Err(found);
        }
        for pid in found {
            if signal_if(pid, Signal::SIGKILL, || environ_holds(pid, &entry)).unwrap_or(false) {
                killed += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Signal `pid` if `still_ours` holds, checked after a pidfd pinned the
/// process: a PID reused between the check and the signal cannot be hit.
fn signal_if(pid: u32, signal: Signal, still_ours: impl FnOnce() -> bool) -> std::io::Result<bool> {
    let Ok(raw_pid) = libc::pid_t::try_from(pid) else { return Ok(false) };
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, raw_pid, 0) };
    if fd < 0 {
        let error = std::io::Error::last_os_error();
        return match error.raw_os_error() {
            Some(libc::ESRCH) => Ok(false),
            // No pidfds (Linux < 5.3, or a seccomp filter): check, then signal by number.
            Some(libc::ENOSYS | libc::EPERM) => {
                if !still_ours() {
                    return Ok(false);
                }
                match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw_pid), signal) {
                    Ok(()) => Ok(true),
                    Err(nix::errno::Errno::ESRCH) => Ok(false),
                    Err(errno) => Err(errno.into()),
                }
            }
            _ => Err(error),
        };
    }
    // SAFETY: `fd` is a descriptor pidfd_open just returned, owned by nothing else.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    if !still_ours() {
        return Ok(false);
    }
    // SAFETY: pidfd_send_signal(2) on our pidfd, with no siginfo and no flags.
    let sent = unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), signal as libc::c_int, std::ptr::null::<u8>(), 0)
    };
    if sent == 0 {
        return Ok(true);
    }
    let error = std::io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::ESRCH) { Ok(false) } else { Err(error) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_time_is_read_after_a_command_name_holding_spaces_and_parentheses() {
        let stat = "4244 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 50";
        let fields = Stat::parse(stat).expect("parses");
        assert_eq!((fields.state(), fields.start_ticks()), ("S", Some(98765)));
        assert_eq!((fields.name, fields.parent(), fields.group()), ("a (weird) name", Some(1), Some(4242)));
        assert!(Stat::parse("garbage").is_none());
        assert_eq!(Stat::parse("1 (short) S 1").and_then(|short| short.start_ticks()), None);
    }

    #[test]
    fn this_process_is_itself_and_not_another_with_its_pid() {
        let me = Identity::current().expect("this process has an identity");
        assert!(me.is_alive());
        let recorded: Identity = me.to_string().parse().expect("round trip");
        assert_eq!(recorded, me);
        // The same PID, started at another time: a reused PID, not this process.
        let reused = Identity { start_ticks: me.start_ticks + 1, ..me.clone() };
        assert!(!reused.is_alive());
        assert!(!reused.signal(Signal::SIGTERM).expect("no error"), "nothing is signalled");
        let other_boot = Identity { boot_id: "another-boot".to_owned(), ..me };
        assert!(!other_boot.is_alive());
    }

    #[test]
    fn malformed_identities_are_refused() {
        for text in ["", "12", "12:x:boot", "12:5:", "-1:5:boot"] {
            assert!(text.parse::<Identity>().is_err(), "{text}");
        }
    }

    #[test]
    fn a_marked_child_is_found_and_killed_and_an_unmarked_one_is_left_alone() {
        let job = uuid::Uuid::new_v4().to_string();
        let mut marked = std::process::Command::new("sleep").arg("30").env(JOB_MARKER, &job).spawn().expect("sleep");
        let mut other =
            std::process::Command::new("sleep").arg("30").env(JOB_MARKER, "another-job").spawn().expect("sleep");
        assert_eq!(marked_processes(&job), vec![marked.id()]);
        assert_eq!(kill_marked(&job, Duration::from_secs(5)), Ok(1));
        assert!(!marked.wait().expect("reaped").success(), "killed");
        assert_eq!(other.try_wait().expect("still there"), None, "the other job's process is untouched");
        let _ = other.kill();
        let _ = other.wait();
    }
}
