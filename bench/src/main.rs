//! Measures what docs/PERFORMANCE.md reports. Run it with `scripts/bench`.
//!
//! The machines are shared and noisy, so every comparison is measured side by
//! side in one run, interleaved (A, B, A, B, …), and reported as medians and
//! ratios.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use stepbox::context::Stepbox;
use stepbox::host::FlavorLogger;
use stepbox::limits::Limits;

/// Benchmark stepbox against running commands directly.
#[derive(Parser)]
struct Args {
    /// The stepbox binary to measure
    #[arg(long)]
    stepbox: PathBuf,
    /// The flavor component to register
    #[arg(long)]
    flavor: PathBuf,
    /// Iterations of each measurement
    #[arg(long, default_value_t = 50)]
    iterations: usize,
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    // Commands run in a scratch directory: make the paths absolute first.
    args.stepbox = std::fs::canonicalize(&args.stepbox).with_context(|| format!("{}", args.stepbox.display()))?;
    args.flavor = std::fs::canonicalize(&args.flavor).with_context(|| format!("{}", args.flavor.display()))?;
    let home = tempfile::tempdir()?;
    let work = tempfile::tempdir()?;
    let stepbox = |cli: &[&str]| -> anyhow::Result<()> {
        let status = Command::new(&args.stepbox)
            .args(cli)
            .env("STEPBOX_HOME", home.path())
            .current_dir(work.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .with_context(|| format!("running {}", args.stepbox.display()))?;
        if !status.success() {
            bail!("stepbox {} failed: {status}", cli.join(" "));
        }
        Ok(())
    };
    let flavor = args.flavor.to_str().context("flavor path is not UTF-8")?;

    println!("machine: {} cores; {} iterations per measurement\n", num_cpus(), args.iterations);

    let register = time(|| stepbox(&["flavor", "register", flavor]))?;
    println!("flavor register (compile + cache), once: {}", ms(register));
    // The same flavor twice: jobs confined by bubblewrap (the default) and unconfined (`trusted`).
    const LOCAL_GRANTS: [&str; 4] = ["--grant", "jobs", "--grant", "requirements"];
    for (operator, extra) in [("confined", &[][..]), ("trusted", &["--grant", "trusted"][..])] {
        let mut register = vec!["step-operator", "register", operator, "--flavor", "local"];
        register.extend(LOCAL_GRANTS);
        register.extend(extra);
        stepbox(&register)?;
    }
    fn launch(operator: &str) -> [&str; 11] {
        ["launch", "-s", operator, "--pipeline", "p", "--run", "r", "--step", "s", "--", "true"]
    }
    let (confined, trusted) = (launch("confined"), launch("trusted"));
    let mut direct = || -> anyhow::Result<()> {
        let status = Command::new("true").current_dir(work.path()).status()?;
        if !status.success() {
            bail!("true failed");
        }
        Ok(())
    };
    let times =
        interleaved(args.iterations, &mut [&mut direct, &mut || stepbox(&trusted), &mut || stepbox(&confined)])?;
    let d = median(&times[0]);
    println!("\n`true` run directly                 median {}  p90 {}", ms(d), ms(p90(&times[0])));
    for (label, samples) in [("trusted (unconfined) job", &times[1]), ("confined job (bubblewrap)", &times[2])] {
        let l = median(samples);
        println!("`stepbox launch -- true`, {label:<26} median {}  p90 {}", ms(l), ms(p90(samples)));
        println!(
            "  launch overhead                   {} per step ({:.1}× the direct run)",
            ms(l.saturating_sub(d)),
            l.as_secs_f64() / d.as_secs_f64()
        );
    }

    let list = samples(args.iterations, || stepbox(&["flavor", "list"]))?;
    println!("`stepbox flavor list`               median {}  p90 {}", ms(median(&list)), ms(p90(&list)));

    in_process(home.path(), args.iterations)?;
    sandbox_alone(work.path(), args.iterations)?;
    Ok(())
}

/// The confinement alone, before and after issue 22: `true` under bubblewrap
/// with the earlier layout (the whole machine read-only, capabilities kept,
/// no filter) and with today's (system directories only, `--new-session`,
/// `--cap-drop ALL`, the seccomp programs through pipes, descriptors closed).
fn sandbox_alone(work: &Path, iterations: usize) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    use stepbox::backends::{Confinement, confine};
    let bwrap = confine::bwrap().map_err(|e| anyhow::anyhow!("{e}"))?;
    let dir = work.display().to_string();
    let earlier: Vec<&str> = vec![
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--tmpfs",
        "/tmp",
        "--bind",
        &dir,
        &dir,
        "--unshare-all",
        "--die-with-parent",
        "--chdir",
        &dir,
        "--",
        "true",
    ];
    let confinement = Confinement {
        network: false,
        writable: vec![work.to_owned()],
        readable: Vec::new(),
        hidden: vec![PathBuf::from("/var/lib/stepbox-bench-home")],
    };
    let first = Instant::now();
    confine::Sandbox::new(&confinement, work, &[], &confine::Devices::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let first = first.elapsed();
    let run = |command: &mut Command| -> anyhow::Result<()> {
        let status = command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status()?;
        if !status.success() {
            bail!("bwrap failed: {status}");
        }
        Ok(())
    };
    let mut direct = || run(Command::new("true").current_dir(work));
    let mut before = || run(Command::new(&bwrap).args(&earlier));
    let mut after = || -> anyhow::Result<()> {
        let sandbox = confine::Sandbox::new(&confinement, work, &[], &confine::Devices::default())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let keep = sandbox.descriptors();
        let mut command = Command::new(&bwrap);
        command.args(sandbox.args()).arg("true");
        // SAFETY: as in the local backend: system calls only, between fork and exec.
        unsafe {
            command.pre_exec(move || confine::close_inherited_descriptors(&keep));
        }
        run(&mut command)
    };
    let times = interleaved(iterations, &mut [&mut direct, &mut before, &mut after])?;
    let d = median(&times[0]);
    println!("\nthe sandbox alone (bubblewrap running `true`), interleaved:");
    println!("`true` run directly                 median {}  p90 {}", ms(d), ms(p90(&times[0])));
    for (label, samples) in [("earlier layout (before issue 22)", &times[1]), ("today's layout + filter", &times[2])] {
        let l = median(samples);
        println!("bwrap, {label:<33} median {}  p90 {}  (+{})", ms(l), ms(p90(samples)), ms(l.saturating_sub(d)));
    }
    let per_job = samples(iterations, || {
        confine::Sandbox::new(&confinement, work, &[], &confine::Devices::default())
            .map(drop)
            .map_err(|e| anyhow::anyhow!("{e}"))
    })?;
    println!(
        "seccomp filter: first build {} (once per process); per job (pipes + arguments) median {}",
        us(first),
        us(median(&per_job))
    );
    Ok(())
}

/// Component load from the cache and instantiation, inside one process.
fn in_process(home: &Path, iterations: usize) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let state = Stepbox::open_at(home)?;
    let record = state.db.flavor("local")?.context("flavor registered above")?;
    let blob = state.home.flavor_blob(&record.sha256);
    let cache = state.cache()?;
    // Side by side: today's load (read the sealed artifact, check its checksum, deserialize from
    // memory) and the earlier one (memory-map the unsealed artifact), interleaved.
    let sealed = std::fs::read_dir(state.home.cache_dir())?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .find(|path| {
            path.to_string_lossy().contains(&record.sha256) && path.to_string_lossy().ends_with(".sealed.cwasm")
        })
        .context("the registered flavor's sealed artifact")?;
    let sealed = std::fs::read(sealed)?;
    let unsealed = home.join("unsealed.cwasm");
    std::fs::write(&unsealed, stepbox::component::unseal(&sealed).map_err(anyhow::Error::msg)?)?;
    let engine = stepbox::engine::StepboxEngine::shared()?;
    let times = interleaved(
        iterations,
        &mut [&mut || cache.load(&blob, &record.sha256).map(drop).map_err(Into::into), &mut || {
            // SAFETY: the file holds an artifact this engine wrote a moment ago.
            unsafe { wasmtime::component::Component::deserialize_file(engine.engine(), &unsealed) }
                .map(drop)
                .map_err(|error| anyhow::anyhow!("{error:#}"))
        }],
    )?;
    println!(
        "\ncomponent load from cache: sealed, checked, read  median {}  p90 {}   ({} KB artifact)",
        us(median(&times[0])),
        us(p90(&times[0])),
        sealed.len() / 1024
    );
    println!(
        "component load, earlier: mmap, unchecked        median {}  p90 {}",
        us(median(&times[1])),
        us(p90(&times[1]))
    );

    // The seal's checksum over an artifact the size of a Python flavor's (36 MiB): today's
    // xxh3-128 (all of `unseal`) against the sha256 it replaced, interleaved.
    let python_sized = stepbox::component::seal((0..36u32 << 20).map(|i| (i % 251) as u8).collect());
    let times = interleaved(
        iterations,
        &mut [&mut || stepbox::component::unseal(&python_sized).map(drop).map_err(anyhow::Error::msg), &mut || {
            use sha2::Digest;
            std::hint::black_box(sha2::Sha256::digest(&python_sized));
            Ok(())
        }],
    )?;
    println!(
        "seal check of a 36 MiB artifact: xxh3-128 median {}   sha256 (before) median {}   ({:.1}x)",
        us(median(&times[0])),
        us(median(&times[1])),
        median(&times[1]).as_secs_f64() / median(&times[0]).as_secs_f64()
    );

    let prepared = stepbox::flavors::prepare(&state, &record)?;
    let limits = Limits::for_query();
    let instantiate = samples(iterations, || {
        let logger = Arc::new(FlavorLogger::new("local", None, &limits));
        runtime.block_on(prepared.instantiate_only(&limits, logger)).map_err(Into::into)
    })?;
    println!("instantiation (fresh store)         median {}  p90 {}", us(median(&instantiate)), us(p90(&instantiate)));

    let metadata = samples(iterations, || {
        let logger = Arc::new(FlavorLogger::new("local", None, &limits));
        runtime.block_on(prepared.metadata(logger)).map(drop).map_err(Into::into)
    })?;
    println!("instantiate + metadata() call       median {}  p90 {}", us(median(&metadata)), us(p90(&metadata)));
    Ok(())
}

fn time(f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    let start = Instant::now();
    f()?;
    Ok(start.elapsed())
}

fn samples(n: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Vec<Duration>> {
    f()?; // warm up
    (0..n).map(|_| time(&mut f)).collect()
}

/// Run each measurement in turn, `n` rounds (A, B, C, A, B, C, …), after one
/// warm-up round, so that all of them see the same machine noise.
fn interleaved(n: usize, runs: &mut [&mut dyn FnMut() -> anyhow::Result<()>]) -> anyhow::Result<Vec<Vec<Duration>>> {
    for run in runs.iter_mut() {
        run()?;
    }
    let mut times = vec![Vec::with_capacity(n); runs.len()];
    for _ in 0..n {
        for (run, samples) in runs.iter_mut().zip(times.iter_mut()) {
            samples.push(time(&mut **run)?);
        }
    }
    Ok(times)
}

fn sorted(samples: &[Duration]) -> Vec<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted
}

fn median(samples: &[Duration]) -> Duration {
    sorted(samples).get(samples.len() / 2).copied().unwrap_or_default()
}

fn p90(samples: &[Duration]) -> Duration {
    sorted(samples).get(samples.len() * 9 / 10).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:>8.2} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:>8.1} µs", d.as_secs_f64() * 1e6)
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}
