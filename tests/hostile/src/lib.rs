//! A flavor that misbehaves on purpose, for the tests that prove the sandbox
//! holds. Its configuration's `behavior` picks the misbehavior; built with the
//! feature `huge-metadata` or `escape-metadata` (the fixtures of those names),
//! its metadata misbehaves instead.

use serde::Deserialize;
use stepbox_guest::schemars::{self, JsonSchema};
use stepbox_guest::{
    EnvVar, Flavor, FlavorInfo, JobState, LaunchError, LaunchReport, LaunchRequest, NoSettings, Runtime, jobs,
};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
enum Behavior {
    /// Submit a command other than the entrypoint.
    OtherCommand,
    /// Submit the entrypoint, then return without waiting for it.
    ReturnEarly,
    /// Loop forever in `launch`.
    Spin,
    /// Allocate 4 GiB, 64 MiB at a time.
    Allocate,
    /// Look for ambient authority: environment, files, sockets. Reports what
    /// it found as the launch's failure message.
    Probe,
    /// Write a line to stdout and one to stderr, then run the entrypoint.
    Chatter,
    /// Submit the entrypoint, then write 12 MB to stdout.
    FloodOutput,
    /// Submit the entrypoint 10 000 times without waiting.
    SubmitMany,
    /// Recurse until the stack runs out.
    Recurse,
    /// Submit the entrypoint, then pass a 100 MB string to `log`.
    HugeLog,
    /// Submit the entrypoint, then call `log` a million times.
    FloodLog,
    /// Submit a job whose environment holds 2 MB.
    HugeSpec,
    /// Submit the entrypoint with `LD_PRELOAD` set.
    InjectEnv,
    /// Submit the entrypoint, then crash.
    TrapAfterSubmit,
    /// Panic with a 10 MB message.
    HugePanic,
    /// Run the entrypoint and wait for it, like an honest flavor.
    RunEntrypoint,
    /// Run the entrypoint with `value` as its working directory.
    WorkingDir,
    /// Run the entrypoint with the variable `value` (`NAME=VALUE`) set.
    SetEnv,
    /// Run the entrypoint with the secret-env option `value` (`NAME=SECRET`).
    SecretEnv,
    /// Log terminal escapes and a fake stepbox line, then fail with more.
    EscapeLog,
    /// Run the entrypoint asking for one GPU of the class `value`.
    GpuClass,
    /// Run the entrypoint asking for NaN CPUs.
    NanCpu,
    /// Run the entrypoint, then report success whatever it did.
    LieSuccess,
    /// Run the entrypoint, then report success naming no job at all.
    LieSuccessUnnamed,
    /// Run the entrypoint, then report a failure whose message is full of escapes.
    EscapeReport,
    /// Install the step's requirements and fail with the interpreter path the host gave.
    ReportPython,
    /// Install a package the step did not ask for (`value`).
    ExtraPackage,
    /// Run the entrypoint in the image `value`, which nobody built or passed.
    ForeignImage,
    /// Build an image on the base `value` with an entrypoint of the flavor's.
    ImageEntrypoint,
    /// Build an image on the base `value` setting `LD_PRELOAD` in it.
    ImageEnv,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    behavior: Behavior,
    /// The behavior's parameter (a path, a variable, a class).
    #[serde(default)]
    value: String,
}

struct Hostile;

impl Flavor for Hostile {
    type Config = Config;
    type Settings = NoSettings;

    fn info() -> FlavorInfo {
        if cfg!(feature = "huge-metadata") {
            // 2 MiB of description: more than any metadata text may hold.
            return FlavorInfo::new("hostile", "Hostile test flavor", env!("CARGO_PKG_VERSION"))
                .description(&"a very long description ".repeat(90_000));
        }
        if cfg!(feature = "escape-metadata") {
            // A clipboard write, a screen clear, and a line that looks like stepbox's own.
            return FlavorInfo::new(
                "hostile",
                "\u{1b}]52;c;cGF5bG9hZA==\u{7}Trusted\u{1b}[2J",
                env!("CARGO_PKG_VERSION"),
            )
            .description("fine\nstepbox: this flavor was verified\r\u{1b}[32mOK\u{202e}")
            .docs_url("https://example.invalid/\u{1b}[8mhidden");
        }
        FlavorInfo::new("hostile", "Hostile test flavor", env!("CARGO_PKG_VERSION"))
            .description("Misbehaves on purpose; for stepbox's own tests.")
    }

    fn launch(config: Config, _: NoSettings, request: LaunchRequest) -> Result<LaunchReport, LaunchError> {
        match config.behavior {
            Behavior::OtherCommand => {
                let mut spec = jobs::entrypoint_spec(&request);
                spec.command = vec!["sh".into(), "-c".into(), "echo escaped".into()];
                // The `?` turns the host's `denied` into this launch's `denied`.
                jobs::run_to_completion(spec)
            }
            Behavior::Spin => {
                let mut counter: u64 = 0;
                loop {
                    counter = std::hint::black_box(counter.wrapping_add(1));
                }
            }
            Behavior::Allocate => {
                let mut blocks = Vec::new();
                for _ in 0..64 {
                    blocks.push(std::hint::black_box(vec![7u8; 64 << 20]));
                }
                Err(LaunchError::Failed(format!("allocated {} blocks of 64 MiB", blocks.len())))
            }
            Behavior::Probe => Err(LaunchError::Failed(probe())),
            Behavior::Chatter => {
                println!("hello from guest stdout");
                eprintln!("hello from guest stderr");
                jobs::run_entrypoint(&request)
            }
            Behavior::FloodOutput => while_the_job_runs(&request, || {
                for i in 0..100_000 {
                    println!("chatter line {i} {}", "x".repeat(100));
                }
            }),
            Behavior::SubmitMany => {
                let spec = jobs::entrypoint_spec(&request);
                let mut submitted = Vec::new();
                for _ in 0..10_000 {
                    submitted.push(jobs::submit(&spec)?);
                }
                Err(LaunchError::Failed(format!("submitted {} jobs", submitted.len())))
            }
            Behavior::Recurse => Err(LaunchError::Failed(format!("depth {}", recurse(0)))),
            Behavior::HugeLog => while_the_job_runs(&request, || stepbox_guest::log::info(&"x".repeat(100_000_000))),
            Behavior::FloodLog => while_the_job_runs(&request, || {
                for i in 0..1_000_000 {
                    stepbox_guest::log::info(&format!("flood {i}"));
                }
            }),
            Behavior::HugeSpec => {
                let mut spec = jobs::entrypoint_spec(&request);
                spec.env.push(EnvVar { name: "BLOB".into(), value: "x".repeat(2 << 20) });
                jobs::run_to_completion(spec)
            }
            Behavior::InjectEnv => {
                let mut spec = jobs::entrypoint_spec(&request);
                spec.env.push(EnvVar { name: "LD_PRELOAD".into(), value: "/tmp/evil.so".into() });
                jobs::run_to_completion(spec)
            }
            Behavior::TrapAfterSubmit => {
                let job = jobs::submit(&jobs::entrypoint_spec(&request))?;
                panic!("crashing on purpose after submitting job {}", job.id());
            }
            Behavior::HugePanic => panic!("{}", "boom ".repeat(2_000_000)),
            Behavior::RunEntrypoint => jobs::run_entrypoint(&request),
            Behavior::WorkingDir => {
                let mut spec = jobs::entrypoint_spec(&request);
                spec.working_dir = Some(config.value);
                jobs::run_to_completion(spec)
            }
            Behavior::SetEnv => {
                let mut spec = jobs::entrypoint_spec(&request);
                let (name, value) = config.value.split_once('=').unwrap_or((&config.value, ""));
                spec.env.retain(|var| var.name != name);
                spec.env.push(EnvVar { name: name.into(), value: value.into() });
                jobs::run_to_completion(spec)
            }
            Behavior::SecretEnv => {
                let mut spec = jobs::entrypoint_spec(&request);
                let (name, secret) = config.value.split_once('=').unwrap_or((&config.value, ""));
                jobs::add_secret_env(&mut spec, name, secret);
                jobs::run_to_completion(spec)
            }
            Behavior::EscapeLog => {
                stepbox_guest::log::info("\u{1b}]52;c;ZWNobyBwd25lZA==\u{7}\u{1b}[2J");
                stepbox_guest::log::info("progress\rstepbox: run succeeded\nstepbox: all clear");
                Err(LaunchError::Failed("\u{1b}[31mred\u{1b}[0m\nstepbox: run abc succeeded".into()))
            }
            Behavior::GpuClass => {
                let mut spec = jobs::entrypoint_spec(&request);
                spec.resources.gpu_count = Some(1);
                spec.resources.gpu_class = Some(config.value);
                jobs::run_to_completion(spec)
            }
            Behavior::NanCpu => {
                let mut spec = jobs::entrypoint_spec(&request);
                spec.resources.cpu_count = Some(f64::NAN);
                jobs::run_to_completion(spec)
            }
            Behavior::LieSuccess => run_then_report(&request, true, JobState::Succeeded, None),
            Behavior::LieSuccessUnnamed => run_then_report(&request, false, JobState::Succeeded, None),
            Behavior::EscapeReport => run_then_report(
                &request,
                true,
                JobState::Failed,
                Some("\u{1b}]0;owned\u{7}bad\r\nstepbox: run 1234 succeeded\u{1b}[1A"),
            ),
            Behavior::ReportPython => {
                let environment = stepbox_guest::requirements::install(&request.requirements, None)?;
                Err(LaunchError::Failed(format!("the host says python={}", environment.python)))
            }
            Behavior::ExtraPackage => {
                let mut wanted = request.requirements.clone();
                wanted.push(config.value);
                let environment = stepbox_guest::requirements::install(&wanted, None)?;
                let mut spec = jobs::entrypoint_spec(&request);
                stepbox_guest::requirements::run_in(&mut spec, &environment);
                jobs::run_to_completion(spec)
            }
            Behavior::ForeignImage => {
                let mut spec = jobs::entrypoint_spec(&request);
                spec.runtime = Runtime::Image(config.value);
                jobs::run_to_completion(spec)
            }
            Behavior::ImageEntrypoint => {
                let mut image = stepbox_guest::images::on(&config.value);
                image.entrypoint = vec!["sh".into(), "-c".into(), "echo pwned; exec \"$@\"".into(), "--".into()];
                let built = stepbox_guest::images::build(&image)?;
                Err(LaunchError::Failed(format!("built {}", built.reference)))
            }
            Behavior::ImageEnv => {
                let mut image = stepbox_guest::images::on(&config.value);
                image.env.push(EnvVar { name: "LD_PRELOAD".into(), value: "/tmp/evil.so".into() });
                let built = stepbox_guest::images::build(&image)?;
                Err(LaunchError::Failed(format!("built {}", built.reference)))
            }
            Behavior::ReturnEarly => {
                let job = jobs::submit(&jobs::entrypoint_spec(&request))?;
                let status = job.status()?;
                Ok(jobs::report(vec![job.id()], status))
            }
        }
    }
}

/// Run the entrypoint to its end, then report `state` whatever happened,
/// naming the job or not, with `message`.
fn run_then_report(
    request: &LaunchRequest,
    name_the_job: bool,
    state: JobState,
    message: Option<&str>,
) -> Result<LaunchReport, LaunchError> {
    let job = jobs::submit(&jobs::entrypoint_spec(request))?;
    job.wait()?;
    let job_ids = if name_the_job { vec![job.id()] } else { Vec::new() };
    let exit_code = Some(if state == JobState::Succeeded { 0 } else { 1 });
    Ok(LaunchReport { job_ids, state, exit_code, message: message.map(str::to_owned) })
}

/// Submit the entrypoint, misbehave with `during`, then wait for the job.
fn while_the_job_runs(request: &LaunchRequest, during: impl FnOnce()) -> Result<LaunchReport, LaunchError> {
    let job = jobs::submit(&jobs::entrypoint_spec(request))?;
    during();
    let status = job.wait()?;
    Ok(jobs::report(vec![job.id()], status))
}

/// Recurse without end (the arithmetic keeps the frames from being optimised away).
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 64]);
    recurse(depth + 1) + frame[7]
}

/// What a flavor can reach without being granted anything.
fn probe() -> String {
    let env: Vec<String> = std::env::vars().map(|(name, _)| name).collect();
    let args: Vec<String> = std::env::args().collect();
    let file = match std::fs::read_to_string("/etc/passwd") {
        Ok(text) => format!("read {} bytes", text.len()),
        Err(error) => format!("refused ({error})"),
    };
    let cwd = match std::env::current_dir() {
        Ok(dir) => format!("{}", dir.display()),
        Err(error) => format!("none ({error})"),
    };
    let socket = match std::net::TcpStream::connect("127.0.0.1:22") {
        Ok(_) => "connected".to_owned(),
        Err(error) => format!("refused ({error})"),
    };
    let lookup = match std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 80)) {
        Ok(addresses) => format!("resolved {}", addresses.count()),
        Err(error) => format!("refused ({error})"),
    };
    format!("env={env:?} args={args:?} file={file} cwd={cwd} socket={socket} dns={lookup}")
}

stepbox_guest::export_flavor!(Hostile);
