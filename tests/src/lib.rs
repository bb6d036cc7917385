//! The harness for stepbox's end-to-end tests.
//!
//! Tests drive the real `stepbox` binary, as a user would, against real
//! components built from source in this workspace. Both are built on first use
//! with the same cargo that runs the tests; cargo's own lock keeps concurrent
//! test processes from building twice.

pub mod fake_http;
pub mod fake_tokens;
pub mod login_registry;
pub mod moto;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_owned).unwrap_or_else(|| PathBuf::from(".."))
}

/// Where cargo puts build output.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| if dir.is_absolute() { dir } else { workspace().join(dir) })
        .unwrap_or_else(|| workspace().join("target"))
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace());
    command
}

/// Run a cargo build, panicking with its output (and a hint) on failure.
fn cargo_build(args: &[&str]) {
    static BUILD_LOCK: Mutex<()> = Mutex::new(());
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let output =
        cargo().arg("build").args(args).stdin(Stdio::null()).output().expect("cargo must be runnable from the tests");
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains("wasm32-wasip2") && stderr.contains("target may not be installed") {
            "\nhint: run `rustup target add wasm32-wasip2` (scripts/test does it for you)"
        } else {
            ""
        };
        panic!("cargo build {} failed:\n{stderr}{hint}", args.join(" "));
    }
}

/// The `stepbox` binary, built once.
pub fn stepbox_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        cargo_build(&["-p", "stepbox", "--bin", "stepbox"]);
        target_dir().join("debug").join("stepbox")
    })
}

/// The builtin flavors as `scripts/builtin-flavors DIR` lays them out (the
/// official flavors and their index), built once per test process.
pub fn builtin_flavors() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        static BUILD_LOCK: Mutex<()> = Mutex::new(());
        let _guard = BUILD_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let dir = target_dir().join("test-builtin-flavors");
        let output = Command::new(workspace().join("scripts/builtin-flavors"))
            .arg(&dir)
            .current_dir(workspace())
            .stdin(Stdio::null())
            .output()
            .expect("scripts/builtin-flavors runs");
        assert!(
            output.status.success(),
            "scripts/builtin-flavors failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        dir
    })
}

/// A component built from a workspace package for wasm32-wasip2.
pub fn component(package: &str, artifact: &str) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let path = target_dir().join("wasm32-wasip2/guest").join(format!("{artifact}.wasm"));
    let mut built = BUILT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !built.iter().any(|p| p == package) {
        cargo_build(&["-p", package, "--target", "wasm32-wasip2", "--profile", "guest"]);
        built.push(package.to_owned());
    }
    path
}

/// The Rust container example flavor.
pub fn container_flavor() -> PathBuf {
    component("stepbox-flavor-container", "stepbox_flavor_container")
}

/// Where `scripts/services` keeps its state and configuration.
pub(crate) fn services_dir() -> PathBuf {
    std::env::var_os("STEPBOX_SERVICES_DIR").map_or_else(|| PathBuf::from("/var/tmp/stepbox-services"), PathBuf::from)
}

/// Environment every stepbox under test gets: podman's configuration for
/// this machine, as `scripts/services` wrote it.
fn services_env() -> Vec<(&'static str, PathBuf)> {
    let conf = services_dir().join("containers.conf");
    if std::env::var_os("CONTAINERS_CONF").is_none() && conf.is_file() {
        vec![("CONTAINERS_CONF", conf)]
    } else {
        Vec::new()
    }
}

/// The test registry (`host:port`), after checking that it answers; a test
/// that needs it fails, with the way out, when it does not.
pub fn registry() -> String {
    let address = std::env::var("STEPBOX_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".to_owned());
    let answered = Command::new("curl")
        .args(["-sf", "-o", "/dev/null", "--max-time", "5", &format!("http://{address}/v2/")])
        .status()
        .is_ok_and(|status| status.success());
    assert!(answered, "the OCI registry at {address} does not answer: start the test services with scripts/services");
    address
}

/// podman's command for the tests, with this machine's configuration.
pub fn podman(args: &[&str]) -> Output {
    Command::new("podman").args(args).envs(services_env()).output().expect("podman runs (scripts/services installs it)")
}

/// The Rust Slurm example flavor.
pub fn slurm_flavor() -> PathBuf {
    component("stepbox-flavor-slurm", "stepbox_flavor_slurm")
}

/// The SageMaker example flavor.
pub fn sagemaker_flavor() -> PathBuf {
    component("stepbox-flavor-sagemaker", "stepbox_flavor_sagemaker")
}

/// The Vertex AI example flavor.
pub fn vertex_flavor() -> PathBuf {
    component("stepbox-flavor-vertex", "stepbox_flavor_vertex")
}

/// The Azure ML example flavor.
pub fn azureml_flavor() -> PathBuf {
    component("stepbox-flavor-azureml", "stepbox_flavor_azureml")
}

/// The Rust Ray example flavor.
pub fn ray_flavor() -> PathBuf {
    component("stepbox-flavor-ray", "stepbox_flavor_ray")
}

/// Check that the test Slurm cluster answers; a test that needs it fails,
/// with the way out, when it does not.
pub fn slurm() {
    let answered = Command::new("sinfo").args(["-h", "-o", "%T"]).output().is_ok_and(|output| {
        output.status.success() && String::from_utf8_lossy(&output.stdout).lines().any(|state| state != "down")
    });
    assert!(answered, "the test Slurm cluster does not answer `sinfo`: start the test services with scripts/services");
}

/// One line of `scontrol show job -o ID`, as `Key=Value` fields.
pub fn slurm_job(id: &str) -> std::collections::BTreeMap<String, String> {
    let output = Command::new("scontrol").args(["show", "job", "-o", id]).output().expect("scontrol runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.split_whitespace()
        .filter_map(|field| field.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

/// The test Ray cluster's Jobs API address.
pub const RAY_ADDRESS: &str = "http://127.0.0.1:8265";

/// The test Ray cluster's token, after checking that the cluster answers
/// with it; a test that needs Ray fails, with the way out, when it does not.
pub fn ray_token() -> String {
    let token = std::fs::read_to_string(services_dir().join("ray-token")).unwrap_or_default().trim().to_owned();
    let answered = !token.is_empty() && ray_get("/api/jobs/", &token).is_some();
    assert!(
        answered,
        "the test Ray cluster at {RAY_ADDRESS} does not answer: start the test services with scripts/services"
    );
    token
}

/// GET `path` from the test Ray cluster with `token`: the JSON body, if it answered 2xx.
pub fn ray_get(path: &str, token: &str) -> Option<serde_json::Value> {
    let output = Command::new("curl")
        .args([
            "-sf",
            "--max-time",
            "10",
            "-H",
            &format!("Authorization: Bearer {token}"),
            &format!("{RAY_ADDRESS}{path}"),
        ])
        .output()
        .ok()?;
    output.status.success().then(|| serde_json::from_slice(&output.stdout).ok()).flatten()
}

/// An example flavor written in another language (`python` or `js`), built
/// by `scripts/build-flavors` (which installs the pinned toolchain and
/// rebuilds only when the sources change).
pub fn foreign_flavor(lang: &str) -> PathBuf {
    static BUILD_LOCK: Mutex<()> = Mutex::new(());
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let output = Command::new(workspace().join("scripts/build-flavors"))
        .arg(lang)
        .env("CARGO_TARGET_DIR", target_dir())
        .stdin(Stdio::null())
        .output()
        .expect("scripts/build-flavors runs");
    assert!(
        output.status.success(),
        "scripts/build-flavors {lang} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    target_dir().join("flavors").join(format!("{lang}_local.wasm"))
}

/// A precompiled-component cache shared by the tests' homes
/// (`STEPBOX_CACHE_DIR`), so an 18 MB component is compiled once per run.
pub fn shared_cache_dir() -> PathBuf {
    target_dir().join("test-component-cache")
}

/// The Rust local example flavor.
pub fn local_flavor() -> PathBuf {
    component("stepbox-flavor-local", "stepbox_flavor_local")
}

/// The flavor that misbehaves as configured.
pub fn hostile_flavor() -> PathBuf {
    component("stepbox-hostile", "stepbox_hostile")
}

/// A flavor whose `validate-config` never returns.
pub fn endless_validate_component() -> PathBuf {
    component("endless", "endless")
}

/// A flavor whose `metadata` never returns (the same source, built with its
/// `metadata` feature as a package of its own).
pub fn endless_metadata_component() -> PathBuf {
    component("endless-metadata", "endless_metadata")
}

/// The hostile flavor whose metadata is past the size bounds.
pub fn huge_metadata_component() -> PathBuf {
    component("huge-metadata", "huge_metadata")
}

/// The hostile flavor whose metadata is full of terminal escapes.
pub fn escape_metadata_component() -> PathBuf {
    component("escape-metadata", "escape_metadata")
}

/// A complete flavor that also imports `acme:vault/secrets`.
pub fn unknown_import_component() -> PathBuf {
    component("unknown-import", "unknown_import")
}

/// A flavor built against the released `stepbox:operator@0.2.0`.
pub fn released_contract_component() -> PathBuf {
    component("contract-0-2-0", "contract_0_2_0")
}

/// A flavor built against `stepbox:operator@0.3.0`.
pub fn future_contract_component() -> PathBuf {
    component("future-contract", "future_contract")
}

/// A WASI command component: a component, but not a flavor.
pub fn command_component() -> PathBuf {
    component("not-a-flavor", "not-a-flavor")
}

/// A finished `stepbox` invocation.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The result of a finished process.
    pub fn from_output(output: Output) -> Self {
        use std::os::unix::process::ExitStatusExt;
        let status = output.status;
        Self {
            code: status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Panic with the whole output unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code; stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    /// Panic unless the command failed with `code` and its stderr says `message`.
    #[track_caller]
    pub fn expect_error(&self, code: i32, message: &str) -> &Self {
        self.expect_code(code);
        assert!(self.stderr.contains(message), "stderr should contain {message:?}:\n{}", self.stderr);
        self
    }

    /// Parse stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// A `stepbox launch` running in the background, whose job output is read as
/// it streams.
pub struct RunningLaunch {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl RunningLaunch {
    /// The `stepbox` process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The job's next line of output, without its newline (waits for it).
    pub fn next_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("the job's output");
        line.trim_end().to_owned()
    }

    /// Send `signal` to `stepbox`.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).expect("signal stepbox");
    }

    /// Wait for `stepbox` to exit: its exit code, the rest of stdout, and stderr.
    pub fn finish(mut self) -> Run {
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).expect("the rest of the output");
        let output = self.child.wait_with_output().expect("stepbox exits");
        let mut run = Run::from_output(output);
        run.stdout = rest;
        run
    }
}

/// A private `$STEPBOX_HOME` and a scratch directory, removed afterwards.
pub struct TestHome {
    home: tempfile::TempDir,
    scratch: tempfile::TempDir,
    /// `STEPBOX_CACHE_DIR` for every command, when set.
    cache: Option<PathBuf>,
}

impl Default for TestHome {
    fn default() -> Self {
        Self::new()
    }
}

impl TestHome {
    pub fn new() -> Self {
        Self {
            home: tempfile::tempdir().expect("a temporary directory"),
            scratch: tempfile::tempdir().expect("a temporary directory"),
            cache: None,
        }
    }

    /// A home whose precompiled components live in [`shared_cache_dir`].
    pub fn sharing_cache() -> Self {
        Self { cache: Some(shared_cache_dir()), ..Self::new() }
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// A directory for the test's own files.
    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    /// A `stepbox` command with this home.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(stepbox_bin());
        command
            .args(args)
            .env("STEPBOX_HOME", self.home())
            .env_remove("STEPBOX_LOG")
            // A developer's shared GPU leases must not reach the tests' homes.
            .env_remove("STEPBOX_GPU_LEASE_DIR")
            .envs(services_env())
            .current_dir(self.scratch())
            .stdin(Stdio::null());
        match &self.cache {
            Some(cache) => command.env("STEPBOX_CACHE_DIR", cache),
            None => command.env_remove("STEPBOX_CACHE_DIR"),
        };
        command
    }

    /// Run `stepbox ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from_output(self.command(args).output().expect("stepbox must start"))
    }

    /// `stepbox secret set NAME` with `value` on stdin; the command's outcome.
    pub fn set_secret(&self, name: &str, value: &[u8]) -> Run {
        let mut child = self
            .command(&["secret", "set", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("stepbox starts");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), value).expect("write the value");
        Run::from_output(child.wait_with_output().expect("stepbox exits"))
    }

    /// Register the local flavor and a step operator `local` using it,
    /// granted `jobs` (which the flavor imports).
    pub fn with_local(&self) -> &Self {
        let flavor = local_flavor();
        self.run(&["flavor", "register", path_str(&flavor)]).expect_code(0);
        self.register_operator("local", "local", &["--grant", "jobs", "--grant", "requirements"]).expect_code(0);
        self
    }

    /// A `stepbox launch` of `command` through step operator `operator`, not
    /// yet started (to spawn it, or change its environment).
    pub fn launch_command(&self, operator: &str, step: &str, command: &[&str]) -> Command {
        self.launch_command_with(operator, step, &[], command)
    }

    /// [`TestHome::launch_command`] with extra launch flags (`--env`, …).
    pub fn launch_command_with(&self, operator: &str, step: &str, flags: &[&str], command: &[&str]) -> Command {
        let mut args = vec!["launch", "-s", operator, "--pipeline", "pipe", "--run", "run-1", "--step", step];
        args.extend_from_slice(flags);
        args.push("--");
        args.extend_from_slice(command);
        self.command(&args)
    }

    /// Start `stepbox launch` of `command` in the background.
    pub fn spawn_launch(&self, operator: &str, step: &str, command: &[&str]) -> RunningLaunch {
        self.spawn_launch_with(operator, step, &[], command)
    }

    /// [`TestHome::spawn_launch`] with extra launch flags.
    pub fn spawn_launch_with(&self, operator: &str, step: &str, flags: &[&str], command: &[&str]) -> RunningLaunch {
        let mut child = self
            .launch_command_with(operator, step, flags, command)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("stepbox starts");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        RunningLaunch { child, stdout }
    }

    /// `stepbox launch` of `command` through step operator `operator`, to completion.
    pub fn launch(&self, operator: &str, step: &str, command: &[&str]) -> Run {
        Run::from_output(self.launch_command(operator, step, command).output().expect("stepbox must start"))
    }

    /// [`TestHome::launch`] with extra launch flags (`--env`, `--settings`, …).
    pub fn launch_with(&self, operator: &str, step: &str, flags: &[&str], command: &[&str]) -> Run {
        Run::from_output(self.launch_command_with(operator, step, flags, command).output().expect("stepbox must start"))
    }

    /// `stepbox step-operator register NAME --flavor FLAVOR EXTRA...`.
    pub fn register_operator(&self, name: &str, flavor: &str, extra: &[&str]) -> Run {
        let mut args = vec!["step-operator", "register", name, "--flavor", flavor];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// The runs, newest first, as JSON.
    pub fn runs(&self) -> Vec<serde_json::Value> {
        let listed = self.run(&["runs", "list", "-n", "1000", "-o", "json"]);
        listed.expect_code(0);
        listed.json().as_array().cloned().unwrap_or_default()
    }

    /// One run and its jobs, as JSON.
    pub fn run_details(&self, id: &str) -> serde_json::Value {
        let shown = self.run(&["runs", "show", id, "-o", "json"]);
        shown.expect_code(0);
        shown.json()
    }
}

/// Every file under `root`, recursively, whose bytes contain `needle`: where
/// a value that must never be stored (a secret, a token) was stored.
pub fn files_containing(root: &Path, needle: &str) -> Vec<PathBuf> {
    fn files_under(dir: &Path, files: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() { files_under(&path, files) } else { files.push(path) }
        }
    }
    let mut files = Vec::new();
    files_under(root, &mut files);
    let needle = needle.as_bytes();
    files
        .into_iter()
        .filter(|file| std::fs::read(file).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle)))
        .collect()
}

/// A path as UTF-8 text (test paths always are).
pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// Wait until `check` holds, polling, for at most `limit`.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

/// The live (non-zombie) processes whose command line contains `marker`,
/// seen from the host, whatever namespace they run in. Tests give a job's
/// processes a unique marker argument (`sleep 300.4711`) to find them.
pub fn live_processes_with(marker: &str) -> Vec<i32> {
    let own = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()))
        .filter(|&pid| pid != own && process_alive(pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " ").contains(marker))
        })
        .collect()
}

/// A marker unique to this test process and call, for [`live_processes_with`].
pub fn unique_marker() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(1);
    format!("{}{:04}", std::process::id() % 100_000, NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Whether a process exists and is not a zombie.
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}
