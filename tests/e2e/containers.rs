//! The container backend and the container flavor, against real podman and a
//! real registry (`scripts/services` starts both): a step runs in an image
//! with its environment, exit code and resource limits; the network is off
//! unless granted; cancelling stops and removes the container, and so does
//! the next look at a run whose launch was killed; podman's errors come back
//! as clear errors; an image behind a login is pulled with the login a
//! `registry-credential` grant gives for its registry.

use std::time::Duration;

use nix::sys::signal::Signal;
use stepbox_e2e::login_registry::LoginRegistry;
use stepbox_e2e::{Run, TestHome, container_flavor, files_containing, path_str, podman, registry, wait_until};

const FLAVOR_ERROR: i32 = 70;
const CANCELLED_SIGINT: i32 = 130;

/// A home with the container flavor and a step operator `box` allowed to
/// run images on the container backend.
fn container_home(extra_grants: &[&str]) -> TestHome {
    let t = TestHome::new();
    t.run(&["flavor", "register", path_str(&container_flavor())]).expect_code(0);
    let mut args = vec!["--grant", "jobs", "--grant", "images", "--grant", "backend=container"];
    for grant in extra_grants {
        args.extend(["--grant", grant]);
    }
    args.extend(["--limit", "cancel-grace=2s"]);
    t.register_operator("box", "container", &args).expect_code(0);
    t
}

fn busybox() -> String {
    format!("{}/stepbox-test/busybox:1", registry())
}

fn launch_in(t: &TestHome, image: &str, flags: &[&str], command: &[&str]) -> Run {
    let mut all = vec!["--image", image];
    all.extend_from_slice(flags);
    Run::from_output(t.launch_command_with("box", "s", &all, command).output().expect("stepbox runs"))
}

/// Containers of this home's jobs that podman still knows about (other
/// tests run containers at the same time).
fn containers_of(t: &TestHome) -> Vec<String> {
    let mut found = Vec::new();
    for run in t.runs() {
        let id = run["id"].as_str().expect("a run id");
        let shown = t.run(&["runs", "show", id, "-o", "json"]).json();
        for job in shown["jobs"].as_array().into_iter().flatten() {
            let label = format!("label=stepbox.job={}", job["id"].as_str().expect("a job id"));
            let listed = podman(&["ps", "--all", "--filter", &label, "--format", "{{.Names}}"]);
            found.extend(String::from_utf8_lossy(&listed.stdout).lines().map(str::to_owned));
        }
    }
    found
}

#[test]
fn a_step_runs_in_an_image_with_its_environment_and_exit_code() {
    let t = container_home(&[]);
    let image = busybox();
    let run = launch_in(&t, &image, &["--env", "GREETING=hello from a container"], &["sh", "-c", "echo $GREETING"]);
    run.expect_code(0);
    assert_eq!(run.stdout.trim(), "hello from a container");
    let failed = launch_in(&t, &image, &[], &["sh", "-c", "echo about to fail >&2; exit 3"]);
    failed.expect_code(3);
    assert!(failed.stderr.contains("about to fail"), "the container's stderr is streamed:\n{}", failed.stderr);
    let jobs = t.run(&["runs", "show", t.runs()[0]["id"].as_str().expect("id"), "-o", "json"]).json();
    assert_eq!(jobs["jobs"][0]["backend"], "container");
    assert!(containers_of(&t).is_empty(), "finished containers are removed: {:?}", containers_of(&t));
}

#[test]
fn the_network_is_off_unless_granted_and_resources_reach_the_container() {
    let t = container_home(&[]);
    let image = busybox();
    let interfaces = &["sh", "-c", "ls /sys/class/net"];
    let closed = launch_in(&t, &image, &[], interfaces);
    closed.expect_code(0);
    assert_eq!(closed.stdout.trim(), "lo", "only loopback without job-network");
    t.run(&["step-operator", "update", "box", "--grant", "job-network"]).expect_code(0);
    let open = launch_in(&t, &image, &[], interfaces);
    open.expect_code(0);
    assert!(open.stdout.lines().count() > 1, "a network interface with job-network: {}", open.stdout);

    // cgroup v2 files, else v1 (this kind of machine has hybrid cgroups).
    let read_limits = "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes; \
                       cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us";
    let limits = launch_in(&t, &image, &["--memory", "256MiB", "--cpu", "1.5"], &["sh", "-c", read_limits]);
    limits.expect_code(0);
    let lines: Vec<&str> = limits.stdout.lines().collect();
    assert_eq!(lines[0], (256u64 << 20).to_string(), "memory: {}", limits.stdout);
    assert!(lines[1].starts_with("150000"), "1.5 CPUs is a 150 ms quota per 100 ms: {}", limits.stdout);
}

#[test]
fn cancelling_a_launch_stops_and_removes_its_container() {
    let t = container_home(&[]);
    let image = busybox();
    let mut launch = t.spawn_launch_with("box", "s", &["--image", &image], &["sh", "-c", "echo started; sleep 300"]);
    assert_eq!(launch.next_line(), "started");
    assert_eq!(containers_of(&t).len(), 1, "the job's container runs");
    launch.signal(Signal::SIGINT);
    let run = launch.finish();
    run.expect_code(CANCELLED_SIGINT);
    assert!(
        wait_until(Duration::from_secs(10), || containers_of(&t).is_empty()),
        "the container was stopped and removed: {:?}",
        containers_of(&t)
    );
    assert_eq!(t.runs()[0]["state"], "cancelled");
}

/// A launch killed outright (no chance to clean up) leaves its container
/// running; the next look at the run finds the supervisor gone and asks the
/// container backend to stop the job from its record alone.
#[test]
fn a_killed_launchs_container_is_removed_when_its_run_is_next_looked_at() {
    let t = container_home(&[]);
    let image = busybox();
    let mut launch = t.spawn_launch_with("box", "s", &["--image", &image], &["sh", "-c", "echo started; sleep 300"]);
    assert_eq!(launch.next_line(), "started");
    assert_eq!(containers_of(&t).len(), 1, "the job's container runs");
    launch.signal(Signal::SIGKILL);
    launch.finish();
    let id = t.runs()[0]["id"].as_str().expect("a run id").to_owned();
    let shown = t.run(&["runs", "show", &id, "-o", "json"]);
    shown.expect_code(0);
    let shown = shown.json();
    assert_eq!(shown["run"]["state"], "failed", "{shown}");
    let message = shown["run"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("its jobs were stopped") && !message.contains("could not stop"), "{message}");
    assert_eq!(shown["jobs"][0]["state"], "cancelled", "{shown}");
    assert!(containers_of(&t).is_empty(), "the container was removed: {:?}", containers_of(&t));
}

#[test]
fn podman_failures_come_back_as_clear_errors() {
    let t = container_home(&[]);
    let missing = format!("{}/stepbox-test/no-such-image:1", registry());
    let run = launch_in(&t, &missing, &[], &["true"]);
    run.expect_error(FLAVOR_ERROR, "podman cannot pull the image");
    assert!(run.stderr.contains("no-such-image"), "{}", run.stderr);

    let not_found = launch_in(&t, &busybox(), &[], &["no-such-command"]);
    not_found.expect_code(127);
    assert!(not_found.stderr.contains("the command was not found in the image"), "{}", not_found.stderr);

    // The local backend refuses images, naming the way out.
    t.run(&["step-operator", "update", "box", "--grant", "backend=local"]).expect_code(0);
    t.run(&["step-operator", "update", "box", "--revoke", "backend=container"]).expect_code(0);
    let refused = launch_in(&t, &busybox(), &[], &["true"]);
    refused.expect_error(77, "backend `container` is not granted");
}

#[test]
fn an_image_behind_a_login_is_pulled_with_the_login_granted_for_its_registry() {
    let password = "registry-password-for-pulls";
    let private_registry = LoginRegistry::start("puller", password);
    // busybox, pushed behind the login under a name only this test uses, and not in podman's storage.
    let private = format!("{}/private/busybox:1", private_registry.address());
    let podman_ok = |args: &[&str]| {
        let output = podman(args);
        assert!(output.status.success(), "podman {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    };
    podman_ok(&["pull", "--quiet", "--tls-verify=false", &busybox()]);
    podman_ok(&["tag", &busybox(), &private]);
    podman_ok(&["push", "--quiet", "--tls-verify=false", "--creds", &format!("puller:{password}"), &private]);
    podman_ok(&["rmi", &private]);

    let t = container_home(&[]);
    let login = serde_json::json!({ "username": "puller", "password": password }).to_string();
    t.set_secret("pull-login", login.as_bytes()).expect_code(0);

    // Without a grant the registry refuses the pull, and the error names the grant to add.
    let refused = launch_in(&t, &private, &[], &["true"]);
    refused.expect_error(FLAVOR_ERROR, "wants a login");
    let way_out = format!("--grant registry-credential={}=basic:NAME", private_registry.address());
    assert!(refused.stderr.contains(&way_out), "{}", refused.stderr);

    // A login granted for another registry is not sent to this one.
    let elsewhere = format!("registry-credential={}=basic:pull-login", registry());
    t.run(&["step-operator", "update", "box", "--grant", &elsewhere]).expect_code(0);
    launch_in(&t, &private, &[], &["true"]).expect_error(FLAVOR_ERROR, "wants a login");

    // Granted for this registry, the image is pulled and the step runs in it.
    let granted = format!("registry-credential={}=basic:pull-login", private_registry.address());
    t.run(&["step-operator", "update", "box", "--grant", &granted]).expect_code(0);
    let run = launch_in(&t, &private, &[], &["sh", "-c", "echo ran in the private image"]);
    run.expect_code(0);
    assert_eq!(run.stdout.trim(), "ran in the private image");
    assert!(files_containing(&t.home().join("runs"), password).is_empty(), "the password is in no run file");
    let _ = podman(&["rmi", &private]);
}
