//! A job as a Slurm batch script plus `sbatch` options. The script only
//! `exec`s the entrypoint, its arguments shell-quoted; the environment is not
//! in the script or on `sbatch`'s command line: `sbatch --export=ALL` runs
//! with exactly the job's variables in its own environment.

use std::path::Path;
use std::time::Duration;

use crate::backends::JobResources;

/// Where and how the job is scheduled: from the step operator's
/// configuration or the step's settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Placement {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
}

/// The batch script that runs `command`.
pub fn batch_script(command: &[String]) -> Result<String, String> {
    let quoted = shlex::try_join(command.iter().map(String::as_str))
        .map_err(|error| format!("the command cannot be written as a shell command: {error}"))?;
    Ok(format!("#!/bin/sh\n# Written by stepbox: run the step's entrypoint, nothing else.\nexec {quoted}\n"))
}

/// Where a batch job writes its standard output and error.
#[derive(Debug, Clone, Copy)]
pub struct OutputFiles<'a> {
    pub stdout: &'a Path,
    pub stderr: &'a Path,
}

/// `sbatch` options for a job named `name`, writing its output to `output`.
pub fn sbatch_args(
    name: &str,
    output: OutputFiles<'_>,
    working_dir: Option<&Path>,
    resources: &JobResources,
    timeout: Option<Duration>,
    placement: &Placement,
) -> Vec<String> {
    let mut args = vec![
        "--parsable".to_owned(),
        "--export=ALL".to_owned(),
        format!("--job-name={name}"),
        format!("--output={}", output.stdout.display()),
        format!("--error={}", output.stderr.display()),
    ];
    if let Some(dir) = working_dir {
        args.push(format!("--chdir={}", dir.display()));
    }
    if let Some(cpus) = resources.cpu_count {
        // Slurm counts whole CPUs: round a fraction up.
        args.push(format!("--cpus-per-task={}", (cpus.ceil() as u64).max(1)));
    }
    if let Some(bytes) = resources.memory_bytes {
        args.push(format!("--mem={}M", bytes.div_ceil(1 << 20).max(1)));
    }
    match (resources.gpu_count, &resources.gpu_class) {
        (Some(0) | None, _) => {}
        (Some(count), Some(class)) => args.push(format!("--gres=gpu:{class}:{count}")),
        (Some(count), None) => args.push(format!("--gres=gpu:{count}")),
    }
    if let Some(timeout) = timeout {
        // `--time` takes minutes at the least; round up so a job never gets less.
        args.push(format!("--time={}", timeout.as_secs().div_ceil(60).max(1)));
    }
    for (flag, value) in [("partition", &placement.partition), ("account", &placement.account), ("qos", &placement.qos)]
    {
        if let Some(value) = value {
            args.push(format!("--{flag}={value}"));
        }
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_execs_exactly_the_entrypoint() {
        let command = ["python", "-m", "step", "--msg", "it's $HOME; rm -rf /"].map(str::to_owned);
        let script = batch_script(&command).expect("quotable");
        let exec = script.lines().last().expect("an exec line");
        assert_eq!(shlex::split(exec.trim_start_matches("exec ")), Some(command.to_vec()), "{script}");
        assert!(batch_script(&["nul\0byte".to_owned()]).is_err());
    }

    #[test]
    fn resources_and_placement_map_to_sbatch_options() {
        let resources = JobResources {
            cpu_count: Some(1.5),
            gpu_count: Some(2),
            gpu_class: Some("a100".into()),
            memory_bytes: Some(1_500_000_000),
        };
        let placement = Placement { partition: Some("gpu".into()), account: Some("ml".into()), qos: None };
        let args = sbatch_args(
            "stepbox-j1",
            OutputFiles { stdout: Path::new("/runs/r1/stdout"), stderr: Path::new("/runs/r1/stderr") },
            Some(Path::new("/work")),
            &resources,
            Some(Duration::from_secs(90)),
            &placement,
        );
        for expected in [
            "--export=ALL",
            "--job-name=stepbox-j1",
            "--output=/runs/r1/stdout",
            "--error=/runs/r1/stderr",
            "--chdir=/work",
            "--cpus-per-task=2",
            "--mem=1431M",
            "--gres=gpu:a100:2",
            "--time=2",
            "--partition=gpu",
            "--account=ml",
        ] {
            assert!(args.contains(&expected.to_owned()), "{expected} missing from {args:?}");
        }
        assert!(!args.iter().any(|a| a.starts_with("--qos")));
        let files = OutputFiles { stdout: Path::new("/o"), stderr: Path::new("/e") };
        let bare = sbatch_args("j", files, None, &JobResources::default(), None, &Placement::default());
        assert_eq!(bare.len(), 5, "{bare:?}");
    }
}
