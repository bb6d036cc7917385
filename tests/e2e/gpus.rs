//! GPUs on the embedded default, on machines without one: fake devices
//! (character nodes made with `mknod`, the same numbers as `/dev/null` so a
//! job can open them) described to stepbox by `$STEPBOX_GPU_INVENTORY`.
//! Real launches through the local flavor, confined as users' jobs are:
//! which devices a job sees, that no two jobs hold one GPU, waiting and
//! release, a SIGKILLed holder, classes and the errors. The container
//! backend gets the same fakes through a CDI spec naming them by UUID, as
//! NVIDIA's toolkit names real ones.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use stepbox_e2e::{Run, TestHome, container_flavor, path_str, registry, wait_until};

/// A directory of fake NVIDIA device nodes and the inventory naming them.
struct FakeGpus {
    dir: tempfile::TempDir,
}

impl FakeGpus {
    /// `models.len()` GPUs, `nvidia0`…, with a control node `nvidiactl`.
    fn new(models: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("a directory");
        let node = |name: &str| {
            let path = dir.path().join(name);
            // c 1 3: the numbers of /dev/null, so a job that opens it succeeds.
            nix::sys::stat::mknod(
                &path,
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::from_bits_truncate(0o666),
                nix::sys::stat::makedev(1, 3),
            )
            .unwrap_or_else(|error| {
                panic!(
                    "cannot mknod {} ({error}): the GPU tests make fake device nodes and must run as root",
                    path.display()
                )
            });
            path
        };
        let gpus: Vec<serde_json::Value> = models
            .iter()
            .enumerate()
            .map(|(index, model)| {
                serde_json::json!({
                    "index": index,
                    "uuid": format!("GPU-{index:08}-fake-{}", model.replace(' ', "")),
                    "model": model,
                    "memory_bytes": 150_754_820_096u64,
                    "device": node(&format!("nvidia{index}")),
                })
            })
            .collect();
        let control = node("nvidiactl");
        let inventory = serde_json::json!({ "gpus": gpus, "control_devices": [control] });
        std::fs::write(dir.path().join("inventory.json"), inventory.to_string()).expect("write the inventory");
        Self { dir }
    }

    fn inventory(&self) -> PathBuf {
        self.dir.path().join("inventory.json")
    }

    /// The inventory's GPUs as `(uuid, node)`, and its control nodes.
    fn devices(&self) -> (Vec<(String, String)>, Vec<String>) {
        let text = std::fs::read_to_string(self.inventory()).expect("the inventory");
        let inventory: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let gpus = inventory["gpus"].as_array().expect("gpus").iter();
        let gpus = gpus.map(|gpu| {
            (gpu["uuid"].as_str().expect("a uuid").to_owned(), gpu["device"].as_str().expect("a node").to_owned())
        });
        let control = inventory["control_devices"].as_array().expect("control nodes").iter();
        (gpus.collect(), control.map(|node| node.as_str().expect("a node").to_owned()).collect())
    }
}

/// A CDI spec in `/etc/cdi` (where podman looks) describing fake GPUs under
/// the names NVIDIA's toolkit gives real ones (`nvidia.com/gpu=UUID`),
/// removed when dropped. Tests running at once use distinct UUIDs.
struct CdiSpec {
    path: PathBuf,
}

impl CdiSpec {
    fn of(gpus: &FakeGpus) -> Self {
        let (devices, control) = gpus.devices();
        let node = |host: &str| {
            let name = Path::new(host).file_name().and_then(|name| name.to_str()).expect("a node name");
            serde_json::json!({ "path": format!("/dev/{name}"), "hostPath": host })
        };
        let spec = serde_json::json!({
            "cdiVersion": "0.5.0",
            "kind": "nvidia.com/gpu",
            "devices": devices.iter().map(|(uuid, host)| serde_json::json!({
                "name": uuid,
                "containerEdits": { "deviceNodes": [node(host)] },
            })).collect::<Vec<_>>(),
            "containerEdits": { "deviceNodes": control.iter().map(|host| node(host)).collect::<Vec<_>>() },
        });
        std::fs::create_dir_all("/etc/cdi").expect("/etc/cdi (the GPU tests run as root)");
        let path = PathBuf::from(format!("/etc/cdi/stepbox-test-{}.json", std::process::id()));
        std::fs::write(&path, spec.to_string()).expect("write the CDI spec");
        Self { path }
    }
}

impl Drop for CdiSpec {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A home with the local flavor, a step operator `local` (confined) and one
/// `trusted` (unconfined), seeing `gpus`.
fn home_with(gpus: &FakeGpus) -> (TestHome, PathBuf) {
    let home = TestHome::sharing_cache();
    home.with_local();
    home.register_operator("trusted", "local", &["--grant", "jobs", "--grant", "requirements", "--grant", "trusted"])
        .expect_code(0);
    (home, gpus.inventory())
}

/// `stepbox launch` through `operator` as run `run` of pipeline `gpus`, seeing `inventory`.
fn launch_command(
    home: &TestHome,
    inventory: &Path,
    operator: &str,
    run: &str,
    flags: &[&str],
    command: &[&str],
) -> std::process::Command {
    let mut args = vec!["launch", "-s", operator, "--pipeline", "gpus", "--run", run, "--step", "train"];
    args.extend_from_slice(flags);
    args.push("--");
    args.extend_from_slice(command);
    let mut launch = home.command(&args);
    launch.env("STEPBOX_GPU_INVENTORY", inventory);
    launch
}

/// A launch of `sh -c script`, to its end.
fn launch(home: &TestHome, inventory: &Path, operator: &str, run: &str, flags: &[&str], script: &str) -> Run {
    let output = launch_command(home, inventory, operator, run, flags, &["sh", "-c", script]).output();
    Run::from_output(output.expect("stepbox starts"))
}

/// A confined launch of `command` with `flags`, started in the background, its output piped.
fn spawn(home: &TestHome, inventory: &Path, run: &str, flags: &[&str], command: &[&str]) -> Child {
    started(launch_command(home, inventory, "local", run, flags, command))
}

/// `launch` started in the background, its output piped.
fn started(mut launch: std::process::Command) -> Child {
    launch.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("stepbox starts")
}

/// `stepbox gpus ARGS` seeing `inventory`.
fn gpus_listing(home: &TestHome, inventory: &Path, args: &[&str]) -> Run {
    let mut command = vec!["gpus"];
    command.extend_from_slice(args);
    Run::from_output(home.command(&command).env("STEPBOX_GPU_INVENTORY", inventory).output().expect("stepbox starts"))
}

/// The next line a child writes to stdout (the rest stays readable).
fn next_line(child: &mut Child) -> String {
    let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("a line");
    line.trim().to_owned()
}

/// What the job sees: its GPU variables and its /dev/nvidia* nodes.
const SHOW: &str = r#"echo "CUDA=[$CUDA_VISIBLE_DEVICES] NVIDIA=[$NVIDIA_VISIBLE_DEVICES]"; echo "NODES=[$(ls /dev | grep '^nvidia' | tr '\n' ' ')]"; if [ -d /sys/devices ]; then echo SYSFS=yes; else echo SYSFS=no; fi"#;

#[test]
fn a_confined_job_sees_exactly_its_gpus_and_the_host_sets_the_variables() {
    let gpus = FakeGpus::new(&["NVIDIA H200", "NVIDIA H200"]);
    let (home, inventory) = home_with(&gpus);
    // The caller's (or a flavor's) CUDA_VISIBLE_DEVICES is replaced by the lease's.
    let run = launch(&home, &inventory, "local", "one", &["--gpu", "1", "--env", "CUDA_VISIBLE_DEVICES=0,1"], SHOW);
    run.expect_code(0);
    assert!(
        run.stdout.contains("CUDA=[GPU-00000000-fake-NVIDIAH200] NVIDIA=[GPU-00000000-fake-NVIDIAH200]"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("NODES=[nvidia0 nvidiactl ]"), "{}", run.stdout);
    assert!(run.stdout.contains("SYSFS=yes"), "CUDA reads sysfs: {}", run.stdout);
    // The node is a usable device inside (bound with --dev-bind, not nodev).
    launch(&home, &inventory, "local", "open", &["--gpu", "1"], "head -c 0 /dev/nvidia0").expect_code(0);
    // Asking for none: no GPU node, and CUDA told there is none.
    let none = launch(&home, &inventory, "local", "none", &[], SHOW);
    none.expect_code(0);
    assert!(none.stdout.contains("CUDA=[] NVIDIA=[void]"), "{}", none.stdout);
    assert!(none.stdout.contains("NODES=[]"), "{}", none.stdout);
    assert!(none.stdout.contains("SYSFS=no"), "{}", none.stdout);
    // The run record says which GPUs the job had.
    let id = home.runs().iter().find(|run| run["run_name"] == "one").map(|run| run["id"].clone()).expect("the run");
    let details = home.run_details(id.as_str().expect("an id"));
    assert_eq!(details["jobs"][0]["gpus"], serde_json::json!(["GPU-00000000-fake-NVIDIAH200"]), "{details}");
    let shown = home.run(&["runs", "show", id.as_str().expect("an id")]);
    assert!(shown.stdout.contains("had GPUs: GPU-00000000-fake-NVIDIAH200"), "{}", shown.stdout);
}

#[test]
fn a_trusted_job_gets_the_variables_of_its_lease() {
    let gpus = FakeGpus::new(&["NVIDIA H200", "NVIDIA H200"]);
    let (home, inventory) = home_with(&gpus);
    let run = launch(&home, &inventory, "trusted", "t", &["--gpu", "2"], SHOW);
    run.expect_code(0);
    assert!(run.stdout.contains("CUDA=[GPU-00000000-fake-NVIDIAH200,GPU-00000001-fake-NVIDIAH200]"), "{}", run.stdout);
}

#[test]
fn eight_concurrent_launches_never_share_a_gpu() {
    let gpus = FakeGpus::new(&["NVIDIA H200"; 4]);
    let (home, inventory) = home_with(&gpus);
    let held = home.scratch().join("held");
    std::fs::create_dir(&held).expect("a directory");
    // Each job claims its GPUs with exclusive creates while it runs: a GPU
    // leased twice at once shows as CLASH.
    let script = r#"for uuid in $(echo "$CUDA_VISIBLE_DEVICES" | tr ',' ' '); do
          (set -C; : > "held/$uuid") 2>/dev/null || echo "CLASH on $uuid"
        done
        echo "COUNT=$(echo "$CUDA_VISIBLE_DEVICES" | tr ',' '\n' | grep -c .) NODES=$(ls /dev | grep -c '^nvidia[0-9]')"
        sleep 0.4
        for uuid in $(echo "$CUDA_VISIBLE_DEVICES" | tr ',' ' '); do rm "held/$uuid"; done"#;
    let launches: Vec<(u32, Child)> = (0..8)
        .map(|i| {
            let count: u32 = if i % 2 == 0 { 1 } else { 2 };
            let child =
                spawn(&home, &inventory, &format!("c{i}"), &["--gpu", &count.to_string()], &["sh", "-c", script]);
            (count, child)
        })
        .collect();
    let mut waited = 0;
    for (count, child) in launches {
        let run = Run::from_output(child.wait_with_output().expect("stepbox exits"));
        run.expect_code(0);
        assert!(!run.stdout.contains("CLASH"), "a GPU was held twice:\n{}", run.stdout);
        assert!(run.stdout.contains(&format!("COUNT={count} NODES={count}")), "{}", run.stdout);
        waited += usize::from(run.stderr.contains("waiting for"));
    }
    // 12 GPUs asked of 4 at once: someone waited.
    assert!(waited > 0, "no launch waited for a GPU");
    assert_eq!(std::fs::read_dir(&held).expect("the directory").count(), 0);
}

#[test]
fn a_waiting_launch_names_the_holder_and_runs_once_it_lets_go() {
    let gpus = FakeGpus::new(&["NVIDIA L4"]);
    let (home, inventory) = home_with(&gpus);
    let release = home.scratch().join("release");
    let hold = format!("echo holding; while [ ! -e {} ]; do sleep 0.05; done", path_str(&release));
    let mut first = spawn(&home, &inventory, "first", &["--gpu", "1"], &["sh", "-c", &hold]);
    assert_eq!(next_line(&mut first), "holding");
    let listed = gpus_listing(&home, &inventory, &["-o", "json"]);
    listed.expect_code(0);
    assert_eq!(listed.json()["gpus"][0]["held_by"]["run"].as_str().map(str::len), Some(36), "{}", listed.stdout);
    let mut second = spawn(&home, &inventory, "second", &["--gpu", "1"], &["echo", "second ran"]);
    // The second says what it waits for, and who holds it.
    let mut second_err = BufReader::new(second.stderr.take().expect("stderr"));
    let mut said = String::new();
    while !said.contains("waiting for 1 GPU") {
        let mut line = String::new();
        if second_err.read_line(&mut line).expect("stderr") == 0 {
            panic!("the second launch ended without waiting: {said}");
        }
        said.push_str(&line);
    }
    assert!(said.contains("held by GPU 0") && said.contains("job train-1"), "{said}");
    std::fs::write(&release, "").expect("release the first");
    assert!(first.wait().expect("the first exits").success());
    let second = second.wait_with_output().expect("the second exits");
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stdout).contains("second ran"));
}

#[test]
fn homes_that_share_a_lease_directory_share_the_gpus() {
    let gpus = FakeGpus::new(&["NVIDIA L4"]);
    let (first, inventory) = home_with(&gpus);
    let (second, _) = home_with(&gpus);
    second
        .register_operator(
            "short",
            "local",
            &["--grant", "jobs", "--grant", "requirements", "--limit", "wall-clock=2s"],
        )
        .expect_code(0);
    let shared = first.scratch().join("shared-leases");
    let release = first.scratch().join("release");
    let hold = format!("echo holding; while [ ! -e {} ]; do sleep 0.05; done", path_str(&release));
    let mut first_launch = launch_command(&first, &inventory, "local", "first", &["--gpu", "1"], &["sh", "-c", &hold]);
    first_launch.env("STEPBOX_GPU_LEASE_DIR", &shared);
    let mut holder = started(first_launch);
    assert_eq!(next_line(&mut holder), "holding");
    // Each home alone: the other home's lease is not seen.
    launch(&second, &inventory, "local", "apart", &["--gpu", "1"], "echo ran apart").expect_code(0);
    // Sharing the directory: the second home's launch waits for the first's, naming it.
    let shared_listing = second
        .command(&["gpus", "-o", "json"])
        .env("STEPBOX_GPU_INVENTORY", &inventory)
        .env("STEPBOX_GPU_LEASE_DIR", &shared)
        .output()
        .expect("stepbox starts");
    let listed = Run::from_output(shared_listing);
    assert_eq!(listed.json()["gpus"][0]["held"], true, "{}", listed.stdout);
    let waited = launch_command(&second, &inventory, "short", "shared", &["--gpu", "1"], &["echo", "ran shared"])
        .env("STEPBOX_GPU_LEASE_DIR", &shared)
        .output()
        .expect("stepbox starts");
    let waited = Run::from_output(waited);
    waited.expect_error(124, "wall-clock");
    assert!(waited.stderr.contains("waiting for 1 GPU") && waited.stderr.contains("job train-1"), "{}", waited.stderr);
    assert!(!waited.stdout.contains("ran shared"), "{}", waited.stdout);
    std::fs::write(&release, "").expect("release the first");
    assert!(holder.wait().expect("the first exits").success());
}

#[test]
fn a_sigkilled_holder_frees_its_gpu_at_once() {
    let gpus = FakeGpus::new(&["NVIDIA L4"]);
    let (home, inventory) = home_with(&gpus);
    let mut holder = spawn(&home, &inventory, "killed", &["--gpu", "1"], &["sh", "-c", "echo holding; sleep 600"]);
    assert_eq!(next_line(&mut holder), "holding");
    holder.kill().expect("SIGKILL the holding launch");
    holder.wait().expect("it is gone");
    // No reclaim step, no PID check: the kernel let go of the lock with the process.
    let next = launch(&home, &inventory, "local", "next", &["--gpu", "1"], "echo got it");
    next.expect_code(0);
    assert!(next.stdout.contains("got it"));
}

#[test]
fn a_launch_that_ends_while_waiting_for_a_gpu_starts_nothing() {
    let gpus = FakeGpus::new(&["NVIDIA L4"]);
    let (home, inventory) = home_with(&gpus);
    home.register_operator(
        "short",
        "local",
        &["--grant", "jobs", "--grant", "requirements", "--limit", "wall-clock=2s"],
    )
    .expect_code(0);
    let mut holder = spawn(&home, &inventory, "holder", &["--gpu", "1"], &["sh", "-c", "echo holding; sleep 600"]);
    assert_eq!(next_line(&mut holder), "holding");
    // The launch's wall clock ends the wait: no job starts later, when the GPU frees.
    let waited = launch(&home, &inventory, "short", "late", &["--gpu", "1"], "echo started late");
    waited.expect_error(124, "wall-clock");
    assert!(!waited.stdout.contains("started late"), "{}", waited.stdout);
    assert!(!waited.stderr.contains("panicked"), "{}", waited.stderr);
    holder.kill().expect("SIGKILL the holder");
    holder.wait().expect("it is gone");
}

#[test]
fn requests_the_machine_cannot_meet_are_refused_naming_what_exists() {
    let gpus = FakeGpus::new(&["NVIDIA H200", "NVIDIA H200", "NVIDIA L4"]);
    let (home, inventory) = home_with(&gpus);
    launch(&home, &inventory, "local", "many", &["--gpu", "4"], "echo ran").expect_error(
        64,
        "the job asks for 4 GPUs, but this machine has 2 x NVIDIA H200, 1 x NVIDIA L4: ask for at most 3",
    );
    launch(&home, &inventory, "local", "class", &["--gpu", "1", "--gpu-class", "a100"], "echo ran")
        .expect_error(64, "no GPU here is of that class; this machine has 2 x NVIDIA H200, 1 x NVIDIA L4");
    launch(&home, &inventory, "local", "two-l4", &["--gpu", "2", "--gpu-class", "l4"], "echo ran")
        .expect_error(64, "ask for at most 1");
    let l4 = launch(&home, &inventory, "local", "l4", &["--gpu", "1", "--gpu-class", "l4"], SHOW);
    l4.expect_code(0);
    assert!(l4.stdout.contains("GPU-00000002-fake-NVIDIAL4"), "{}", l4.stdout);
    let empty = home.scratch().join("none.json");
    std::fs::write(&empty, r#"{"gpus": []}"#).expect("write");
    launch(&home, &empty, "local", "none", &["--gpu", "1"], "echo ran").expect_error(64, "this machine has no GPU");
    let broken = home.scratch().join("broken.json");
    std::fs::write(&broken, r#"{"gpus": [{"uuid": "0"}]}"#).expect("write");
    let listed = gpus_listing(&home, &broken, &[]);
    listed.expect_error(64, "is not valid");
    assert!(!launch(&home, &broken, "local", "broken", &["--gpu", "1"], "echo ran").stdout.contains("ran"));
}

#[test]
fn gpus_lists_the_machine() {
    let gpus = FakeGpus::new(&["NVIDIA H200", "NVIDIA L4"]);
    let (home, inventory) = home_with(&gpus);
    let listed = gpus_listing(&home, &inventory, &[]);
    listed.expect_code(0);
    for expected in ["GPU-00000000-fake-NVIDIAH200", "NVIDIA L4", "140.4 GiB", "nvidia1"] {
        assert!(listed.stdout.contains(expected), "{expected}: {}", listed.stdout);
    }
    let json = gpus_listing(&home, &inventory, &["-o", "json"]);
    assert_eq!(json.json()["gpus"].as_array().map(Vec::len), Some(2));
    assert_eq!(json.json()["gpus"][1]["held"], false);
    // A GPU in MIG mode is listed, never leased, and the way to use it is said.
    let text = std::fs::read_to_string(&inventory).expect("the inventory");
    let mig = home.scratch().join("mig.json");
    std::fs::write(&mig, text.replacen(r#""model":"NVIDIA L4""#, r#""mig":true,"model":"NVIDIA L4""#, 1))
        .expect("write");
    let listed = gpus_listing(&home, &mig, &[]);
    listed.expect_code(0);
    for expected in ["never leased: MIG mode is on", "GPU 1 (NVIDIA L4) is in MIG mode", "-mig 0"] {
        assert!(listed.stdout.contains(expected), "{expected}: {}", listed.stdout);
    }
    launch(&home, &mig, "local", "mig", &["--gpu", "1", "--gpu-class", "l4"], "echo ran").expect_error(
        64,
        "no GPU here is of that class; this machine has 1 x NVIDIA H200 (GPU 1 (NVIDIA L4) is in MIG mode",
    );
}

#[test]
fn a_container_gets_exactly_its_gpus_and_keeps_them_while_it_outlives_its_launch() {
    // Models unique to this process: the CDI names (UUIDs) must not clash with another test's.
    let model = format!("NVIDIA Fake{}", std::process::id());
    let gpus = FakeGpus::new(&[model.as_str(), model.as_str()]);
    let _cdi = CdiSpec::of(&gpus);
    let (uuids, _) = gpus.devices();
    let home = TestHome::new();
    home.run(&["flavor", "register", path_str(&container_flavor())]).expect_code(0);
    let grants = ["--grant", "jobs", "--grant", "images", "--grant", "backend=container", "--limit", "cancel-grace=2s"];
    home.register_operator("box", "container", &grants).expect_code(0);
    let inventory = gpus.inventory();
    let image = format!("{}/stepbox-test/busybox:1", registry());
    let one = launch(&home, &inventory, "box", "one", &["--image", &image, "--gpu", "1"], SHOW);
    one.expect_code(0);
    assert!(one.stdout.contains(&format!("CUDA=[{0}] NVIDIA=[{0}]", uuids[0].0)), "{}", one.stdout);
    assert!(one.stdout.contains("NODES=[nvidia0 nvidiactl ]"), "exactly its GPU's node: {}", one.stdout);
    // A launch SIGKILLed while its container runs: the container holds the lease itself.
    let hold = ["sh", "-c", "echo holding; sleep 600"];
    let mut killed =
        started(launch_command(&home, &inventory, "box", "killed", &["--image", &image, "--gpu", "2"], &hold));
    assert_eq!(next_line(&mut killed), "holding");
    killed.kill().expect("SIGKILL the launch");
    killed.wait().expect("it is gone");
    let listed = gpus_listing(&home, &inventory, &[]);
    listed.expect_code(0);
    assert!(
        listed.stdout.contains("has ended but the job still runs"),
        "still held by the container: {}",
        listed.stdout
    );
    let held = || {
        gpus_listing(&home, &inventory, &["-o", "json"]).json()["gpus"]
            .as_array()
            .map(|gpus| gpus.iter().filter(|gpu| gpu["held"] == true).count())
    };
    assert_eq!(held(), Some(2), "the GPUs are not handed to the next job while the container runs");
    // Looking at the run stops its orphaned container, and with it the lease.
    let id = home.runs().iter().find(|run| run["run_name"] == "killed").map(|run| run["id"].clone()).expect("the run");
    home.run(&["runs", "show", id.as_str().expect("an id")]).expect_code(0);
    assert!(
        wait_until(std::time::Duration::from_secs(60), || held() == Some(0)),
        "the GPUs were let go with the container"
    );
    launch(&home, &inventory, "box", "after", &["--image", &image, "--gpu", "2"], "echo got both").expect_code(0);
}
