//! Confining a local job with bubblewrap: the job sees the machine's files
//! read-only, can write only its working directory (and the directories its
//! step operator is granted with `writable-dir`), gets its own `/tmp`, its
//! own PID namespace (so cancelling it reaches every process it started, even
//! one that called `setsid`), and no network unless granted.

use std::path::{Path, PathBuf};

use super::{BackendError, Confinement};

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

/// Every directory a confined job may write must exist before it starts:
/// bubblewrap would otherwise fail with a message that names no grant.
pub fn check_writable(confinement: &Confinement) -> Result<(), BackendError> {
    match confinement.writable.iter().find(|dir| !dir.is_dir()) {
        Some(missing) => Err(BackendError::Invalid(format!(
            "the step operator's grant `writable-dir={0}` names a directory that does not exist: \
             create it (mkdir -p {0}) or revoke the grant",
            missing.display()
        ))),
        None => Ok(()),
    }
}

/// The bubblewrap arguments that confine a job working in `working_dir`,
/// with `read_only` directories (a Python environment) visible at their own
/// paths even where the private `/tmp` would hide them; the job's program and
/// arguments follow them.
pub fn bwrap_args(confinement: &Confinement, working_dir: &Path, read_only: &[&Path]) -> Vec<String> {
    let dir = working_dir.display().to_string();
    let mut args: Vec<String> = [
        "--ro-bind",
        "/",
        "/", // the machine's files, read-only
        "--dev",
        "/dev", // a minimal /dev
        "--proc",
        "/proc", // a /proc for the new PID namespace
        "--tmpfs",
        "/tmp", // a private /tmp
    ]
    .map(str::to_owned)
    .to_vec();
    for path in read_only {
        let path = path.display().to_string();
        args.extend(["--ro-bind".to_owned(), path.clone(), path]);
    }
    args.extend(["--bind".to_owned(), dir.clone(), dir.clone()]); // where the job works
    for path in &confinement.writable {
        let path = path.display().to_string();
        args.extend(["--bind".to_owned(), path.clone(), path]); // granted `writable-dir`s
    }
    args.push("--unshare-all".to_owned()); // user, ipc, pid, net, uts, cgroup
    if confinement.network {
        args.push("--share-net".to_owned());
    }
    // If stepbox dies, its jobs die with it.
    args.extend(["--die-with-parent".to_owned(), "--chdir".to_owned(), dir, "--".to_owned()]);
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_is_unshared_unless_granted() {
        let closed = bwrap_args(&confined(false, &[]), Path::new("/work/step"), &[]);
        assert!(closed.contains(&"--unshare-all".to_owned()));
        assert!(!closed.contains(&"--share-net".to_owned()));
        let open = bwrap_args(&confined(true, &[]), Path::new("/work/step"), &[]);
        assert!(open.contains(&"--share-net".to_owned()));
    }

    fn confined(network: bool, writable: &[&str]) -> Confinement {
        Confinement { network, writable: writable.iter().map(std::path::PathBuf::from).collect() }
    }

    #[test]
    fn granted_directories_are_writable_too_even_under_tmp() {
        let args = bwrap_args(&confined(false, &["/tmp/zenml", "/srv/cache"]), Path::new("/work/step"), &[]);
        let binds: Vec<&str> = args.windows(3).filter(|w| w[0] == "--bind").map(|w| w[1].as_str()).collect();
        assert_eq!(binds, ["/work/step", "/tmp/zenml", "/srv/cache"]);
        let tmpfs = args.windows(2).position(|w| w[0] == "--tmpfs").expect("a private /tmp");
        let zenml = args.windows(2).position(|w| w[0] == "--bind" && w[1] == "/tmp/zenml").expect("bound");
        assert!(zenml > tmpfs, "bound over the private /tmp");
    }

    #[test]
    fn a_missing_writable_directory_is_named_with_the_way_out() {
        let error = check_writable(&confined(false, &["/nonexistent/stepbox-dir"])).unwrap_err();
        assert!(error.to_string().contains("writable-dir=/nonexistent/stepbox-dir"), "{error}");
        assert!(error.to_string().contains("mkdir -p"), "{error}");
        assert!(check_writable(&confined(false, &["/tmp"])).is_ok());
    }

    #[test]
    fn only_the_working_directory_is_writable() {
        let env = Path::new("/tmp/home/envs/py-1");
        let args = bwrap_args(&confined(false, &[]), Path::new("/work/step"), &[env]);
        let binds: Vec<&[String]> = args.windows(3).filter(|w| w[0] == "--bind").collect();
        assert_eq!(binds.len(), 1);
        assert_eq!(binds[0][1], "/work/step");
        // The environment is mounted read-only, after (so over) the private /tmp.
        let position = |flag: &str, path: &str| args.windows(2).position(|w| w[0] == flag && w[1] == path);
        let env_bind = position("--ro-bind", "/tmp/home/envs/py-1").expect("the environment is bound");
        assert!(env_bind > position("--tmpfs", "/tmp").expect("a private /tmp"));
        assert_eq!(args.last().map(String::as_str), Some("--"));
    }
}
