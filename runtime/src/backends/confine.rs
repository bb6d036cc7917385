//! Confining a local job with bubblewrap: the job sees the machine's files
//! read-only, can write only its working directory, gets its own `/tmp`, its
//! own PID namespace (so cancelling it reaches every process it started, even
//! one that called `setsid`), and no network unless granted.

use std::path::{Path, PathBuf};

use super::{BackendError, Confinement};

/// The bubblewrap program, looked up on the runtime's own PATH.
pub fn bwrap() -> Result<PathBuf, BackendError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join("bwrap")).find(|candidate| candidate.is_file()).ok_or_else(|| {
        BackendError::Unsupported(
            "bubblewrap (`bwrap`) is not installed, and jobs of untrusted step operators run confined by it. \
                 Install it (Debian/Ubuntu: apt-get install bubblewrap), or grant the step operator `trusted` \
                 to run its jobs unconfined"
                .to_owned(),
        )
    })
}

/// The bubblewrap arguments that confine a job working in `working_dir`;
/// the job's program and arguments follow them.
pub fn bwrap_args(confinement: Confinement, working_dir: &Path) -> Vec<String> {
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
    args.extend(["--bind".to_owned(), dir.clone(), dir.clone()]); // the one writable place
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
        let closed = bwrap_args(Confinement { network: false }, Path::new("/work/step"));
        assert!(closed.contains(&"--unshare-all".to_owned()));
        assert!(!closed.contains(&"--share-net".to_owned()));
        let open = bwrap_args(Confinement { network: true }, Path::new("/work/step"));
        assert!(open.contains(&"--share-net".to_owned()));
    }

    #[test]
    fn only_the_working_directory_is_writable() {
        let args = bwrap_args(Confinement { network: false }, Path::new("/work/step"));
        let binds: Vec<&[String]> = args.windows(3).filter(|w| w[0] == "--bind").collect();
        assert_eq!(binds.len(), 1);
        assert_eq!(binds[0][1], "/work/step");
        assert_eq!(args.last().map(String::as_str), Some("--"));
    }
}
