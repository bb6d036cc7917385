//! The `stepbox` command line: argument definitions, logging setup, and
//! dispatch to one module per command group.

mod args;
mod failure;
mod flavor;
mod gpus;
mod held_signals;
mod launch;
mod output;
mod runs;
mod secret;
mod step_operator;
mod submit;
mod trust;

use std::process::ExitCode;

use clap::Parser;

use crate::exit;
pub use args::{Cli, Command};
pub use failure::Failure;

/// Run the command line and return the process exit code.
pub fn main() -> ExitCode {
    let held = held_signals::HeldSignals::hold();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let code = match error.kind() {
                clap::error::ErrorKind::DisplayHelp
                | clap::error::ErrorKind::DisplayVersion
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => exit::OK,
                _ => exit::BAD_INPUT,
            };
            let _ = error.print();
            return ExitCode::from(code);
        }
    };
    // Only a launch cancels on these signals; every other command takes them as usual, at once.
    let early = match cli.command {
        Command::Launch(_) => {
            crate::pause_points::pause_at(crate::pause_points::SIGNALS_HELD);
            Some(held.note_for_launch())
        }
        _ => {
            held.release();
            None
        }
    };
    // Kept to the end: dropping it flushes the log lines still queued (waiting 1 s at most).
    let _log_writer = init_tracing(cli.verbose, cli.quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            output::note(format_args!("error: cannot start the async runtime: {error}"));
            return ExitCode::from(exit::INTERNAL);
        }
    };
    let code = runtime.block_on(run(cli, early));
    // Do not wait for detached tasks (a reader of a pipe that an escaped
    // process still holds, say): everything that matters has been awaited.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    ExitCode::from(code)
}

async fn run(cli: Cli, early: Option<held_signals::EarlySignals>) -> u8 {
    let result = match cli.command {
        Command::Flavor(command) => flavor::run(cli.home, command).await,
        Command::StepOperator(command) => step_operator::run(cli.home, command).await,
        Command::Launch(args) => launch::run(cli.home, *args, early).await,
        Command::Submit(args) => submit::submit(cli.home, args.env_stdin),
        Command::Status { run, step_run_id, output } => {
            submit::status(cli.home, submit::Which::of(run, step_run_id), output)
        }
        Command::Wait { run, step_run_id, follow } => {
            submit::wait(cli.home, submit::Which::of(run, step_run_id), follow)
        }
        Command::Cancel { run, step_run_id, reason } => {
            submit::cancel(cli.home, submit::Which::of(run, step_run_id), reason)
        }
        Command::Runs(command) => runs::run(cli.home, command),
        Command::Secret(command) => secret::run(cli.home, command),
        Command::Trust(command) => trust::run(cli.home, command),
        Command::New { name, lang, dir } => new_flavor(&name, lang, dir),
        Command::Backends => backends(),
        Command::Backup { destination } => backup(cli.home, &destination),
        Command::Limits => limits(),
        Command::Gpus { output } => gpus::run(cli.home, output),
    };
    match result {
        Ok(code) => code,
        Err(failure) if failure.is_closed_pipe() => failure.code,
        Err(failure) => {
            output::note(format_args!("error: {}", failure.message));
            failure.code
        }
    }
}

/// `stepbox new`: a flavor project from a template.
fn new_flavor(name: &str, lang: crate::scaffold::Lang, dir: Option<std::path::PathBuf>) -> Result<u8, Failure> {
    let dir = dir.unwrap_or_else(|| std::path::PathBuf::from(name));
    let files = crate::scaffold::create(name, lang, &dir).map_err(Failure::input)?;
    output::line(format_args!("created {} ({lang:?}): {}", dir.display(), files.join(", ")))?;
    output::line(format_args!("next: see {}/README.md to build, test and register it", dir.display()))?;
    Ok(exit::OK)
}

/// `stepbox backends`: each backend, its options and the grants they need.
fn backends() -> Result<u8, Failure> {
    let mut table = output::table(&["BACKEND", "OPTION", "WHAT IT IS"]);
    table.add_row(vec![
        "(every backend)".to_owned(),
        crate::policy::connections::SECRET_ENV.to_owned(),
        "NAME=SECRET: the job's variable NAME holds the stored secret SECRET (granted with --grant \
         secret=SECRET), filled in by the host; repeatable"
            .to_owned(),
    ]);
    for backend in crate::backends::catalogue::BACKENDS {
        table.add_row(vec![backend.name.to_owned(), "-".to_owned(), backend.summary.to_owned()]);
        for option in backend.options {
            table.add_row(vec![String::new(), option.key.to_owned(), option.help.to_owned()]);
        }
    }
    output::line(format_args!(
        "{table}\nGrant a backend with: stepbox step-operator update NAME --grant backend=BACKEND\n\
         A flavor passes options in its job spec's backend-options."
    ))?;
    Ok(exit::OK)
}

/// `stepbox backup DEST`: a consistent copy of the state database in one file.
fn backup(home: Option<std::path::PathBuf>, destination: &std::path::Path) -> Result<u8, Failure> {
    if destination.exists() {
        return Err(Failure::input(format!(
            "{} already exists; stepbox backup never overwrites a file: name a new one",
            destination.display()
        )));
    }
    let Some(path) = destination.to_str() else {
        return Err(Failure::input(format!("{} is not valid UTF-8; name the backup in text", destination.display())));
    };
    let stepbox = open(home)?;
    stepbox.db.backup_to(path).map_err(|error| {
        Failure::new(exit::INTERNAL, format!("cannot write the backup to {}: {error}", destination.display()))
    })?;
    output::line(format_args!(
        "backed up the state database to {} (with the flavors/ and secrets/ directories, that is all of stepbox's state)",
        destination.display()
    ))?;
    Ok(exit::OK)
}

/// `stepbox limits`: the limits a step operator can override, with their defaults.
fn limits() -> Result<u8, Failure> {
    let defaults = crate::limits::Limits::default();
    let mut table = output::table(&["LIMIT", "DEFAULT", "WHAT IT BOUNDS"]);
    for (name, description) in crate::limits::LIMIT_NAMES {
        table.add_row(vec![name.to_string(), defaults.value_of(name).unwrap_or_default(), description.to_string()]);
    }
    output::line(format_args!(
        "{table}\nOverride per step operator: stepbox step-operator update NAME --limit NAME=VALUE"
    ))?;
    Ok(exit::OK)
}

/// Logs go to stderr. `-v` shows debug messages, `-vv` trace; `-q` only
/// errors. `STEPBOX_LOG` (an `EnvFilter` directive) overrides both.
///
/// They are written from a thread of their own: a stderr nobody reads (a
/// stuck pipe, a paused terminal) must never block the thread that logs,
/// which may be the one supervising jobs or running the flavor. Lines that
/// do not fit the writer's queue while stderr is stuck are dropped.
fn init_tracing(verbose: u8, quiet: bool) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn,stepbox=info,flavor=info",
        (false, 1) => "info,stepbox=debug,flavor=debug",
        _ => "debug,stepbox=trace,flavor=trace,cranelift_codegen=info,wasmtime_cranelift=info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("STEPBOX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .thread_name("stepbox-log")
        .finish(std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_target(false)
        .try_init()
        .ok()
        .map(|()| guard)
}

/// Open the state at `--home`, `$STEPBOX_HOME` or the default.
fn open(home: Option<std::path::PathBuf>) -> Result<crate::context::Stepbox, Failure> {
    let home = match home {
        Some(path) => crate::home::Home::at(path),
        None => crate::home::Home::from_env().map_err(|e| Failure::new(exit::BAD_INPUT, e))?,
    };
    crate::context::Stepbox::open(home).map_err(|e| Failure::new(exit::INTERNAL, e))
}
