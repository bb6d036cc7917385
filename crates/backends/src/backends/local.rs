//! The local backend: a job is a process on this machine, in its own process
//! group, so that cancelling it reaches every process it started.
//!
//! - The environment is exactly the job's, plus `PATH` from the runtime when
//!   the job sets none, the GPU variables of its lease (below), and
//!   `STEPBOX_JOB_ID` (the job's id, which marks it
//!   and everything it starts: [`crate::processes`]). A job in a Python environment gets its `bin` first on
//!   PATH and `VIRTUAL_ENV`. Images are for container backends.
//! - Output is read from pipes and streamed to the job's [`JobLog`].
//! - Cancel and timeout send SIGTERM to the whole group, wait a grace period,
//!   then SIGKILL, and return only once the group is empty.
//! - When the main process exits on its own, whatever it left behind in its
//!   group is stopped the same way: a job ends with nothing left running.
//!
//! - Jobs of untrusted step operators run confined by bubblewrap
//!   ([`super::confine`]); the process group then holds bwrap and, through
//!   its PID namespace, everything the job starts.
//!
//! - GPUs are real: a job asking for N gets N devices no other stepbox job
//!   here holds ([`crate::gpus`]), waiting while they are busy; a confined
//!   job sees only their device nodes, and every job gets
//!   `CUDA_VISIBLE_DEVICES` from the lease (empty: none), never the flavor's.
//!   The lease ends with the job (an unconfined job's processes inherit its
//!   lock, so a job that outlives its launch keeps it).
//!
//! CPU and memory requests are advisory on this backend.

use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::processes::Stat;

use super::process_job::{self, Ending, SupervisedJob, SupervisorLink, wait_for_ending};
use super::{BackendError, JobBackend, JobRequest, JobRuntime, JobState, JobStatus, OrphanedJob, RunningJob, Stream};

/// PATH for jobs when neither the job nor the runtime has one.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// How long to wait for a killed process group to disappear.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a confined job being stopped is looked for among bubblewrap's
/// descendants (it may not have started yet).
const CONFINED_LOOK_AGAIN: Duration = Duration::from_millis(20);

/// Runs jobs as local processes.
pub struct LocalBackend {
    grace: Duration,
    leases: crate::gpus::Leases,
}

impl LocalBackend {
    /// A backend whose jobs get `grace` between SIGTERM and SIGKILL when they
    /// time out or leave processes behind, and lease GPUs from `leases`.
    pub fn new(grace: Duration, leases: crate::gpus::Leases) -> Self {
        Self { grace, leases }
    }
}

/// How long stopping an orphaned local job may take (it is SIGKILLed).
const ORPHAN_KILL_LIMIT: Duration = Duration::from_secs(5);

#[async_trait]
impl JobBackend for LocalBackend {
    fn name(&self) -> &'static str {
        "local"
    }

    /// By marker, not by the recorded process group: that number may be
    /// someone else's by now, and a launch killed right after spawning the
    /// job had not recorded it yet.
    fn stop_orphan(&self, job: &OrphanedJob<'_>) -> Result<(), String> {
        match crate::processes::kill_marked(job.id, ORPHAN_KILL_LIMIT) {
            Ok(_) => Ok(()),
            Err(alive) => Err(format!("processes {alive:?} survived SIGKILL")),
        }
    }

    async fn submit(&self, request: JobRequest) -> Result<Arc<dyn RunningJob>, BackendError> {
        let environment = match &request.runtime {
            JobRuntime::Host => None,
            JobRuntime::Environment(environment) => Some(environment),
            JobRuntime::Image(image) => {
                return Err(BackendError::Unsupported(format!(
                    "the `local` backend runs commands on this machine and cannot run the image {image}; \
                     send the job to a container backend"
                )));
            }
        };
        let (program, args) = request
            .command
            .split_first()
            .ok_or_else(|| BackendError::Invalid("the job's command is empty".to_owned()))?;
        if let Some(dir) = &request.working_dir
            && !dir.is_dir()
        {
            return Err(BackendError::Invalid(format!(
                "the working directory {} does not exist or is not a directory",
                dir.display()
            )));
        }
        if request.confinement.is_some() && request.working_dir.is_none() {
            return Err(BackendError::Invalid("a confined job needs a working directory".to_owned()));
        }
        let lease = super::devices::lease_for(&self.leases, &request).await?;
        let mut keep: Vec<std::os::fd::RawFd> = Vec::new();
        let (mut command, _sandbox) = match (&request.confinement, &request.working_dir) {
            (Some(confinement), Some(dir)) => {
                let mut command = Command::new(super::confine::bwrap()?);
                super::confine::check_directories(confinement)?;
                let read_only: Vec<std::path::PathBuf> = environment.iter().flat_map(|env| env.mounts()).collect();
                let devices = lease.as_ref().map(super::confine::Devices::of).unwrap_or_default();
                let sandbox = super::confine::Sandbox::new(confinement, dir, &read_only, &devices)?;
                command.args(sandbox.args()).arg(program);
                keep = sandbox.descriptors();
                (command, Some(sandbox))
            }
            _ => {
                // Unconfined, the job's processes may outlive this launch: they hold the lease too.
                keep.extend(lease.iter().flat_map(crate::gpus::Lease::descriptors));
                (Command::new(program), None)
            }
        };
        // SAFETY: the hook only makes system calls that are safe between fork
        // and exec; the sandbox's descriptors stay open until after spawn.
        unsafe {
            command.pre_exec(move || super::confine::close_inherited_descriptors(&keep));
        }
        command
            .args(args)
            .env_clear()
            .envs(super::devices::job_env(&request.env, lease.as_ref()))
            // Marks the job and all it starts, before it runs: what finds it if the launch dies.
            .env(crate::processes::JOB_MARKER, &request.id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let path = match request.env.iter().find(|(name, _)| name == "PATH") {
            Some((_, path)) => path.clone(),
            None => std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_owned()),
        };
        let job_path = match environment {
            Some(environment) => {
                command.env("VIRTUAL_ENV", &environment.root);
                format!("{}:{path}", environment.bin_dir().display())
            }
            None => path,
        };
        command.env("PATH", &job_path);
        if let Some(dir) = &request.working_dir {
            command.current_dir(dir);
        }
        // A program that is not there fails the job as a shell would (127), confined or not:
        // bubblewrap would start and fail inside the sandbox with its own exit code 1.
        if request.confinement.is_some()
            && let Err(why) = findable(program, &job_path, request.working_dir.as_deref())
        {
            return Ok(not_started(&request, why));
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => match NotStarted::from_spawn_error(program, &error) {
                Some(why) => return Ok(not_started(&request, why)),
                None => return Err(BackendError::Failed(format!("cannot start `{program}`: {error}"))),
            },
        };
        let pid =
            child.id().ok_or_else(|| BackendError::Failed(format!("`{program}` exited before it could be tracked")))?;
        crate::pause_points::pause_at_async(crate::pause_points::JOB_SPAWNED).await;
        let readers = process_job::spawn_readers(&mut child, &request.log);
        let (handle, link) = process_job::link();
        let confined = request.confinement.is_some();
        let gpus = super::devices::uuids(lease.as_ref());
        let supervisor =
            Supervisor { child, group: Pid::from_raw(pid as i32), grace: self.grace, readers, confined, lease };
        tokio::spawn(supervisor.run(request.timeout, link));
        Ok(Arc::new(SupervisedJob::new(pid.to_string(), handle).with_gpus(gpus)))
    }
}

/// Why a job's program could not be started: the exit code a shell gives
/// and the message.
struct NotStarted {
    code: u8,
    message: String,
}

impl NotStarted {
    fn missing(program: &str) -> Self {
        NotStarted {
            code: crate::exit::PROGRAM_NOT_FOUND,
            message: format!("cannot start `{program}`: no such program (is it on the job's PATH?)"),
        }
    }

    fn not_executable(program: &str) -> Self {
        NotStarted {
            code: crate::exit::CANNOT_EXECUTE,
            message: format!("cannot start `{program}`: permission denied (not an executable file)"),
        }
    }

    /// The job's own failure, for spawn errors that are about its program.
    fn from_spawn_error(program: &str, error: &std::io::Error) -> Option<Self> {
        match error.kind() {
            std::io::ErrorKind::NotFound => Some(NotStarted::missing(program)),
            std::io::ErrorKind::PermissionDenied => Some(NotStarted::not_executable(program)),
            _ => None,
        }
    }
}

/// Whether `program` can be found as the job would look for it: a path (from
/// `working_dir`), or a name on `path`. Used for confined jobs, whose program
/// is looked up inside the sandbox: what is not on this machine is not there.
fn findable(program: &str, path: &str, working_dir: Option<&std::path::Path>) -> Result<(), NotStarted> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |candidate: &std::path::Path| {
        std::fs::metadata(candidate).ok().map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let candidate = match working_dir {
            Some(dir) => dir.join(program),
            None => std::path::PathBuf::from(program),
        };
        return match executable(&candidate) {
            None => Err(NotStarted::missing(program)),
            Some(false) => Err(NotStarted::not_executable(program)),
            Some(true) => Ok(()),
        };
    }
    let found = path
        .split(':')
        .filter(|dir| !dir.is_empty())
        .any(|dir| executable(&std::path::Path::new(dir).join(program)) == Some(true));
    if found { Ok(()) } else { Err(NotStarted::missing(program)) }
}

/// A job whose program could not be started: it failed at once, with the
/// reason in its log and the exit code a shell would give.
fn not_started(request: &JobRequest, why: NotStarted) -> Arc<dyn RunningJob> {
    request.log.write(Stream::Stderr, format!("stepbox: {}\n", why.message).as_bytes());
    let (handle, link) = process_job::link();
    link.status.send_replace(JobStatus {
        state: JobState::Failed,
        exit_code: Some(i32::from(why.code)),
        message: Some(why.message),
    });
    Arc::new(SupervisedJob::new(String::new(), handle))
}

/// Owns the child process and decides how the job ended.
struct Supervisor {
    child: Child,
    group: Pid,
    grace: Duration,
    readers: Vec<JoinHandle<()>>,
    /// Whether the job runs under bubblewrap.
    confined: bool,
    /// The job's GPUs, let go when the supervisor is done with the job.
    lease: Option<crate::gpus::Lease>,
}

impl Supervisor {
    async fn run(mut self, timeout: Option<Duration>, mut link: SupervisorLink) {
        let (exit, ended_by) = match wait_for_ending(&mut self.child, timeout, &mut link.cancel, self.grace).await {
            Ending::Exited(exit) => (exit, None),
            Ending::TimedOut => (self.stop(self.grace).await, Some(JobState::TimedOut)),
            Ending::Cancelled(grace) => (self.stop(grace).await, Some(JobState::Cancelled)),
        };
        // The main process is gone; end whatever it left in its group.
        stop_group(self.group, self.grace).await;
        // Nothing of the job is left: its GPUs are free before anyone hears it ended.
        drop(self.lease.take());
        process_job::drain(self.readers).await;
        link.status.send_replace(process_job::verdict(exit, ended_by, timeout));
    }

    /// SIGTERM the group, wait up to `grace` for the main process, then SIGKILL.
    /// A confined job's SIGTERM goes to its own processes only: bubblewrap
    /// dies of it and would tear the sandbox down before the job could use
    /// its grace period.
    async fn stop(&mut self, grace: Duration) -> std::io::Result<ExitStatus> {
        let deadline = tokio::time::Instant::now() + grace;
        if !self.confined {
            signal_group(self.group, Signal::SIGTERM);
        }
        let mut terminated = std::collections::HashSet::new();
        loop {
            if self.confined {
                // The job runs in a session of its own (no controlling terminal),
                // so it is found by descent from bubblewrap, not by group; and
                // looked for again until it ends: cancelled while bubblewrap
                // was still building the sandbox, the job appears a few
                // milliseconds later and gets its SIGTERM then.
                for (pid, _) in descendants(self.group.as_raw()).into_iter().filter(|(_, comm)| comm != "bwrap") {
                    if terminated.insert(pid) {
                        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGTERM);
                    }
                }
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                signal_group(self.group, Signal::SIGKILL);
                return self.child.wait().await;
            }
            let look_again = if self.confined { CONFINED_LOOK_AGAIN } else { deadline - now };
            if let Ok(exit) = tokio::time::timeout((deadline - now).min(look_again), self.child.wait()).await {
                return exit;
            }
        }
    }
}

/// The live processes descended from `root`, with their command names.
fn descendants(root: i32) -> Vec<(i32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let processes: Vec<(i32, i32, String)> = entries
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let (parent, state) = parent_and_state(&stat)?;
            (state != "Z" && state != "X").then(|| (pid, parent, command_name(&stat)))
        })
        .collect();
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for (pid, _, comm) in processes.iter().filter(|(_, ppid, _)| *ppid == parent) {
            if !found.iter().any(|(seen, _)| seen == pid) {
                found.push((*pid, comm.clone()));
                frontier.push(*pid);
            }
        }
    }
    found
}

/// The parent pid and state of a `/proc/PID/stat` line.
fn parent_and_state(stat: &str) -> Option<(i32, &str)> {
    let stat = Stat::parse(stat)?;
    Some((stat.parent()?, stat.state()))
}

fn signal_group(group: Pid, signal: Signal) {
    // ESRCH (nothing left) is the normal case when the group already ended.
    let _ = killpg(group, signal);
}

/// Whether any process of `group` is still running. Zombies do not count:
/// they hold nothing and cannot be killed, and on machines whose init is
/// slow to reap orphans they linger for seconds.
fn group_alive(group: Pid) -> bool {
    killpg(group, None).is_ok() && !group_members(group).is_empty()
}

/// The live (non-zombie) processes of `group`, with their command names.
fn group_members(group: Pid) -> Vec<(i32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            running_in_group(&stat, group).then(|| (pid, command_name(&stat)))
        })
        .collect()
}

/// Whether a `/proc/PID/stat` line is of a live (non-zombie) process in `group`.
fn running_in_group(stat: &str, group: Pid) -> bool {
    Stat::parse(stat).is_some_and(|stat| stat.is_live() && stat.group() == Some(group.as_raw()))
}

/// The command name in a `/proc/PID/stat` line.
fn command_name(stat: &str) -> String {
    Stat::parse(stat).map(|stat| stat.name.to_owned()).unwrap_or_default()
}

/// Stop every process left in `group`: SIGTERM, up to `grace`, then SIGKILL,
/// and wait (bounded) until the group is empty.
async fn stop_group(group: Pid, grace: Duration) {
    if !group_alive(group) {
        return;
    }
    tracing::debug!("stopping processes left in group {group}");
    signal_group(group, Signal::SIGTERM);
    if wait_until_empty(group, grace).await {
        return;
    }
    signal_group(group, Signal::SIGKILL);
    if !wait_until_empty(group, KILL_TIMEOUT).await {
        tracing::warn!("process group {group} still has members after SIGKILL");
    }
}

async fn wait_until_empty(group: Pid, limit: Duration) -> bool {
    let started = tokio::time::Instant::now();
    while group_alive(group) {
        if started.elapsed() >= limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zombies_and_other_groups_do_not_count_as_running() {
        let group = Pid::from_raw(4242);
        assert!(running_in_group("4243 (sleep) S 4242 4242 4242 0 -1", group));
        assert!(running_in_group("4244 (a (weird) name) R 1 4242 4242 0", group));
        assert!(!running_in_group("4243 (bwrap) Z 1 4242 4242 0 -1", group));
        assert!(!running_in_group("4245 (sleep) S 1 777 777 0 -1", group));
        assert!(!running_in_group("garbage", group));
        assert_eq!(command_name("4244 (a (weird) name) R 1 4242"), "a (weird) name");
        assert_eq!(parent_and_state("4244 (a (weird) name) R 17 4242"), Some((17, "R")));
        assert_eq!(parent_and_state("garbage"), None);
    }
}
