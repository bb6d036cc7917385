//! `stepbox runs …`

use std::path::{Path, PathBuf};

use super::args::RunsCommand;
use super::output::{self, Format};
use super::{Failure, open};
use crate::backends::file_tail;
use crate::exit;
use crate::store::{RunLookup, RunRecord, RunState};

pub fn run(home: Option<PathBuf>, command: RunsCommand) -> Result<u8, Failure> {
    let stepbox = open(home)?;
    match command {
        RunsCommand::List { limit, output } => {
            let (runs, damaged) = stepbox.db.runs(limit)?;
            // A run whose launch was killed is shown failed, not `running` forever.
            let runs = runs
                .into_iter()
                .map(|run| match run.state {
                    RunState::Running => crate::supervisor::reconcile(&stepbox, &run.id),
                    _ => Ok(run),
                })
                .collect::<Result<Vec<_>, _>>()?;
            match output {
                Format::Json => output::json(&runs)?,
                Format::Table if runs.is_empty() => {
                    output::line(format_args!("no runs yet; start one with `stepbox launch`"))?
                }
                Format::Table => {
                    let mut table =
                        output::table(&["ID", "STEP OPERATOR", "PIPELINE", "RUN", "STEP", "STATE", "EXIT", "STARTED"]);
                    for run in &runs {
                        table.add_row(vec![
                            output::short(&run.id).to_owned(),
                            run.step_operator.clone(),
                            run.pipeline.clone(),
                            run.run_name.clone(),
                            run.step.clone(),
                            run.state.to_string(),
                            run.exit_code.map_or_else(|| "-".to_owned(), |code| code.to_string()),
                            run.started_at.clone(),
                        ]);
                    }
                    output::line(&table)?;
                }
            }
            for (id, error) in &damaged {
                output::note(format_args!(
                    "warning: the record of run {} cannot be read and is not listed: {error}",
                    crate::display::visible(id)
                ));
            }
        }
        RunsCommand::Show { id, tail, audit, output } => {
            let run = match stepbox.db.find_run(&id)? {
                RunLookup::Found(run) if run.state == RunState::Running => {
                    crate::supervisor::reconcile(&stepbox, &run.id)?
                }
                RunLookup::Found(run) => *run,
                RunLookup::Missing => {
                    return Err(Failure::input(format!(
                        "no run matches `{id}`; `stepbox runs list` shows recent runs"
                    )));
                }
                RunLookup::Ambiguous(ids) => {
                    return Err(Failure::input(format!(
                        "`{id}` matches several runs ({}); give more of the id",
                        ids.join(", ")
                    )));
                }
            };
            let jobs = stepbox.db.jobs_of(&run.id)?;
            let run_dir = stepbox.home.runs_dir().join(&run.id);
            let entries = if audit { read_audit(&run_dir.join(crate::host::audit::AUDIT_FILE)) } else { Vec::new() };
            match output {
                Format::Json if audit => {
                    output::json(&serde_json::json!({ "run": run, "jobs": jobs, "audit": entries }))?;
                }
                Format::Json => output::json(&serde_json::json!({ "run": run, "jobs": jobs }))?,
                Format::Table => {
                    show(&run, &jobs, tail, &run_dir.join("flavor.log"))?;
                    if audit {
                        show_audit(&entries)?;
                    }
                }
            }
        }
    }
    Ok(exit::OK)
}

/// The audit entries of a run (none if it has no record).
fn read_audit(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
}

fn show_audit(entries: &[serde_json::Value]) -> Result<(), Failure> {
    if entries.is_empty() {
        output::line(format_args!("\naudit: no host calls recorded"))?;
        return Ok(());
    }
    let mut table = output::table(&["#", "CALL", "DECISION", "ARGUMENTS / REASON"]);
    for entry in entries {
        let text = |key: &str| entry[key].as_str().map(str::to_owned);
        let detail = text("reason").unwrap_or_else(|| entry["args"].to_string());
        table.add_row(vec![
            entry["seq"].to_string(),
            text("call").or_else(|| text("note")).unwrap_or_default(),
            text("decision").unwrap_or_default(),
            detail,
        ]);
    }
    output::line(format_args!("\naudit:\n{table}"))?;
    Ok(())
}

fn show(run: &RunRecord, jobs: &[crate::store::JobRecord], tail: u64, flavor_log: &Path) -> Result<(), Failure> {
    output::fields(&[
        ("run", run.id.clone()),
        ("state", run.state.to_string()),
        ("exit code", run.exit_code.map_or_else(|| "-".to_owned(), |code| code.to_string())),
        ("message", run.message.clone().unwrap_or_else(|| "-".to_owned())),
        ("step operator", format!("{} (flavor {})", run.step_operator, run.flavor)),
        ("pipeline", format!("{} / {} / {}", run.pipeline, run.run_name, run.step)),
        ("started", run.started_at.clone()),
        ("ended", run.ended_at.clone().unwrap_or_else(|| "-".to_owned())),
        ("launched by", format!("pid {}", run.pid)),
        ("flavor log", flavor_log.display().to_string()),
    ])?;
    if jobs.is_empty() {
        output::line(format_args!("\nno jobs"))?;
        return Ok(());
    }
    let mut table = output::table(&["JOB", "NAME", "BACKEND", "ID", "STATE", "EXIT", "MESSAGE"]);
    for job in jobs {
        table.add_row(vec![
            output::short(&job.id).to_owned(),
            job.name.clone(),
            job.backend.clone(),
            job.external_id.clone().unwrap_or_else(|| "-".to_owned()),
            job.state.to_string(),
            job.exit_code.map_or_else(|| "-".to_owned(), |code| code.to_string()),
            job.message.clone().unwrap_or_default(),
        ]);
    }
    output::line(format_args!("\n{table}"))?;
    for job in jobs.iter().filter(|job| !job.gpus.is_empty()) {
        output::line(format_args!("{} had GPUs: {}", job.name, job.gpus.join(", ")))?;
    }
    for job in jobs {
        let path = Path::new(&job.log_path);
        match file_tail(path, tail) {
            Ok(text) if text.is_empty() => {
                output::line(format_args!("\n{} produced no output ({})", job.name, job.log_path))?
            }
            Ok(text) => {
                output::line(format_args!("\nlast {} bytes of {} ({}):", text.len(), job.name, job.log_path))?;
                output::text(&text)?;
                if !text.ends_with('\n') {
                    output::line("")?;
                }
            }
            Err(error) => output::line(format_args!("\nno log for {}: {error}", job.name))?,
        }
    }
    Ok(())
}
