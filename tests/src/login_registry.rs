//! A registry that wants a login, for the registry-credential tests: the
//! same `docker-registry` as the test services, started per test on a free
//! loopback port with an htpasswd file (bcrypt, as it requires) of one user.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running registry with one user; stopped when dropped.
pub struct LoginRegistry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl LoginRegistry {
    /// Start it, with `username` and `password` the only login.
    pub fn start(username: &str, password: &str) -> Self {
        let dir = tempfile::tempdir().expect("a directory");
        let hash = bcrypt::hash(password, 5).expect("bcrypt");
        std::fs::write(dir.path().join("htpasswd"), format!("{username}:{hash}\n")).expect("write htpasswd");
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let config = format!(
            "version: 0.1\nstorage: {{filesystem: {{rootdirectory: {root}}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\n\
             auth: {{htpasswd: {{realm: stepbox-test, path: {htpasswd}}}}}\n",
            root = dir.path().join("data").display(),
            htpasswd = dir.path().join("htpasswd").display(),
        );
        std::fs::write(dir.path().join("config.yml"), config).expect("write the config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry runs (scripts/services installs it)");
        let up = crate::wait_until(Duration::from_secs(30), || TcpStream::connect(("127.0.0.1", port)).is_ok());
        assert!(up, "the login registry did not listen on port {port}");
        Self { child, port, _dir: dir }
    }

    /// `127.0.0.1:PORT`
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for LoginRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
