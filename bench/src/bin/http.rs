//! Measures the host's cost per outgoing HTTP request (docs/PERFORMANCE.md §
//! Outgoing HTTP): a flavor's request through `wasi:http` and stepbox's
//! checked sender, with no credential, a bearer token and a SigV4
//! signature, against the same request made directly by a Rust client.
//! Run it with `scripts/bench-http`.
//!
//! Per-request cost through stepbox = (launch with N requests − launch with
//! none) / N, both medians of launches interleaved with each other and with
//! the direct client, so the machine's noise hits all of them alike.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;

/// Benchmark outgoing HTTP through stepbox against a direct client.
#[derive(Parser)]
struct Args {
    /// The stepbox binary to measure
    #[arg(long)]
    stepbox: PathBuf,
    /// The http-probe fixture component
    #[arg(long)]
    flavor: PathBuf,
    /// Launches of each kind
    #[arg(long, default_value_t = 20)]
    iterations: usize,
    /// Requests per launch
    #[arg(long, default_value_t = 50)]
    requests: u32,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let stepbox_bin = std::fs::canonicalize(&args.stepbox).with_context(|| format!("{}", args.stepbox.display()))?;
    let flavor = std::fs::canonicalize(&args.flavor).with_context(|| format!("{}", args.flavor.display()))?;
    let server = tiny_http::Server::http("127.0.0.1:0").map_err(|e| anyhow::anyhow!("{e}"))?;
    let port = server.server_addr().to_ip().context("an IP address")?.port();
    std::thread::spawn(move || {
        for request in server.incoming_requests() {
            let _ = request.respond(tiny_http::Response::from_string("hello"));
        }
    });
    let origin = format!("http://127.0.0.1:{port}");
    let home = tempfile::tempdir()?;
    let work = tempfile::tempdir()?;
    let stepbox = |cli: &[&str], stdin: Option<&str>| -> anyhow::Result<()> {
        let mut child = Command::new(&stepbox_bin)
            .args(cli)
            .env("STEPBOX_HOME", home.path())
            .current_dir(work.path())
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            std::io::Write::write_all(&mut pipe, text.as_bytes())?;
        }
        let status = child.wait()?;
        if !status.success() {
            bail!("stepbox {} failed: {status}", cli.join(" "));
        }
        Ok(())
    };

    stepbox(&["flavor", "register", flavor.to_str().context("UTF-8 path")?], None)?;
    stepbox(&["secret", "set", "token"], Some("bench-token"))?;
    stepbox(&["secret", "set", "aws"], Some(r#"{"access_key_id":"AKIDBENCH","secret_access_key":"bench-secret"}"#))?;
    for (operator, credential) in [("plain", None), ("bearer", Some("bearer:token")), ("sigv4", Some("aws-sigv4:aws"))]
    {
        let origin_grant = format!("http-origin={origin}");
        let mut cli = vec!["step-operator", "register", operator, "--flavor", "http-probe", "--grant", "http"];
        cli.extend(["--grant", &origin_grant]);
        let credential_grant = credential.map(|c| format!("http-credential={origin}={c}"));
        if let Some(grant) = &credential_grant {
            cli.extend(["--grant", grant]);
        }
        stepbox(&cli, None)?;
    }
    let settings = |requests: u32| {
        let probe = serde_json::json!({
            "method": "GET", "url": format!("{origin}/x"), "repeat": requests,
            "headers": { "x-stepbox-aws-scope": "us-east-1/sagemaker" },
        });
        serde_json::json!({ "requests": if requests == 0 { vec![] } else { vec![probe] } }).to_string()
    };
    let (none, some) = (settings(0), settings(args.requests));
    let launch = |operator: &'static str, settings: &str| -> anyhow::Result<()> {
        stepbox(
            &[
                "launch",
                "-s",
                operator,
                "--pipeline",
                "p",
                "--run",
                "r",
                "--step",
                "s",
                "--settings",
                settings,
                "--",
                "true",
            ],
            None,
        )
    };

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let url = format!("{origin}/x");
    // A new connection per request, as the host makes them (the client, and
    // its TLS set-up, once: the host builds its TLS config once too).
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build()?;
    let direct = || -> anyhow::Result<()> {
        runtime.block_on(async {
            for _ in 0..args.requests {
                client.get(&url).send().await?.bytes().await?;
            }
            Ok::<_, anyhow::Error>(())
        })
    };

    println!("{} launches of each kind, {} requests per launch, loopback server\n", args.iterations, args.requests);
    let mut runs: Vec<(&str, Measured)> = vec![
        ("launch, no request", Box::new(|| launch("plain", &none))),
        ("launch, N requests, no credential", Box::new(|| launch("plain", &some))),
        ("launch, N requests, bearer", Box::new(|| launch("bearer", &some))),
        ("launch, N requests, SigV4", Box::new(|| launch("sigv4", &some))),
        ("N requests, direct (reqwest)", Box::new(direct)),
    ];
    let mut times = vec![Vec::new(); runs.len()];
    for _ in 0..args.iterations {
        for (i, (_, run)) in runs.iter_mut().enumerate() {
            let start = Instant::now();
            run()?;
            times[i].push(start.elapsed());
        }
    }
    let medians: Vec<Duration> = times.iter().map(|t| median(t)).collect();
    for ((label, _), m) in runs.iter().zip(&medians) {
        println!("{label:<36} median {:>9.2} ms", m.as_secs_f64() * 1e3);
    }
    let n = f64::from(args.requests);
    let direct_each = medians[4].as_secs_f64() / n;
    println!("\nper request:");
    println!("  direct                               {:>7.0} µs", direct_each * 1e6);
    for (label, i) in
        [("through stepbox, no credential", 1), ("through stepbox, bearer", 2), ("through stepbox, SigV4", 3)]
    {
        let each = medians[i].saturating_sub(medians[0]).as_secs_f64() / n;
        println!("  {label:<36} {:>7.0} µs ({:.1}× direct)", each * 1e6, each / direct_each);
    }
    Ok(())
}

/// One thing measured: a launch, or the direct client's requests.
type Measured<'a> = Box<dyn FnMut() -> anyhow::Result<()> + 'a>;

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}
