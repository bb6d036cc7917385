//! `stepbox submit`, `status`, `wait` and `cancel`: a launch detached under a
//! supervisor, followed from any process through the store.

use std::path::PathBuf;
use std::time::Duration;

use super::output::{self, Format};
use super::{Failure, open};
use crate::exit;
use crate::follow::LogFollower;
use crate::store::{RunRecord, RunState};
use crate::supervisor;

/// Start the launch detached; print its run id once it is recorded.
pub fn submit(home: Option<PathBuf>, env_stdin: bool) -> Result<u8, Failure> {
    let stepbox = open(home)?;
    // The supervisor gets these arguments again as text; a path that is not UTF-8 (clap
    // accepts one for `--home`) is refused here rather than panicking in `std::env::args`.
    let argv = std::env::args_os()
        .map(|arg| {
            arg.into_string().map_err(|arg| {
                Failure::input(format!(
                    "the argument {} is not valid UTF-8; `stepbox submit` needs its arguments as text",
                    arg.to_string_lossy()
                ))
            })
        })
        .collect::<Result<Vec<String>, Failure>>()?;
    let mut args: Vec<String> =
        supervisor::arguments_after_subcommand(&argv).into_iter().filter(|arg| arg != "--env-stdin").collect();
    let run_id = uuid::Uuid::new_v4().to_string();
    if env_stdin {
        // The supervisor has no stdin: hand the variables over in an
        // owner-only file it deletes as soon as it has read it.
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| Failure::input(format!("--env-stdin: cannot read stdin: {e}")))?;
        super::launch::env_json(&text, "--env-stdin")?;
        let path = stepbox.home.runs_dir().join(format!("{run_id}.env.json"));
        write_private(&path, text.as_bytes()).map_err(|e| Failure::new(exit::INTERNAL, e))?;
        args.insert(0, path.display().to_string());
        args.insert(0, "--env-file-consume".to_owned());
    }
    supervisor::spawn(&stepbox, &args, &run_id)?;
    // The run has started: whatever happens to stdout now, the answer is
    // success, or a caller that retries would run the step twice.
    if output::line(&run_id).is_err() {
        output::note(format_args!(
            "stepbox: run {run_id} started, but its id could not be printed (stdout is closed); \
             follow it with `stepbox status {run_id}`"
        ));
    }
    Ok(exit::OK)
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// How the user named a run.
pub enum Which {
    Run(String),
    StepRun(String),
}

impl Which {
    pub fn of(run: Option<String>, step_run_id: Option<String>) -> Self {
        match (run, step_run_id) {
            (_, Some(step_run)) => Which::StepRun(step_run),
            (run, None) => Which::Run(run.unwrap_or_default()),
        }
    }

    /// The run id.
    fn resolve(self, stepbox: &crate::context::Stepbox) -> Result<String, Failure> {
        match self {
            Which::Run(id) => Ok(id),
            Which::StepRun(step_run) => stepbox
                .db
                .run_for_step_run(&step_run)?
                .ok_or_else(|| Failure::input(format!("no run was launched with --step-run-id {step_run}"))),
        }
    }
}

pub fn status(home: Option<PathBuf>, which: Which, format: Format) -> Result<u8, Failure> {
    let stepbox = open(home)?;
    let id = which.resolve(&stepbox)?;
    let run = supervisor::reconcile(&stepbox, &id)?;
    match format {
        Format::Json => output::json(&run)?,
        Format::Table => {
            let mut table = output::table(&["RUN", "STATE", "EXIT", "JOB EXIT", "MESSAGE"]);
            table.add_row(vec![
                run.id.clone(),
                run.state.to_string(),
                run.outcome_code.map_or_else(|| "-".to_owned(), |code| code.to_string()),
                run.exit_code.map_or_else(|| "-".to_owned(), |code| code.to_string()),
                run.message.clone().unwrap_or_default(),
            ]);
            output::line(&table)?;
        }
    }
    Ok(exit::OK)
}

/// How often `wait --follow` looks for new output.
const FOLLOW_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// Exit with the code `stepbox launch` gave the run; with `follow`, show its
/// jobs' output on stdout as it is written.
pub fn wait(home: Option<PathBuf>, which: Which, follow: bool) -> Result<u8, Failure> {
    let stepbox = open(home)?;
    let id = which.resolve(&stepbox)?;
    if !follow {
        let run = supervisor::wait(&stepbox, &id)?;
        return Ok(ended(&run));
    }
    let mut follower = Some(LogFollower::new());
    let mut show = |run: &RunRecord| {
        let Some(shown) = follower.as_mut() else { return };
        let Ok(jobs) = stepbox.db.jobs_of(&run.id) else { return };
        let mut out = std::io::stdout().lock();
        // After the end, everything left; before it, a bounded piece per poll.
        loop {
            match shown.copy_new(&jobs, &mut out) {
                Ok(true) if run.state != RunState::Running => continue,
                Ok(_) => return,
                Err(_) => break,
            }
        }
        // Nobody reads the output any more: wait on without showing it.
        follower = None;
    };
    let run = supervisor::wait_observing(&stepbox, &id, FOLLOW_POLL, &mut show)?;
    Ok(ended(&run))
}

/// How long `cancel` waits for a supervisor that has recorded its run's end to exit.
const SUPERVISOR_EXIT_LIMIT: Duration = Duration::from_secs(10);

/// Cancel a running run and wait until its jobs, then its supervisor, have
/// stopped; `reason` is recorded.
pub fn cancel(home: Option<PathBuf>, which: Which, reason: Option<String>) -> Result<u8, Failure> {
    let length = reason.as_deref().map_or(0, |reason| reason.chars().count());
    if length > supervisor::MAX_CANCEL_REASON {
        return Err(Failure::input(format!(
            "--reason is {length} characters long; keep it to at most {}",
            supervisor::MAX_CANCEL_REASON
        )));
    }
    let stepbox = open(home)?;
    let id = which.resolve(&stepbox)?;
    let run = supervisor::reconcile(&stepbox, &id)?;
    if run.state != RunState::Running {
        output::note(format_args!("run {} already ended: {}", output::short(&run.id), run.state));
        return Ok(exit::OK);
    }
    supervisor::request_cancel(&stepbox, &run, reason.as_deref())?;
    let run = supervisor::wait(&stepbox, &run.id)?;
    output::note(format_args!("run {} {}", output::short(&run.id), run.state));
    if !supervisor::wait_for_supervisor_exit(&run, SUPERVISOR_EXIT_LIMIT) {
        output::note(format_args!("its supervisor (pid {}) recorded the outcome and is still shutting down", run.pid));
    }
    Ok(exit::OK)
}

fn ended(run: &RunRecord) -> u8 {
    if run.state != RunState::Succeeded {
        let id = output::short(&run.id);
        output::note(format_args!(
            "stepbox: run {id} {}: {} (details: stepbox runs show {id})",
            run.state,
            crate::display::visible(run.message.as_deref().unwrap_or(""))
        ));
    }
    run.outcome_code.unwrap_or(match run.state {
        RunState::Succeeded => exit::OK,
        _ => exit::FLAVOR_ERROR,
    })
}
