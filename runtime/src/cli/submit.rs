//! `stepbox submit`, `status`, `wait` and `cancel`: a launch detached under a
//! supervisor, followed from any process through the store.

use std::path::PathBuf;

use super::output::{self, Format};
use super::{Failure, open};
use crate::exit;
use crate::store::{RunRecord, RunState};
use crate::supervisor;

/// Start the launch detached; print its run id once it is recorded.
pub fn submit(home: Option<PathBuf>, env_stdin: bool) -> Result<u8, Failure> {
    let stepbox = open(home)?;
    let argv: Vec<String> = std::env::args().collect();
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
    supervisor::spawn(&stepbox, &args, &run_id).map_err(Failure::input)?;
    println!("{run_id}");
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
    let run = supervisor::reconcile(&stepbox, &id).map_err(Failure::input)?;
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
            println!("{table}");
        }
    }
    Ok(exit::OK)
}

/// Exit with the code `stepbox launch` gave the run.
pub fn wait(home: Option<PathBuf>, which: Which) -> Result<u8, Failure> {
    let stepbox = open(home)?;
    let id = which.resolve(&stepbox)?;
    let run = supervisor::wait(&stepbox, &id).map_err(Failure::input)?;
    Ok(ended(&run))
}

pub fn cancel(home: Option<PathBuf>, which: Which) -> Result<u8, Failure> {
    let stepbox = open(home)?;
    let id = which.resolve(&stepbox)?;
    let run = supervisor::reconcile(&stepbox, &id).map_err(Failure::input)?;
    if run.state != RunState::Running {
        eprintln!("run {} already ended: {}", output::short(&run.id), run.state);
        return Ok(exit::OK);
    }
    supervisor::request_cancel(&run).map_err(Failure::input)?;
    let run = supervisor::wait(&stepbox, &run.id).map_err(Failure::input)?;
    eprintln!("run {} {}", output::short(&run.id), run.state);
    Ok(exit::OK)
}

fn ended(run: &RunRecord) -> u8 {
    if run.state != RunState::Succeeded {
        let id = output::short(&run.id);
        eprintln!(
            "stepbox: run {id} {}: {} (details: stepbox runs show {id})",
            run.state,
            crate::display::visible(run.message.as_deref().unwrap_or(""))
        );
    }
    run.outcome_code.unwrap_or(match run.state {
        RunState::Succeeded => exit::OK,
        _ => exit::FLAVOR_ERROR,
    })
}
