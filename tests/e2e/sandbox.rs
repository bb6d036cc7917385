//! The sandbox a flavor runs in, seen from outside: limits stop it with a
//! clear error, it reaches nothing it was not given, its output is captured
//! and capped, and the host survives all of it.

use std::fs;

use nix::sys::signal::Signal;
use stepbox_e2e::{Run, TestHome, files_containing, hostile_flavor, live_processes_with, path_str, unique_marker};

const BAD_INPUT: i32 = 64;
const FLAVOR_ERROR: i32 = 70;
const DENIED: i32 = 77;
const CANCELLED_SIGTERM: i32 = 143;

/// A home with the hostile flavor and a step operator per behavior.
fn hostile(t: &TestHome, behavior: &str, limits: &[&str]) {
    if t.run(&["flavor", "describe", "hostile"]).code != 0 {
        t.run(&["flavor", "register", path_str(&hostile_flavor())]).expect_code(0);
    }
    let config = format!("behavior={behavior}");
    let mut args = vec![
        "step-operator",
        "register",
        behavior,
        "--flavor",
        "hostile",
        "--grant",
        "jobs",
        "--grant",
        "requirements",
    ];
    args.extend(["--grant", "images", "--config", &config]);
    for limit in limits {
        args.extend_from_slice(&["--limit", limit]);
    }
    t.run(&args).expect_code(0);
}

#[test]
fn a_flavor_has_no_environment_files_arguments_or_network() {
    let t = TestHome::new();
    hostile(&t, "probe", &[]);
    let mut command = t.launch_command("probe", "s", &["true"]);
    command.env("AWS_SECRET_ACCESS_KEY", "from-the-host");
    let output = command.output().expect("stepbox runs");
    assert_eq!(output.status.code(), Some(FLAVOR_ERROR));
    let report = t.runs()[0]["message"].as_str().unwrap_or_default().to_owned();
    assert!(report.contains("env=[]"), "{report}");
    assert!(report.contains("args=[]"), "{report}");
    assert!(report.contains("file=refused"), "{report}");
    assert!(report.contains("socket=refused"), "{report}");
    assert!(report.contains("dns=refused"), "{report}");
    assert!(!report.contains("from-the-host"));
}

#[test]
fn guest_output_goes_to_the_flavor_log_and_never_to_stdout() {
    let t = TestHome::new();
    hostile(&t, "chatter", &[]);
    let run = t.launch("chatter", "s", &["echo", "the job still ran"]);
    run.expect_code(0);
    assert_eq!(run.stdout.trim(), "the job still ran", "guest prints never reach stdout");
    assert!(run.stderr.contains("[hostile] stdout: hello from guest stdout"), "{}", run.stderr);
    assert!(run.stderr.contains("[hostile] stderr: hello from guest stderr"));
    let id = t.runs()[0]["id"].as_str().expect("id").to_owned();
    let log = fs::read_to_string(t.home().join("runs").join(&id).join("flavor.log")).expect("flavor log");
    assert!(log.contains("hello from guest stdout"));
    assert!(log.contains("hello from guest stderr"));
}

#[test]
fn a_flavor_past_its_output_limits_is_stopped_with_a_bounded_log() {
    let t = TestHome::new();
    hostile(&t, "flood-output", &["guest-output=8KiB"]);
    let run = t.launch("flood-output", "s", &["true"]);
    run.expect_error(FLAVOR_ERROR, "--limit guest-output=VALUE");
    let id = t.runs()[0]["id"].as_str().expect("id").to_owned();
    let log = fs::read_to_string(t.home().join("runs").join(&id).join("flavor.log")).expect("flavor log");
    assert!(log.contains("chatter line 0 "), "what came before the limit is kept");
    assert!(log.len() < 32 << 10, "the flavor log is bounded by the limit: {} bytes", log.len());
    assert!(t.runs()[0]["message"].as_str().unwrap_or_default().contains("guest-output"));
}

#[test]
fn bad_limits_are_refused_with_the_list_of_limits() {
    let t = TestHome::new();
    let listed = t.run(&["limits"]);
    listed.expect_code(0);
    for expected in ["guest-memory", "256MiB", "guest-cpu", "30s", "wall-clock", "1day", "--limit NAME=VALUE"] {
        assert!(listed.stdout.contains(expected), "`stepbox limits` lacks {expected:?}:\n{}", listed.stdout);
    }
    t.run(&["flavor", "register", path_str(&hostile_flavor())]).expect_code(0);
    let unknown = t.register_operator("x", "hostile", &["--config", "behavior=spin", "--limit", "ram=1GiB"]);
    unknown.expect_error(BAD_INPUT, "unknown limit `ram`");
    assert!(unknown.stderr.contains("guest-memory"), "the error lists the limits");
    let bad = t.register_operator("x", "hostile", &["--config", "behavior=spin", "--limit", "guest-cpu=forever"]);
    bad.expect_error(BAD_INPUT, "is not a duration");

    t.register_operator("x", "hostile", &["--config", "behavior=spin", "--limit", "guest-cpu=1s"]).expect_code(0);
    t.run(&["step-operator", "update", "x", "--limit", "guest-cpu=2s"]).expect_code(0);
    let described = t.run(&["step-operator", "describe", "x", "-o", "json"]).json();
    assert_eq!(described["limits"]["guest-cpu"], "2s");
    t.run(&["step-operator", "update", "x", "--unset-limit", "guest-cpu"]).expect_code(0);
    let described = t.run(&["step-operator", "describe", "x", "-o", "json"]).json();
    assert_eq!(described["limits"], serde_json::json!({}));
}

#[test]
fn sigterm_cancels_the_launch_and_a_job_ignoring_sigterm_is_killed_after_the_grace_period() {
    let t = TestHome::new();
    t.run(&["flavor", "register", path_str(&stepbox_e2e::local_flavor())]).expect_code(0);
    t.register_operator(
        "local",
        "local",
        &["--grant", "jobs", "--grant", "requirements", "--limit", "cancel-grace=1s"],
    )
    .expect_code(0);
    let marker = unique_marker();
    let script = format!("trap '' TERM; echo ready; while true; do sleep 0.{marker}; done");
    let mut launch = t.spawn_launch("local", "stubborn", &["sh", "-c", &script]);
    assert_eq!(launch.next_line(), "ready");
    launch.signal(Signal::SIGTERM);
    let finished = launch.finish();
    finished.expect_code(CANCELLED_SIGTERM);
    // The flavor waited on the job the whole grace period: that is the job's doing, not the flavor's.
    assert!(!finished.stderr.contains("the flavor did not return"), "{}", finished.stderr);
    assert_eq!(live_processes_with(&format!("0.{marker}")), Vec::<i32>::new(), "the job was killed");
    assert_eq!(live_processes_with(&marker), Vec::<i32>::new(), "the job that ignored SIGTERM was killed");
    let details = t.run_details(t.runs()[0]["id"].as_str().expect("id"));
    assert_eq!(details["run"]["state"], "cancelled");
    assert_eq!(details["jobs"][0]["state"], "cancelled");
    assert_eq!(details["jobs"][0]["exit_code"], 128 + 9, "it took SIGKILL");
}

#[test]
fn a_ctrl_c_that_lands_before_the_launch_handles_signals_still_cancels_it() {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let t = TestHome::new();
    t.with_local();
    let marker = unique_marker();
    let mut command = t.launch_command("local", "s", &["sh", "-c", &format!("sleep 300 # {marker}")]);
    // Paused before its handlers exist, and started as a script's background job is: SIGINT ignored.
    command.env("STEPBOX_TEST_PAUSE_AT", "signals-held:1").stdout(std::process::Stdio::null());
    command.stderr(std::process::Stdio::piped());
    // SAFETY: only signal(2), async-signal-safe, between fork and exec.
    unsafe {
        command.pre_exec(|| {
            nix::sys::signal::signal(Signal::SIGINT, nix::sys::signal::SigHandler::SigIgn)
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = command.spawn().expect("stepbox starts");
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("piped stderr"));
    let mut line = String::new();
    stderr.read_line(&mut line).expect("stderr");
    assert!(line.contains("paused at signals-held"), "{line}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), Signal::SIGINT).expect("Ctrl-C");
    let ended = stepbox_e2e::wait_until(std::time::Duration::from_secs(30), || matches!(child.try_wait(), Ok(Some(_))));
    if !ended {
        let _ = child.kill();
    }
    let status = child.wait().expect("reaped");
    assert_eq!(status.code(), Some(130), "the Ctrl-C cancelled the launch");
    assert!(
        stepbox_e2e::wait_until(std::time::Duration::from_secs(5), || live_processes_with(&marker).is_empty()),
        "no job is left running"
    );
    assert_eq!(t.runs()[0]["state"], "cancelled");
}

#[test]
fn a_launch_past_its_wall_clock_budget_is_stopped_with_its_jobs() {
    let t = TestHome::new();
    t.run(&["flavor", "register", path_str(&stepbox_e2e::local_flavor())]).expect_code(0);
    let limits =
        ["--grant", "jobs", "--grant", "requirements", "--limit", "wall-clock=2s", "--limit", "cancel-grace=1s"];
    t.register_operator("budget", "local", &limits).expect_code(0);
    let marker = unique_marker();
    let sleep = format!("60.{marker}");
    let run = t.launch("budget", "s", &["sleep", &sleep]);
    run.expect_error(124, "hit its `wall-clock` limit of 2s");
    let details = t.run_details(t.runs()[0]["id"].as_str().expect("id"));
    assert_eq!(details["run"]["state"], "failed");
    assert_eq!(details["jobs"][0]["state"], "cancelled");
    assert_eq!(live_processes_with(&marker), Vec::<i32>::new(), "the job's process is gone");
}

#[test]
fn every_host_call_is_audited_with_its_decision_and_no_secret_values() {
    let t = TestHome::new();
    t.with_local();
    hostile(&t, "other-command", &[]);
    let secret = "s3cr3t-value-that-must-not-be-stored";
    let env = format!("API_TOKEN={secret}");
    let allowed = t.launch_command_with("local", "s", &["--env", &env], &["true"]).output().expect("stepbox runs");
    assert!(allowed.status.success());
    let denied = t.launch_command_with("other-command", "s", &["--env", &env], &["true"]).output().expect("runs");
    assert_eq!(denied.status.code(), Some(77));

    let runs = t.runs();
    let audit_of = |step_operator: &str| {
        let run = runs.iter().find(|run| run["step_operator"] == step_operator).expect("the run");
        let shown = t.run(&["runs", "show", run["id"].as_str().expect("id"), "--audit", "-o", "json"]);
        shown.expect_code(0);
        shown.json()["audit"].as_array().cloned().unwrap_or_default()
    };
    let local = audit_of("local");
    let calls: Vec<&str> = local.iter().filter_map(|entry| entry["call"].as_str()).collect();
    assert_eq!(calls, ["jobs.submit", "job.wait"]);
    assert_eq!(local[0]["decision"], "allowed");
    assert_eq!(local[0]["args"]["command"], serde_json::json!(["true"]));
    assert_eq!(local[0]["args"]["env"]["API_TOKEN"], "<redacted>");

    let hostile = audit_of("other-command");
    assert_eq!(hostile.len(), 1);
    assert_eq!(hostile[0]["decision"], "denied");
    assert!(hostile[0]["reason"].as_str().is_some_and(|reason| reason.contains("entrypoint-only")));

    assert_eq!(files_containing(t.home(), secret), Vec::<std::path::PathBuf>::new(), "these hold the secret value");
}

#[test]
fn confined_jobs_write_only_their_working_directory_and_have_no_network_unless_granted() {
    let t = TestHome::new();
    t.with_local();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let port = listener.local_addr().expect("address").port();
    let marker = unique_marker();
    let script = format!(
        "touch /etc/stepbox-{marker} 2>/dev/null && echo etc-writable; \
         touch here-{marker} && echo workdir-writable; \
         echo x > /tmp/stepbox-{marker} && echo tmp-writable; \
         python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), 2)' 2>/dev/null && echo network; true"
    );
    let confined = t.launch("local", "s", &["sh", "-c", &script]);
    confined.expect_code(0);
    let seen: Vec<&str> = confined.stdout.lines().collect();
    assert_eq!(seen, ["workdir-writable", "tmp-writable"], "stderr: {}", confined.stderr);
    assert!(t.scratch().join(format!("here-{marker}")).exists(), "the working directory is the real one");
    assert!(!std::path::Path::new(&format!("/tmp/stepbox-{marker}")).exists(), "its /tmp is private");

    t.run(&["step-operator", "update", "local", "--grant", "job-network"]).expect_code(0);
    let networked = t.launch("local", "s", &["sh", "-c", &script]);
    assert!(networked.stdout.lines().any(|line| line == "network"), "granted: {}", networked.stdout);
}

#[test]
fn a_granted_writable_directory_is_writable_by_confined_jobs_even_under_tmp() {
    let t = TestHome::new();
    t.with_local();
    // A directory under /tmp, which confined jobs otherwise see as a private, empty tmpfs.
    let shared = tempfile::Builder::new().prefix("stepbox-writable-").tempdir().expect("a temporary directory");
    let dir = path_str(shared.path()).to_owned();
    let script = format!("echo from-the-job > {dir}/out.txt && echo wrote");
    let refused = t.launch("local", "s", &["sh", "-c", &script]);
    assert_ne!(refused.code, 0, "not granted yet: {}", refused.stdout);
    assert!(!shared.path().join("out.txt").exists());

    t.run(&["step-operator", "update", "local", "--grant", &format!("writable-dir={dir}")]).expect_code(0);
    let described = t.run(&["step-operator", "describe", "local", "-o", "json"]);
    assert!(described.stdout.contains(&format!("\"{dir}\"")), "{}", described.stdout);
    t.launch("local", "s", &["sh", "-c", &script]).expect_code(0);
    assert_eq!(fs::read_to_string(shared.path().join("out.txt")).expect("the job wrote it"), "from-the-job\n");

    let missing = format!("{dir}/not-there");
    t.run(&["step-operator", "update", "local", "--grant", &format!("writable-dir={missing}")]).expect_code(0);
    let launch = t.launch("local", "s", &["true"]);
    assert_ne!(launch.code, 0);
    assert!(
        launch.stderr.contains(&format!("`writable-dir={missing}` names a directory that does not exist")),
        "{}",
        launch.stderr
    );
}

#[test]
fn a_confined_job_that_escapes_its_process_group_is_still_cancelled() {
    let t = TestHome::new();
    t.with_local();
    let marker = unique_marker();
    let script = format!("setsid sleep 300.{marker} & echo started; exec sleep 301.{marker}");
    let mut launch = t.spawn_launch("local", "escape", &["sh", "-c", &script]);
    assert_eq!(launch.next_line(), "started");
    launch.signal(Signal::SIGINT);
    launch.finish();
    assert_eq!(live_processes_with(&marker), Vec::<i32>::new(), "the setsid child died with the sandbox");
}

#[test]
fn a_confined_job_gets_its_grace_period_on_cancellation() {
    let t = TestHome::new();
    t.with_local();
    let script = "trap 'echo saving a checkpoint; exit 0' TERM; echo ready; while true; do sleep 0.1; done";
    let mut launch = t.spawn_launch("local", "graceful", &["sh", "-c", script]);
    assert_eq!(launch.next_line(), "ready");
    launch.signal(Signal::SIGTERM);
    let rest = launch.finish().stdout;
    assert!(rest.contains("saving a checkpoint"), "the job handled SIGTERM: {rest:?}");
}

#[test]
fn without_bubblewrap_an_untrusted_job_is_refused_with_a_clear_error_and_trusted_ones_run() {
    let t = TestHome::new();
    t.with_local();
    let path = "/nonexistent";
    let refused = t.launch_command("local", "s", &["/bin/true"]).env("PATH", path).output().expect("stepbox runs");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(FLAVOR_ERROR), "{stderr}");
    assert!(stderr.contains("bubblewrap (`bwrap`) is not installed"), "{stderr}");
    assert!(stderr.contains("grant the step operator `trusted`"), "{stderr}");

    t.run(&["step-operator", "update", "local", "--grant", "trusted"]).expect_code(0);
    let trusted = t.launch_command("local", "s", &["/bin/true"]).env("PATH", path).output().expect("stepbox runs");
    assert!(trusted.status.success(), "{}", String::from_utf8_lossy(&trusted.stderr));
}

#[test]
fn guarded_job_environment_needs_the_user_or_a_grant() {
    let t = TestHome::new();
    t.with_local();
    // The user's own PYTHONPATH reaches the job: the flavor only passes it on.
    let mut command =
        t.launch_command_with("local", "s", &["--env", "PYTHONPATH=/srv/steps"], &["sh", "-c", "echo $PYTHONPATH"]);
    let run = Run::from_output(command.output().expect("stepbox runs"));
    run.expect_code(0);
    assert_eq!(run.stdout.trim(), "/srv/steps");

    // A flavor adding LD_PRELOAD on its own is denied, and the audit says why ...
    hostile(&t, "inject-env", &[]);
    let denied = t.launch("inject-env", "s", &["true"]);
    denied.expect_error(DENIED, "--grant job-env=LD_PRELOAD");
    let id = t.runs()[0]["id"].as_str().expect("id").to_owned();
    let audit = t.run(&["runs", "show", &id, "--audit", "-o", "json"]).json();
    let decisions = audit["audit"].to_string();
    assert!(decisions.contains("job-env"), "{decisions}");

    // ... until the step operator is granted it.
    t.run(&["step-operator", "update", "inject-env", "--grant", "job-env=LD_PRELOAD"]).expect_code(0);
    let described = t.run(&["step-operator", "describe", "inject-env", "-o", "json"]).json();
    assert_eq!(described["grants"]["job_env"], serde_json::json!(["LD_PRELOAD"]), "{described}");
    t.launch("inject-env", "s", &["true"]).expect_code(0);
}

/// `stepbox` still running after `deadline`: killed, and the test fails saying so.
fn exit_within(child: &mut std::process::Child, deadline: std::time::Duration, what: &str) -> i32 {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for stepbox") {
            return status.code().unwrap_or(-1);
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            panic!("{what}: stepbox did not exit (killed after {deadline:?})");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A launch whose job writes 20 MB to `stream` (1: stdout, 2: stderr), which goes into a pipe
/// nobody drains (64 KiB), then sleeps; SIGTERMed once the job is past its output. The home,
/// and what the launch exited with.
fn flood_an_undrained_pipe_then_sigterm(stream: u8) -> (TestHome, i32) {
    let t = TestHome::new();
    t.with_local();
    let started = t.scratch().join("started");
    let script = format!("yes stepbox-output | head -c 20000000 >&{stream}; touch {}; sleep 300", started.display());
    let (reader, writer) = nix::unistd::pipe().expect("a pipe");
    let other = fs::File::create(t.scratch().join("other-stream")).expect("a file for the other stream");
    let mut command = t.launch_command("local", "flood", &["sh", "-c", &script]);
    if stream == 1 {
        command.stdout(std::process::Stdio::from(writer)).stderr(other);
    } else {
        command.stderr(std::process::Stdio::from(writer)).stdout(other);
    }
    let mut launch = command.spawn().expect("stepbox starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !started.exists() {
        assert!(std::time::Instant::now() < deadline, "the job never got past its output");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(launch.id() as i32), Signal::SIGTERM).expect("signal");
    let code = exit_within(&mut launch, std::time::Duration::from_secs(60), "SIGTERM with a stuck output stream");
    drop(reader);
    (t, code)
}

#[test]
fn a_launch_whose_stdout_nobody_reads_is_still_cancelled_by_sigterm() {
    let (t, code) = flood_an_undrained_pipe_then_sigterm(1);
    assert_eq!(code, CANCELLED_SIGTERM, "{}", fs::read_to_string(t.scratch().join("other-stream")).unwrap_or_default());
    let run = &t.runs()[0];
    assert_eq!(run["state"], "cancelled", "the outcome is recorded, whatever the terminal does");
    let log = t.run(&["runs", "show", run["id"].as_str().expect("id")]);
    assert!(log.stdout.contains("stepbox-output"), "the log keeps what the terminal could not take");
}

#[test]
fn a_launch_whose_stderr_nobody_reads_is_still_cancelled_by_sigterm() {
    // The launch's own messages (the flavor's log, "cancelling…") go to that stderr too.
    let (t, code) = flood_an_undrained_pipe_then_sigterm(2);
    assert_eq!(code, CANCELLED_SIGTERM);
    assert_eq!(t.runs()[0]["state"], "cancelled", "the outcome is recorded, whatever the terminal does");
}

#[test]
fn sighup_cancels_the_launch_and_stops_its_jobs() {
    let t = TestHome::new();
    t.with_local();
    t.run(&["step-operator", "update", "local", "--grant", "trusted"]).expect_code(0);
    let marker = unique_marker();
    let script = format!("echo ready; sleep 300 # {marker}");
    let mut launch = t.spawn_launch("local", "hangup", &["sh", "-c", &script]);
    assert_eq!(launch.next_line(), "ready");
    launch.signal(Signal::SIGHUP); // the terminal closed, or ssh dropped
    launch.finish().expect_code(129);
    assert_eq!(live_processes_with(&marker), Vec::<i32>::new(), "the trusted job is not orphaned");
    let run = &t.runs()[0];
    assert_eq!(run["state"], "cancelled");
    assert_eq!(run["message"], "cancelled: the terminal closed (SIGHUP)");
}

#[test]
fn a_slow_reader_of_the_launch_gets_every_byte_of_the_jobs_output() {
    use std::io::Read;
    let t = TestHome::new();
    t.with_local();
    let mut launch = t
        .launch_command("local", "flood", &["sh", "-c", "head -c 20000000 /dev/zero"])
        .stdout(std::process::Stdio::piped())
        .stderr(fs::File::create(t.scratch().join("stderr")).expect("a stderr file"))
        .spawn()
        .expect("stepbox starts");
    let mut stdout = launch.stdout.take().expect("stdout");
    // Slower than the job writes, but always reading: the job must wait for it, not lose output.
    let mut buffer = vec![0; 64 << 10];
    let mut received = 0;
    loop {
        let read = stdout.read(&mut buffer).expect("read the launch's output");
        if read == 0 {
            break;
        }
        received += read;
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let code = exit_within(&mut launch, std::time::Duration::from_secs(60), "a slow reader");
    let stderr = fs::read_to_string(t.scratch().join("stderr")).unwrap_or_default();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(received, 20_000_000, "every byte reached the reader");
    assert!(!stderr.contains("not shown"), "nothing was dropped: {stderr}");
}
