//! `requirements.install` through the local flavor, against real uv and the
//! real package index: a step's requirements are installed into an
//! environment shared by every launch that asks for the same set, built once
//! even when many launches ask at once, never reused when incomplete, and a
//! resolution failure comes back with uv's own message.

use std::fs;
use std::path::PathBuf;
use std::thread;

use stepbox_e2e::{Run, TestHome};

const FLAVOR_ERROR: i32 = 70;
const DENIED: i32 = 77;

/// A pure-Python package from the index, small and stable.
const SIX: &str = "six==1.16.0";
const PRINT_SIX: &[&str] = &["python", "-c", "import six, sys; print(six.__version__, sys.prefix)"];

fn launch_with(t: &TestHome, flags: &[&str], command: &[&str]) -> Run {
    Run::from_output(t.launch_command_with("local", "s", flags, command).output().expect("stepbox runs"))
}

/// The complete environments under the home (those with a marker).
fn environments(t: &TestHome) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(t.home().join("envs")) else { return Vec::new() };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.join("stepbox-environment.json").is_file())
        .collect();
    found.sort();
    found
}

#[test]
fn a_steps_requirements_are_installed_and_the_job_runs_in_them() {
    let t = TestHome::new();
    t.with_local();
    let run = launch_with(&t, &["--requirement", SIX], PRINT_SIX);
    run.expect_code(0);
    let envs = environments(&t);
    assert_eq!(envs.len(), 1, "one environment: {envs:?}");
    let (version, prefix) = run.stdout.trim().split_once(' ').expect("version and prefix");
    assert_eq!(version, "1.16.0", "{}", run.stderr);
    assert_eq!(PathBuf::from(prefix), envs[0], "the job's python is the environment's");
    assert!(run.stderr.contains("requirements: "), "uv's progress is shown:\n{}", run.stderr);
    assert!(run.stderr.contains("creating environment py-"), "{}", run.stderr);

    // The same set, spelled differently, reuses it without running uv.
    let again = launch_with(&t, &["--requirement", "SIX == 1.16.0"], PRINT_SIX);
    again.expect_code(0);
    assert!(!again.stderr.contains("creating environment"), "reused:\n{}", again.stderr);
    assert_eq!(environments(&t), envs);

    // A different set gets an environment of its own.
    launch_with(&t, &["--requirement", SIX, "--requirement", "idna==3.7"], &["python", "-c", "import idna"])
        .expect_code(0);
    assert_eq!(environments(&t).len(), 2);
}

#[test]
fn many_launches_asking_for_one_set_at_once_build_it_once() {
    let t = TestHome::new();
    t.with_local();
    let launches: Vec<_> = (0..4)
        .map(|_| {
            let mut command = t.launch_command_with("local", "s", &["--requirement", "six==1.15.0"], PRINT_SIX);
            thread::spawn(move || Run::from_output(command.output().expect("stepbox runs")))
        })
        .collect();
    let runs: Vec<Run> = launches.into_iter().map(|launch| launch.join().expect("launch thread")).collect();
    for run in &runs {
        run.expect_code(0);
        assert!(run.stdout.starts_with("1.15.0 "), "{}", run.stdout);
    }
    let builds = runs.iter().filter(|run| run.stderr.contains("creating environment")).count();
    assert_eq!(builds, 1, "exactly one launch builds; the others wait and reuse it");
    assert_eq!(environments(&t).len(), 1);
}

#[test]
fn an_environment_left_incomplete_is_rebuilt_not_reused() {
    let t = TestHome::new();
    t.with_local();
    launch_with(&t, &["--requirement", SIX], PRINT_SIX).expect_code(0);
    let env = environments(&t).pop().expect("an environment");
    // As if the build had died halfway: the marker is the last thing written.
    fs::remove_file(env.join("stepbox-environment.json")).expect("remove the marker");
    fs::remove_dir_all(env.join("lib")).expect("break it");

    let run = launch_with(&t, &["--requirement", SIX], PRINT_SIX);
    run.expect_code(0);
    assert!(run.stderr.contains("removing the incomplete environment"), "{}", run.stderr);
    assert!(run.stdout.starts_with("1.16.0 "));
}

#[test]
fn a_requirement_that_cannot_be_resolved_fails_with_uvs_message() {
    let t = TestHome::new();
    t.with_local();
    let missing = "stepbox-no-such-package-7f3a9c==1.0";
    let run = launch_with(&t, &["--requirement", missing], &["true"]);
    run.expect_error(FLAVOR_ERROR, "uv could not install the requirements");
    assert!(run.stderr.contains("stepbox-no-such-package-7f3a9c"), "uv names the package:\n{}", run.stderr);
    assert!(environments(&t).is_empty(), "a failed environment is never marked complete");
    let message = t.runs()[0]["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("stepbox-no-such-package-7f3a9c"), "the run records uv's message: {message}");

    let bad = launch_with(&t, &["--requirement", "not a requirement!"], &["true"]);
    bad.expect_error(FLAVOR_ERROR, "`not a requirement!` is not a valid requirement (PEP 508)");

    t.run(&["step-operator", "update", "local", "--config", "python_version=3.99"]).expect_code(0);
    let python = launch_with(&t, &["--requirement", SIX], &["true"]);
    python.expect_error(FLAVOR_ERROR, "3.99");
}

#[test]
fn without_uv_the_error_says_how_to_get_it() {
    let t = TestHome::new();
    t.with_local();
    let mut command = t.launch_command_with("local", "s", &["--requirement", SIX], &["true"]);
    command.env("STEPBOX_UV", t.scratch().join("no-uv-here"));
    let run = Run::from_output(command.output().expect("stepbox runs"));
    run.expect_error(FLAVOR_ERROR, "uv is needed to install Python requirements");
    assert!(run.stderr.contains("pip install uv"), "{}", run.stderr);
    assert!(run.stderr.contains("STEPBOX_UV names"), "{}", run.stderr);
}

#[test]
fn installing_requirements_needs_the_grant() {
    let t = TestHome::new();
    t.with_local();
    t.run(&["step-operator", "update", "local", "--revoke", "requirements"]).expect_code(0);
    let run = launch_with(&t, &["--requirement", SIX], &["true"]);
    run.expect_error(DENIED, "--grant requirements");
    assert!(environments(&t).is_empty());
}

#[test]
fn urls_and_source_builds_need_their_own_grants() {
    let t = TestHome::new();
    t.with_local();
    // The caller's own URL requirement is the caller's choice: no grant, uv fetches it (and here
    // cannot). A URL the *flavor* adds is refused (hostile case "class 2: a package by URL the
    // step did not ask for"; with `flavor-packages` it still needs `requirement-urls`).
    let url = "six @ https://example.invalid/six-1.16.0-py2.py3-none-any.whl";
    let fetched = launch_with(&t, &["--requirement", url], &["true"]);
    fetched.expect_error(FLAVOR_ERROR, "Failed to download");
    assert!(!fetched.stderr.contains("denied"), "{}", fetched.stderr);
    assert!(environments(&t).is_empty(), "nothing was installed");

    // docopt 0.6.2 exists only as a source distribution: building it runs its setup.py.
    let sdist = launch_with(&t, &["--requirement", "docopt==0.6.2"], &["true"]);
    sdist.expect_error(FLAVOR_ERROR, "--grant source-builds");
    t.run(&["step-operator", "update", "local", "--grant", "source-builds"]).expect_code(0);
    let built = launch_with(&t, &["--requirement", "docopt==0.6.2"], &["python", "-c", "import docopt"]);
    built.expect_code(0);
}
