//! The local flavor in every language it is written in — Rust
//! (`example-flavors/local`), Python (`python-local`, componentize-py) and
//! JavaScript (`js-local`, componentize-js) — through the same scenarios: a
//! matrix of (language × scenario), not copies. Each scenario is one
//! function; `matrix!` makes one test per language for each.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use nix::sys::signal::Signal;
use stepbox_e2e::{TestHome, foreign_flavor, live_processes_with, local_flavor, path_str, unique_marker, wait_until};

const BAD_INPUT: i32 = 64;
const DENIED: i32 = 77;
const TIMED_OUT: i32 = 124;
const CANCELLED_SIGINT: i32 = 130;

/// One language's local flavor: its component and its registered name.
struct Flavor {
    path: PathBuf,
    name: &'static str,
}

/// The flavor for `lang`, built once and compiled once into the shared
/// precompiled-component cache, so that each test's registration loads it.
fn flavor(lang: &'static str) -> &'static Flavor {
    static RUST: OnceLock<Flavor> = OnceLock::new();
    static PYTHON: OnceLock<Flavor> = OnceLock::new();
    static JS: OnceLock<Flavor> = OnceLock::new();
    let (cell, name) = match lang {
        "rust" => (&RUST, "local"),
        "python" => (&PYTHON, "python-local"),
        _ => (&JS, "js-local"),
    };
    cell.get_or_init(|| {
        let path = if lang == "rust" { local_flavor() } else { foreign_flavor(lang) };
        // Warm the shared cache: the compile happens here, once.
        TestHome::sharing_cache().run(&["flavor", "register", path_str(&path)]).expect_code(0);
        Flavor { path, name }
    })
}

/// A home with `lang`'s flavor and a step operator `op` using it.
fn home(lang: &'static str, extra: &[&str]) -> TestHome {
    let flavor = flavor(lang);
    let t = TestHome::sharing_cache();
    t.run(&["flavor", "register", path_str(&flavor.path)]).expect_code(0);
    let mut args = vec!["--grant", "jobs", "--grant", "requirements", "--limit", "cancel-grace=2s"];
    args.extend_from_slice(extra);
    t.register_operator("op", flavor.name, &args).expect_code(0);
    t
}

fn a_step_runs_with_its_environment_and_exit_code(lang: &'static str) {
    let config = r#"environment={"FROM_CONFIG": "config", "GREETING": "overridden"}"#;
    let t = home(lang, &["--config", config, "--grant", "job-env=FROM_CONFIG", "--grant", "job-env=GREETING"]);
    let run = t.launch_with("op", "s", &["--env", "GREETING=hello"], &["sh", "-c", "echo $GREETING $FROM_CONFIG; pwd"]);
    run.expect_code(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.first().copied(), Some("hello config"), "the step's env wins over the config's: {}", run.stdout);
    assert_eq!(lines.get(1).copied(), Some(path_str(t.scratch())), "runs in the source root");
    let failed = t.launch("op", "s", &["sh", "-c", "echo to stderr >&2; exit 3"]);
    failed.expect_code(3);
    assert!(failed.stderr.contains("to stderr"), "{}", failed.stderr);
}

fn bad_configuration_is_refused_naming_the_field(lang: &'static str) {
    let flavor = flavor(lang);
    let t = TestHome::sharing_cache();
    t.run(&["flavor", "register", path_str(&flavor.path)]).expect_code(0);
    let zero = t.register_operator("op", flavor.name, &["--grant", "jobs", "--config", "timeout_seconds=0"]);
    zero.expect_error(BAD_INPUT, "timeout_seconds");
    assert!(zero.stderr.contains("at least 1 second"), "{}", zero.stderr);
    let unknown = t.register_operator("op", flavor.name, &["--grant", "jobs", "--config", "timeout=5"]);
    unknown.expect_error(BAD_INPUT, "unknown field `timeout`");
    let relative = t.register_operator("op", flavor.name, &["--grant", "jobs", "--config", "working_dir=rel"]);
    relative.expect_error(BAD_INPUT, "must be an absolute path");
    // The published schemas are JSON Schema objects naming the fields.
    let described = t.run(&["flavor", "describe", flavor.name, "-o", "json"]);
    described.expect_code(0);
    let described = described.json();
    let schema = &described["config_schema"];
    assert_eq!(schema["type"], "object");
    assert!(schema["properties"]["timeout_seconds"].is_object(), "{schema}");
}

fn a_step_past_its_timeout_is_stopped(lang: &'static str) {
    let t = home(lang, &[]);
    let run = t.launch_with("op", "s", &["--settings", r#"{"timeout_seconds": 1}"#], &["sleep", "30"]);
    run.expect_code(TIMED_OUT);
    let bad = t.launch_with("op", "s", &["--settings", r#"{"timeout_seconds": "soon"}"#], &["true"]);
    bad.expect_error(BAD_INPUT, "timeout_seconds");
}

fn a_step_gets_its_python_requirements(lang: &'static str) {
    let t = home(lang, &[]);
    let run = t.launch_with("op", "s", &["-r", "six==1.16.0"], &["python", "-c", "import six; print(six.__version__)"]);
    run.expect_code(0);
    assert_eq!(run.stdout.trim(), "1.16.0");
}

fn an_ungranted_backend_is_denied(lang: &'static str) {
    let t = home(lang, &["--config", "backend=container"]);
    let run = t.launch("op", "s", &["true"]);
    run.expect_error(DENIED, "--grant backend=container");
}

fn ctrl_c_cancels_the_step(lang: &'static str) {
    let t = home(lang, &[]);
    let marker = unique_marker();
    let mut launch = t.spawn_launch("op", "s", &["sh", "-c", &format!("echo started; sleep 300 # {marker}")]);
    assert_eq!(launch.next_line(), "started");
    launch.signal(Signal::SIGINT);
    launch.finish().expect_code(CANCELLED_SIGINT);
    assert!(wait_until(Duration::from_secs(5), || live_processes_with(&marker).is_empty()), "the job is gone");
}

fn the_flavor_passes_the_conformance_check(lang: &'static str) {
    let flavor = flavor(lang);
    let t = TestHome::sharing_cache();
    let run = t.run(&["flavor", "test", path_str(&flavor.path)]);
    run.expect_code(0);
    assert!(run.stdout.contains(&format!("PASS: {}", flavor.name)), "{}", run.stdout);
}

fn a_new_project_builds_registers_and_passes_the_conformance_check(lang: &'static str) {
    let t = TestHome::sharing_cache();
    let name = format!("new-{lang}-flavor");
    let project = t.scratch().join(&name);
    t.run(&["new", &name, "--lang", lang, "--dir", path_str(&project)]).expect_code(0);
    // Build with the command the project's README gives.
    let build = |program: &str, args: &[&str]| {
        let output = std::process::Command::new(program)
            .args(args)
            .current_dir(&project)
            .env("CARGO_TARGET_DIR", stepbox_e2e::target_dir().join("scaffold-target"))
            .output()
            .expect("the build command runs");
        assert!(output.status.success(), "{program} {args:?} failed:\n{}", String::from_utf8_lossy(&output.stderr));
    };
    let wasm = match lang {
        "rust" => {
            build("cargo", &["build", "--target", "wasm32-wasip2", "--release"]);
            let file = format!("wasm32-wasip2/release/{}.wasm", name.replace('-', "_"));
            stepbox_e2e::target_dir().join("scaffold-target").join(file)
        }
        "python" => {
            build("./build.sh", &[]);
            project.join(format!("{name}.wasm"))
        }
        _ => {
            build("npm", &["install", "--no-audit", "--no-fund", "--loglevel=error"]);
            build("npm", &["run", "build"]);
            project.join(format!("{name}.wasm"))
        }
    };
    t.run(&["flavor", "test", path_str(&wasm)]).expect_code(0);
    t.run(&["flavor", "register", path_str(&wasm)]).expect_code(0);
    t.register_operator("fresh", &name, &["--grant", "jobs"]).expect_code(0);
    let run = t.launch("fresh", "s", &["sh", "-c", "echo hello from a new flavor"]);
    run.expect_code(0);
    assert_eq!(run.stdout.trim(), "hello from a new flavor");
    // An existing directory is not overwritten.
    t.run(&["new", &name, "--lang", lang, "--dir", path_str(&project)]).expect_error(BAD_INPUT, "already exists");
}

/// One test per (language, scenario).
macro_rules! matrix {
    ($($scenario:ident),* $(,)?) => {
        mod rust {
            $( #[test] fn $scenario() { super::$scenario("rust") } )*
        }
        mod python {
            $( #[test] fn $scenario() { super::$scenario("python") } )*
        }
        mod js {
            $( #[test] fn $scenario() { super::$scenario("js") } )*
        }
    };
}

matrix!(
    a_step_runs_with_its_environment_and_exit_code,
    bad_configuration_is_refused_naming_the_field,
    a_step_past_its_timeout_is_stopped,
    a_step_gets_its_python_requirements,
    an_ungranted_backend_is_denied,
    ctrl_c_cancels_the_step,
    the_flavor_passes_the_conformance_check,
    a_new_project_builds_registers_and_passes_the_conformance_check,
);
