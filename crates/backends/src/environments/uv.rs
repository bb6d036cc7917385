//! Driving uv: finding it, creating a virtual environment, installing
//! requirements into it, with its output streamed as progress.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

use super::EnvironmentError;

/// The environment variable that names the uv to use instead of PATH's.
pub const UV_VARIABLE: &str = "STEPBOX_UV";

/// Lines of uv's output kept for an error message.
const ERROR_TAIL_LINES: usize = 60;

/// A uv executable and its version.
#[derive(Debug, Clone)]
pub struct Uv {
    program: PathBuf,
    version: String,
}

impl Uv {
    /// uv from `$STEPBOX_UV`, else from PATH.
    pub async fn locate() -> Result<Self, EnvironmentError> {
        let program = crate::programs::locate("uv", UV_VARIABLE).map_err(EnvironmentError::UvMissing)?;
        let output = Command::new(&program).arg("--version").output().await.map_err(|error| {
            EnvironmentError::UvMissing(format!("{} could not be run ({error})", program.display()))
        })?;
        if !output.status.success() {
            return Err(EnvironmentError::UvMissing(format!("`{} --version` failed", program.display())));
        }
        let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        Ok(Self { program, version })
    }

    /// What `uv --version` said.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// `uv venv ROOT [--python VERSION]`. uv never downloads an interpreter:
    /// a version the machine lacks is an error naming it.
    pub async fn create_venv(
        &self,
        root: &Path,
        python_version: Option<&str>,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<(), EnvironmentError> {
        let mut command = self.command();
        command.arg("venv").arg(root);
        if let Some(version) = python_version {
            command.args(["--python", version]);
        }
        run(command, "create the virtual environment", progress).await
    }

    /// `uv pip install --python ROOT/bin/python -r REQUIREMENTS`, from
    /// wheels only (`--no-build`) unless `source_builds`: building a source
    /// distribution runs its code on this machine.
    pub async fn install(
        &self,
        root: &Path,
        requirements: &Path,
        source_builds: bool,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<(), EnvironmentError> {
        let mut command = self.command();
        command.args(["pip", "install", "--python"]).arg(root.join("bin").join("python")).arg("-r").arg(requirements);
        if !source_builds {
            command.arg("--no-build");
        }
        run(command, "install the requirements", progress).await.map_err(|error| match error {
            EnvironmentError::Uv { action, message } if !source_builds => EnvironmentError::Uv {
                action,
                message: format!(
                    "{message}\n(packages are installed from wheels only: building one from source runs its code \
                     on this machine; a step operator trusted to do that can be granted it with --grant source-builds)"
                ),
            },
            other => other,
        })
    }

    /// `uv pip install --target DIR` for another machine: wheels for
    /// `platform` (a uv `--python-platform` such as `x86_64-manylinux_2_28`)
    /// and `python_version`, never built from source unless `source_builds`.
    pub async fn install_for_platform(
        &self,
        target: &Path,
        requirements: &Path,
        platform: &str,
        python_version: Option<&str>,
        source_builds: bool,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<(), EnvironmentError> {
        let mut command = self.command();
        command.args(["pip", "install", "--target"]).arg(target).arg("-r").arg(requirements);
        command.args(["--python-platform", platform]);
        if let Some(version) = python_version {
            command.args(["--python-version", version]);
        }
        if !source_builds {
            command.arg("--no-build");
        }
        run(command, "install the requirements for the image", progress).await
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command
            .env("UV_PYTHON_DOWNLOADS", "never")
            .env("NO_COLOR", "1")
            .arg("--no-config")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }
}

/// Run a uv command, passing each line it prints to `progress`; on failure
/// the error carries the last lines it printed.
async fn run(
    mut command: Command,
    action: &'static str,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(), EnvironmentError> {
    let mut child = command.spawn().map_err(|error| EnvironmentError::Uv { action, message: error.to_string() })?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(EnvironmentError::Uv { action, message: "uv's output could not be captured".to_owned() });
    };
    let mut tail = VecDeque::new();
    let (mut out, mut err) = (lines(stdout), lines(stderr));
    let (mut out_open, mut err_open) = (true, true);
    loop {
        let (from_stdout, line) = tokio::select! {
            line = out.next_line(), if out_open => (true, line),
            line = err.next_line(), if err_open => (false, line),
            else => break,
        };
        match line {
            Ok(Some(line)) if !line.trim().is_empty() => {
                progress(line.trim());
                if tail.len() == ERROR_TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line.trim_end().to_owned());
            }
            Ok(Some(_)) => {}
            // The stream ended (or broke): stop reading it.
            Ok(None) | Err(_) if from_stdout => out_open = false,
            Ok(None) | Err(_) => err_open = false,
        }
    }
    let status = child.wait().await.map_err(|error| EnvironmentError::Uv { action, message: error.to_string() })?;
    if status.success() {
        return Ok(());
    }
    let said = Vec::from(tail).join("\n");
    let message = if said.is_empty() { format!("uv exited with {status}") } else { said };
    Err(EnvironmentError::Uv { action, message })
}

fn lines<R: AsyncRead + Unpin>(reader: R) -> tokio::io::Lines<BufReader<R>> {
    BufReader::new(reader).lines()
}
