//! `images.build` through the container flavor, against a real registry,
//! real uv and real podman: an image with a requirement from the package
//! index and the step's code runs the step; a change to code alone changes
//! only the code layer; uv's message comes back for a requirement that does
//! not exist; registries and base images must be granted.

use std::fs;

use serde_json::Value;
use stepbox_e2e::{Run, TestHome, container_flavor, path_str, registry};

const FLAVOR_ERROR: i32 = 70;
const DENIED: i32 = 77;

fn base_image() -> String {
    format!("{}/stepbox-test/python:3.11", registry())
}

/// A home with the container flavor and a step operator `builder` that may
/// build on the test Python image and push to the test registry.
fn builder_home(grant_registry: bool) -> TestHome {
    let t = TestHome::new();
    t.run(&["flavor", "register", path_str(&container_flavor())]).expect_code(0);
    let base = base_image();
    let registry = registry();
    let config_base = format!("base_image={base}");
    let config_repository = format!("repository={registry}/stepbox-e2e/steps");
    let grant_base = format!("base-image={base}");
    let grant_registry_arg = format!("registry={registry}");
    let mut args = vec![
        "--grant",
        "jobs",
        "--grant",
        "images",
        "--grant",
        "backend=container",
        "--grant",
        &grant_base,
        "--config",
        &config_base,
        "--config",
        &config_repository,
        "--config",
        r#"ignore=["*.log"]"#,
    ];
    if grant_registry {
        args.extend(["--grant", &grant_registry_arg]);
    }
    t.register_operator("builder", "container", &args).expect_code(0);
    t
}

fn write_step(t: &TestHome, message: &str) {
    let code = format!("import six\nprint({message:?}, six.__version__)\n");
    fs::write(t.scratch().join("step.py"), code).expect("write the step");
}

fn launch(t: &TestHome, requirements: &[&str]) -> Run {
    let mut flags = Vec::new();
    for requirement in requirements {
        flags.extend(["--requirement", requirement]);
    }
    Run::from_output(
        t.launch_command_with("builder", "s", &flags, &["python3", "step.py"]).output().expect("stepbox runs"),
    )
}

/// The image reference a launch built (from its progress line).
fn built_reference(run: &Run) -> String {
    run.stderr
        .lines()
        .find_map(|line| line.split("images: built ").nth(1))
        .map(|reference| reference.trim().to_owned())
        .unwrap_or_else(|| panic!("no image was built:\n{}", run.stderr))
}

/// The layer digests of a pushed image, read back from the registry.
fn layers_of(reference: &str) -> Vec<String> {
    let (repository, digest) = reference.split_once('@').expect("a digest-pinned reference");
    let (host, path) = repository.split_once('/').expect("a registry host");
    let output = std::process::Command::new("curl")
        .args(["-sf", "-H", "Accept: application/vnd.oci.image.manifest.v1+json"])
        .arg(format!("http://{host}/v2/{path}/manifests/{digest}"))
        .output()
        .expect("curl runs");
    let manifest: Value = serde_json::from_slice(&output.stdout).expect("the registry serves the manifest");
    manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_owned())
        .collect()
}

#[test]
fn a_step_runs_in_an_image_built_with_its_requirements_and_code() {
    let t = builder_home(true);
    write_step(&t, "first build");
    fs::write(t.scratch().join("debug.log"), "ignored").expect("write");
    let run = launch(&t, &["six==1.16.0"]);
    run.expect_code(0);
    assert_eq!(run.stdout.trim(), "first build 1.16.0");
    let first = built_reference(&run);
    assert!(first.contains("/stepbox-e2e/steps@sha256:"), "digest-pinned in the target repository: {first}");
    let first_layers = layers_of(&first);

    // Change only the code: only the code layer changes, the dependency layer is reused.
    write_step(&t, "second build");
    let again = launch(&t, &["six==1.16.0"]);
    again.expect_code(0);
    assert_eq!(again.stdout.trim(), "second build 1.16.0");
    assert!(again.stderr.contains("reusing the dependency layer"), "{}", again.stderr);
    let second_layers = layers_of(&built_reference(&again));
    assert_eq!(first_layers.len(), second_layers.len());
    let (first_code, first_rest) = first_layers.split_last().expect("layers");
    let (second_code, second_rest) = second_layers.split_last().expect("layers");
    assert_eq!(first_rest, second_rest, "base and dependency layers are untouched");
    assert_ne!(first_code, second_code, "the code layer changed");

    // An ignored file does not change the image at all.
    fs::write(t.scratch().join("debug.log"), "changed, and still ignored").expect("write");
    let third = launch(&t, &["six==1.16.0"]);
    third.expect_code(0);
    assert_eq!(layers_of(&built_reference(&third)), second_layers);
}

#[test]
fn a_requirement_that_does_not_exist_fails_with_uvs_message() {
    let t = builder_home(true);
    write_step(&t, "never runs");
    let run = launch(&t, &["stepbox-no-such-package-7f3a9c==1.0"]);
    run.expect_error(FLAVOR_ERROR, "uv could not install the requirements for the image");
    assert!(run.stderr.contains("stepbox-no-such-package-7f3a9c"), "{}", run.stderr);
}

#[test]
fn registries_and_base_images_must_be_granted() {
    let t = builder_home(false);
    write_step(&t, "never runs");
    let run = launch(&t, &[]);
    run.expect_error(DENIED, &format!("--grant registry={}", registry()));

    t.run(&["step-operator", "update", "builder", "--grant", &format!("registry={}", registry())]).expect_code(0);
    t.run(&["step-operator", "update", "builder", "--revoke", &format!("base-image={}", base_image())]).expect_code(0);
    let run = launch(&t, &[]);
    run.expect_error(DENIED, "denied by rule `base-images`");
    let id = t.runs()[0]["id"].as_str().expect("id").to_owned();
    let audit = t.run(&["runs", "show", &id, "--audit", "-o", "json"]).json();
    assert!(audit["audit"].to_string().contains("images.build"), "the refusal is audited");
}

#[test]
fn without_a_repository_an_image_stays_in_a_local_layout_and_can_be_a_base() {
    let t = builder_home(false);
    t.run(&["step-operator", "update", "builder", "--unset", "repository"]).expect_code(0);
    write_step(&t, "from a local layout");
    let run = launch(&t, &["six==1.16.0"]);
    run.expect_code(0);
    assert_eq!(run.stdout.trim(), "from a local layout 1.16.0");
    let local = built_reference(&run);
    let layout = t.home().join("images");
    assert!(local.starts_with(&format!("oci:{}:stepbox-", layout.display())), "{local}");

    // That layout is a base image like any other, once granted.
    let grant = format!("base-image=oci:{}:*", layout.display());
    let config = format!("base_image={local}");
    t.run(&["step-operator", "update", "builder", "--grant", &grant, "--config", &config]).expect_code(0);
    fs::write(t.scratch().join("step.py"), "import six\nprint('on a local base', six.__version__)\n").expect("write");
    let layered = Run::from_output(
        t.launch_command_with("builder", "s", &[], &["python3", "step.py"]).output().expect("stepbox runs"),
    );
    layered.expect_code(0);
    assert_eq!(layered.stdout.trim(), "on a local base 1.16.0", "the base's dependency layer is still there");
}
