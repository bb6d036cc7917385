//! The Slurm and Ray backends and their example flavors, against a real
//! single-node Slurm cluster and a real Ray head (`scripts/services` starts
//! both, on loopback): a step writes a file, a failing step returns its exit
//! code, Ctrl-C cancels the engine's job, the resources asked for reach the
//! engine, Python requirements are usable there, and an engine that is down
//! or unauthorised gives a clear error.

use std::fs;
use std::time::Duration;

use nix::sys::signal::Signal;
use stepbox_e2e::{
    RAY_ADDRESS, RunningLaunch, TestHome, path_str, ray_flavor, ray_get, ray_token, slurm, slurm_flavor, slurm_job,
    wait_until,
};

const BAD_INPUT: i32 = 64;
const FLAVOR_ERROR: i32 = 70;
const DENIED: i32 = 77;
const CANCELLED_SIGINT: i32 = 130;

/// A home with the Slurm flavor and a step operator `hpc` on partition `batch`.
fn slurm_home() -> TestHome {
    slurm();
    let t = TestHome::new();
    t.run(&["flavor", "register", path_str(&slurm_flavor())]).expect_code(0);
    t.register_operator(
        "hpc",
        "slurm",
        &[
            "--grant",
            "jobs",
            "--grant",
            "requirements",
            "--grant",
            "backend=slurm",
            "--config",
            "partition=batch",
            "--limit",
            "cancel-grace=3s",
        ],
    )
    .expect_code(0);
    t
}

/// The Slurm job id of the first job of the newest run.
fn slurm_job_id(t: &TestHome) -> String {
    let run = t.runs()[0]["id"].as_str().expect("a run id").to_owned();
    let details = t.run_details(&run);
    assert_eq!(details["jobs"][0]["backend"], "slurm");
    details["jobs"][0]["external_id"].as_str().expect("the Slurm job id is recorded").to_owned()
}

/// Skip the engine's own lines until the job's first line.
fn first_job_line(launch: &mut RunningLaunch, expected: &str) {
    for _ in 0..20 {
        if launch.next_line() == expected {
            return;
        }
    }
    panic!("the job never printed {expected:?}");
}

#[test]
fn a_slurm_step_writes_a_file_with_its_environment_and_resources() {
    let t = slurm_home();
    let run = t.launch_with(
        "hpc",
        "train",
        &["--cpu", "2", "--memory", "300MiB", "--env", "GREETING=hello from slurm"],
        &["sh", "-c", "echo \"$GREETING\" > out.txt; echo wrote"],
    );
    run.expect_code(0);
    assert_eq!(run.stdout.trim(), "wrote", "the job's output is streamed back");
    let written = fs::read_to_string(t.scratch().join("out.txt")).expect("the step wrote its file in its working dir");
    assert_eq!(written.trim(), "hello from slurm");

    let job = slurm_job(&slurm_job_id(&t));
    assert_eq!(job["JobState"], "COMPLETED");
    assert_eq!(job["Partition"], "batch", "the configured partition reached Slurm");
    let tres = &job["TRES"];
    assert!(tres.contains("cpu=2") && tres.contains("mem=300M"), "the resources reached Slurm: {tres}");

    // Per-step settings override the configuration.
    let settings = r#"{"partition": "debug", "time_limit_minutes": 5}"#;
    t.launch_with("hpc", "eval", &["--settings", settings], &["true"]).expect_code(0);
    let job = slurm_job(&slurm_job_id(&t));
    assert_eq!((job["Partition"].as_str(), job["TimeLimit"].as_str()), ("debug", "00:05:00"), "{job:?}");
}

#[test]
fn a_failing_slurm_step_returns_its_exit_code() {
    let t = slurm_home();
    let run = t.launch("hpc", "s", &["sh", "-c", "echo about to fail >&2; exit 7"]);
    run.expect_code(7);
    assert!(run.stderr.contains("about to fail"), "stderr is streamed back:\n{}", run.stderr);
    assert!(run.stderr.contains("exited with code 7"), "{}", run.stderr);
    let job = slurm_job(&slurm_job_id(&t));
    assert_eq!((job["JobState"].as_str(), job["ExitCode"].as_str()), ("FAILED", "7:0"));
}

#[test]
fn ctrl_c_cancels_the_slurm_job() {
    let t = slurm_home();
    let mut launch = t.spawn_launch("hpc", "s", &["sh", "-c", "echo started; sleep 300"]);
    first_job_line(&mut launch, "started");
    let id = slurm_job_id(&t);
    assert_eq!(slurm_job(&id)["JobState"], "RUNNING");
    launch.signal(Signal::SIGINT);
    launch.finish().expect_code(CANCELLED_SIGINT);
    assert_eq!(slurm_job(&id)["JobState"], "CANCELLED", "Slurm shows the job cancelled");
    assert_eq!(t.runs()[0]["state"], "cancelled");
}

#[test]
fn a_slurm_step_runs_in_its_python_environment_on_the_node() {
    let t = slurm_home();
    let run = t.launch_with(
        "hpc",
        "s",
        &["-r", "six==1.16.0"],
        &["python", "-c", "import six, sys; print(six.__version__, sys.prefix)"],
    );
    run.expect_code(0);
    assert!(run.stdout.starts_with("1.16.0 "), "{}", run.stdout);
    assert!(run.stdout.contains(path_str(t.home())), "the environment lives in STEPBOX_HOME: {}", run.stdout);
}

#[test]
fn a_slurm_controller_that_is_down_gives_a_clear_error_after_bounded_retries() {
    let t = slurm_home();
    // The same cluster description, pointing at a port nothing listens on.
    let conf = fs::read_to_string("/etc/slurm/slurm.conf").expect("scripts/services wrote slurm.conf");
    let dead = t.scratch().join("dead-slurm.conf");
    fs::write(&dead, format!("{conf}\nSlurmctldPort=9\nMessageTimeout=2\n")).expect("write");
    let output = t.launch_command("hpc", "s", &["true"]).env("SLURM_CONF", &dead).output().expect("stepbox runs");
    let run = stepbox_e2e::Run::from_output(output);
    run.expect_error(FLAVOR_ERROR, "Slurm did not answer 4 attempts to submit the job");
    assert!(run.stderr.contains("Unable to contact slurm controller"), "Slurm's own words: {}", run.stderr);
}

#[test]
fn slurm_options_outside_the_contract_are_refused() {
    let t = slurm_home();
    let run = t.launch_with("hpc", "s", &["--env", "SBATCH_PARTITION=debug"], &["true"]);
    run.expect_code(FLAVOR_ERROR);
    assert!(run.stderr.contains("configure sbatch itself"), "{}", run.stderr);
    let run = t.launch_with("hpc", "s", &["--settings", r#"{"partition": "--uid=0"}"#], &["true"]);
    run.expect_error(BAD_INPUT, "partition: must be a Slurm name");
}

/// A home with the Ray flavor, the cluster's token as secret `ray-token`,
/// and a step operator `ray` granted the test cluster and the secret.
fn ray_home() -> (TestHome, String) {
    let token = ray_token();
    let t = TestHome::new();
    t.run(&["flavor", "register", path_str(&ray_flavor())]).expect_code(0);
    t.set_secret("ray-token", token.as_bytes()).expect_code(0);
    t.register_operator(
        "ray",
        "ray",
        &[
            "--grant",
            "jobs",
            "--grant",
            "requirements",
            "--grant",
            "backend=ray",
            "--grant",
            &format!("ray-address={RAY_ADDRESS}"),
            "--grant",
            "secret=ray-token",
            "--config",
            "token_secret=ray-token",
            "--limit",
            "cancel-grace=5s",
        ],
    )
    .expect_code(0);
    (t, token)
}

/// The Ray submission id of the first job of the newest run.
fn ray_submission_id(t: &TestHome) -> String {
    let run = t.runs()[0]["id"].as_str().expect("a run id").to_owned();
    let details = t.run_details(&run);
    assert_eq!(details["jobs"][0]["backend"], "ray");
    details["jobs"][0]["external_id"].as_str().expect("the Ray submission id is recorded").to_owned()
}

#[test]
fn a_ray_step_ships_its_code_writes_a_file_and_reserves_its_resources() {
    let (t, token) = ray_home();
    let out = t.scratch().join("ray-out.txt");
    fs::write(
        t.scratch().join("step.py"),
        "import os, sys\nopen(sys.argv[1], 'w').write(os.environ['GREETING'])\nprint('wrote')\n",
    )
    .expect("write the step");
    let run = t.launch_with(
        "ray",
        "s",
        &["--cpu", "1", "--memory", "200MiB", "--env", "GREETING=hello from ray"],
        &["python", "step.py", path_str(&out)],
    );
    run.expect_code(0);
    assert!(run.stdout.lines().any(|line| line == "wrote"), "the job's log is streamed back:\n{}", run.stdout);
    assert_eq!(fs::read_to_string(&out).expect("the step wrote its file"), "hello from ray");

    let id = ray_submission_id(&t);
    let job = ray_get(&format!("/api/jobs/{id}"), &token).expect("Ray knows the job");
    assert_eq!(job["status"], "SUCCEEDED");
    assert_eq!(job["runtime_env"]["env_vars"]["GREETING"], "hello from ray");
    let package = job["runtime_env"]["working_dir"].as_str().expect("a working_dir package");
    assert!(package.starts_with("gcs://_ray_pkg_"), "{package}");
    // Entrypoint resources are reserved by the job's supervisor actor.
    let actors = ray_get("/api/v0/actors?detail=1&limit=1000", &token).expect("the state API answers");
    let name = format!("_ray_internal_job_actor_{id}");
    let actor = actors["data"]["result"]["result"]
        .as_array()
        .and_then(|actors| actors.iter().find(|actor| actor["name"] == name.as_str()).cloned())
        .expect("the job's supervisor actor");
    assert_eq!(actor["required_resources"]["CPU"], 1.0, "{actor}");
    assert_eq!(actor["required_resources"]["memory"], 209_715_200.0, "{actor}");
}

#[test]
fn a_failing_ray_step_returns_its_exit_code() {
    let (t, token) = ray_home();
    let run = t.launch("ray", "s", &["sh", "-c", "echo about to fail; exit 4"]);
    run.expect_code(4);
    assert!(run.stdout.contains("about to fail"), "{}", run.stdout);
    let job = ray_get(&format!("/api/jobs/{}", ray_submission_id(&t)), &token).expect("Ray knows the job");
    assert_eq!((job["status"].as_str(), job["driver_exit_code"].as_i64()), (Some("FAILED"), Some(4)));
}

#[test]
fn ctrl_c_stops_the_ray_job() {
    let (t, token) = ray_home();
    let mut launch = t.spawn_launch("ray", "s", &["sh", "-c", "echo started; sleep 300"]);
    first_job_line(&mut launch, "started");
    let id = ray_submission_id(&t);
    launch.signal(Signal::SIGINT);
    launch.finish().expect_code(CANCELLED_SIGINT);
    let stopped = wait_until(Duration::from_secs(20), || {
        ray_get(&format!("/api/jobs/{id}"), &token).is_some_and(|job| job["status"] == "STOPPED")
    });
    assert!(stopped, "Ray shows the job stopped: {:?}", ray_get(&format!("/api/jobs/{id}"), &token));
    assert_eq!(t.runs()[0]["state"], "cancelled");
}

#[test]
fn a_ray_step_gets_its_pip_requirements_and_settings() {
    let (t, token) = ray_home();
    let settings = r#"{"runtime_env": {"env_vars": {"MODE": "eval"}}, "num_cpus": 0.5}"#;
    let args = ["-r", "six==1.16.0", "--settings", settings];
    let command = ["python", "-c", "import os, six; print(six.__version__, os.environ['MODE'])"];
    // A variable the flavor adds from its settings is the user's to allow.
    t.launch_with("ray", "s", &args, &command).expect_error(77, "--grant job-env=MODE");
    t.run(&["step-operator", "update", "ray", "--grant", "job-env=MODE"]).expect_code(0);
    let run = t.launch_with(
        "ray",
        "s",
        &["-r", "six==1.16.0", "--settings", settings],
        &["python", "-c", "import os, six; print(six.__version__, os.environ['MODE'])"],
    );
    run.expect_code(0);
    assert!(run.stdout.lines().any(|line| line == "1.16.0 eval"), "{}", run.stdout);
    let job = ray_get(&format!("/api/jobs/{}", ray_submission_id(&t)), &token).expect("Ray knows the job");
    assert_eq!(job["runtime_env"]["pip"]["packages"], serde_json::json!(["six==1.16.0"]));
}

#[test]
fn ray_addresses_and_tokens_come_only_from_grants_and_secrets() {
    let (t, _token) = ray_home();
    // An address the step operator is not granted.
    t.run(&["step-operator", "update", "ray", "--config", "address=http://127.0.0.1:1"]).expect_code(0);
    let run = t.launch("ray", "s", &["true"]);
    run.expect_error(DENIED, "--grant ray-address=http://127.0.0.1:1");
    // Granted, but nothing listens there: bounded retries, then a clear error.
    t.run(&["step-operator", "update", "ray", "--grant", "ray-address=http://127.0.0.1:1"]).expect_code(0);
    let run = t.launch("ray", "s", &["true"]);
    run.expect_error(FLAVOR_ERROR, "Ray did not answer 4 attempts");
    assert!(run.stderr.contains("127.0.0.1:1"), "{}", run.stderr);
    // The real cluster without its token: Ray's refusal, and the way out.
    t.run(&["step-operator", "update", "ray", "--config", &format!("address={RAY_ADDRESS}")]).expect_code(0);
    t.run(&["step-operator", "update", "ray", "--unset", "token_secret"]).expect_code(0);
    let run = t.launch("ray", "s", &["true"]);
    run.expect_error(FLAVOR_ERROR, "HTTP 401");
    assert!(run.stderr.contains("the cluster wants a token"), "{}", run.stderr);
    // A secret the step operator is not granted.
    t.run(&["step-operator", "update", "ray", "--config", "token_secret=ray-token", "--revoke", "secret=ray-token"])
        .expect_code(0);
    let run = t.launch("ray", "s", &["true"]);
    run.expect_error(DENIED, "--grant secret=ray-token");
    // Nothing of the token reached the run's records.
    let token = fs::read_to_string(t.home().join("secrets/ray-token")).expect("the stored secret");
    for run in t.runs() {
        let details = t.run_details(run["id"].as_str().expect("a run id")).to_string();
        assert!(!details.contains(token.trim()), "the token is in a run record: {details}");
    }
}

#[test]
fn a_detached_slurm_run_whose_supervisor_dies_has_its_slurm_job_cancelled() {
    let t = slurm_home();
    let submitted =
        t.run(&["submit", "-s", "hpc", "--pipeline", "p", "--run", "r", "--step", "s", "--", "sh", "-c", "sleep 300"]);
    submitted.expect_code(0);
    let run = submitted.stdout.trim().to_owned();
    let job_id = || {
        let details = t.run_details(&run);
        details["jobs"][0]["external_id"].as_str().map(str::to_owned)
    };
    assert!(wait_until(Duration::from_secs(20), || job_id().is_some()), "the Slurm job was submitted");
    let slurm_id = job_id().expect("a Slurm job id");
    assert!(wait_until(Duration::from_secs(20), || slurm_job(&slurm_id)["JobState"] == "RUNNING"), "it runs");
    let pid = t.run(&["status", &run, "-o", "json"]).json()["pid"].as_i64().expect("a pid") as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).expect("kill the supervisor");
    std::thread::sleep(Duration::from_millis(300));
    let status = t.run(&["status", &run, "-o", "json"]).json();
    assert_eq!(status["state"], "failed");
    assert!(status["message"].as_str().is_some_and(|m| m.contains("its jobs were stopped")), "{status}");
    assert!(
        wait_until(Duration::from_secs(20), || slurm_job(&slurm_id)["JobState"] == "CANCELLED"),
        "Slurm shows the orphaned job cancelled: {:?}",
        slurm_job(&slurm_id)
    );
}
