//! Detached launches (`stepbox submit`) and following them from any process
//! (`status`, `wait`, `cancel`). The supervisor of a detached run is an
//! ordinary `stepbox launch` in a session of its own, started with the run id
//! chosen here; everything else reads the run's record in the store.
//!
//! A run whose supervisor is gone without recording an outcome (killed,
//! machine reboot) is found by [`reconcile`]: it is marked failed with the
//! reason, and its local jobs are killed, so a run never stays "running"
//! forever. Nothing is signalled on the strength of a recorded number alone:
//! [`stepbox_backends::processes`] proves a process is the run's first.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::context::Stepbox;
use stepbox_store::store::{RunLookup, RunRecord, RunState, StoreError};

/// Why a detached run could not be started, found, followed or cancelled.
#[derive(Debug, Error)]
pub enum RunError {
    /// The id names no run, or several: the user can fix it.
    #[error("{0}")]
    NoSuchRun(String),
    /// The run has no live supervisor to ask.
    #[error("{0}")]
    NotRunning(String),
    /// The detached launch ended before recording its run, with its own exit code.
    #[error("the launch did not start ({status}): {message}")]
    LaunchFailed { code: u8, status: String, message: String },
    /// The state database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The machine refused something (a file, a process, a signal).
    #[error("{0}")]
    System(String),
}

impl RunError {
    /// The exit code for the command that failed with this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::NoSuchRun(_) | RunError::NotRunning(_) => stepbox_backends::exit::BAD_INPUT,
            RunError::LaunchFailed { code, .. } => *code,
            RunError::Store(_) | RunError::System(_) => stepbox_backends::exit::INTERNAL,
        }
    }
}

/// How long `submit` waits for the detached launch to record its run.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Start `stepbox launch ARGS --record-id ID` detached; returns once the run
/// is recorded (so `status` finds it), or with the launch's own error.
pub fn spawn(stepbox: &Stepbox, launch_args: &[String], run_id: &str) -> Result<(), RunError> {
    let system = RunError::System;
    let exe = std::env::current_exe().map_err(|error| system(format!("cannot find the stepbox binary: {error}")))?;
    let log_path = stepbox.home.runs_dir().join(format!("{run_id}.supervisor.log"));
    let log = std::fs::File::create(&log_path)
        .map_err(|error| system(format!("cannot create {}: {error}", log_path.display())))?;
    let err = log.try_clone().map_err(|error| system(format!("cannot create {}: {error}", log_path.display())))?;
    let mut command = Command::new(exe);
    command
        .arg("--home")
        .arg(stepbox.home.root())
        .arg("launch")
        .arg("--record-id")
        .arg(run_id)
        .args(launch_args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err);
    // A session of its own: the caller's Ctrl-C, or its terminal closing, does not reach it.
    // SAFETY: the closure runs in the forked child before exec and only calls setsid(2), which
    // is async-signal-safe and neither allocates nor touches state shared with the parent.
    unsafe {
        command.pre_exec(|| nix::unistd::setsid().map(drop).map_err(std::io::Error::from));
    }
    let mut child = command.spawn().map_err(|error| system(format!("cannot start the supervisor: {error}")))?;
    let started = Instant::now();
    loop {
        if matches!(stepbox.db.find_run(run_id), Ok(RunLookup::Found(_))) {
            // Reap it in the background, or it would linger as a zombie while we live.
            std::thread::spawn(move || child.wait());
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let said = stepbox_backends::backends::file_tail(&log_path, 16 * 1024).unwrap_or_default();
            // Its own words and exit code: a step operator that does not exist is bad input there too.
            return Err(RunError::LaunchFailed {
                code: status
                    .code()
                    .and_then(|code| u8::try_from(code).ok())
                    .unwrap_or(stepbox_backends::exit::INTERNAL),
                status: status.to_string(),
                message: said.trim().to_owned(),
            });
        }
        if started.elapsed() > START_TIMEOUT {
            return Err(system(format!(
                "the launch did not record its run within {}s; see {}",
                START_TIMEOUT.as_secs(),
                log_path.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The arguments after the subcommand in `argv` (global flags before it are
/// dropped: the supervisor gets `--home` explicitly).
pub fn arguments_after_subcommand(argv: &[String]) -> Vec<String> {
    let mut index = 1;
    while let Some(arg) = argv.get(index) {
        match arg.as_str() {
            "--home" => index += 2,
            flag if flag.starts_with('-') => index += 1,
            _ => return without_home(&argv[index + 1..]),
        }
    }
    Vec::new()
}

/// `--home DIR` / `--home=DIR` given after the subcommand, dropped (up to
/// the `--` before the entrypoint).
fn without_home(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--" => {
                out.push(arg.clone());
                out.extend(iter.cloned());
                break;
            }
            "--home" => {
                iter.next();
            }
            home if home.starts_with("--home=") => {}
            _ => out.push(arg.clone()),
        }
    }
    out
}

/// Whether the process that launched `run` is still running: the same
/// process, not merely one with its PID ([`stepbox_backends::processes::Identity`]).
pub fn supervisor_alive(run: &RunRecord) -> bool {
    match &run.supervisor {
        Some(identity) => identity.is_alive(),
        None => legacy_supervisor_alive(run),
    }
}

/// For runs recorded before supervisors' identities were: a live process
/// with the PID whose command line names the run, or any `stepbox launch`.
fn legacy_supervisor_alive(run: &RunRecord) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{}/cmdline", run.pid)) else { return false };
    let cmdline = String::from_utf8_lossy(&cmdline);
    stepbox_backends::processes::Identity::of(run.pid).is_some()
        && (cmdline.contains(&run.id) || (cmdline.contains("stepbox") && cmdline.contains("launch")))
}

/// Look a run up, reconciling it first: a "running" run whose supervisor is
/// gone is marked failed, and its local jobs' process groups are killed.
pub fn reconcile(stepbox: &Stepbox, id: &str) -> Result<RunRecord, RunError> {
    let run = find(stepbox, id)?;
    if run.state != RunState::Running || supervisor_alive(&run) {
        return Ok(run);
    }
    // The supervisor may have just finished: read again before judging.
    std::thread::sleep(Duration::from_millis(100));
    let run = find(stepbox, &run.id)?;
    if run.state != RunState::Running {
        return Ok(run);
    }
    // The launch decided the outcome but the database could not take it then (a full disk).
    if let Some(kept) = stepbox_store::store::pending::read_kept(&stepbox.home.runs_dir().join(&run.id)) {
        stepbox.db.record_kept(&run.id, &kept)?;
        let _ =
            std::fs::remove_file(stepbox.home.runs_dir().join(&run.id).join(stepbox_store::store::pending::SLOT_FILE));
        return find(stepbox, &run.id);
    }
    let mut stopped = Vec::new();
    let mut left = Vec::new();
    for job in stepbox.db.jobs_of(&run.id)? {
        if job.state.is_terminal() {
            continue;
        }
        match stop_orphan(stepbox, &run, &job) {
            Ok(()) => {
                stopped.push(job.name.clone());
                let _ = stepbox.db.finish_job(
                    &job.id,
                    stepbox_backends::backends::JobState::Cancelled,
                    None,
                    Some("its supervisor died; stepbox stopped it"),
                );
            }
            // Not recorded stopped: it may still be running, and the record says so.
            Err(why) => {
                left.push(format!("{} ({why})", job.name));
                let _ = stepbox.db.note_job(&job.id, &format!("its supervisor died; it may still be running: {why}"));
            }
        }
    }
    let mut message = format!("the supervisor (pid {}) ended without recording an outcome", run.pid);
    if !stopped.is_empty() {
        message.push_str(&format!("; its jobs were stopped: {}", stopped.join(", ")));
    }
    if !left.is_empty() {
        message.push_str(&format!("; could not stop: {}", left.join(", ")));
    }
    stepbox.db.finish_run(&run.id, RunState::Failed, None, Some(&message), stepbox_backends::exit::INTERNAL)?;
    find(stepbox, &run.id)
}

/// Stop a job whose supervisor is gone: its backend does, from the record
/// alone (see [`stepbox_backends::backends::JobBackend::stop_orphan`]).
fn stop_orphan(stepbox: &Stepbox, run: &RunRecord, job: &stepbox_store::store::JobRecord) -> Result<(), String> {
    let limits = crate::limits::Limits::default();
    let backends = stepbox_backends::backends::standard(
        limits.cancel_grace,
        &stepbox.home.runs_dir().join(&run.id),
        &stepbox.home.gpus_dir(),
    );
    let backend = backends
        .get(job.backend.as_str())
        .ok_or_else(|| format!("this stepbox has no `{}` backend to stop it with", job.backend))?;
    backend
        .stop_orphan(&stepbox_backends::backends::OrphanedJob { id: &job.id, external_id: job.external_id.as_deref() })
}

fn find(stepbox: &Stepbox, id: &str) -> Result<RunRecord, RunError> {
    match stepbox.db.find_run(id)? {
        RunLookup::Found(run) => Ok(*run),
        RunLookup::Missing if id.is_empty() => {
            Err(RunError::NoSuchRun("the run id is empty; `stepbox runs list` shows them".to_owned()))
        }
        RunLookup::Missing => Err(RunError::NoSuchRun(format!("no run `{id}`; `stepbox runs list` shows them"))),
        RunLookup::Ambiguous(ids) => {
            Err(RunError::NoSuchRun(format!("`{id}` matches several runs: {}", ids.join(", "))))
        }
    }
}

/// Longest reason `stepbox cancel --reason` keeps.
pub const MAX_CANCEL_REASON: usize = 500;

/// Ask the supervisor of `run` to cancel (SIGTERM: it stops every job with
/// its grace period and records the run cancelled). The supervisor records
/// why as `cancelled by \`stepbox cancel\`: REASON`; the reason goes to it
/// in a file beside the run's, written before the signal.
pub fn request_cancel(stepbox: &Stepbox, run: &RunRecord, reason: Option<&str>) -> Result<(), RunError> {
    if !supervisor_alive(run) {
        return Err(RunError::NotRunning(format!("the supervisor of run {} (pid {}) is not running", run.id, run.pid)));
    }
    let path = cancel_request_path(stepbox, &run.id);
    std::fs::write(&path, reason.unwrap_or_default())
        .map_err(|error| RunError::System(format!("cannot write {}: {error}", path.display())))?;
    let signalled = match &run.supervisor {
        Some(identity) => identity.signal(nix::sys::signal::Signal::SIGTERM),
        None => nix::sys::signal::kill(nix::unistd::Pid::from_raw(run.pid as i32), nix::sys::signal::Signal::SIGTERM)
            .map(|()| true)
            .map_err(std::io::Error::from),
    };
    let failure = match signalled {
        Ok(true) => return Ok(()),
        Ok(false) => RunError::NotRunning(format!("the supervisor of run {} (pid {}) has just ended", run.id, run.pid)),
        Err(error) => RunError::System(format!("cannot signal the supervisor (pid {}): {error}", run.pid)),
    };
    // No signal, no request: a later SIGTERM from elsewhere must not read as this cancel.
    let _ = std::fs::remove_file(&path);
    Err(failure)
}

/// Whether run `run_id`'s SIGTERM came from `stepbox cancel`, and the reason it
/// gave (empty for none). Reading consumes the request.
pub fn take_cancel_request(stepbox: &Stepbox, run_id: &str) -> Option<String> {
    use std::io::Read;
    let path = cancel_request_path(stepbox, run_id);
    let file = std::fs::File::open(&path).ok()?;
    let mut bytes = Vec::new();
    let read = file.take(MAX_CANCEL_REASON as u64 * 4).read_to_end(&mut bytes);
    let _ = std::fs::remove_file(&path);
    read.ok()?;
    let reason = String::from_utf8_lossy(&bytes);
    Some(reason.chars().take(MAX_CANCEL_REASON).collect::<String>().trim().to_owned())
}

fn cancel_request_path(stepbox: &Stepbox, run_id: &str) -> std::path::PathBuf {
    stepbox.home.runs_dir().join(format!("{run_id}.cancel"))
}

/// Poll `id` until it has ended, reconciling as it goes.
pub fn wait(stepbox: &Stepbox, id: &str) -> Result<RunRecord, RunError> {
    wait_observing(stepbox, id, Duration::from_millis(500), |_| {})
}

/// After `run` has ended, wait at most `limit` for its supervisor process
/// itself to exit (it records the outcome first, then shuts down); whether
/// it has. What `stepbox cancel` promises: when it returns, nothing of the
/// run is still running.
pub fn wait_for_supervisor_exit(run: &RunRecord, limit: Duration) -> bool {
    let started = Instant::now();
    while supervisor_alive(run) {
        if started.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// [`wait`], calling `observe` with the run on every poll (at most `pause`
/// apart) and once more after it has ended.
pub fn wait_observing(
    stepbox: &Stepbox,
    id: &str,
    longest_pause: Duration,
    mut observe: impl FnMut(&RunRecord),
) -> Result<RunRecord, RunError> {
    let mut pause = Duration::from_millis(50).min(longest_pause);
    loop {
        let run = reconcile(stepbox, id)?;
        observe(&run);
        if run.state != RunState::Running {
            return Ok(run);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(longest_pause);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_launch_arguments_follow_the_subcommand() {
        let argv: Vec<String> =
            ["stepbox", "--home", "/h", "-v", "submit", "-s", "op", "--", "echo", "submit"].map(str::to_owned).to_vec();
        assert_eq!(arguments_after_subcommand(&argv), ["-s", "op", "--", "echo", "submit"].map(str::to_owned).to_vec());
        let late: Vec<String> =
            ["stepbox", "submit", "--home", "/h", "-s", "op", "--", "echo", "--home"].map(str::to_owned).to_vec();
        assert_eq!(arguments_after_subcommand(&late), ["-s", "op", "--", "echo", "--home"].map(str::to_owned).to_vec());
    }
}
