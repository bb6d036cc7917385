//! The confined job's own sandbox, probed from inside as an attacker's code
//! would: a step's entrypoint that tries to reach the caller's terminal, use
//! capabilities, mount, make user namespaces, read stepbox's secrets and the
//! caller's files, and use inherited descriptors. Launched the way a person
//! launches a step: from an interactive shell in a real pseudo-terminal.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use stepbox_e2e::{TestHome, path_str, stepbox_bin, unique_marker};

/// Runs in the job. Prints one `PROBE {json}` line and tries to inject a
/// command into the caller's terminal on the way.
const PROBE: &str = r#"
import ctypes, fcntl, json, os, subprocess, sys, termios
inject, home, private = sys.argv[1], sys.argv[2], sys.argv[3]
report = {}
def attempt(name, action):
    try:
        action()
        report[name] = "ok"
    except OSError as error:
        report[name] = "refused: " + (os.strerror(error.errno) if error.errno else str(error))
def push_into(path):
    fd = os.open(path, os.O_RDWR)
    try:
        for byte in ("touch " + inject + "\n").encode():
            fcntl.ioctl(fd, termios.TIOCSTI, bytes([byte]))
    finally:
        os.close(fd)
attempt("tty", lambda: push_into("/dev/tty"))
for fd in (0, 1, 2):
    def direct(fd=fd):
        for byte in ("touch " + inject + "\n").encode():
            fcntl.ioctl(fd, termios.TIOCSTI, bytes([byte]))
    attempt("tiocsti-%d" % fd, direct)
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
report["cap_eff"] = status.get("CapEff", "").strip()
report["no_new_privs"] = status.get("NoNewPrivs", "").strip()
report["seccomp"] = status.get("Seccomp", "").strip()
libc = ctypes.CDLL(None, use_errno=True)
os.makedirs("/tmp/probe-mnt", exist_ok=True)
if libc.mount(b"none", b"/tmp/probe-mnt", b"tmpfs", 0, None) == 0:
    report["mount"] = "ok"
else:
    report["mount"] = "refused: " + os.strerror(ctypes.get_errno())
CLONE_NEWUSER = 0x10000000
if libc.unshare(CLONE_NEWUSER) == 0:
    report["unshare_user"] = "ok"
else:
    report["unshare_user"] = "refused: " + os.strerror(ctypes.get_errno())
report["unshare_command"] = subprocess.run(["unshare", "-U", "true"], capture_output=True).returncode
report["home_visible"] = os.path.exists(home)
report["secrets_visible"] = os.path.exists(os.path.join(home, "secrets"))
report["private_file_visible"] = os.path.exists(private)
report["root_listing"] = sorted(os.listdir("/"))
report["fds"] = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
print("PROBE " + json.dumps(report), flush=True)
print("the step's own output reaches the terminal", flush=True)
"#;

/// Drives an interactive bash in a pseudo-terminal: runs each command line,
/// waits for its `DONE:<exit>` marker, and (for `^C` lines) sends Ctrl-C
/// once the text after `^C ` has appeared. Prints the whole transcript.
const DRIVER: &str = r#"
import os, pty, select, sys, time
lines = sys.argv[1:]
pid, master = pty.fork()
if pid == 0:
    os.execvp("bash", ["bash", "--norc", "--noprofile", "-i"])
transcript = b""
def read_until(needle, limit):
    global transcript
    deadline = time.time() + limit
    while time.time() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return False
            if not chunk:
                return False
            transcript += chunk
            if needle.encode() in transcript:
                return True
    return False
os.write(master, b"PS1='$ '; stty -echo\n")
read_until("$ ", 10)
for n, line in enumerate(lines):
    if line.startswith("^C "):
        os.write(master, (line[3:].split(" ||| ")[1] + "; echo DONE$((40+" + str(n) + ")):$?\n").encode())
        read_until(line[3:].split(" ||| ")[0], 120)
        time.sleep(1)
        os.write(master, b"\x03")
    else:
        os.write(master, (line + "; echo DONE$((40+" + str(n) + ")):$?\n").encode())
    read_until("DONE" + str(40 + n) + ":", 300)
# Give whatever might have been pushed into the terminal the chance to run.
os.write(master, b"true; echo FINAL\n")
read_until("FINAL\r\n", 10)
time.sleep(1)
read_until("never", 1)
os.write(master, b"exit\n")
read_until("never", 2)
sys.stdout.write(transcript.decode(errors="replace"))
"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).expect("write a test file");
    path
}

/// Shell-quote for the driver's bash.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[test]
fn a_confined_job_cannot_reach_the_terminal_the_kernel_or_stepbox_and_ctrl_c_still_works() {
    let t = TestHome::new();
    t.with_local();
    t.set_secret("db-pass", b"confined-probe-secret-value").expect_code(0);
    let marker = unique_marker();
    let inject = std::env::temp_dir().join(format!("stepbox-injected-{marker}"));
    // A file of the caller's that no grant names.
    let private_dir = tempfile::tempdir_in(std::env::var("HOME").unwrap_or_else(|_| "/root".to_owned()))
        .expect("a directory in the caller's home");
    let private = write(private_dir.path(), "credentials", "aws_secret_access_key = not-for-steps");
    let probe = write(t.scratch(), "probe.py", PROBE);
    let driver = write(t.scratch(), "driver.py", DRIVER);
    let launch = |command: &str| {
        format!(
            "STEPBOX_HOME={} {} launch -s local --pipeline p --run r --step s -- {command}",
            quoted(path_str(t.home())),
            quoted(path_str(stepbox_bin()))
        )
    };
    let probe_line = launch(&format!(
        "python3 {} {} {} {}",
        quoted(path_str(&probe)),
        quoted(path_str(&inject)),
        quoted(path_str(t.home())),
        quoted(path_str(&private))
    ));
    let sleep_line = format!("^C running step ||| {}", launch(&format!("sleep 300.{marker}")));
    let output = Command::new("python3")
        .arg(&driver)
        .args([&format!("cd {}", quoted(path_str(t.scratch()))), &probe_line, &sleep_line])
        .output()
        .expect("python3 runs the driver");
    let transcript = String::from_utf8_lossy(&output.stdout).into_owned();

    assert!(!inject.exists(), "a command pushed into the terminal ran:\n{transcript}");
    let probe_line = transcript.lines().find_map(|line| line.trim().strip_prefix("PROBE ")).unwrap_or_else(|| {
        panic!(
            "the probe printed no report to the terminal:\n{transcript}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let report: serde_json::Value = serde_json::from_str(probe_line).expect("the probe's JSON");
    assert!(transcript.contains("the step's own output reaches the terminal"), "{transcript}");
    assert!(transcript.contains("DONE41:0"), "the probe's launch succeeded:\n{transcript}");

    for attempt in ["tty", "tiocsti-0", "tiocsti-1", "tiocsti-2"] {
        assert!(report[attempt].as_str().unwrap_or("").starts_with("refused"), "{attempt}: {report}");
    }
    assert_eq!(report["cap_eff"], "0000000000000000", "{report}");
    assert_eq!(report["no_new_privs"], "1", "{report}");
    assert_eq!(report["seccomp"], "2", "a seccomp filter is installed: {report}");
    assert!(report["mount"].as_str().unwrap_or("").starts_with("refused"), "{report}");
    assert!(report["unshare_user"].as_str().unwrap_or("").starts_with("refused"), "{report}");
    assert_ne!(report["unshare_command"], 0, "unshare -U succeeded: {report}");
    assert_eq!(report["home_visible"], false, "stepbox's home is visible: {report}");
    assert_eq!(report["secrets_visible"], false, "{report}");
    assert_eq!(report["private_file_visible"], false, "the caller's own file is visible: {report}");
    assert_eq!(report["fds"], serde_json::json!([0, 1, 2, 3]), "only 0-2 (and the listing's own): {report}");
    let root: Vec<&str> = report["root_listing"].as_array().into_iter().flatten().filter_map(|v| v.as_str()).collect();
    for private_root in ["root", "home", "var", "srv", "work"] {
        assert!(!root.contains(&private_root), "/{private_root} is visible: {root:?}");
    }

    // Ctrl-C in the terminal cancels the running step: exit 130, run cancelled.
    assert!(transcript.contains("DONE42:130"), "Ctrl-C did not cancel the launch with 130:\n{transcript}");
    let runs = t.runs();
    assert_eq!(runs[0]["state"], "cancelled", "{:?}", runs[0]);
    assert!(stepbox_e2e::live_processes_with(&marker).is_empty(), "the cancelled job is still running");
    assert!(!transcript.contains("confined-probe-secret-value"));
}

#[test]
fn a_confined_job_reads_only_what_the_caller_or_a_grant_names_and_never_stepboxs_home() {
    let t = TestHome::new();
    t.with_local();
    t.set_secret("db-pass", b"never-readable-in-a-job").expect_code(0);
    let outside = tempfile::tempdir_in(std::env::var("HOME").unwrap_or_else(|_| "/root".to_owned()))
        .expect("a directory outside every default");
    let data = write(outside.path(), "data.txt", "the dataset");
    let read = format!("cat {}", quoted(path_str(&data)));
    let write_back = format!("echo changed > {}", quoted(path_str(&data)));

    // Not named: the directory does not exist in the sandbox.
    let hidden = t.launch("local", "s", &["sh", "-c", &read]);
    assert_ne!(hidden.code, 0, "read a file nobody named: {}", hidden.stdout);
    assert!(hidden.stderr.contains("No such file or directory"), "{}", hidden.stderr);

    // Named by the caller: readable, not writable.
    let named = t.launch_with("local", "s", &["--read-dir", path_str(outside.path())], &["sh", "-c", &read]);
    named.expect_code(0);
    assert_eq!(named.stdout.trim(), "the dataset");
    let refused = t.launch_with("local", "s", &["--read-dir", path_str(outside.path())], &["sh", "-c", &write_back]);
    assert_ne!(refused.code, 0);
    assert!(refused.stderr.contains("Read-only file system"), "{}", refused.stderr);
    assert_eq!(fs::read_to_string(&data).expect("still there"), "the dataset");

    // Granted by the user: readable too.
    let grant = format!("readable-dir={}", path_str(outside.path()));
    t.run(&["step-operator", "update", "local", "--grant", &grant]).expect_code(0);
    t.launch("local", "s", &["sh", "-c", &read]).expect_code(0);

    // A named directory that holds stepbox's home shows everything but the home.
    let parent = t.home().parent().expect("the home has a parent");
    let sibling = tempfile::tempdir_in(parent).expect("a directory beside the home");
    write(sibling.path(), "visible.txt", "beside the home\n");
    let probe = format!(
        "cat {}/visible.txt; ls -A {} | wc -l; cat {}/secrets/db-pass",
        quoted(path_str(sibling.path())),
        quoted(path_str(t.home())),
        quoted(path_str(t.home()))
    );
    let covered = t.launch_with("local", "s", &["--read-dir", path_str(parent)], &["sh", "-c", &probe]);
    assert!(covered.stdout.contains("beside the home"), "{}", covered.stdout);
    assert!(covered.stdout.lines().any(|line| line.trim() == "0"), "the home looked empty: {}", covered.stdout);
    assert!(!covered.stdout.contains("never-readable-in-a-job"), "a secret was read: {}", covered.stdout);

    let missing = t.launch_with("local", "s", &["--read-dir", "/nonexistent/stepbox-dir"], &["true"]);
    missing.expect_error(64, "--read-dir /nonexistent/stepbox-dir is not an existing directory");
    let root = t.launch_with("local", "s", &["--read-dir", "/"], &["true"]);
    root.expect_error(64, "--read-dir / would show the whole machine to the job");
}

#[test]
fn a_source_root_that_overlaps_stepboxs_home_is_refused_before_anything_runs() {
    let t = TestHome::new();
    t.with_local();
    let parent = t.home().parent().expect("the home has a parent");
    for source_root in [parent, t.home()] {
        let run = t.launch_with("local", "s", &["--source-root", path_str(source_root)], &["true"]);
        run.expect_error(64, "and stepbox's home");
        assert!(run.stderr.contains("Keep the home elsewhere"), "{}", run.stderr);
    }
    assert!(t.runs().is_empty(), "nothing was recorded, nothing ran");
}
