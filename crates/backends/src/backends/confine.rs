//! Confining a local job with bubblewrap. What the job can see and do is an
//! allow-list, decided here and documented in docs/SECURITY.md:
//!
//! - **read**: the system's directories ([`SYSTEM_DIRS`]), the directories
//!   it may write, its Python environment and that environment's interpreter,
//!   and `readable-dir` grants. Nothing else of the machine exists inside:
//!   no home directories, no `/root`, no other projects, and never stepbox's
//!   own home (its state, secrets and other runs), wherever it lives.
//! - **write**: the step's source root and `writable-dir` grants
//!   ([`Confinement::writable`]), and a private `/tmp` that is the job's own
//!   scratch space, made empty for it and gone when it ends.
//! - **call**: no capabilities (`--cap-drop ALL`), `no_new_privs`, a seccomp
//!   filter ([`super::seccomp`]), its own PID, IPC, UTS, cgroup, mount, user
//!   and (unless granted) network namespaces, and a new session, so that it
//!   has no controlling terminal to push input into.
//! - **descriptors**: only 0–2 (see [`close_inherited_descriptors`]).
//! - **devices**: bubblewrap's minimal `/dev`, plus, for a job holding a GPU
//!   lease, exactly its GPUs' nodes and the NVIDIA control nodes
//!   ([`Devices`]), bound as devices (`--dev-bind`) at `/dev/<name>`. With no
//!   capabilities, a user namespace and `no_new_privs`, the job cannot make
//!   or reach any other node: which nodes exist is the fence. Such a job
//!   also reads `/sys` (read-only), as CUDA and NCCL expect; others have none.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use super::{BackendError, Confinement};

/// The machine's directories every confined job reads: programs, libraries
/// and system configuration. Absent ones are skipped; a symbolic link (merged
/// `/usr`: `/bin -> usr/bin`) is recreated as the same link.
pub const SYSTEM_DIRS: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt"];

/// The bubblewrap program, looked up on the runtime's own PATH.
pub fn bwrap() -> Result<PathBuf, BackendError> {
    crate::programs::on_path("bwrap").ok_or_else(|| {
        BackendError::Unsupported(
            "bubblewrap (`bwrap`) is not installed, and jobs of untrusted step operators run confined by it. \
                 Install it (Debian/Ubuntu: apt-get install bubblewrap), or grant the step operator `trusted` \
                 to run its jobs unconfined"
                .to_owned(),
        )
    })
}

/// Every directory a confined job may write or read must exist before it
/// starts: bubblewrap would otherwise fail with a message that names no grant.
pub fn check_directories(confinement: &Confinement) -> Result<(), BackendError> {
    let missing = |grant: &str, dir: &Path| {
        BackendError::Invalid(format!(
            "the step operator's grant `{grant}={0}` names a directory that does not exist: \
             create it (mkdir -p {0}) or revoke the grant",
            dir.display()
        ))
    };
    if let Some(dir) = confinement.writable.iter().find(|dir| !dir.is_dir()) {
        return Err(missing("writable-dir", dir));
    }
    if let Some(dir) = confinement.readable.iter().find(|dir| !dir.exists()) {
        return Err(missing("readable-dir", dir));
    }
    Ok(())
}

/// The device nodes a confined job gets beyond the minimal `/dev`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Devices {
    /// Host paths, each bound at `/dev/<its file name>`.
    pub nodes: Vec<PathBuf>,
}

impl Devices {
    /// A GPU lease's nodes: each leased GPU's, then the machine's control nodes.
    pub fn of(lease: &crate::gpus::Lease) -> Self {
        Self::from_parts(lease.gpus(), lease.control_devices())
    }

    /// The nodes of `gpus` and `control`.
    pub fn from_parts(gpus: &[crate::gpus::Gpu], control: &[PathBuf]) -> Self {
        Self { nodes: gpus.iter().map(|gpu| gpu.device.clone()).chain(control.iter().cloned()).collect() }
    }
}

/// A confined job's bubblewrap command line, with the seccomp programs it
/// reads from descriptors this value owns: keep it alive until the job is
/// spawned, and let [`close_inherited_descriptors`] pass them on.
pub struct Sandbox {
    args: Vec<String>,
    seccomp: Vec<OwnedFd>,
}

impl Sandbox {
    /// The sandbox for a job working in `working_dir`, with `read_only`
    /// directories (a Python environment and its interpreter) visible at
    /// their own paths even where the private `/tmp` or a hidden home would
    /// cover them, and `devices` in its `/dev`.
    pub fn new(
        confinement: &Confinement,
        working_dir: &Path,
        read_only: &[PathBuf],
        devices: &Devices,
    ) -> Result<Self, BackendError> {
        if let Some(missing) = devices.nodes.iter().find(|node| !node.exists()) {
            return Err(BackendError::Failed(format!(
                "the GPU device node {} does not exist on this machine: load the NVIDIA driver's devices \
                 (nvidia-modprobe, or run nvidia-smi once as root)",
                missing.display()
            )));
        }
        let programs = super::seccomp::programs().map_err(BackendError::Failed)?;
        let mut seccomp = Vec::with_capacity(programs.len());
        for program in programs {
            seccomp.push(program_descriptor(program)?);
        }
        let fds: Vec<RawFd> = seccomp.iter().map(AsRawFd::as_raw_fd).collect();
        Ok(Self { args: bwrap_args(confinement, working_dir, read_only, devices, &fds), seccomp })
    }

    /// bubblewrap's arguments, up to and including `--`.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// The descriptors bubblewrap must inherit.
    pub fn descriptors(&self) -> Vec<RawFd> {
        self.seccomp.iter().map(AsRawFd::as_raw_fd).collect()
    }
}

/// A pipe holding `program`, its read end returned. A program is a few
/// hundred bytes, well inside a pipe's buffer, so the write cannot block.
fn program_descriptor(program: &[u8]) -> Result<OwnedFd, BackendError> {
    let failed = |error: std::io::Error| BackendError::Failed(format!("cannot pass the seccomp filter: {error}"));
    let (reader, mut writer) = std::io::pipe().map_err(failed)?;
    writer.write_all(program).map_err(failed)?;
    drop(writer);
    Ok(reader.into())
}

/// For a job's `pre_exec`, between fork and exec: every descriptor above 2
/// is marked close-on-exec (the ones stepbox inherited from its own parent
/// too), then `keep` is unmarked so that bubblewrap can read its filter.
/// Only system calls that are safe after `fork` (close_range, fcntl).
pub fn close_inherited_descriptors(keep: &[RawFd]) -> std::io::Result<()> {
    // SAFETY: plain system calls on descriptor numbers; nothing is allocated.
    let marked = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    if marked != 0 {
        // Kernels before 5.11: mark them one by one, up to the soft limit.
        let limit = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) }.clamp(256, 1 << 20) as RawFd;
        for fd in 3..limit {
            // SAFETY: fcntl on a descriptor that may not exist fails with EBADF.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
    for &fd in keep {
        // SAFETY: as above; `fd` is owned by the [`Sandbox`] the caller keeps alive.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn bwrap_args(
    confinement: &Confinement,
    working_dir: &Path,
    read_only: &[PathBuf],
    devices: &Devices,
    seccomp: &[RawFd],
) -> Vec<String> {
    let mut args = Args::default();
    for dir in SYSTEM_DIRS {
        let path = Path::new(dir);
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                if let Ok(target) = std::fs::read_link(path) {
                    args.flag3("--symlink", &target, path);
                }
            }
            Ok(meta) if meta.is_dir() => args.flag3("--ro-bind", path, path),
            _ => {}
        }
    }
    args.flag2("--dev", Path::new("/dev")); // a minimal /dev: null, zero, random, tty, pts, shm
    for node in &devices.nodes {
        // Usable as a device only through --dev-bind (the others are nodev).
        if let Some(name) = node.file_name() {
            args.flag3("--dev-bind", node, &Path::new("/dev").join(name));
        }
    }
    args.flag2("--proc", Path::new("/proc")); // a /proc for the new PID namespace
    if !devices.nodes.is_empty() {
        // CUDA, NVML and NCCL read PCI topology, NUMA nodes and the driver's
        // module from sysfs, which every container gets read-only; a job
        // without devices has no /sys at all.
        args.flag3("--ro-bind-try", Path::new("/sys"), Path::new("/sys"));
    }
    args.flag2("--tmpfs", Path::new("/tmp")); // the job's own scratch space
    if confinement.network {
        // Name lookup through systemd-resolved's stub, where /etc/resolv.conf points there.
        args.flag3("--ro-bind-try", Path::new("/run/systemd/resolve"), Path::new("/run/systemd/resolve"));
    }
    for path in &confinement.readable {
        args.flag3("--ro-bind", path, path);
    }
    for path in &confinement.writable {
        args.flag3("--bind", path, path);
    }
    // The environment's mounts outside stepbox's home go now; the ones inside
    // it (the environment itself) after the home is covered, so that an
    // interpreter prefix that holds the home (`~/.local`) cannot uncover it.
    let (inside_home, outside_home): (Vec<&PathBuf>, Vec<&PathBuf>) =
        read_only.iter().partition(|path| confinement.hidden.iter().any(|hidden| path.starts_with(hidden)));
    for path in &outside_home {
        args.flag3("--ro-bind", path, path);
    }
    // stepbox's home, where a bound directory holds it: covered by an empty,
    // read-only tmpfs.
    for hidden in &confinement.hidden {
        let mut bound = SYSTEM_DIRS.iter().map(Path::new).chain(
            confinement
                .readable
                .iter()
                .chain(&confinement.writable)
                .chain(outside_home.iter().copied())
                .map(PathBuf::as_path),
        );
        if bound.any(|dir| hidden.starts_with(dir)) {
            args.flag2("--tmpfs", hidden);
            args.flag2("--remount-ro", hidden);
        }
    }
    for path in inside_home {
        args.flag3("--ro-bind", path, path);
    }
    args.push("--unshare-all"); // user, ipc, pid, net, uts, cgroup
    if confinement.network {
        args.push("--share-net");
    }
    args.push("--new-session"); // no controlling terminal (CVE-2017-5226)
    args.push("--cap-drop");
    args.push("ALL");
    for fd in seccomp {
        args.push("--add-seccomp-fd");
        args.push(&fd.to_string());
    }
    args.push("--die-with-parent"); // if stepbox dies, its jobs die with it
    args.flag2("--chdir", working_dir);
    args.push("--");
    args.0
}

/// bubblewrap's arguments as they are built.
#[derive(Default)]
struct Args(Vec<String>);

impl Args {
    fn push(&mut self, arg: &str) {
        self.0.push(arg.to_owned());
    }

    fn flag2(&mut self, flag: &str, path: &Path) {
        self.0.extend([flag.to_owned(), path.display().to_string()]);
    }

    fn flag3(&mut self, flag: &str, source: &Path, destination: &Path) {
        self.0.extend([flag.to_owned(), source.display().to_string(), destination.display().to_string()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confined(network: bool, writable: &[&str]) -> Confinement {
        Confinement {
            network,
            writable: writable.iter().map(PathBuf::from).collect(),
            readable: Vec::new(),
            hidden: Vec::new(),
        }
    }

    fn args_of(confinement: &Confinement, read_only: &[&str]) -> Vec<String> {
        let read_only: Vec<PathBuf> = read_only.iter().map(PathBuf::from).collect();
        bwrap_args(confinement, Path::new("/work/step"), &read_only, &Devices::default(), &[7])
    }

    #[test]
    fn a_gpu_lease_binds_exactly_its_nodes_as_devices() {
        let gpu = |index: u32| crate::gpus::Gpu {
            index,
            uuid: format!("GPU-{index}"),
            model: "NVIDIA H200".into(),
            memory_bytes: 1,
            device: PathBuf::from(format!("/var/fake/nvidia{index}")),
            mig: false,
        };
        let devices =
            Devices::from_parts(&[gpu(2)], &[PathBuf::from("/dev/nvidiactl"), PathBuf::from("/dev/nvidia-uvm")]);
        let args = bwrap_args(&confined(false, &["/work/step"]), Path::new("/work/step"), &[], &devices, &[7]);
        let bound: Vec<(&str, &str)> =
            args.windows(3).filter(|w| w[0] == "--dev-bind").map(|w| (w[1].as_str(), w[2].as_str())).collect();
        assert_eq!(
            bound,
            [
                ("/var/fake/nvidia2", "/dev/nvidia2"),
                ("/dev/nvidiactl", "/dev/nvidiactl"),
                ("/dev/nvidia-uvm", "/dev/nvidia-uvm")
            ]
        );
        assert!(
            position(&args, "--dev-bind", "/var/fake/nvidia2").expect("bound")
                > position(&args, "--dev", "/dev").expect("a /dev")
        );
        assert!(position(&args, "--ro-bind-try", "/sys").is_some(), "CUDA reads sysfs: {args:?}");
        let none = args_of(&confined(false, &["/work/step"]), &[]);
        assert!(!none.iter().any(|arg| arg == "--dev-bind"), "no lease, no devices: {none:?}");
        assert!(!none.iter().any(|arg| arg == "/sys"), "no lease, no sysfs: {none:?}");
    }

    fn position(args: &[String], flag: &str, path: &str) -> Option<usize> {
        args.windows(2).position(|w| w[0] == flag && w[1] == path)
    }

    #[test]
    fn network_is_unshared_unless_granted() {
        let closed = args_of(&confined(false, &["/work/step"]), &[]);
        assert!(closed.contains(&"--unshare-all".to_owned()));
        assert!(!closed.contains(&"--share-net".to_owned()));
        let open = args_of(&confined(true, &["/work/step"]), &[]);
        assert!(open.contains(&"--share-net".to_owned()));
    }

    #[test]
    fn the_job_gets_no_terminal_no_capabilities_and_the_filter() {
        let args = args_of(&confined(false, &["/work/step"]), &[]);
        for (flag, value) in [("--cap-drop", "ALL"), ("--add-seccomp-fd", "7"), ("--chdir", "/work/step")] {
            assert!(position(&args, flag, value).is_some(), "{flag} {value}: {args:?}");
        }
        assert!(args.contains(&"--new-session".to_owned()));
        assert_eq!(args.last().map(String::as_str), Some("--"));
    }

    #[test]
    fn the_machine_is_not_bound_whole_only_its_system_directories() {
        let args = args_of(&confined(false, &["/work/step"]), &[]);
        assert!(position(&args, "--ro-bind", "/").is_none(), "{args:?}");
        assert!(position(&args, "--ro-bind", "/usr").is_some(), "{args:?}");
        for private in ["/root", "/home", "/var"] {
            assert!(!args.iter().any(|arg| arg == private), "{private} is visible: {args:?}");
        }
    }

    #[test]
    fn granted_directories_are_writable_even_under_tmp() {
        let args = args_of(&confined(false, &["/work/step", "/tmp/zenml", "/srv/cache"]), &[]);
        let binds: Vec<&str> = args.windows(3).filter(|w| w[0] == "--bind").map(|w| w[1].as_str()).collect();
        assert_eq!(binds, ["/work/step", "/tmp/zenml", "/srv/cache"]);
        let tmpfs = position(&args, "--tmpfs", "/tmp").expect("a private /tmp");
        assert!(position(&args, "--bind", "/tmp/zenml").expect("bound") > tmpfs, "bound over the private /tmp");
    }

    #[test]
    fn a_home_inside_a_bound_directory_is_covered_and_its_environment_bound_again() {
        let mut confinement = confined(false, &["/work/step"]);
        confinement.hidden = vec![PathBuf::from("/work/step/.stepbox"), PathBuf::from("/var/lib/stepbox")];
        let env = "/work/step/.stepbox/envs/py-1";
        let args = args_of(&confinement, &[env]);
        let covered = position(&args, "--tmpfs", "/work/step/.stepbox").expect("the home is covered");
        assert!(covered > position(&args, "--bind", "/work/step").expect("bound"));
        assert!(position(&args, "--ro-bind", env).expect("the environment is bound") > covered);
        // A home that nothing bound contains is absent anyway: no mount point is made for it.
        assert!(position(&args, "--tmpfs", "/var/lib/stepbox").is_none());
    }

    #[test]
    fn an_interpreter_prefix_that_holds_the_home_does_not_uncover_it() {
        let mut confinement = confined(false, &["/work/step"]);
        confinement.hidden = vec![PathBuf::from("/root/.local/share/stepbox")];
        let env = "/root/.local/share/stepbox/envs/py-1";
        let args = args_of(&confinement, &[env, "/root/.local"]);
        let prefix = position(&args, "--ro-bind", "/root/.local").expect("the prefix is bound");
        let covered = position(&args, "--tmpfs", "/root/.local/share/stepbox").expect("the home is covered");
        let environment = position(&args, "--ro-bind", env).expect("the environment is bound");
        assert!(prefix < covered && covered < environment, "{args:?}");
    }

    #[test]
    fn a_missing_granted_directory_is_named_with_the_way_out() {
        let error = check_directories(&confined(false, &["/nonexistent/stepbox-dir"])).unwrap_err();
        assert!(error.to_string().contains("writable-dir=/nonexistent/stepbox-dir"), "{error}");
        assert!(error.to_string().contains("mkdir -p"), "{error}");
        let mut readable = confined(false, &["/tmp"]);
        assert!(check_directories(&readable).is_ok());
        readable.readable = vec![PathBuf::from("/nonexistent/models")];
        assert!(check_directories(&readable).unwrap_err().to_string().contains("readable-dir=/nonexistent/models"));
    }

    #[test]
    fn inherited_descriptors_are_closed_on_exec_except_the_kept_ones() {
        let (kept, _w) = std::io::pipe().expect("a pipe");
        let (other, _w2) = std::io::pipe().expect("a pipe");
        let kept: OwnedFd = kept.into();
        let other: OwnedFd = other.into();
        // Clear close-on-exec on `other`, as a descriptor inherited from a parent would be.
        assert_eq!(unsafe { libc::fcntl(other.as_raw_fd(), libc::F_SETFD, 0) }, 0);
        close_inherited_descriptors(&[kept.as_raw_fd()]).expect("marks");
        let flags = |fd: &OwnedFd| unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
        assert_eq!(flags(&kept) & libc::FD_CLOEXEC, 0, "kept for bubblewrap");
        assert_eq!(flags(&other) & libc::FD_CLOEXEC, libc::FD_CLOEXEC, "closed on exec");
    }
}
