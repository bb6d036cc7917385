//! What a job may be: where it works and what it may write and read, its
//! backend, its command, its environment and its resources, checked against
//! a step operator's grants.

use std::path::{Path, PathBuf};

use super::{Denial, Grants, Refused};
use stepbox_backends::backends::JobResources;

impl Grants {
    /// How a local job is confined: None for trusted flavors. It may write
    /// the step's `source_root` and the `writable-dir`s, read the
    /// `readable-dir`s and the caller's `read_dirs`, and never sees
    /// stepbox's `home`.
    ///
    /// Paths are resolved (symbolic links, `..`) when they exist, so that
    /// they are bound where a resolved working directory lies, and the home
    /// is found inside a bound directory however it was named.
    pub fn confinement(
        &self,
        source_root: &Path,
        home: &Path,
        read_dirs: &[PathBuf],
    ) -> Option<stepbox_backends::backends::Confinement> {
        let resolved = |path: &Path| path.canonicalize().unwrap_or_else(|_| path.to_owned());
        let paths = |dirs: &[String]| dirs.iter().map(|dir| resolved(Path::new(dir))).collect::<Vec<_>>();
        let mut writable = vec![resolved(source_root)];
        writable.extend(paths(&self.writable_dirs));
        (!self.trusted).then(|| stepbox_backends::backends::Confinement {
            network: self.job_network,
            writable,
            readable: paths(&self.readable_dirs).into_iter().chain(read_dirs.iter().map(|dir| resolved(dir))).collect(),
            hidden: vec![resolved(home)],
        })
    }

    /// Where a job that runs on this machine's files (not in an image) may
    /// work: inside the step's source root or a `writable-dir` grant, checked
    /// after resolving `..` and symbolic links. Returns the resolved path.
    ///
    /// Whatever the grants, a working directory never overlaps stepbox's
    /// `home` (inside it, or holding it): a Ray job ships its working
    /// directory to the cluster, and the home holds the secrets.
    pub fn working_dir(&self, dir: &Path, source_root: &Path, home: &Path) -> Result<PathBuf, Refused> {
        let resolved = dir.canonicalize().map_err(|error| {
            Refused::Invalid(format!("the working directory {} cannot be used: {error}", dir.display()))
        })?;
        let home = home.canonicalize().unwrap_or_else(|_| home.to_owned());
        if overlap(&resolved, &home) {
            return Err(Refused::Denied(Denial {
                rule: "working-dir",
                message: format!(
                    "the job's working directory {} overlaps stepbox's home {}, which holds the secrets and other \
                     runs; no grant allows it",
                    resolved.display(),
                    home.display()
                ),
            }));
        }
        if self.arbitrary_commands {
            return Ok(resolved);
        }
        let allowed = std::iter::once(source_root.to_owned())
            .chain(self.writable_dirs.iter().map(PathBuf::from))
            .filter_map(|root| root.canonicalize().ok())
            .any(|root| resolved.starts_with(root));
        if allowed {
            return Ok(resolved);
        }
        Err(Refused::Denied(Denial {
            rule: "working-dir",
            message: format!(
                "the job's working directory {} (resolved: {}) is outside the step's source root {} and every \
                 `writable-dir` grant; a job may work only where the caller lets it write. Grant it with --grant \
                 writable-dir={}",
                dir.display(),
                resolved.display(),
                source_root.display(),
                resolved.display()
            ),
        }))
    }

    /// The backend a job goes to: the one it names, if granted, or the default.
    pub fn backend(&self, requested: Option<&str>) -> Result<String, Denial> {
        let granted: Vec<&str> =
            if self.backends.is_empty() { vec!["local"] } else { self.backends.iter().map(String::as_str).collect() };
        match requested {
            None => Ok(granted[0].to_owned()),
            Some(name) if granted.contains(&name) => Ok(name.to_owned()),
            Some(name) => Err(Denial {
                rule: "backends",
                message: format!(
                    "the backend `{name}` is not granted to this step operator (granted: {}); grant it with --grant backend={name}",
                    granted.join(", ")
                ),
            }),
        }
    }

    /// A job must run the launch's entrypoint command unless the step
    /// operator is granted `arbitrary-commands` (decision 3).
    pub fn command(&self, command: &[String], entrypoint: &[String]) -> Result<(), Denial> {
        if self.arbitrary_commands || command == entrypoint {
            return Ok(());
        }
        Err(Denial {
            rule: "entrypoint-only",
            message: format!(
                "a job must run the launch's entrypoint command {entrypoint:?}, but this one runs {command:?}. \
                 Only step operators granted `arbitrary-commands` may run other commands; grant it to trusted flavors only"
            ),
        })
    }

    /// A job's environment is an allow-list (see [`super::job_env`]): each variable
    /// the flavor sets must be the launch's own with the same value, or
    /// granted by name or prefix (`job-env=NAME`, `job-env=PREFIX_*`), or
    /// the flavor granted `arbitrary-commands`.
    pub fn job_env(&self, env: &[(String, String)], launch_env: &[(String, String)]) -> Result<(), Denial> {
        if self.arbitrary_commands {
            return Ok(());
        }
        for (name, value) in env {
            let from_launch = launch_env.iter().any(|(n, v)| n == name && v == value);
            let granted = self.job_env.iter().any(|pattern| pattern.allows(name));
            if !from_launch && !granted {
                return Err(Denial { rule: "job-env", message: super::job_env::denial_message(name) });
            }
        }
        Ok(())
    }

    /// A job's resources and timeout must stay within the ceilings. Returns
    /// the timeout to apply (the ceiling when the job asks for none).
    pub fn resources(&self, resources: &JobResources, timeout: Option<u64>) -> Result<Option<u64>, Denial> {
        let over = |rule: &'static str, asked: String, allowed: String, grant: &str| Denial {
            rule,
            message: format!(
                "the job asks for {asked}, but this step operator allows at most {allowed}; raise it with --grant {grant}"
            ),
        };
        check_resources(resources)?;
        if let (Some(asked), Some(max)) = (resources.cpu_count, self.max_cpu)
            && asked > max
        {
            return Err(over("max-cpu", format!("{asked} CPUs"), format!("{max}"), "max-cpu=N"));
        }
        if let (Some(asked), Some(max)) = (resources.gpu_count, self.max_gpu)
            && asked > max
        {
            return Err(over("max-gpu", format!("{asked} GPUs"), format!("{max}"), "max-gpu=N"));
        }
        if let (Some(asked), Some(max)) = (resources.memory_bytes, self.max_memory)
            && asked > max
        {
            return Err(over(
                "max-memory",
                format!("{asked} bytes of memory"),
                format!("{max} bytes"),
                "max-memory=SIZE",
            ));
        }
        match (timeout, self.max_job_timeout) {
            (Some(asked), Some(max)) if asked > max => Err(over(
                "max-job-timeout",
                format!("a timeout of {asked}s"),
                format!("{max}s"),
                "max-job-timeout=DURATION",
            )),
            (None, max) => Ok(max),
            (asked, _) => Ok(asked),
        }
    }
}

/// Whether one of two (resolved) paths lies inside the other.
pub fn overlap(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Longest GPU class name.
const MAX_GPU_CLASS: usize = 64;

/// What any job's resources must be before a ceiling is compared: a CPU
/// count that is a finite positive number (NaN would pass every `>`), a
/// memory size above zero, and a GPU class that is a plain name (letters,
/// digits, `-`, `_`, `.`), since it reaches backends' flag syntax
/// (`--gres=gpu:CLASS:N`, Ray's `accelerator_type:CLASS`).
pub fn check_resources(resources: &JobResources) -> Result<(), Denial> {
    let invalid = |message: String| Denial { rule: "resources", message };
    if let Some(cpus) = resources.cpu_count
        && !(cpus.is_finite() && cpus > 0.0)
    {
        return Err(invalid(format!("the job asks for {cpus} CPUs; a CPU count must be a finite number above 0")));
    }
    if resources.memory_bytes == Some(0) {
        return Err(invalid("the job asks for 0 bytes of memory; leave memory unset or ask for more".to_owned()));
    }
    if let Some(class) = &resources.gpu_class {
        let plain = !class.is_empty()
            && class.len() <= MAX_GPU_CLASS
            && class.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !plain {
            return Err(invalid(format!(
                "the GPU class {class:?} is not a plain name (1-{MAX_GPU_CLASS} letters, digits, `-`, `_`, `.`), \
                 such as h100 or nvidia-a100"
            )));
        }
        // A class with no count would run the job with no GPU: a silent CPU run.
        if resources.gpu_count.unwrap_or(0) == 0 {
            return Err(invalid(format!(
                "the job asks for GPUs of class {class} but for no GPU: ask for a count too (--gpu N, gpu-count in a job spec)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::test_support::{granted, strings};

    #[test]
    fn commands_other_than_the_entrypoint_are_denied_by_default() {
        let grants = Grants::default();
        let entrypoint = strings(&["python", "-m", "step"]);
        let cases: &[(&[&str], bool)] = &[
            (&["python", "-m", "step"], true),
            (&["python", "-m", "other"], false),
            (&["sh", "-c", "python -m step"], false),
            (&["python", "-m", "step", "--extra"], false),
            (&[], false),
        ];
        for (command, allowed) in cases {
            let result = grants.command(&strings(command), &entrypoint);
            assert_eq!(result.is_ok(), *allowed, "{command:?}");
            if let Err(denial) = result {
                assert_eq!(denial.rule, "entrypoint-only");
                assert!(denial.message.contains("arbitrary-commands"));
            }
        }
        let trusted = granted(&["arbitrary-commands"]);
        assert!(trusted.command(&strings(&["rm", "-rf", "/tmp/x"]), &strings(&["true"])).is_ok());
    }

    #[test]
    fn a_job_environment_is_the_callers_plus_granted_names_only() {
        let pairs = |items: &[(&str, &str)]| -> Vec<(String, String)> {
            items.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
        };
        let launch_env = pairs(&[("PYTHONPATH", "/srv/step"), ("ZENML_RUN", "1")]);
        // (grants, job env, allowed)
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], bool);
        let cases: &[Case] = &[
            (&[], &[("ZENML_RUN", "1"), ("PYTHONPATH", "/srv/step")], true),
            (&[], &[("ZENML_RUN", "2")], false),
            (&[], &[("PYTHONUNBUFFERED", "1")], false),
            (&[], &[("HOME", "/tmp/evil")], false),
            (&[], &[("ZENML_STORE_URL", "http://evil")], false),
            (&[], &[("PYENV_VERSION", "system")], false),
            (&[], &[("PYTHONPATH", "/tmp/evil")], false),
            (&[], &[("LD_PRELOAD", "/tmp/evil.so")], false),
            (&["job-env=LD_PRELOAD"], &[("LD_PRELOAD", "/opt/jemalloc.so")], true),
            (&["job-env=LD_PRELOAD"], &[("LD_LIBRARY_PATH", "/tmp")], false),
            (&["job-env=MLFLOW_*"], &[("MLFLOW_TRACKING_URI", "http://mlflow:5000")], true),
            (&["job-env=MLFLOW_*"], &[("MLFLOWX", "1")], false),
            (&["arbitrary-commands"], &[("LD_PRELOAD", "/tmp/evil.so")], true),
        ];
        for (grants, env, allowed) in cases {
            let result = granted(grants).job_env(&pairs(env), &launch_env);
            assert_eq!(result.is_ok(), *allowed, "{grants:?} {env:?}");
            if let Err(denial) = result {
                assert_eq!(denial.rule, "job-env");
                assert!(denial.message.contains("--grant job-env="), "{}", denial.message);
            }
        }
    }

    #[test]
    fn a_working_directory_must_be_where_the_caller_lets_jobs_write() {
        let root = tempfile::tempdir().expect("a directory");
        let source = root.path().join("step");
        let shared = root.path().join("shared");
        std::fs::create_dir_all(source.join("sub")).expect("mkdir");
        std::fs::create_dir_all(&shared).expect("mkdir");
        std::os::unix::fs::symlink("/etc", source.join("etc-link")).expect("symlink");
        let home = root.path().join("shared/stepbox-home");
        std::fs::create_dir_all(home.join("secrets")).expect("mkdir");
        std::fs::create_dir_all(shared.join("work")).expect("mkdir");
        let grants = granted(&[&format!("writable-dir={}", shared.display())]);
        let resolved = |dir: &Path| grants.working_dir(dir, &source, &home);
        assert!(resolved(&source).is_ok());
        assert!(resolved(&source.join("sub")).is_ok());
        assert!(resolved(&source.join("sub/..")).is_ok());
        assert!(resolved(&shared.join("work")).is_ok());
        // The home never, even inside a grant, nor a directory holding it.
        for overlapping in [home.join("secrets"), shared.clone()] {
            match resolved(&overlapping) {
                Err(Refused::Denied(denial)) => {
                    assert!(denial.message.contains("stepbox's home"), "{denial}")
                }
                other => panic!("{}: {other:?}", overlapping.display()),
            }
        }
        for outside in
            [Path::new("/etc"), Path::new("/etc/../etc"), Path::new("/"), &source.join("etc-link"), &source.join("..")]
        {
            match resolved(outside) {
                Err(Refused::Denied(denial)) => {
                    assert_eq!(denial.rule, "working-dir");
                    // `/` and the temporary root hold the home: refused for that first.
                    let why = ["--grant writable-dir=", "stepbox's home"];
                    assert!(why.iter().any(|w| denial.message.contains(w)), "{}", denial.message);
                }
                other => panic!("{}: {other:?}", outside.display()),
            }
        }
        assert!(matches!(resolved(Path::new("/nonexistent/dir")), Err(Refused::Invalid(_))));
        assert!(granted(&["arbitrary-commands"]).working_dir(Path::new("/etc"), &source, &home).is_ok());
        let denial = granted(&["arbitrary-commands"]).working_dir(&home, &source, &home);
        assert!(denial.is_err(), "not even with arbitrary-commands");
    }

    #[test]
    fn resources_are_checked_before_any_ceiling() {
        let job = |cpu: Option<f64>, class: Option<&str>| JobResources {
            cpu_count: cpu,
            gpu_count: class.map(|_| 1),
            gpu_class: class.map(str::to_owned),
            memory_bytes: None,
        };
        for bad in
            [job(Some(f64::NAN), None), job(Some(f64::INFINITY), None), job(Some(-1.0), None), job(Some(0.0), None)]
        {
            assert_eq!(check_resources(&bad).map_err(|d| d.rule), Err("resources"), "{bad:?}");
        }
        for class in ["h100:8,shard", "a100 --gres=gpu:8", "", "x\ny", &"a".repeat(65)] {
            assert!(check_resources(&job(None, Some(class))).is_err(), "{class:?}");
        }
        let uncounted = JobResources { gpu_count: Some(0), ..job(None, Some("h100")) };
        let denial = check_resources(&uncounted).expect_err("a class with no GPU");
        assert!(denial.message.contains("ask for a count too"), "{}", denial.message);
        for class in ["h100", "nvidia-a100", "A100_80GB", "tesla.v100"] {
            assert!(check_resources(&job(Some(2.0), Some(class))).is_ok(), "{class}");
        }
        // NaN no longer slips under a ceiling.
        assert!(granted(&["max-cpu=4"]).resources(&job(Some(f64::NAN), None), None).is_err());
    }

    #[test]
    fn backends_default_to_local_and_refuse_ungranted_ones() {
        let grants = granted(&["jobs"]);
        assert_eq!(grants.backend(None), Ok("local".to_owned()));
        assert_eq!(grants.backend(Some("local")), Ok("local".to_owned()));
        let denial = grants.backend(Some("slurm")).unwrap_err();
        assert_eq!(denial.rule, "backends");
        assert!(denial.message.contains("--grant backend=slurm"));
    }

    #[test]
    fn resource_ceilings_deny_what_exceeds_them() {
        let grants = granted(&["max-cpu=4", "max-gpu=0", "max-memory=8GiB", "max-job-timeout=1h"]);
        let job =
            |cpu, gpu, memory| JobResources { cpu_count: cpu, gpu_count: gpu, gpu_class: None, memory_bytes: memory };
        // (job resources, job timeout, the timeout applied or the rule that denies)
        type Case = (JobResources, Option<u64>, Result<Option<u64>, &'static str>);
        let cases: &[Case] = &[
            (job(Some(2.0), None, None), None, Ok(Some(3600))),
            (job(Some(4.5), None, None), None, Err("max-cpu")),
            (job(None, Some(1), None), None, Err("max-gpu")),
            (job(None, None, Some(16 << 30)), None, Err("max-memory")),
            (job(None, None, Some(1 << 30)), Some(60), Ok(Some(60))),
            (job(None, None, None), Some(7200), Err("max-job-timeout")),
        ];
        for (resources, timeout, expected) in cases {
            let result = grants.resources(resources, *timeout);
            match expected {
                Ok(applied) => assert_eq!(result, Ok(*applied), "{resources:?}"),
                Err(rule) => {
                    let denial = result.unwrap_err();
                    assert_eq!(denial.rule, *rule);
                    assert!(denial.message.contains("--grant"), "{}", denial.message);
                }
            }
        }
        // No ceilings: anything goes, and no timeout is imposed.
        assert_eq!(Grants::default().resources(&job(Some(64.0), Some(8), None), None), Ok(None));
    }
}
