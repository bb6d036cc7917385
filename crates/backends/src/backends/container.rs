//! The container backend: a job is a podman container running an image.
//!
//! - The image is pulled at submission, so a missing image or an unreachable
//!   registry is an error value from `submit`, not a failed job.
//! - Environment values are handed to podman through its own environment
//!   (`--env NAME`), never on its command line where `ps` would show them.
//! - Network is off (`--network none`) unless `job-network` is granted; every
//!   capability is dropped and privileges cannot be regained, unless the
//!   flavor is trusted.
//! - Resources map to `--cpus`, `--memory` and, for GPUs, a lease on this
//!   machine's devices ([`crate::gpus`]) passed as one CDI device per leased
//!   UUID (`nvidia.com/gpu=GPU-…`), never `all`. The container holds the
//!   lease itself (its lock files' descriptors, passed with
//!   `--preserve-fds`): a container that outlives its launch (SIGKILL)
//!   keeps its GPUs until it is stopped, never shared with the next job.
//! - Output is streamed from the attached `podman run`; the exit code is the
//!   container's (125–127 are podman's own failures, explained).
//! - Cancel and timeout: `podman stop --time GRACE`, then the container is
//!   removed. Registries on loopback are spoken to without TLS.
//! - A `registry-credential` grant's login reaches `podman pull` in a private
//!   auth file ([`podman_auth`]), removed after the pull, or by the next
//!   launch when this one was killed mid-pull.

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::process::{Child, Command};

use super::podman_auth::{self, AuthFile};
use super::process_job::{self, Ending, SupervisedJob, SupervisorLink, wait_for_ending};
use super::{BackendError, JobBackend, JobLog, JobRequest, JobRuntime, JobState, JobStatus, OrphanedJob, RunningJob};
use crate::images::registry::Login;

/// The environment variable that names the podman to use instead of PATH's.
pub const PODMAN_VARIABLE: &str = "STEPBOX_PODMAN";

/// Longest wait for quick housekeeping (`image exists`, `stop`, `rm`).
/// Pulls and copies have no bound of their own: they can take long for big
/// images, and the launch's `wall-clock` limit (or Ctrl-C) ends them.
const HOUSEKEEPING_TIMEOUT: Duration = Duration::from_secs(120);

/// The label every job's container carries, with the job's id.
const JOB_LABEL: &str = "stepbox.job";

/// Runs jobs as podman containers.
pub struct ContainerBackend {
    grace: Duration,
    leases: crate::gpus::Leases,
}

impl ContainerBackend {
    /// A backend whose stopped containers get `grace` before SIGKILL. What
    /// earlier launches killed mid-pull left of a registry login is removed.
    pub fn new(grace: Duration, leases: crate::gpus::Leases) -> Self {
        podman_auth::sweep_abandoned(&std::env::temp_dir());
        Self { grace, leases }
    }
}

fn podman() -> Result<PathBuf, BackendError> {
    crate::programs::locate("podman", PODMAN_VARIABLE).map_err(|why| {
        BackendError::Unsupported(format!(
            "the container backend runs jobs with podman, but {why}. Install it (Debian/Ubuntu: apt-get install podman)"
        ))
    })
}

/// Whether `reference` names a registry on this machine's loopback.
fn on_loopback(reference: &str) -> bool {
    let host = reference.split('/').next().unwrap_or_default();
    let host = host.rsplit_once(':').map_or(host, |(name, _)| name);
    reference.contains('/') && matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

/// The container's name: unique per job, and findable by humans.
fn container_name(request: &JobRequest) -> String {
    format!("stepbox-{}", request.id)
}

/// The `podman run` arguments for `request`, image and command last.
fn run_args(
    request: &JobRequest,
    image: &str,
    hardened: bool,
    network: bool,
    gpus: &[String],
    lease_descriptors: usize,
) -> Vec<String> {
    let mut args: Vec<String> = vec!["run".into(), "--rm".into(), "--name".into(), container_name(request)];
    args.extend(["--label".into(), format!("{JOB_LABEL}={}", request.id)]);
    args.extend(["--pull".into(), "never".into()]);
    if !network {
        args.extend(["--network".into(), "none".into()]);
    }
    if hardened {
        args.extend(["--cap-drop".into(), "all".into(), "--security-opt".into(), "no-new-privileges".into()]);
    }
    if let Some(cpus) = request.resources.cpu_count {
        args.extend(["--cpus".into(), cpus.to_string()]);
    }
    if let Some(memory) = request.resources.memory_bytes {
        args.extend(["--memory".into(), memory.to_string()]);
    }
    // Exactly the leased GPUs, by the CDI names NVIDIA's toolkit gives UUIDs
    // (index names are frozen when the spec is generated).
    for uuid in gpus {
        args.extend(["--device".into(), format!("nvidia.com/gpu={uuid}")]);
    }
    // The lease's lock files, at descriptors 3.. (see [`hand_over_lease`]).
    if lease_descriptors > 0 {
        args.extend(["--preserve-fds".into(), lease_descriptors.to_string()]);
    }
    if let Some(dir) = &request.working_dir {
        args.extend(["--workdir".into(), dir.display().to_string()]);
    }
    for (name, _) in &request.env {
        args.extend(["--env".into(), name.clone()]);
    }
    args.push(image.to_owned());
    args.extend(request.command.iter().cloned());
    args
}

/// Run a quick housekeeping command to the end, within [`HOUSEKEEPING_TIMEOUT`].
async fn run_quietly(program: &Path, args: &[&str]) -> Result<(), String> {
    tokio::time::timeout(HOUSEKEEPING_TIMEOUT, run_to_end(program, args)).await.unwrap_or_else(|_| {
        Err(format!("`{} {}` did not finish in {HOUSEKEEPING_TIMEOUT:?}", program.display(), args.join(" ")))
    })
}

/// Run a command (podman, skopeo) to the end, output discarded; its stderr
/// on failure. Dropping the future kills it.
async fn run_to_end(program: &Path, args: &[&str]) -> Result<(), String> {
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
    match command.output().await {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(String::from_utf8_lossy(&output.stderr).trim().to_owned()),
        Err(error) => Err(format!("cannot run {}: {error}", program.display())),
    }
}

/// Make `image` present in podman's storage; returns the name podman runs
/// it by. A registry image is pulled unless present. An image in a local
/// OCI layout (`oci:PATH:NAME`) is copied in with skopeo under
/// `localhost/stepbox/NAME` (podman's own `oci:` pull names the image after
/// the layout's path, which fails for paths with capital letters).
async fn ensure_image(podman: &Path, image: &str, login: Option<&Login>) -> Result<String, BackendError> {
    if let Some(layout) = image.strip_prefix("oci:") {
        let name = layout.rsplit_once(':').map_or("latest", |(_, name)| name);
        let local = format!("localhost/stepbox/{}", name.to_ascii_lowercase());
        if run_quietly(podman, &["image", "exists", &local]).await.is_ok() {
            return Ok(local);
        }
        let skopeo = crate::programs::on_path("skopeo").ok_or_else(|| {
            BackendError::Unsupported(format!(
                "the image {image} is in a local OCI layout, and running one needs skopeo to hand it to podman: \
                 install it (Debian/Ubuntu: apt-get install skopeo), or build to a registry repository instead"
            ))
        })?;
        let destination = format!("containers-storage:{local}");
        run_to_end(&skopeo, &["copy", "--quiet", image, &destination])
            .await
            .map_err(|why| BackendError::Failed(format!("cannot load the image {image} into podman: {why}")))?;
        return Ok(local);
    }
    if run_quietly(podman, &["image", "exists", image]).await.is_ok() {
        return Ok(image.to_owned());
    }
    let mut args = vec!["pull".to_owned(), "--quiet".to_owned()];
    if on_loopback(image) {
        args.push("--tls-verify=false".into());
    }
    // The login goes to podman in an auth file only it and this user can read, never on its
    // command line (where `ps` shows it), and only for the registry the grant names.
    let auth_file = login
        .map(|login| AuthFile::write_in(&std::env::temp_dir(), login))
        .transpose()
        .map_err(|error| BackendError::Failed(format!("cannot write podman's registry login: {error}")))?;
    if let Some(file) = &auth_file {
        args.extend(["--authfile".to_owned(), file.path().display().to_string()]);
    }
    args.push(image.to_owned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let pulled = run_to_end(podman, &args).await;
    drop(auth_file);
    pulled.map_err(|why| BackendError::Failed(pull_failure(image, login, &why)))?;
    Ok(image.to_owned())
}

/// Why `podman pull` failed, and the way out when the registry wanted a
/// login it was not given.
fn pull_failure(image: &str, login: Option<&Login>, why: &str) -> String {
    // The message reaches the flavor: whatever podman printed, the password is not in it.
    let why = match login {
        Some(login) if !login.password.expose().is_empty() => {
            why.replace(login.password.expose(), "[redacted by stepbox]")
        }
        _ => why.to_owned(),
    };
    let lowered = why.to_ascii_lowercase();
    let wants_login = ["unauthorized", "authentication required", "401"].iter().any(|sign| lowered.contains(sign));
    let registry = crate::images::registry::registry_of(image).unwrap_or_default();
    match login {
        None if wants_login => format!(
            "podman cannot pull the image {image}: the registry {registry} wants a login ({why}). Store one with \
             `stepbox secret set NAME` ({{\"username\": …, \"password\": …}}) and grant it: \
             --grant registry-credential={registry}=basic:NAME"
        ),
        Some(_) if wants_login => format!(
            "podman cannot pull the image {image}: the registry {registry} refused the login of the \
             registry-credential grant ({why})"
        ),
        _ => format!("podman cannot pull the image {image}: {why}"),
    }
}

#[async_trait]
impl JobBackend for ContainerBackend {
    /// Every container labelled with the job's id is removed.
    fn stop_orphan(&self, job: &OrphanedJob<'_>) -> Result<(), String> {
        let podman = podman().map_err(|error| error.to_string())?;
        let filter = format!("label={JOB_LABEL}={}", job.id);
        let listed = super::run_to_end(
            std::process::Command::new(&podman).args(["ps", "--all", "--quiet", "--filter", &filter]),
        )?;
        for container in listed.split_whitespace() {
            super::run_to_end(std::process::Command::new(&podman).args(["rm", "--force", container]))?;
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        "container"
    }

    async fn submit(&self, mut request: JobRequest) -> Result<Arc<dyn RunningJob>, BackendError> {
        let image = match &request.runtime {
            JobRuntime::Image(image) => image.clone(),
            JobRuntime::Host | JobRuntime::Environment(_) => {
                return Err(BackendError::Invalid(
                    "the container backend runs images: name one in the job spec (runtime image), for example \
                     the reference images.build returned"
                        .to_owned(),
                ));
            }
        };
        if request.command.is_empty() {
            return Err(BackendError::Invalid("the job's command is empty".to_owned()));
        }
        let podman = podman()?;
        let image = ensure_image(&podman, &image, request.registry_login.as_ref()).await?;
        let hardened = request.confinement.is_some();
        let lease = super::devices::lease_for(&self.leases, &request).await?;
        request.env = super::devices::job_env(&request.env, lease.as_ref());
        let gpus = super::devices::uuids(lease.as_ref());
        let lease_descriptors = lease.as_ref().map(crate::gpus::Lease::descriptors).unwrap_or_default();
        let args = run_args(&request, &image, hardened, request.network, &gpus, lease_descriptors.len());
        let mut command = Command::new(&podman);
        // SAFETY: the hook only makes system calls that are safe between fork
        // and exec; the lease (and so its descriptors) lives until the supervisor ends.
        unsafe {
            command.pre_exec(move || hand_over_lease(&lease_descriptors));
        }
        command
            .args(&args)
            .env_clear()
            .envs(request.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // podman itself needs a PATH (for conmon and the OCI runtime) and its
        // configuration; the container sees only `--env` names.
        for inherited in ["PATH", "HOME", "CONTAINERS_CONF", "CONTAINERS_REGISTRIES_CONF", "XDG_RUNTIME_DIR"] {
            if let Some(value) = std::env::var_os(inherited)
                && !request.env.iter().any(|(name, _)| name == inherited)
            {
                command.env(inherited, value);
            }
        }
        let mut child = command
            .spawn()
            .map_err(|error| BackendError::Failed(format!("cannot start {}: {error}", podman.display())))?;
        let readers = process_job::spawn_readers(&mut child, &request.log);
        let (handle, link) = process_job::link();
        let name = container_name(&request);
        let supervisor = Supervisor {
            child,
            podman,
            name: name.clone(),
            grace: self.grace,
            readers,
            log: Arc::clone(&request.log),
            lease,
        };
        tokio::spawn(supervisor.run(request.timeout, link));
        Ok(Arc::new(SupervisedJob::new(name, handle).with_gpus(gpus)))
    }
}

/// For `podman run`'s `pre_exec`: every inherited descriptor above 2 is
/// marked close-on-exec, then the lease's lock files are placed at 3, 4, …
/// (where `--preserve-fds` wants them), so that the container's processes
/// hold the lease for as long as any of them lives. Only system calls that
/// are safe after `fork` (close_range, fcntl, dup2).
fn hand_over_lease(lease: &[RawFd]) -> std::io::Result<()> {
    super::confine::close_inherited_descriptors(&[])?;
    if lease.is_empty() {
        return Ok(());
    }
    // Copies above every source and target first, all of them before any is
    // placed, so that placing one never overwrites another still to be
    // copied; the copies close at exec. A fixed array: nothing is allocated.
    if lease.len() > MAX_PRESERVED {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut copies = [0 as RawFd; MAX_PRESERVED];
    let above = lease.iter().copied().max().unwrap_or(0).max(FIRST_PRESERVED + lease.len() as RawFd) + 1;
    for (copy, &fd) in copies.iter_mut().zip(lease) {
        // SAFETY: plain system calls on descriptor numbers.
        *copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, above) };
        if *copy < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    for (offset, &copy) in copies[..lease.len()].iter().enumerate() {
        // SAFETY: as above; dup2's new descriptor is not close-on-exec.
        if unsafe { libc::dup2(copy, FIRST_PRESERVED + offset as RawFd) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The most lock files handed to one container: far more GPUs than a machine has.
const MAX_PRESERVED: usize = 256;

/// The first descriptor `podman run --preserve-fds` passes on.
const FIRST_PRESERVED: RawFd = 3;

/// Owns the attached `podman run` and decides how the job ended.
struct Supervisor {
    child: Child,
    podman: PathBuf,
    name: String,
    grace: Duration,
    readers: Vec<tokio::task::JoinHandle<()>>,
    log: Arc<JobLog>,
    /// The job's GPUs, let go once the container is gone.
    lease: Option<crate::gpus::Lease>,
}

impl Supervisor {
    async fn run(mut self, timeout: Option<Duration>, mut link: SupervisorLink) {
        let (exit, ended_by) = match wait_for_ending(&mut self.child, timeout, &mut link.cancel, self.grace).await {
            Ending::Exited(exit) => (exit, None),
            Ending::TimedOut => (self.stop(self.grace).await, Some(JobState::TimedOut)),
            Ending::Cancelled(grace) => (self.stop(grace).await, Some(JobState::Cancelled)),
        };
        // `--rm` removes it on exit; make sure, whatever happened.
        let _ = run_quietly(&self.podman, &["rm", "--force", "--ignore", &self.name]).await;
        drop(self.lease.take());
        process_job::drain(std::mem::take(&mut self.readers)).await;
        link.status.send_replace(self.verdict(exit, ended_by, timeout));
    }

    /// `podman stop --time GRACE`, then wait for the attached run to end.
    async fn stop(&mut self, grace: Duration) -> std::io::Result<ExitStatus> {
        let seconds = grace.as_secs().max(1).to_string();
        // `podman stop` itself waits up to the grace period.
        let args = ["stop", "--ignore", "--time", &seconds, &self.name];
        let stop = run_to_end(&self.podman, &args);
        match tokio::time::timeout(grace + HOUSEKEEPING_TIMEOUT, stop).await {
            Ok(Ok(())) => {}
            Ok(Err(why)) => tracing::warn!("podman stop {}: {why}", self.name),
            Err(_) => tracing::warn!("podman stop {} did not return; killing the attached run", self.name),
        }
        match tokio::time::timeout(grace + Duration::from_secs(10), self.child.wait()).await {
            Ok(exit) => exit,
            Err(_) => {
                let _ = self.child.start_kill();
                self.child.wait().await
            }
        }
    }

    fn verdict(
        &self,
        exit: std::io::Result<ExitStatus>,
        ended_by: Option<JobState>,
        timeout: Option<Duration>,
    ) -> JobStatus {
        let mut status = process_job::verdict(exit, ended_by, timeout);
        if ended_by.is_none()
            && let Some(code @ 125..=127) = status.exit_code
        {
            let said = self.log.tail(2048);
            let last = said.lines().rev().find(|line| !line.trim().is_empty()).unwrap_or("").trim().to_owned();
            let what = match code {
                125 => "podman could not run the container",
                126 => "the command in the image cannot be executed",
                _ => "the command was not found in the image",
            };
            status.message = Some(format!("{what} (exit {code}): {last}"));
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::JobResources;

    struct Discard;
    impl super::super::OutputSink for Discard {
        fn write(&self, _: super::super::Stream, _: &[u8]) {}
    }

    fn request() -> JobRequest {
        let log = JobLog::create(
            &std::env::temp_dir().join(format!("stepbox-container-test-{}.log", std::process::id())),
            1 << 20,
            Arc::new(Discard),
        )
        .expect("a job log");
        JobRequest {
            id: "j1".into(),
            run_id: "r1".into(),
            name: "step".into(),
            command: vec!["python".into(), "-m".into(), "step".into()],
            env: vec![("TOKEN".into(), "secret-value".into())],
            working_dir: None,
            resources: JobResources {
                cpu_count: Some(2.0),
                gpu_count: Some(1),
                gpu_class: None,
                memory_bytes: Some(1 << 30),
            },
            timeout: None,
            runtime: JobRuntime::Image("localhost:5000/steps@sha256:abc".into()),
            confinement: Some(super::super::Confinement {
                network: false,
                writable: Vec::new(),
                readable: Vec::new(),
                hidden: Vec::new(),
            }),
            network: false,
            log: Arc::new(log),
            options: Default::default(),
            closing: None,
            registry_login: None,
        }
    }

    #[test]
    fn a_refused_pull_names_the_grant_to_add_and_never_the_password() {
        let image = "registry.example.com:5000/team/trainer:1";
        let unauthorized = "Error: reading manifest 1: unauthorized: authentication required";
        let told = pull_failure(image, None, unauthorized);
        assert!(told.contains("--grant registry-credential=registry.example.com:5000=basic:NAME"), "{told}");
        let login = Login {
            registry: "registry.example.com:5000".into(),
            username: "puller".into(),
            password: crate::secrets::SecretValue::new("hunter2-password".into()),
        };
        let echoed = format!("{unauthorized} (tried puller:hunter2-password)");
        let told = pull_failure(image, Some(&login), &echoed);
        assert!(told.contains("refused the login of the registry-credential grant"), "{told}");
        assert!(!told.contains("hunter2-password"), "{told}");
        let told = pull_failure(image, None, "Error: manifest unknown");
        assert_eq!(told, format!("podman cannot pull the image {image}: Error: manifest unknown"));
    }

    #[test]
    fn run_arguments_map_the_spec_and_never_carry_environment_values() {
        let args = run_args(&request(), "img", true, false, &["GPU-0001".to_owned()], 1);
        let joined = args.join(" ");
        for expected in ["--network none", "--cap-drop all", "--cpus 2", "--memory 1073741824", "--env TOKEN"] {
            assert!(joined.contains(expected), "{expected}: {joined}");
        }
        assert!(joined.contains("--device nvidia.com/gpu=GPU-0001"), "{joined}");
        assert!(!joined.contains("gpu=all"), "{joined}");
        assert!(joined.contains("--preserve-fds 1"), "the container holds its lease: {joined}");
        assert!(joined.ends_with("img python -m step"), "{joined}");
        assert!(!joined.contains("secret-value"), "values stay off the command line");
        let open = run_args(&request(), "img", false, true, &[], 0).join(" ");
        assert!(!open.contains("--network") && !open.contains("--cap-drop"), "{open}");
        assert!(!open.contains("--preserve-fds"), "no lease, nothing passed: {open}");
    }

    #[test]
    fn loopback_registries_are_recognised() {
        for (reference, expected) in [
            ("localhost:5000/steps@sha256:abc", true),
            ("127.0.0.1:5000/steps:1", true),
            ("registry.example/steps:1", false),
            ("localhost", false),
            ("python:3.11", false),
        ] {
            assert_eq!(on_loopback(reference), expected, "{reference}");
        }
    }
}
