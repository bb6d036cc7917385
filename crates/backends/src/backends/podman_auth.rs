//! A registry login handed to podman, and what a killed launch left of one.
//!
//! `podman pull` reads a login from a containers-auth.json file, never from
//! its command line (where `ps` would show it). Each pull with a login gets
//! its own private directory (0700) under the temporary directory holding
//! that file (0600), removed as soon as the pull ends.
//!
//! A launch killed mid-pull (SIGKILL, a machine's OOM killer) runs no
//! destructor, so the directory would outlive it with the password inside.
//! Each directory therefore names its owner first, before any login is
//! written: the owning process's [`Identity`] (PID, start time and boot, so
//! a reused PID is not mistaken for it). [`sweep_abandoned`] removes every
//! such directory of this user whose owner is gone; every launch runs it as
//! its container backend is made (and so does the reconciling of a killed
//! launch's jobs), so the next launch on this machine removes what a killed
//! one left. A directory
//! whose owner cannot be read is left alone: it holds no login yet (the
//! owner is written first) or is not ours to judge.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::images::registry::Login;
use crate::processes::Identity;

/// The name every login directory starts with.
const PREFIX: &str = "stepbox-registry-login-";

/// The file in a login directory naming the process that made it.
const OWNER_FILE: &str = "owner";

/// The auth file podman is given.
const AUTH_FILE: &str = "auth.json";

/// An owner file longer than this is not one stepbox wrote.
const MAX_OWNER_BYTES: u64 = 512;

/// A containers-auth.json holding one login, in a private directory removed
/// when this is dropped.
pub(super) struct AuthFile {
    dir: tempfile::TempDir,
}

impl AuthFile {
    /// Write `login` for podman under `parent` (the temporary directory in use).
    pub(super) fn write_in(parent: &Path, login: &Login) -> std::io::Result<Self> {
        use base64::Engine as _;
        // Asked for: a TempDir is otherwise as open as the umask lets it be (0755).
        let dir = tempfile::Builder::new()
            .prefix(PREFIX)
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(parent)?;
        if let Some(owner) = Identity::current() {
            private_file(&dir.path().join(OWNER_FILE))?.write_all(owner.to_string().as_bytes())?;
        }
        let pair = format!("{}:{}", login.username, login.password.expose());
        let auths = serde_json::json!({
            "auths": { login.registry.clone(): { "auth": base64::engine::general_purpose::STANDARD.encode(pair) } }
        });
        private_file(&dir.path().join(AUTH_FILE))?.write_all(auths.to_string().as_bytes())?;
        Ok(Self { dir })
    }

    /// The file to pass as `podman pull --authfile`.
    pub(super) fn path(&self) -> PathBuf {
        self.dir.path().join(AUTH_FILE)
    }
}

/// A new file only this user can read.
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

/// Remove every login directory of this user under `parent` whose owning
/// process is gone. Best effort: what cannot be read or removed is left,
/// and nothing here fails a launch.
pub(super) fn sweep_abandoned(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(PREFIX) {
            continue;
        }
        // Not followed: a link someone else planted is not a directory of ours.
        let Ok(metadata) = entry.metadata() else { continue };
        if !metadata.is_dir() || metadata.uid() != me {
            continue;
        }
        let dir = entry.path();
        if owner_is_gone(&dir) {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => tracing::info!(dir = %dir.display(), "removed a registry login left by a killed launch"),
                Err(error) => {
                    tracing::warn!(dir = %dir.display(), %error, "cannot remove a registry login left by a killed launch")
                }
            }
        }
    }
}

/// Whether `dir` names an owner that is no longer running. Unreadable or
/// malformed: not known to be gone.
fn owner_is_gone(dir: &Path) -> bool {
    let Ok(file) = std::fs::File::open(dir.join(OWNER_FILE)) else { return false };
    let mut text = String::new();
    if file.take(MAX_OWNER_BYTES).read_to_string(&mut text).is_err() {
        return false;
    }
    text.trim().parse::<Identity>().is_ok_and(|owner| !owner.is_alive())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::SecretValue;

    fn login() -> Login {
        Login {
            registry: "registry.test:5000".into(),
            username: "robot".into(),
            password: SecretValue::new("s3cret-pass".into()),
        }
    }

    /// A login directory as a launch would have left it, owned by `owner`.
    fn left_behind(parent: &Path, name: &str, owner: Option<&str>) -> PathBuf {
        let dir = parent.join(format!("{PREFIX}{name}"));
        std::fs::create_dir(&dir).expect("a login directory");
        if let Some(owner) = owner {
            std::fs::write(dir.join(OWNER_FILE), owner).expect("an owner");
        }
        std::fs::write(dir.join(AUTH_FILE), "{}").expect("an auth file");
        dir
    }

    #[test]
    fn the_auth_file_is_private_holds_the_login_and_goes_with_its_holder() {
        let parent = tempfile::tempdir().expect("a dir");
        let file = AuthFile::write_in(parent.path(), &login()).expect("written");
        let path = file.path();
        let mode = |path: &Path| std::fs::metadata(path).expect("metadata").mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().expect("its directory")), 0o700);
        let written: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        // base64("robot:s3cret-pass")
        assert_eq!(written["auths"]["registry.test:5000"]["auth"], "cm9ib3Q6czNjcmV0LXBhc3M=");
        drop(file);
        assert!(!path.exists(), "the login outlived its pull");
    }

    #[test]
    fn a_login_whose_owner_is_gone_is_swept_and_no_other() {
        let parent = tempfile::tempdir().expect("a dir");
        let me = Identity::current().expect("this process").to_string();
        // This PID and boot, another start time: a process that was, not this one.
        let mut parts: Vec<&str> = me.splitn(3, ':').collect();
        parts[1] = "1";
        let gone = parts.join(":");
        let abandoned = left_behind(parent.path(), "abandoned", Some(&gone));
        let live = left_behind(parent.path(), "live", Some(&me));
        let unowned = left_behind(parent.path(), "unowned", None);
        let garbled = left_behind(parent.path(), "garbled", Some("not an identity"));
        let stranger = parent.path().join("someone-elses");
        std::fs::create_dir(&stranger).expect("a directory");
        // A link planted under the prefix, to a gone owner's directory elsewhere: not followed.
        let elsewhere = tempfile::tempdir().expect("a dir");
        let target = left_behind(elsewhere.path(), "target", Some(&gone));
        let planted = parent.path().join(format!("{PREFIX}planted"));
        std::os::unix::fs::symlink(&target, &planted).expect("a link");

        let pulling = AuthFile::write_in(parent.path(), &login()).expect("written");

        sweep_abandoned(parent.path());

        assert!(!abandoned.exists(), "a killed launch's login was left");
        for kept in [&live, &unowned, &garbled, &stranger, &planted, &target] {
            assert!(kept.exists(), "{} was removed", kept.display());
        }
        assert!(pulling.path().exists(), "a pull under way lost its login");
    }
}
