//! `stepbox submit`, `status`, `wait` and `cancel`: a launch detached under a
//! supervisor, followed from other processes through the store (its output
//! too, with `wait --follow`); a run whose supervisor dies is reported
//! failed, with its jobs gone; and no command panics when its reader goes
//! away (`stepbox runs list | head`).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use stepbox_e2e::{Run, TestHome, live_processes_with, unique_marker, wait_until};

/// What `stepbox` exits with when nobody reads its stdout (128 + SIGPIPE).
const CLOSED_PIPE: i32 = 141;

const FLAVOR_ERROR_OR_INTERNAL: [i32; 2] = [70, 1];

fn submit(t: &TestHome, command: &[&str]) -> String {
    let mut args = vec!["submit", "-s", "local", "--pipeline", "p", "--run", "r1", "--step", "s", "--"];
    args.extend_from_slice(command);
    let submitted = t.run(&args);
    submitted.expect_code(0);
    let id = submitted.stdout.trim().to_owned();
    assert_eq!(id.len(), 36, "submit prints the run id: {:?}", submitted.stdout);
    id
}

fn status(t: &TestHome, id: &str) -> serde_json::Value {
    let shown = t.run(&["status", id, "-o", "json"]);
    shown.expect_code(0);
    shown.json()
}

#[test]
fn a_submitted_run_is_followed_to_its_exit_code_from_other_processes() {
    let t = TestHome::new();
    t.with_local();
    let id = submit(&t, &["sh", "-c", "sleep 1; echo finished; exit 5"]);
    assert_eq!(status(&t, &id)["state"], "running", "submit returns before the step ends");
    let waited = t.run(&["wait", &id]);
    waited.expect_code(5);
    let ended = status(&t, &id);
    assert_eq!((ended["state"].as_str(), ended["exit_code"].as_i64()), (Some("failed"), Some(5)));
    let log = std::fs::read_to_string(t.home().join(format!("runs/{id}.supervisor.log"))).expect("the supervisor log");
    assert!(log.contains("finished"), "the job's output is in the supervisor log: {log}");

    let ok = submit(&t, &["true"]);
    t.run(&["wait", &ok]).expect_code(0);
    assert_eq!(status(&t, &ok)["state"], "succeeded");
}

#[test]
fn cancel_stops_the_runs_jobs_and_records_it_cancelled() {
    let t = TestHome::new();
    t.with_local();
    let marker = unique_marker();
    let id = submit(&t, &["sh", "-c", &format!("sleep 300 # {marker}")]);
    assert!(wait_until(Duration::from_secs(10), || !live_processes_with(&marker).is_empty()), "the job started");
    t.run(&["cancel", &id, "--reason", "the pipeline was interrupted (Ctrl-C)"]).expect_code(0);
    assert!(live_processes_with(&marker).is_empty(), "cancel returns once the job is gone");
    let ended = status(&t, &id);
    assert_eq!(ended["state"], "cancelled");
    assert_eq!(
        ended["message"], "cancelled by `stepbox cancel`: the pipeline was interrupted (Ctrl-C)",
        "the run says who cancelled it and why, in the caller's words"
    );
    t.run(&["wait", &id]).expect_code(143);
    t.run(&["cancel", &id]).expect_code(0);

    let plain = submit(&t, &["sleep", "300"]);
    t.run(&["cancel", &plain]).expect_code(0);
    assert_eq!(status(&t, &plain)["message"], "cancelled by `stepbox cancel`");
    let long = "x".repeat(501);
    let other = submit(&t, &["sleep", "300"]);
    t.run(&["cancel", &other, "--reason", &long]).expect_error(64, "--reason is 501 characters long");
    assert_eq!(status(&t, &other)["state"], "running", "a refused cancel stops nothing");
    t.run(&["cancel", &other]).expect_code(0);
}

#[test]
fn wait_follow_shows_the_jobs_output_while_the_job_runs() {
    let t = TestHome::new();
    t.with_local();
    // The job prints, then waits (up to a minute) for a file only the test creates once it
    // has read that line: the line must reach `wait --follow` before the job ends.
    let script = "echo first; i=0; while [ ! -e go ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; \
                  echo second >&2; exit 3";
    let id = submit(&t, &["sh", "-c", script]);
    let mut follow =
        t.command(&["wait", "--follow", &id]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("wait");
    let mut lines = BufReader::new(follow.stdout.take().expect("stdout")).lines();
    let first = lines.next().and_then(Result::ok);
    assert_eq!(first.as_deref(), Some("first"), "shown while the job still runs");
    assert_eq!(status(&t, &id)["state"], "running");
    std::fs::write(t.scratch().join("go"), "").expect("let the job go on");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert_eq!(rest, ["second"], "stderr too, and each line once");
    let waited = Run::from_output(follow.wait_with_output().expect("wait ends"));
    waited.expect_code(3);
    assert!(waited.stderr.contains("stepbox: run") && waited.stderr.contains("failed"), "{}", waited.stderr);
}

/// `command` run with a stdout whose reader has already gone.
fn with_closed_stdout(mut command: Command) -> Run {
    let (reader, writer) = nix::unistd::pipe().expect("a pipe");
    drop(reader);
    command.stdout(Stdio::from(writer)).stderr(Stdio::piped());
    Run::from_output(command.output().expect("stepbox runs"))
}

#[test]
fn every_printing_command_ends_quietly_when_its_reader_goes_away() {
    let t = TestHome::new();
    t.with_local();
    let id = submit(&t, &["echo", "done"]);
    t.run(&["wait", &id]).expect_code(0);
    for args in [
        vec!["runs", "list"],
        vec!["runs", "list", "-o", "json"],
        vec!["runs", "show", &id],
        vec!["runs", "show", &id, "-o", "json"],
        vec!["status", &id],
        vec!["status", &id, "-o", "json"],
        vec!["flavor", "list"],
        vec!["flavor", "describe", "local"],
        vec!["step-operator", "list"],
        vec!["step-operator", "describe", "local"],
        vec!["backends"],
        vec!["limits"],
        vec!["wait", "--follow", &id],
    ] {
        let run = with_closed_stdout(t.command(&args));
        assert!(!run.stderr.contains("panicked") && run.stderr.is_empty(), "stepbox {args:?}: {}", run.stderr);
        let expected = if args[0] == "wait" { 0 } else { CLOSED_PIPE };
        assert_eq!(run.code, expected, "stepbox {args:?} ends quietly; wait still reports the run's outcome");
    }

    // `submit` has started the run when it prints: it succeeds, so a caller never runs the step twice.
    let marker = unique_marker();
    let mut submit = t.command(&["submit", "-s", "local", "--pipeline", "p", "--run", "r", "--step", "s", "--"]);
    submit.args(["sh", "-c", &format!("echo {marker}")]);
    let submitted = with_closed_stdout(submit);
    submitted.expect_code(0);
    assert!(submitted.stderr.contains("could not be printed"), "{}", submitted.stderr);
    assert!(!submitted.stderr.contains("panicked"), "{}", submitted.stderr);
    let runs = t.run(&["runs", "list", "-o", "json"]).json();
    let started = runs.as_array().expect("runs").iter().find(|run| run["run_name"] == "r").expect("the run").clone();
    let started_id = started["id"].as_str().expect("its id").to_owned();
    t.run(&["wait", &started_id]).expect_code(0);
}

#[test]
fn a_run_whose_supervisor_died_is_reported_failed_and_its_jobs_are_gone() {
    let t = TestHome::new();
    t.with_local();
    t.run(&["step-operator", "update", "local", "--grant", "trusted"]).expect_code(0);
    let marker = unique_marker();
    let id = submit(&t, &["sh", "-c", &format!("sleep 300 # {marker}")]);
    assert!(wait_until(Duration::from_secs(10), || !live_processes_with(&marker).is_empty()), "the job started");
    let pid = status(&t, &id)["pid"].as_i64().expect("the supervisor's pid") as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).expect("kill it");
    assert!(wait_until(Duration::from_secs(5), || status(&t, &id)["state"] == "failed"), "never stays running");
    let ended = status(&t, &id);
    let message = ended["message"].as_str().unwrap_or("");
    assert!(message.contains("supervisor") && message.contains("ended without recording"), "{message}");
    assert!(wait_until(Duration::from_secs(5), || live_processes_with(&marker).is_empty()), "its job is gone");
    let waited = t.run(&["wait", &id]);
    assert!(FLAVOR_ERROR_OR_INTERNAL.contains(&waited.code), "wait reports the failure: {}", waited.code);
}

#[test]
fn a_run_is_found_by_the_callers_step_run_id() {
    let t = TestHome::new();
    t.with_local();
    let args =
        ["submit", "-s", "local", "--pipeline", "p", "--run", "r", "--step", "s", "--step-run-id", "zenml-step-42"];
    let submitted = t.run(&[&args[..], &["--", "sh", "-c", "exit 3"]].concat());
    submitted.expect_code(0);
    t.run(&["wait", "--step-run-id", "zenml-step-42"]).expect_code(3);
    let shown = t.run(&["status", "--step-run-id", "zenml-step-42", "-o", "json"]);
    shown.expect_code(0);
    assert_eq!(shown.json()["id"].as_str(), Some(submitted.stdout.trim()));
    t.run(&["status", "--step-run-id", "nope"]).expect_error(64, "no run was launched with --step-run-id nope");
    t.run(&["status"]).expect_code(64);
}

#[test]
fn submit_reports_a_launch_that_cannot_start_and_status_an_unknown_run() {
    let t = TestHome::new();
    t.with_local();
    let refused = t.run(&["submit", "-s", "nobody", "--pipeline", "p", "--run", "r", "--step", "s", "--", "true"]);
    refused.expect_error(64, "no step operator named `nobody`");
    t.run(&["status", "not-a-run"]).expect_error(64, "no run `not-a-run`");
}

#[test]
fn environment_from_stdin_reaches_the_job_and_never_the_command_line_or_the_disk() {
    let t = TestHome::new();
    t.with_local();
    let secret = format!("s3cret-{}", unique_marker());
    let mut command = t.command(&[
        "submit",
        "--env-stdin",
        "-s",
        "local",
        "--pipeline",
        "p",
        "--run",
        "r",
        "--step",
        "s",
        "--",
        "sh",
        "-c",
        "test \"$TOKEN\" = \"$EXPECTED\" && sleep 2",
    ]);
    command.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
    let mut child = command.spawn().expect("stepbox starts");
    let input = serde_json::json!({ "TOKEN": secret, "EXPECTED": secret }).to_string();
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), input.as_bytes()).expect("write");
    let output = child.wait_with_output().expect("stepbox exits");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let id = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let pid = status(&t, &id)["pid"].as_i64().expect("a pid");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(!String::from_utf8_lossy(&cmdline).contains(&secret), "the value is not on the supervisor's command line");
    t.run(&["wait", &id]).expect_code(0);
    // Nothing under STEPBOX_HOME holds it: not the hand-over file, not the records.
    assert_eq!(
        stepbox_e2e::files_containing(t.home(), &secret),
        Vec::<std::path::PathBuf>::new(),
        "these hold the value"
    );
}

#[test]
fn bad_input_names_no_run_and_leaves_nothing_behind() {
    let t = TestHome::new();
    t.with_local();
    let id = submit(&t, &["sleep", "300"]);
    // An empty id or a LIKE wildcard is no run id: it must not match (and cancel) the only run.
    t.run(&["cancel", ""]).expect_error(64, "the run id is empty");
    t.run(&["status", "%"]).expect_error(64, "no run `%`");
    t.run(&["runs", "show", ""]).expect_error(64, "no run matches");
    assert_eq!(status(&t, &id)["state"], "running", "nothing was cancelled");
    t.run(&["cancel", &id]).expect_code(0);

    // A bad flag after --env-stdin: the supervisor refuses it, and the environment is not left on disk.
    let secret = format!("s3cret-{}", unique_marker());
    let mut refused = t
        .command(&["submit", "--env-stdin", "-s", "local", "--pipeline", "p", "--run", "r", "--step", "s"])
        .args(["--env", "NOT A VARIABLE", "--", "true"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("stepbox starts");
    std::io::Write::write_all(
        &mut refused.stdin.take().expect("stdin"),
        format!("{{\"TOKEN\": \"{secret}\"}}").as_bytes(),
    )
    .expect("write the environment");
    Run::from_output(refused.wait_with_output().expect("submit ends")).expect_error(64, "--env");
    assert_eq!(stepbox_e2e::files_containing(t.home(), &secret), Vec::<std::path::PathBuf>::new());

    // The hidden run id names files under runs/: only a UUID will do.
    t.run(&[
        "launch",
        "--record-id",
        "../../escaped",
        "-s",
        "local",
        "--pipeline",
        "p",
        "--run",
        "r",
        "--step",
        "s",
        "--",
        "true",
    ])
    .expect_error(64, "is not a run id");
    assert!(
        !t.home().join("escaped.supervisor.log").exists()
            && !t.home().parent().expect("parent").join("escaped").exists()
    );

    // A --home that is not UTF-8 is refused, not a panic.
    use std::os::unix::ffi::OsStrExt;
    let odd_home = t.scratch().join(std::ffi::OsStr::from_bytes(b"home-\xff"));
    let mut args = vec![std::ffi::OsString::from("--home"), odd_home.into_os_string()];
    args.extend(
        ["submit", "-s", "local", "--pipeline", "p", "--run", "r", "--step", "s", "--", "true"].map(Into::into),
    );
    let mut odd = Command::new(stepbox_e2e::stepbox_bin());
    odd.args(&args).current_dir(t.scratch()).stdin(Stdio::null());
    let ran = Run::from_output(odd.output().expect("stepbox runs"));
    ran.expect_error(64, "not valid UTF-8");
    assert!(!ran.stderr.contains("panicked"), "{}", ran.stderr);
}

#[test]
fn a_component_file_is_refused_before_reading_when_it_is_no_file_or_too_large() {
    let t = TestHome::new();
    t.run(&["flavor", "register", "/dev/zero"]).expect_error(64, "is not a regular file");
    t.run(&["flavor", "inspect", "/dev/zero"]).expect_error(64, "is not a regular file");
    let huge = t.scratch().join("huge.wasm");
    std::fs::File::create(&huge).and_then(|file| file.set_len(300 << 20)).expect("a sparse 300 MiB file");
    let path = huge.to_str().expect("utf-8 path");
    t.run(&["flavor", "register", path]).expect_error(64, "over the 268435456-byte limit");
    t.run(&["flavor", "inspect", path]).expect_error(64, "over the 268435456-byte limit");
}
