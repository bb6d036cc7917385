//! The core runtime, end to end: register a flavor, configure a step
//! operator, launch steps, and read back what happened, all through the real
//! `stepbox` binary and real components built from source.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use stepbox_e2e::{
    Run, TestHome, command_component, hostile_flavor, live_processes_with, local_flavor, path_str, unique_marker,
    wait_until,
};

const BAD_INPUT: i32 = 64;
const FLAVOR_ERROR: i32 = 70;
const DENIED: i32 = 77;
const CANCELLED_SIGINT: i32 = 130;

#[test]
fn a_launched_step_runs_and_its_run_is_recorded_as_succeeded() {
    let t = TestHome::new();
    t.with_local();
    let out = t.scratch().join("out.txt");
    let script = format!("echo \"$GREETING from $PWD\" > {}", out.display());
    let run = t.run(&[
        "launch",
        "-s",
        "local",
        "--pipeline",
        "training",
        "--run",
        "run-7",
        "--step",
        "trainer",
        "--env",
        "GREETING=hello",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    run.expect_code(0);

    let written = fs::read_to_string(&out).expect("the step wrote its file");
    let scratch = fs::canonicalize(t.scratch()).expect("scratch exists");
    assert_eq!(written.trim(), format!("hello from {}", scratch.display()));

    let runs = t.runs();
    assert_eq!(runs.len(), 1);
    let recorded = &runs[0];
    assert_eq!(recorded["state"], "succeeded");
    assert_eq!(recorded["exit_code"], 0);
    assert_eq!(recorded["pipeline"], "training");
    assert_eq!(recorded["run_name"], "run-7");
    assert_eq!(recorded["step"], "trainer");
    let details = t.run_details(recorded["id"].as_str().expect("run id"));
    let jobs = details["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["state"], "succeeded");
    assert_eq!(jobs[0]["command"][0], "sh");
    // Environment values may be credentials: only their names are stored.
    assert_eq!(details["run"]["request"]["environment_names"][0], "GREETING");
    assert!(!details.to_string().contains("hello"), "env values must not be stored");
}

#[test]
fn a_failing_step_exits_with_its_code_and_the_run_shows_the_log_tail() {
    let t = TestHome::new();
    t.with_local();
    let run = t.launch("local", "evaluate", &["sh", "-c", "echo about to fail; echo on stderr >&2; exit 3"]);
    run.expect_code(3);
    assert!(run.stdout.contains("about to fail"), "job output is streamed: {}", run.stdout);
    assert!(run.stderr.contains("on stderr"));
    assert!(run.stderr.contains("failed"), "a summary names the failure: {}", run.stderr);

    let runs = t.runs();
    assert_eq!(runs[0]["state"], "failed");
    assert_eq!(runs[0]["exit_code"], 3);
    let id = runs[0]["id"].as_str().expect("run id");
    let shown = t.run(&["runs", "show", &id[..8]]);
    shown.expect_code(0);
    assert!(shown.stdout.contains("failed"));
    assert!(shown.stdout.contains("exited with code 3"));
    assert!(shown.stdout.contains("about to fail"), "the log tail is shown: {}", shown.stdout);
}

#[test]
fn a_job_sees_only_its_own_environment_plus_path_and_its_job_marker() {
    let t = TestHome::new();
    t.with_local();
    let mut command = t.launch_command_with("local", "env", &["-e", "ONLY=this"], &["env"]);
    command.env("SECRET_OF_THE_HOST", "leak");
    let output = command.output().expect("stepbox runs");
    assert!(output.status.success());
    let mut names: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once('=').map(|(name, _)| name.to_owned()))
        .collect();
    names.sort();
    // `env` itself may add PWD on some systems; nothing of the host's may appear. STEPBOX_JOB_ID
    // marks the job's processes, so that a job whose launch died can be found (RELIABILITY.md);
    // the GPU variables are the host's, from the job's lease (here none: no GPU visible to CUDA).
    names.retain(|name| name != "PWD");
    assert_eq!(
        names,
        ["CUDA_DEVICE_ORDER", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "ONLY", "PATH", "STEPBOX_JOB_ID"]
    );
}

#[test]
fn a_program_that_is_missing_or_not_executable_fails_the_same_way_confined_or_trusted() {
    let t = TestHome::new();
    t.with_local();
    let not_executable = t.scratch().join("not-executable.sh");
    std::fs::write(&not_executable, "#!/bin/sh\necho ran\n").expect("write");
    std::fs::set_permissions(&not_executable, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let not_executable = path_str(&not_executable).to_owned();
    for trust in ["confined", "trusted"] {
        if trust == "trusted" {
            t.run(&["step-operator", "update", "local", "--grant", "trusted"]).expect_code(0);
        }
        // As a shell reports them: 127 for no such program, 126 for one that cannot be executed.
        let missing = t.launch("local", "s", &["/nonexistent/program"]);
        missing.expect_code(127);
        assert!(
            missing.stderr.contains("cannot start `/nonexistent/program`: no such program"),
            "{trust}: {}",
            missing.stderr
        );
        let unknown = t.launch("local", "s", &["no-such-program-anywhere"]);
        unknown.expect_code(127);
        assert!(unknown.stderr.contains("is it on the job's PATH?"), "{trust}: {}", unknown.stderr);
        let refused = t.launch("local", "s", &[&not_executable]);
        refused.expect_code(126);
        assert!(refused.stderr.contains("permission denied"), "{trust}: {}", refused.stderr);
        let run = &t.runs()[0];
        assert_eq!((run["state"].as_str(), run["exit_code"].as_i64()), (Some("failed"), Some(126)), "{trust}: {run}");
    }
}

#[test]
fn a_job_starts_with_no_signal_blocked_or_ignored_confined_or_trusted() {
    let t = TestHome::new();
    t.with_local();
    for trust in ["confined", "trusted"] {
        if trust == "trusted" {
            t.run(&["step-operator", "update", "local", "--grant", "trusted"]).expect_code(0);
        }
        // A job that inherited SIGTERM blocked would never see its cancellation coming.
        let run = t.launch("local", "s", &["grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"]);
        run.expect_code(0);
        let mask = |name: &str| {
            let line = run.stdout.lines().find(|line| line.starts_with(name)).expect("the mask's line");
            u64::from_str_radix(line[name.len()..].trim(), 16).expect("a hex mask")
        };
        assert_eq!(mask("SigBlk:"), 0, "{trust}: nothing is blocked: {}", run.stdout);
        // SIGHUP, SIGINT, SIGTERM (bits 0, 1, 14): not ignored. (What the test runner itself ignores
        // and passed down, a real-time signal, is not stepbox's to change.)
        assert_eq!(mask("SigIgn:") & 0x4003, 0, "{trust}: {}", run.stdout);
    }
}

#[test]
fn invalid_config_is_refused_with_the_flavors_message() {
    let t = TestHome::new();
    t.run(&["flavor", "register", path_str(&local_flavor())]).expect_code(0);

    let zero = t.register_operator("fast", "local", &["--config", "timeout_seconds=0"]);
    zero.expect_error(BAD_INPUT, "timeout_seconds: must be at least 1 second");

    let unknown = t.register_operator("odd", "local", &["--config", "colour=blue"]);
    unknown.expect_error(BAD_INPUT, "unknown field `colour`");

    let wrong_type = t.register_operator("odd", "local", &["--config", "timeout_seconds=soon"]);
    wrong_type.expect_error(BAD_INPUT, "timeout_seconds");

    let listed = t.run(&["step-operator", "list", "-o", "json"]);
    assert_eq!(listed.json(), serde_json::json!([]), "nothing refused was stored");

    // A valid config goes in, and update is validated the same way.
    t.register_operator("slow", "local", &["--config", "timeout_seconds=60"]).expect_code(0);
    let update = t.run(&["step-operator", "update", "slow", "--config", "timeout_seconds=0"]);
    update.expect_code(BAD_INPUT);
    let described = t.run(&["step-operator", "describe", "slow", "-o", "json"]);
    assert_eq!(described.json()["config"]["timeout_seconds"], 60, "a refused update changes nothing");
}

#[test]
fn files_that_are_not_flavors_are_refused_with_a_clear_error() {
    let t = TestHome::new();

    let text = t.scratch().join("notes.wasm");
    fs::write(&text, "this is not WebAssembly").expect("write");
    let refused = t.run(&["flavor", "register", path_str(&text)]);
    refused.expect_error(BAD_INPUT, "is not a WebAssembly file");

    let module = t.scratch().join("module.wasm");
    let bytes = wat::parse_str(r#"(module (func (export "launch") (result i32) i32.const 0))"#).expect("valid wat");
    fs::write(&module, bytes).expect("write");
    let refused = t.run(&["flavor", "register", path_str(&module)]);
    refused.expect_error(BAD_INPUT, "is a core WebAssembly module, not a component");
    assert!(refused.stderr.contains("wasm32-wasip2"), "the error says how to build a component");

    let command = command_component();
    let refused = t.run(&["flavor", "register", path_str(&command)]);
    refused.expect_error(BAD_INPUT, "is a component of another world");
    assert!(refused.stderr.contains("wasi:cli/run"), "the error names what it does export: {}", refused.stderr);
    assert!(refused.stderr.contains("stepbox:operator/operator@0.2.1"), "and what was expected");

    let future = stepbox_e2e::future_contract_component();
    let refused = t.run(&["flavor", "register", path_str(&future)]);
    refused.expect_code(BAD_INPUT);
    assert!(
        refused.stderr.contains("was built against contract stepbox:operator@0.3.0")
            && refused.stderr.contains("this stepbox implements stepbox:operator@0.2.1"),
        "{}",
        refused.stderr
    );

    let missing = t.run(&["flavor", "register", "/nonexistent/flavor.wasm"]);
    missing.expect_code(BAD_INPUT);
    assert!(missing.stderr.contains("cannot read /nonexistent/flavor.wasm"));

    let listed = t.run(&["flavor", "list", "-o", "json"]);
    listed.expect_code(0);
    assert_eq!(listed.json(), serde_json::json!([]));
}

#[test]
fn a_registered_flavor_describes_its_capabilities_and_schemas() {
    let t = TestHome::new();
    let registered = t.run(&["flavor", "register", path_str(&local_flavor())]);
    registered.expect_code(0);
    assert!(registered.stdout.contains("registered flavor `local`"));

    // Registering the same file again is harmless.
    t.run(&["flavor", "register", path_str(&local_flavor())]).expect_code(0);

    let described = t.run(&["flavor", "describe", "local", "-o", "json"]).json();
    assert_eq!(described["name"], "local");
    assert_eq!(described["shape"]["capabilities"], serde_json::json!(["jobs", "log", "requirements"]));
    assert_eq!(described["config_schema"]["properties"]["timeout_seconds"]["type"][0], "integer");
    assert!(described["settings_schema"]["properties"]["environment"].is_object());
    assert_eq!(described["status"], "ok");

    let table = t.run(&["flavor", "describe", "local"]);
    assert!(table.stdout.contains("capabilities  jobs, log, requirements"), "{}", table.stdout);
}

#[test]
fn a_deleted_component_file_does_not_break_listing_other_flavors() {
    let t = TestHome::new();
    t.run(&["flavor", "register", path_str(&local_flavor())]).expect_code(0);
    t.run(&["flavor", "register", path_str(&hostile_flavor())]).expect_code(0);
    let local = t.run(&["flavor", "describe", "local", "-o", "json"]).json();
    let blob = t.home().join("flavors").join(format!("{}.wasm", local["sha256"].as_str().expect("sha")));
    fs::remove_file(&blob).expect("the blob exists");

    let listed = t.run(&["flavor", "list", "-o", "json"]);
    listed.expect_code(0);
    let listed = listed.json();
    let status =
        |name: &str| listed.as_array().into_iter().flatten().find(|f| f["name"] == name).map(|f| f["status"].clone());
    assert_eq!(status("local"), Some("component file missing".into()));
    assert_eq!(status("hostile"), Some("ok".into()));

    // Using the broken one says how to repair it.
    let refused = t.register_operator("x", "local", &[]);
    refused.expect_error(BAD_INPUT, "register the flavor again");
}

#[test]
fn a_flavor_in_use_cannot_be_deleted_and_deletes_cleanly_once_free() {
    let t = TestHome::new();
    t.with_local();
    let refused = t.run(&["flavor", "delete", "local"]);
    refused.expect_error(BAD_INPUT, "used by the step operators local");
    t.run(&["step-operator", "delete", "local"]).expect_code(0);
    t.run(&["flavor", "delete", "local"]).expect_code(0);
    assert_eq!(t.run(&["flavor", "list", "-o", "json"]).json(), serde_json::json!([]));
    t.run(&["flavor", "describe", "local"]).expect_code(BAD_INPUT);
}

#[test]
fn a_job_running_another_command_is_denied() {
    let t = TestHome::new();
    t.run(&["flavor", "register", path_str(&hostile_flavor())]).expect_code(0);
    t.register_operator(
        "h",
        "hostile",
        &["--grant", "jobs", "--grant", "requirements", "--grant", "images", "--config", "behavior=other-command"],
    )
    .expect_code(0);
    let marker = t.scratch().join("ran");
    let run = t.launch("h", "s", &["touch", path_str(&marker)]);
    run.expect_code(DENIED);
    assert!(run.stderr.contains("entrypoint-only"), "the denial names the rule: {}", run.stderr);
    assert!(!run.stdout.contains("escaped"), "the other command never ran");
    assert!(!marker.exists(), "and neither did the entrypoint");
    let runs = t.runs();
    assert_eq!(runs[0]["state"], "failed");
    let details = t.run_details(runs[0]["id"].as_str().expect("id"));
    assert_eq!(details["jobs"], serde_json::json!([]), "no job was recorded for a denied submission");

    // The host survives, and later launches still work.
    t.with_local();
    t.launch("local", "after", &["true"]).expect_code(0);
}

#[test]
fn a_flavor_that_returns_before_its_job_ends_has_the_job_cancelled() {
    let t = TestHome::new();
    t.run(&["flavor", "register", path_str(&hostile_flavor())]).expect_code(0);
    t.register_operator(
        "h",
        "hostile",
        &["--grant", "jobs", "--grant", "requirements", "--grant", "images", "--config", "behavior=return-early"],
    )
    .expect_code(0);
    let marker = unique_marker();
    let sleep = format!("300.{marker}");
    let run = t.launch("h", "s", &["sleep", &sleep]);
    run.expect_error(FLAVOR_ERROR, "returned before its job finished");
    assert!(run.stderr.contains("was still running; it was cancelled"), "{}", run.stderr);
    assert_eq!(live_processes_with(&marker), Vec::<i32>::new(), "the job's process is gone");
    let details = t.run_details(t.runs()[0]["id"].as_str().expect("id"));
    assert_eq!(details["jobs"][0]["state"], "cancelled");
}

#[test]
fn sigint_cancels_the_jobs_whole_process_tree_and_records_the_run_cancelled() {
    let t = TestHome::new();
    t.with_local();
    // The step starts a child that sleeps, and sleeps itself; both carry a marker.
    let marker = unique_marker();
    let script = format!("sleep 300.{marker} & echo started; exec sleep 301.{marker}");
    let mut launch = t.spawn_launch("local", "sleepy", &["sh", "-c", &script]);
    // Output is streamed while the job runs: read it before the job ends.
    assert_eq!(launch.next_line(), "started");
    let stepbox = launch.pid();
    let job_processes = || live_processes_with(&marker).into_iter().filter(|&pid| pid != stepbox).count();
    assert!(wait_until(Duration::from_secs(60), || job_processes() >= 2), "the step started both processes");

    launch.signal(Signal::SIGINT);
    launch.finish().expect_code(CANCELLED_SIGINT);
    assert_eq!(live_processes_with(&marker), Vec::<i32>::new(), "a process of the job outlived the cancellation");
    let runs = t.runs();
    assert_eq!(runs[0]["state"], "cancelled");
    let details = t.run_details(runs[0]["id"].as_str().expect("id"));
    assert_eq!(details["jobs"][0]["state"], "cancelled");
}

#[test]
fn twenty_concurrent_launches_against_one_home_all_finish_and_are_recorded() {
    let t = TestHome::new();
    t.with_local();
    let children: Vec<_> = (0..20)
        .map(|i| {
            let step = format!("step-{i}");
            let echo = format!("echo launch {i}");
            t.launch_command("local", &step, &["sh", "-c", &echo])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("stepbox starts")
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let output = child.wait_with_output().expect("stepbox exits");
        assert!(output.status.success(), "launch {i} failed: {}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), format!("launch {i}"));
    }
    let runs = t.runs();
    assert_eq!(runs.len(), 20);
    let mut steps: Vec<String> = runs.iter().map(|run| run["step"].as_str().unwrap_or("").to_owned()).collect();
    steps.sort();
    let mut expected: Vec<String> = (0..20).map(|i| format!("step-{i}")).collect();
    expected.sort();
    assert_eq!(steps, expected);
    assert!(runs.iter().all(|run| run["state"] == "succeeded"));
    for run in &runs {
        let details = t.run_details(run["id"].as_str().expect("id"));
        assert_eq!(details["jobs"].as_array().map(Vec::len), Some(1));
    }
}

#[test]
fn bad_launch_arguments_are_refused_before_anything_runs() {
    let t = TestHome::new();
    t.with_local();
    let cases: &[(&[&str], &str)] = &[
        (&["--memory", "lots"], "is not a memory size"),
        (&["--env", "1BAD=x"], "not a valid environment variable name"),
        (&["--env", "NOEQUALS"], "is not KEY=VALUE"),
        (&["--settings", "[1]"], "must be a JSON object"),
        (&["--settings", "{oops"], "not valid JSON"),
        (&["--cpu", "-1"], "must be a positive number"),
    ];
    for (flags, message) in cases {
        let output = t.launch_command_with("local", "s", flags, &["true"]).output().expect("stepbox runs");
        Run::from_output(output).expect_error(BAD_INPUT, message);
    }
    let unknown = t.launch("nope", "s", &["true"]);
    unknown.expect_code(BAD_INPUT);
    assert!(unknown.stderr.contains("no step operator named `nope`"));
    let settings = t
        .launch_command_with("local", "s", &["--settings", "{\"colour\": 1}"], &["true"])
        .output()
        .expect("stepbox runs");
    let settings = Run::from_output(settings);
    settings.expect_error(BAD_INPUT, "unknown field `colour`");
    assert_eq!(t.runs().len(), 1, "only the launch that reached the flavor is recorded");
}

#[test]
fn registration_compiles_once_and_launches_survive_a_wiped_cache() {
    let t = TestHome::new();
    t.with_local();
    let described = t.run(&["flavor", "describe", "local", "-o", "json"]).json();
    let sha = described["sha256"].as_str().expect("sha").to_owned();
    let cached = |t: &TestHome| -> usize {
        fs::read_dir(t.home().join("cache"))
            .expect("cache dir")
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(&sha) && name.ends_with(".cwasm"))
            .count()
    };
    assert_eq!(cached(&t), 1, "registration wrote one precompiled artifact");

    fs::remove_dir_all(t.home().join("cache")).expect("wipe the cache");
    fs::create_dir(t.home().join("cache")).expect("recreate it empty");
    t.launch("local", "s", &["true"]).expect_code(0);
    assert_eq!(cached(&t), 1, "the launch recompiled and cached it again");
}

#[test]
fn a_damaged_precompiled_copy_is_never_run_and_is_compiled_again() {
    let t = TestHome::new();
    t.with_local();
    let sha = t.run(&["flavor", "describe", "local", "-o", "json"]).json()["sha256"].as_str().expect("sha").to_owned();
    let artifact = fs::read_dir(t.home().join("cache"))
        .expect("cache dir")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .find(|path| path_str(path).contains(&sha) && path_str(path).ends_with(".cwasm"))
        .expect("registration wrote a precompiled copy");
    let status =
        |t: &TestHome| t.run(&["flavor", "list", "-o", "json"]).json()[0]["status"].as_str().map(str::to_owned);
    assert_eq!(status(&t).as_deref(), Some("ok"));
    for damage in ["bit rot", "cut short"] {
        let mut bytes = fs::read(&artifact).expect("read the copy");
        match damage {
            // Native code overwritten with `ud2` (SIGILL) from the middle on, as a bad disk would.
            "bit rot" => {
                let middle = bytes.len() / 2;
                for (i, byte) in bytes[middle..middle + 4096].iter_mut().enumerate() {
                    *byte = if i % 2 == 0 { 0x0f } else { 0x0b };
                }
            }
            _ => bytes.truncate(bytes.len() * 2 / 3),
        }
        fs::write(&artifact, &bytes).expect("damage it");
        let listed = status(&t).unwrap_or_default();
        assert!(listed.contains("precompiled copy damaged"), "{damage}: flavor list says so: {listed}");
        let run = t.launch("local", "s", &["echo", "still-right"]);
        run.expect_code(0);
        assert!(run.stdout.contains("still-right"), "{damage}: {}", run.stdout);
        assert!(run.stderr.contains("is damaged"), "{damage}: the launch says why it compiled: {}", run.stderr);
        assert_eq!(status(&t).as_deref(), Some("ok"), "{damage}: the copy was written again");
    }
}

#[test]
fn a_job_past_its_timeout_is_stopped_and_reported_as_timed_out() {
    let t = TestHome::new();
    t.run(&["flavor", "register", path_str(&local_flavor())]).expect_code(0);
    let config = t.scratch().join("config.json");
    fs::write(&config, r#"{"timeout_seconds": 1, "environment": {"FROM_CONFIG": "yes"}}"#).expect("write");
    t.register_operator(
        "brief",
        "local",
        &[
            "--grant",
            "jobs",
            "--grant",
            "requirements",
            "--grant",
            "job-env=FROM_CONFIG",
            "--config-file",
            path_str(&config),
        ],
    )
    .expect_code(0);
    let run = t.launch("brief", "s", &["sh", "-c", "echo FROM_CONFIG=$FROM_CONFIG; exec sleep 60"]);
    run.expect_code(124);
    assert!(run.stdout.contains("FROM_CONFIG=yes"), "config environment reached the job: {}", run.stdout);
    assert!(run.stderr.contains("timed out after 1s"), "{}", run.stderr);
    let details = t.run_details(t.runs()[0]["id"].as_str().expect("id"));
    assert_eq!(details["run"]["state"], "failed");
    assert_eq!(details["jobs"][0]["state"], "timed-out");
}

#[test]
fn a_flavor_importing_an_ungranted_capability_is_refused_before_it_runs() {
    let t = TestHome::new();
    t.run(&["flavor", "register", path_str(&local_flavor())]).expect_code(0);
    let registered = t.register_operator("bare", "local", &[]);
    registered.expect_code(0);
    assert!(registered.stderr.contains("does not grant it"), "registration warns: {}", registered.stderr);
    let described = t.run(&["step-operator", "describe", "bare", "-o", "json"]).json();
    assert_eq!(described["grants"]["capabilities"], serde_json::json!([]), "nothing but log by default");

    let marker = t.scratch().join("ran");
    let refused = t.launch("bare", "s", &["touch", path_str(&marker)]);
    refused.expect_error(DENIED, "imports `jobs`, `requirements`, which step operator `bare` is not granted");
    assert!(
        refused.stderr.contains("stepbox step-operator update bare --grant jobs --grant requirements"),
        "{}",
        refused.stderr
    );
    assert!(!marker.exists(), "nothing ran");
    assert!(t.runs().is_empty(), "a refused launch records no run");

    t.run(&["step-operator", "update", "bare", "--grant", "jobs", "--grant", "requirements"]).expect_code(0);
    t.launch("bare", "s", &["touch", path_str(&marker)]).expect_code(0);
    assert!(marker.exists());

    t.run(&["step-operator", "update", "bare", "--revoke", "jobs"]).expect_code(0);
    t.launch("bare", "s", &["true"]).expect_code(DENIED);
}

#[test]
fn a_job_over_a_resource_ceiling_is_denied_by_rule() {
    let t = TestHome::new();
    t.run(&["flavor", "register", path_str(&local_flavor())]).expect_code(0);
    t.register_operator(
        "cpu",
        "local",
        &["--grant", "jobs", "--grant", "requirements", "--grant", "max-gpu=0", "--grant", "max-memory=1GiB"],
    )
    .expect_code(0);
    let marker = t.scratch().join("ran");
    let gpu = t.launch_command_with("cpu", "s", &["--gpu", "1"], &["touch", path_str(&marker)]).output();
    let gpu = Run::from_output(gpu.expect("stepbox runs"));
    gpu.expect_error(DENIED, "denied by rule `max-gpu`");
    assert!(gpu.stderr.contains("--grant max-gpu=N"), "the denial names the grant: {}", gpu.stderr);
    let memory = t.launch_command_with("cpu", "s", &["--memory", "2GiB"], &["touch", path_str(&marker)]).output();
    Run::from_output(memory.expect("stepbox runs")).expect_error(DENIED, "denied by rule `max-memory`");
    assert!(!marker.exists(), "no job ran");
    let within = t.launch_command_with("cpu", "s", &["--memory", "512MiB"], &["true"]).output();
    Run::from_output(within.expect("stepbox runs")).expect_code(0);

    let bad = t.register_operator("x", "local", &["--grant", "network"]);
    bad.expect_error(BAD_INPUT, "unknown grant `network`");
}

#[test]
fn inspect_describes_a_file_before_registration_without_running_it() {
    let t = TestHome::new();
    let local = local_flavor();
    let inspected = t.run(&["flavor", "inspect", path_str(&local), "-o", "json"]);
    inspected.expect_code(0);
    let inspected = inspected.json();
    assert_eq!(inspected["kind"], "component");
    assert_eq!(inspected["contract"], "stepbox:operator@0.2.1");
    assert_eq!(inspected["capabilities"], serde_json::json!(["jobs", "log", "requirements"]));
    assert_eq!(inspected["wasi_beyond_minimal"], serde_json::json!([]));
    assert_eq!(t.run(&["flavor", "list", "-o", "json"]).json(), serde_json::json!([]), "inspect registers nothing");

    // The sha256 is the one registration stores.
    t.run(&["flavor", "register", path_str(&local)]).expect_code(0);
    let registered = t.run(&["flavor", "describe", "local", "-o", "json"]).json();
    assert_eq!(inspected["sha256"], registered["sha256"]);

    let table = t.run(&["flavor", "inspect", path_str(&local)]);
    assert!(table.stdout.contains("needs: --grant jobs --grant requirements"), "{}", table.stdout);

    // WASI beyond the minimal set is listed with what stepbox does about it.
    let hostile = t.run(&["flavor", "inspect", path_str(&hostile_flavor()), "-o", "json"]).json();
    let beyond = hostile["wasi_beyond_minimal"].as_array().cloned().unwrap_or_default();
    let tcp = beyond.iter().find(|w| w["interface"].as_str().is_some_and(|i| i.starts_with("wasi:sockets/tcp@")));
    assert_eq!(tcp.map(|w| w["note"].clone()), Some("every network operation is refused".into()), "{hostile}");

    // Files that are not flavors: reported, exit 64.
    let command = t.run(&["flavor", "inspect", path_str(&command_component()), "-o", "json"]);
    command.expect_code(BAD_INPUT);
    assert_eq!(command.json()["exports"][0], "wasi:cli/run@0.2.0");
    let future = t.run(&["flavor", "inspect", path_str(&stepbox_e2e::future_contract_component()), "-o", "json"]);
    future.expect_error(BAD_INPUT, "built against contract stepbox:operator@0.3.0");
    assert_eq!(future.json()["contract"], "stepbox:operator@0.3.0");
}

#[test]
fn a_flavor_built_against_an_earlier_contract_of_the_series_still_runs() {
    let t = TestHome::new();
    let released = stepbox_e2e::released_contract_component();
    let inspected = t.run(&["flavor", "inspect", path_str(&released), "-o", "json"]);
    inspected.expect_code(0);
    assert_eq!(inspected.json()["contract"], "stepbox:operator@0.2.0");
    t.run(&["flavor", "register", path_str(&released)]).expect_code(0);
    t.register_operator("old", "released-0-2-0", &["--grant", "jobs"]).expect_code(0);
    let run = t.launch("old", "s", &["echo", "still-runs"]);
    run.expect_code(0);
    assert!(run.stdout.contains("still-runs"), "{}", run.stdout);
}

#[test]
fn secrets_are_read_from_stdin_listed_by_name_and_deleted() {
    let t = TestHome::new();
    let set = |name: &str, value: &[u8]| t.set_secret(name, value);
    set("api-token", b"s3cr3t-value\n").expect_code(0);
    let listed = t.run(&["secret", "list", "-o", "json"]);
    listed.expect_code(0);
    assert_eq!(listed.json(), serde_json::json!(["api-token"]));
    assert!(!listed.stdout.contains("s3cr3t"), "list shows names only");
    let stored = t.home().join("secrets/api-token");
    assert_eq!(fs::read_to_string(&stored).expect("stored"), "s3cr3t-value");
    assert_eq!(fs::metadata(&stored).expect("stat").permissions().mode() & 0o777, 0o600);

    set("../escape", b"x").expect_error(BAD_INPUT, "is not a valid secret name");
    set("empty", b"").expect_error(BAD_INPUT, "is empty");
    t.run(&["secret", "delete", "api-token"]).expect_code(0);
    t.run(&["secret", "delete", "api-token"]).expect_error(BAD_INPUT, "no secret named `api-token`");
    assert_eq!(t.run(&["secret", "list", "-o", "json"]).json(), serde_json::json!([]));

    let backends = t.run(&["backends"]);
    backends.expect_code(0);
    for expected in ["local", "container", "slurm", "partition", "ray", "ray-address", "token-secret"] {
        assert!(backends.stdout.contains(expected), "`stepbox backends` lists {expected}:\n{}", backends.stdout);
    }
}

#[test]
fn a_job_gets_a_granted_secret_as_a_variable_the_flavor_never_sees() {
    let t = TestHome::new();
    let value = format!("pw-{}", stepbox_e2e::unique_marker());
    t.set_secret("db-pass", value.as_bytes()).expect_code(0);
    t.run(&["flavor", "register", path_str(&local_flavor())]).expect_code(0);
    let config = r#"secret_environment={"DB_PASSWORD": "db-pass"}"#;
    // The job shows the value reversed (proof it had it), then prints it
    // plainly, split across two writes: the value itself must appear nowhere.
    let check = r#"printf '%s\n' "$DB_PASSWORD" | rev; v=$DB_PASSWORD; printf 'plain: %s' "${v%??????}"; sleep 0.3; printf '%s\n' "${v#"${v%??????}"}"; printf 'err: %s\n' "$v" >&2"#;
    let base = ["--grant", "jobs", "--grant", "requirements", "--config", config];

    // Not granted: refused, naming the grant.
    t.register_operator("plain", "local", &base).expect_code(0);
    t.launch("plain", "s", &["sh", "-c", check]).expect_error(DENIED, "--grant secret-env=DB_PASSWORD=db-pass");
    // The secret granted, but not bound to the variable by the user: refused too.
    let mut secret_only = base.to_vec();
    secret_only.extend(["--grant", "secret=db-pass"]);
    t.register_operator("secret-only", "local", &secret_only).expect_code(0);
    t.launch("secret-only", "s", &["sh", "-c", check]).expect_error(
        DENIED,
        "denied by rule `secret-env`: the job asks for the secret `db-pass` in the variable `DB_PASSWORD`",
    );

    let mut granted = base.to_vec();
    granted.extend(["--grant", "secret-env=DB_PASSWORD=db-pass"]);
    t.register_operator("granted", "local", &granted).expect_code(0);
    let run = t.launch("granted", "s", &["sh", "-c", check]);
    run.expect_code(0);
    let reversed: String = value.chars().rev().collect();
    assert!(run.stdout.contains(&reversed), "the job had the value: {}", run.stdout);
    assert!(run.stdout.contains("plain: [redacted by stepbox]"), "scrubbed on stdout: {}", run.stdout);
    assert!(run.stderr.contains("err: [redacted by stepbox]"), "scrubbed on stderr: {}", run.stderr);
    assert!(!run.stdout.contains(&value) && !run.stderr.contains(&value), "the value reached the terminal");
    let id = t.runs()[0]["id"].as_str().expect("id").to_owned();
    let audit = t.run(&["runs", "show", &id, "--audit", "-o", "json"]).stdout;
    assert!(audit.contains("secret-env") && audit.contains("DB_PASSWORD=db-pass"), "the audit names it: {audit}");
    let leaked = stepbox_e2e::files_containing(&t.home().join("runs"), &value);
    assert!(leaked.is_empty(), "the value is in no run file: {leaked:?}");
    let stored = stepbox_e2e::files_containing(t.home(), &value);
    assert!(
        stored.iter().all(|path| path.starts_with(t.home().join("secrets"))),
        "only the secret store holds it: {stored:?}"
    );
}

#[test]
fn flavor_test_reports_each_conformance_check() {
    let t = TestHome::new();
    let passed = t.run(&["flavor", "test", path_str(&local_flavor()), "-o", "json"]);
    passed.expect_code(0);
    let report = passed.json();
    let results: Vec<(&str, &str)> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|check| (check["name"].as_str().unwrap_or(""), check["result"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        results,
        [
            ("component", "pass"),
            ("metadata", "pass"),
            ("accepts-sample", "pass"),
            ("rejects-garbage", "pass"),
            ("launch", "pass")
        ]
    );
    let job = &report["jobs"][0];
    assert_eq!(job["command"], serde_json::json!(["python", "-m", "stepbox_conformance_step"]));
    assert_eq!(job["backend"], "local");
    assert!(job["runtime"].as_str().is_some_and(|runtime| runtime.starts_with("environment:py-")), "{job}");
    // Nothing was registered in the user's state, and nothing ran.
    assert_eq!(t.run(&["flavor", "list", "-o", "json"]).json(), serde_json::json!([]));

    // A flavor whose jobs run another command fails the launch check, and says so.
    let hostile = stepbox_e2e::hostile_flavor();
    let failed = t.run(&["flavor", "test", path_str(&hostile), "--config", "behavior=other-command"]);
    failed.expect_code(1);
    assert!(failed.stdout.contains("FAIL: hostile"), "{}", failed.stdout);
    assert!(failed.stdout.contains("launch") && failed.stdout.contains("entrypoint-only"), "{}", failed.stdout);
    // A sample the flavor refuses fails accepts-sample; later checks are not run.
    let refused = t.run(&["flavor", "test", path_str(&hostile), "-o", "json"]);
    refused.expect_code(1);
    assert_eq!(refused.json()["checks"][2]["result"], "fail");
    assert_eq!(refused.json()["checks"][4]["result"], "not-run");
    // Not a component at all.
    let not_wasm = t.scratch().join("not.wasm");
    fs::write(&not_wasm, b"hello").expect("write");
    let bad = t.run(&["flavor", "test", path_str(&not_wasm), "-o", "json"]);
    bad.expect_code(1);
    assert_eq!(bad.json()["checks"][0]["result"], "fail");
}

#[test]
fn job_output_streams_live_while_the_launchs_secrets_are_scrubbed() {
    let t = TestHome::new();
    t.set_secret("db-pass", b"a-long-secret-value-0123456789").expect_code(0);
    t.run(&["flavor", "register", path_str(&local_flavor())]).expect_code(0);
    let config = r#"secret_environment={"DB_PASSWORD": "db-pass"}"#;
    let grants = ["--grant", "jobs", "--grant", "requirements", "--grant", "secret-env=DB_PASSWORD=db-pass"];
    let mut args = grants.to_vec();
    args.extend(["--config", config]);
    t.register_operator("local", "local", &args).expect_code(0);
    // "started" cannot begin the secret: it must arrive while the job still runs.
    let mut launch = t.spawn_launch("local", "s", &["sh", "-c", "echo started; sleep 300"]);
    assert_eq!(launch.next_line(), "started");
    launch.signal(Signal::SIGINT);
    launch.finish().expect_code(130);
}
