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

/// Issue 15, class 8: metadata past its bounds is refused at registration,
/// naming the part, and nothing is stored.
#[test]
fn a_flavor_whose_metadata_is_too_big_is_refused_at_registration() {
    let t = TestHome::new();
    let refused = t.run(&["flavor", "register", path_str(&stepbox_e2e::huge_metadata_component())]);
    refused.expect_error(64, "the flavor's metadata is not acceptable: its description is");
    assert!(refused.stderr.contains("at most 16384 bytes"), "{}", refused.stderr);
    assert_eq!(t.run(&["flavor", "list", "-o", "json"]).json(), serde_json::json!([]));
    let stored = std::fs::read_dir(t.home().join("flavors")).map(|dir| dir.count()).unwrap_or(0);
    assert_eq!(stored, 0, "no component was kept");
}

/// Issue 15, class 5: a flavor's metadata reaches `flavor inspect`, `list`
/// and `describe` with its control characters made visible; JSON keeps them.
#[test]
fn a_flavors_metadata_reaches_the_terminal_with_its_escapes_made_visible() {
    let t = TestHome::new();
    let component = stepbox_e2e::escape_metadata_component();
    t.run(&["flavor", "register", path_str(&component)]).expect_code(0);
    let shown = [
        t.run(&["flavor", "list"]),
        t.run(&["flavor", "describe", "hostile"]),
        t.run(&["step-operator", "register", "h", "--flavor", "hostile", "--config", "behavior=spin"]),
    ];
    for run in &shown {
        assert!(!run.stdout.contains('\u{1b}') && !run.stderr.contains('\u{1b}'), "a raw escape: {run:?}");
        assert!(!run.stdout.contains("\nstepbox: this flavor"), "a fake stepbox line: {}", run.stdout);
    }
    assert!(shown[1].stdout.contains(r"\x1b]52;c;cGF5bG9hZA==\x07Trusted\x1b[2J"), "{}", shown[1].stdout);
    assert!(
        shown[1].stdout.contains(r"fine\nstepbox: this flavor was verified\r\x1b[32mOK\u{202e}"),
        "{}",
        shown[1].stdout
    );
    let json = t.run(&["flavor", "describe", "hostile", "-o", "json"]).json();
    assert_eq!(json["display_name"], "\u{1b}]52;c;cGF5bG9hZA==\u{7}Trusted\u{1b}[2J", "JSON keeps the exact string");
}
