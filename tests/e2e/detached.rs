//! `stepbox submit`, `status`, `wait` and `cancel`: a launch detached under a
//! supervisor, followed from other processes through the store; and a run
//! whose supervisor dies is reported failed, with its jobs gone.

use std::time::Duration;

use stepbox_e2e::{TestHome, live_processes_with, unique_marker, wait_until};

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
    t.run(&["cancel", &id]).expect_code(0);
    assert!(live_processes_with(&marker).is_empty(), "cancel returns once the job is gone");
    assert_eq!(status(&t, &id)["state"], "cancelled");
    t.run(&["wait", &id]).expect_code(143);
    t.run(&["cancel", &id]).expect_code(0);
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
