//! `stepbox submit`, `status`, `wait` and `cancel`: a launch detached under a
//! supervisor, followed from other processes through the store (its output
//! too, with `wait --follow`); a run whose supervisor dies is reported
//! failed, with its jobs gone; and no command panics when its reader goes
//! away (`stepbox runs list | head`).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
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
    let (id, marker) = sleeping_run(&t, false);
    t.run(&["cancel", &id, "--reason", "the pipeline was interrupted (Ctrl-C)"]).expect_code(0);
    let left: Vec<String> = live_processes_with(&marker)
        .iter()
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            format!("{stat} :: {}", String::from_utf8_lossy(&cmdline).replace('\0', " "))
        })
        .collect();
    assert!(left.is_empty(), "cancel returns once the job is gone; still there: {left:#?}");
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
        vec!["gpus"],
        vec!["gpus", "-o", "json"],
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

/// A home with the local step operator (`trusted`: its jobs run unconfined, in process groups
/// of their own, and outlive a killed supervisor) and a submitted job that sleeps; the run id
/// and the job's marker, once the job is running.
fn sleeping_run(t: &TestHome, trusted: bool) -> (String, String) {
    t.with_local();
    if trusted {
        t.run(&["step-operator", "update", "local", "--grant", "trusted"]).expect_code(0);
    }
    let marker = unique_marker();
    let id = submit(t, &["sh", "-c", &format!("sleep 300 # {marker}")]);
    assert!(wait_until(Duration::from_secs(10), || !live_processes_with(&marker).is_empty()), "the job started");
    (id, marker)
}

/// SIGKILL run `id`'s supervisor.
fn kill_supervisor(t: &TestHome, id: &str) {
    let pid = status(t, id)["pid"].as_i64().expect("the supervisor's pid") as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).expect("kill it");
}

#[test]
fn a_run_whose_supervisor_died_is_reported_failed_and_its_jobs_are_gone() {
    let t = TestHome::new();
    let (id, marker) = sleeping_run(&t, true);
    kill_supervisor(&t, &id);
    assert!(wait_until(Duration::from_secs(5), || status(&t, &id)["state"] == "failed"), "never stays running");
    let ended = status(&t, &id);
    let message = ended["message"].as_str().unwrap_or("");
    assert!(message.contains("supervisor") && message.contains("ended without recording"), "{message}");
    assert!(wait_until(Duration::from_secs(5), || live_processes_with(&marker).is_empty()), "its job is gone");
    let waited = t.run(&["wait", &id]);
    assert!(FLAVOR_ERROR_OR_INTERNAL.contains(&waited.code), "wait reports the failure: {}", waited.code);
}

/// The run's state database, to stage what only time and bad luck produce (a reused PID).
fn state_db(t: &TestHome) -> rusqlite::Connection {
    rusqlite::Connection::open(t.home().join("state.db")).expect("state.db opens")
}

#[test]
fn a_launch_killed_between_spawning_a_job_and_recording_it_leaves_no_job_running() {
    let t = TestHome::new();
    t.with_local();
    // Trusted: the job runs unconfined, in a process group of its own, and outlives a killed launch.
    t.run(&["step-operator", "update", "local", "--grant", "trusted"]).expect_code(0);
    let marker = unique_marker();
    let step_run = format!("window-{marker}");
    let mut launch = t.launch_command_with(
        "local",
        "s",
        &["--step-run-id", &step_run],
        &["sh", "-c", &format!("sleep 300 # {marker}")],
    );
    // Hold the launch between spawning the job and recording its process.
    launch.env("STEPBOX_TEST_PAUSE_AT", "job-spawned").stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = launch.spawn().expect("stepbox starts");
    let stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
    let paused = stderr.lines().map_while(Result::ok).any(|line| line.contains("paused at job-spawned"));
    assert!(paused, "the launch reached the window");
    child.kill().expect("SIGKILL the launch");
    child.wait().expect("reaped");
    let shown = t.run(&["status", "--step-run-id", &step_run, "-o", "json"]);
    shown.expect_code(0);
    let run = shown.json();
    assert_eq!(run["state"], "failed", "{run}");
    let message = run["message"].as_str().unwrap_or_default();
    assert!(message.contains("its jobs were stopped"), "{message}");
    assert!(!message.contains("could not stop"), "{message}");
    assert!(wait_until(Duration::from_secs(5), || live_processes_with(&marker).is_empty()), "the job is gone");
    let jobs = t.run_details(run["id"].as_str().expect("id"))["jobs"].clone();
    assert_eq!(jobs[0]["state"], "cancelled", "recorded stopped, and it was: {jobs}");
}

#[test]
fn status_never_signals_a_stranger_that_now_has_a_dead_jobs_process_group_id() {
    let t = TestHome::new();
    let (id, marker) = sleeping_run(&t, true);
    // The supervisor and its job die, and the job's process-group id is taken by an unrelated
    // process (staged: the record is pointed at a stranger's group, as PID reuse would).
    let stranger_marker = unique_marker();
    let mut stranger = Command::new("sh")
        .args(["-c", &format!("sleep 300 # {stranger_marker}")])
        .process_group(0)
        .spawn()
        .expect("a stranger starts");
    kill_supervisor(&t, &id);
    for pid in live_processes_with(&marker) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    assert!(wait_until(Duration::from_secs(5), || live_processes_with(&marker).is_empty()), "the job died");
    state_db(&t)
        .execute("UPDATE jobs SET external_id = ?1 WHERE run_id = ?2", (stranger.id().to_string(), &id))
        .expect("stage the reused id");
    let run = status(&t, &id);
    assert_eq!(run["state"], "failed", "{run}");
    assert_eq!(stranger.try_wait().expect("the stranger"), None, "status killed an unrelated process");
    let _ = stranger.kill();
    let _ = stranger.wait();
}

#[test]
fn a_dead_supervisors_pid_taken_by_another_launch_does_not_keep_its_run_running() {
    let t = TestHome::new();
    let (id, marker) = sleeping_run(&t, false);
    let other_marker = unique_marker();
    let other = t.spawn_launch("local", "other", &["sh", "-c", &format!("sleep 300 # {other_marker}")]);
    assert!(wait_until(Duration::from_secs(10), || !live_processes_with(&other_marker).is_empty()), "it started");
    kill_supervisor(&t, &id);
    // Staged PID reuse: the dead supervisor's PID is now the other `stepbox launch`'s.
    let db = state_db(&t);
    let recorded: String =
        db.query_row("SELECT supervisor FROM runs WHERE id = ?1", [&id], |row| row.get(0)).expect("recorded");
    let (_, rest) = recorded.split_once(':').expect("PID:START:BOOT");
    db.execute(
        "UPDATE runs SET pid = ?1, supervisor = ?2 WHERE id = ?3",
        (other.pid(), format!("{}:{rest}", other.pid()), &id),
    )
    .expect("stage the reused PID");
    // `runs list` reconciles too: a killed run is not shown `running` forever.
    let listed = t.runs();
    let run = listed.iter().find(|run| run["id"] == id.as_str()).expect("listed");
    assert_eq!(run["state"], "failed", "another launch with the PID is not this run's supervisor: {run}");
    assert!(wait_until(Duration::from_secs(5), || live_processes_with(&marker).is_empty()), "its job was stopped");
    assert!(!live_processes_with(&other_marker).is_empty(), "the other launch's job is untouched");
    other.signal(nix::sys::signal::Signal::SIGTERM);
    other.finish();
}

#[test]
fn backup_writes_one_complete_file_that_a_new_home_opens() {
    let t = TestHome::new();
    t.with_local();
    let id = submit(&t, &["true"]);
    t.run(&["wait", &id]).expect_code(0);
    let copy = t.scratch().join("state-backup.db");
    let copy_path = copy.to_str().expect("UTF-8").to_owned();
    t.run(&["backup", &copy_path]).expect_code(0);
    assert!(!t.scratch().join("state-backup.db-wal").exists(), "one file: nothing left in a WAL");
    let restored = TestHome::new();
    std::fs::copy(&copy, restored.home().join("state.db")).expect("restore");
    let runs = restored.runs();
    assert_eq!(runs.len(), 1, "the run is in the copy: {runs:?}");
    assert_eq!((runs[0]["id"].as_str(), runs[0]["state"].as_str()), (Some(id.as_str()), Some("succeeded")));
    let listed = restored.run(&["step-operator", "list", "-o", "json"]);
    assert_eq!(listed.json()[0]["name"], "local", "{}", listed.stdout);
    t.run(&["backup", &copy_path]).expect_error(64, "already exists");
}

#[test]
fn a_damaged_run_record_is_reported_and_the_rest_are_still_listed() {
    let t = TestHome::new();
    t.with_local();
    let ids: Vec<String> = (0..3).map(|_| submit(&t, &["true"])).collect();
    for id in &ids {
        t.run(&["wait", id]).expect_code(0);
    }
    let db = state_db(&t);
    db.execute("UPDATE runs SET state = 'exploded' WHERE id = ?1", [&ids[0]]).expect("damage a state");
    db.execute("UPDATE runs SET pid = 'not a number' WHERE id = ?1", [&ids[1]]).expect("damage a column's type");
    let listed = t.run(&["runs", "list", "-o", "json"]);
    listed.expect_code(0);
    let runs = listed.json();
    let shown: Vec<&str> = runs.as_array().expect("a list").iter().filter_map(|run| run["id"].as_str()).collect();
    assert_eq!(shown, [ids[2].as_str()], "the intact run is listed");
    for damaged in &ids[..2] {
        assert!(listed.stderr.contains(&format!("the record of run {damaged} cannot be read")), "{}", listed.stderr);
    }
    t.run(&["runs", "list"]).expect_code(0);
}

/// Run `script` with `sh` in a mount namespace of its own (as root: CI is), with `$STEPBOX`,
/// `$FLAVOR` (the local flavor), `$STEPBOX_HOME` and `$SCRATCH` set.
fn in_mount_namespace(t: &TestHome, script: &str) -> Run {
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .env("STEPBOX", stepbox_e2e::stepbox_bin())
        .env("FLAVOR", stepbox_e2e::local_flavor())
        .env("STEPBOX_HOME", t.home())
        .env("SCRATCH", t.scratch())
        .env_remove("STEPBOX_CACHE_DIR")
        .current_dir(t.scratch())
        .stdin(Stdio::null())
        .output()
        .expect("unshare runs (util-linux)");
    Run::from_output(output)
}

#[test]
fn a_disk_that_fills_during_a_run_loses_neither_its_outcome_nor_its_exit_code() {
    let t = TestHome::new();
    // The home on a 16 MiB file system that the job's 32 MiB of output fills: the job's log
    // cannot be written to the end, nor the run's and the job's ends into the database.
    let script = r#"
set -e
mount -t tmpfs -o size=16m,mode=0700 stepbox-disk-full "$STEPBOX_HOME"
"$STEPBOX" flavor register "$FLAVOR" >/dev/null
"$STEPBOX" step-operator register local --flavor local --grant jobs --grant requirements >/dev/null
set +e
"$STEPBOX" launch -s local --pipeline p --run r --step s --step-run-id full --     sh -c 'head -c 33554432 /dev/zero; echo the-job-is-done >&2' >/dev/null 2>"$SCRATCH/launch.err"
echo "launch exited $?"
df -h "$STEPBOX_HOME" | tail -1
# Space returns.
find "$STEPBOX_HOME/runs" -name '*.log' -delete
"$STEPBOX" status --step-run-id full -o json >"$SCRATCH/status.json" || echo "status failed"
id=$(grep -m1 '"id"' "$SCRATCH/status.json" | cut -d'"' -f4)
"$STEPBOX" runs show "$id" -o json
"#;
    let run = in_mount_namespace(&t, script);
    let launch_err = std::fs::read_to_string(t.scratch().join("launch.err")).unwrap_or_default();
    assert!(
        run.stdout.contains("launch exited 0"),
        "the job exited 0, and so does the launch: {}\n{launch_err}",
        run.stdout
    );
    assert!(launch_err.contains("cannot write the job's log"), "the cut log is said: {launch_err}");
    assert!(launch_err.contains("it is kept in"), "where the outcome waits is said: {launch_err}");
    assert!(launch_err.contains("the-job-is-done"), "{launch_err}");
    let json_at = run.stdout.find('{').unwrap_or_else(|| panic!("no JSON: {}\n{}", run.stdout, run.stderr));
    let shown: serde_json::Value = serde_json::from_str(&run.stdout[json_at..]).expect("JSON");
    assert_eq!(shown["run"]["state"], "succeeded", "recorded as it ended, once space returned: {shown}");
    assert_eq!(shown["run"]["outcome_code"], 0, "{shown}");
    assert_eq!(shown["jobs"][0]["state"], "succeeded", "the job is not recorded cancelled: {shown}");
    assert_eq!(shown["jobs"][0]["exit_code"], 0, "{shown}");
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
