//! The hostile-flavor suite: each case in `tests/hostile/cases.json` is a
//! misbehaviour of the hostile flavor (selected by its configuration) and the
//! error it must produce. For every case: the exact failure and exit code, the
//! host survives (no panic of its own, the run is recorded as ended), and no
//! job is left running. After all of them, an honest launch still works.

use serde_json::Value;
use stepbox_e2e::{TestHome, hostile_flavor, live_processes_with, path_str, unique_marker, workspace};

#[test]
fn every_hostile_case_fails_exactly_as_expected_and_leaves_nothing_behind() {
    let cases: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("tests/hostile/cases.json")).expect("the cases file"),
    )
    .expect("the cases are JSON");
    assert!(cases.len() >= 30, "the suite lost cases");
    let t = TestHome::new();
    t.run(&["flavor", "register", path_str(&hostile_flavor())]).expect_code(0);
    let mut failures = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        let name = case["case"].as_str().expect("a case name");
        let operator = format!("case-{n}");
        let config = format!("behavior={}", case["behavior"].as_str().expect("a behavior"));
        let value = format!("value={}", case["value"].as_str().unwrap_or(""));
        let mut args = vec!["--grant", "jobs", "--grant", "requirements", "--grant", "images"];
        args.extend(["--config", &config, "--config", &value, "--limit", "cancel-grace=1s"]);
        for grant in case["grants"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            args.extend(["--grant", grant]);
        }
        if let Some(secret) = case["secret"].as_object() {
            let name = secret["name"].as_str().expect("a secret name");
            t.set_secret(name, secret["value"].as_str().expect("a secret value").as_bytes()).expect_code(0);
        }
        let limits: Vec<&str> = case["limits"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        for limit in &limits {
            args.extend(["--limit", limit]);
        }
        t.register_operator(&operator, "hostile", &args).expect_code(0);

        // Jobs sleep long unless the case needs them to finish; the marker finds them.
        let marker = unique_marker();
        let sleep = format!("300.{marker}");
        let custom: Vec<&str> = case["command"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let command: &[&str] = if !custom.is_empty() {
            &custom
        } else if case["job"] == "short" {
            &["true"]
        } else {
            &["sleep", &sleep]
        };
        let run = t.launch(&operator, "s", command);

        let expected_code = case["exit"].as_i64().expect("an exit code") as i32;
        let expected_error = case["error"].as_str().expect("an error");
        let mut problems = Vec::new();
        if run.code != expected_code {
            problems.push(format!("exit code {} instead of {expected_code}", run.code));
        }
        if !run.stderr.contains(expected_error) {
            problems.push(format!("stderr lacks {expected_error:?}"));
        }
        for absent in case["absent"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if run.stderr.contains(absent) || run.stdout.contains(absent) {
                problems.push(format!("the output holds {absent:?}"));
            }
        }
        if run.stderr.contains("panicked at runtime/") {
            problems.push("the host itself panicked".to_owned());
        }
        let left = live_processes_with(&marker);
        if !left.is_empty() {
            problems.push(format!("processes left running: {left:?}"));
        }
        if let Some(state) = t.runs().first().map(|run| run["state"].clone())
            && state == "running"
        {
            problems.push("the run is still recorded as running".to_owned());
        }
        if !problems.is_empty() {
            let tail: String = run.stderr.chars().rev().take(600).collect::<Vec<_>>().into_iter().rev().collect();
            failures.push(format!("{name}: {}\n  stderr tail: {tail}", problems.join("; ")));
        }
    }
    assert!(failures.is_empty(), "hostile cases failed:\n{}", failures.join("\n"));

    // The host survived all of it: an honest flavor still runs.
    t.with_local();
    t.launch("local", "after", &["true"]).expect_code(0);
}

#[test]
fn a_flavor_whose_metadata_never_returns_is_stopped_and_not_registered() {
    let t = TestHome::new();
    let endless = stepbox_e2e::endless_metadata_component();
    let refused = t.run(&["flavor", "register", path_str(&endless)]);
    refused.expect_error(70, "ran out of its guest CPU budget");
    assert_eq!(t.run(&["flavor", "list", "-o", "json"]).json(), serde_json::json!([]));
}

#[test]
fn a_validate_config_that_never_returns_is_stopped_and_nothing_is_stored() {
    let t = TestHome::new();
    t.run(&["flavor", "register", path_str(&stepbox_e2e::endless_validate_component())]).expect_code(0);
    let refused = t.register_operator("never", "endless", &[]);
    refused.expect_error(70, "ran out of its guest CPU budget");
    assert_eq!(t.run(&["step-operator", "list", "-o", "json"]).json(), serde_json::json!([]));
}

#[test]
fn a_flavor_importing_an_interface_the_host_does_not_provide_is_refused_before_it_runs() {
    let t = TestHome::new();
    let greedy = stepbox_e2e::unknown_import_component();
    let message = "imports `acme:vault/secrets`, which stepbox does not provide";
    t.run(&["flavor", "inspect", path_str(&greedy)]).expect_error(64, message);
    t.run(&["flavor", "register", path_str(&greedy)]).expect_error(64, message);
    assert_eq!(t.run(&["flavor", "list", "-o", "json"]).json(), serde_json::json!([]));
}
