//! `stepbox launch`: run one step and exit with its outcome.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};

use super::args::LaunchArgs;
use super::held_signals::EarlySignals;
use super::output;
use super::{Failure, open};
use crate::backends::TerminalOutput;
use crate::exit;
use crate::launch::{self, Interrupt};
use crate::store::RunState;
use crate::units::{parse_env_var, parse_memory};
use nix::sys::signal::Signal;

pub async fn run(home: Option<PathBuf>, args: LaunchArgs, early: Option<EarlySignals>) -> Result<u8, Failure> {
    // Handle signals before anything starts, so Ctrl-C always cancels cleanly.
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| Failure::new(exit::INTERNAL, e))?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| Failure::new(exit::INTERNAL, e))?;
    // The terminal closed (ssh dropped): cancel as for SIGTERM, rather than die with jobs left running.
    let mut sighup = signal(SignalKind::hangup()).map_err(|e| Failure::new(exit::INTERNAL, e))?;
    // Handled from here; what arrived before (noted since `main`) counts as if it came now.
    let early = early.and_then(|early| early.first());
    let launch_args = parse(args)?;
    let stepbox = open(home)?;
    let record_id = launch_args.record_id.clone();
    let stepbox_ref = &stepbox;
    // Job output and the launch's own messages reach the terminal from one writer thread: a
    // terminal that stops reading never blocks the launch (backends/job_log.rs).
    let terminal = Arc::new(TerminalOutput::new());
    let notes = Arc::clone(&terminal);
    let interrupted = async move {
        // `stepbox cancel` leaves its request (and the caller's reason) before signalling.
        let terminated = || match record_id.and_then(|id| crate::supervisor::take_cancel_request(stepbox_ref, &id)) {
            Some(reason) => Interrupt::Requested(reason),
            None => Interrupt::Terminate,
        };
        let interrupt = tokio::select! {
            biased;
            () = std::future::ready(()), if early.is_some() => match early {
                Some(Signal::SIGTERM) => terminated(),
                Some(Signal::SIGHUP) => Interrupt::Hangup,
                _ => Interrupt::Interrupt,
            },
            _ = sigint.recv() => Interrupt::Interrupt,
            _ = sighup.recv() => Interrupt::Hangup,
            _ = sigterm.recv() => terminated(),
        };
        notes.note(&format!("stepbox: cancelling ({interrupt}): stopping the step's jobs…"));
        interrupt
    };
    let outcome = launch::launch(&stepbox, launch_args, Arc::clone(&terminal) as _, interrupted).await;
    if let Ok(outcome) = &outcome {
        let id = output::short(&outcome.run_id);
        match outcome.state {
            RunState::Succeeded => tracing::debug!("run {} succeeded", outcome.run_id),
            state => {
                let message = outcome.message.as_deref().unwrap_or("");
                let message = crate::display::visible(message);
                terminal.note(&format!("stepbox: run {id} {state}: {message} (details: stepbox runs show {id})"));
            }
        }
    }
    // The run is recorded; let the job's last output reach the terminal (if it takes it).
    terminal.drain();
    Ok(outcome?.exit_code)
}

fn parse(args: LaunchArgs) -> Result<launch::StepRequest, Failure> {
    // Gone before anything else is checked, whatever it held: a bad flag must not leave
    // the step's environment (its secrets) on disk.
    let consumed = args.env_file_consume.as_ref().map(|path| {
        let text = std::fs::read_to_string(path);
        let _ = std::fs::remove_file(path);
        text.map_err(|e| Failure::input(format!("cannot read {}: {e}", path.display())))
    });
    let mut environment = args
        .env
        .iter()
        .map(|pair| parse_env_var(pair))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::input(format!("--env {e}")))?;
    if args.env_stdin {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| Failure::input(format!("--env-stdin: cannot read stdin: {e}")))?;
        environment.extend(env_json(&text, "--env-stdin")?);
    }
    if let Some(text) = consumed {
        environment.extend(env_json(&text?, "the environment file")?);
    }
    // The run id names files under the home's `runs/`: only a run id (a UUID) will do.
    if let Some(id) = &args.record_id
        && uuid::Uuid::parse_str(id).is_err()
    {
        return Err(Failure::input(format!("--record-id `{id}` is not a run id (a UUID)")));
    }
    let memory_bytes =
        args.memory.as_deref().map(parse_memory).transpose().map_err(|e| Failure::input(format!("--memory {e}")))?;
    if let Some(cpu) = args.cpu
        && !(cpu.is_finite() && cpu > 0.0)
    {
        return Err(Failure::input(format!("--cpu {cpu} must be a positive number")));
    }
    let settings = args
        .settings
        .as_deref()
        .map(|text| match serde_json::from_str::<serde_json::Value>(text) {
            Ok(value @ serde_json::Value::Object(_)) => Ok(value),
            Ok(_) => Err(Failure::input("--settings must be a JSON object, like '{\"key\": 1}'")),
            Err(e) => Err(Failure::input(format!("--settings is not valid JSON: {e}"))),
        })
        .transpose()?;
    let source_root = match args.source_root {
        Some(dir) => dir,
        None => {
            std::env::current_dir().map_err(|e| Failure::input(format!("cannot read the current directory: {e}")))?
        }
    };
    let source_root = std::fs::canonicalize(&source_root).map_err(|e| {
        Failure::input(format!("--source-root {} is not an existing directory: {e}", source_root.display()))
    })?;
    if !source_root.is_dir() {
        return Err(Failure::input(format!("--source-root {} is not a directory", source_root.display())));
    }
    let mut read_dirs = Vec::with_capacity(args.read_dirs.len());
    for dir in &args.read_dirs {
        let resolved = std::fs::canonicalize(dir)
            .map_err(|e| Failure::input(format!("--read-dir {} is not an existing directory: {e}", dir.display())))?;
        if resolved.parent().is_none() {
            return Err(Failure::input("--read-dir / would show the whole machine to the job; name a directory"));
        }
        read_dirs.push(resolved);
    }
    Ok(launch::StepRequest {
        step_operator: args.step_operator,
        pipeline: args.pipeline,
        run_name: args.run,
        step: args.step,
        run_id: args.run_id,
        step_run_id: args.step_run_id,
        requirements: args.requirements,
        entrypoint: args.command,
        environment,
        cpu_count: args.cpu,
        gpu_count: args.gpu,
        gpu_class: args.gpu_class,
        memory_bytes,
        settings,
        source_root,
        image: args.image,
        read_dirs,
        dry_run: None,
        record_id: args.record_id,
    })
}

/// A JSON object of string values as environment variables.
pub fn env_json(text: &str, what: &str) -> Result<Vec<(String, String)>, Failure> {
    let map: std::collections::BTreeMap<String, String> = serde_json::from_str(text).map_err(|e| {
        Failure::input(format!("{what} must be a JSON object of strings, like {{\"TOKEN\": \"…\"}}: {e}"))
    })?;
    if let Some(name) = map.keys().find(|name| !crate::units::is_env_name(name)) {
        return Err(Failure::input(format!("{what}: `{name}` is not a valid environment variable name")));
    }
    Ok(map.into_iter().collect())
}
