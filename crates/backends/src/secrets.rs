//! Named secrets: credentials a step operator may be granted by name
//! (`--grant secret=NAME`) and that the host applies for a flavor, which
//! never sees the value.
//!
//! Each secret is one file, `$STEPBOX_HOME/secrets/<name>`, mode 0600 in a
//! 0700 directory, written to a temporary file and renamed so that a reader
//! sees the old value or the new one, never half. Values are read from stdin
//! or a file, never from a command line, where `ps` and shell history would
//! show them.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Largest secret value: credentials, not files.
pub const MAX_SECRET_BYTES: usize = 64 << 10;

/// Why a secret operation failed.
#[derive(Debug, Error)]
pub enum SecretError {
    #[error("`{0}` is not a valid secret name: use 1-63 letters, digits, `-`, `_` or `.`, not starting with `.`")]
    BadName(String),
    #[error("no secret named `{0}`; `stepbox secret list` shows the stored ones, `stepbox secret set {0}` stores one")]
    NotFound(String),
    #[error("the value of secret `{name}` is empty")]
    Empty { name: String },
    #[error("the value of secret `{name}` is {bytes} bytes; a secret holds at most {MAX_SECRET_BYTES} bytes")]
    TooLarge { name: String, bytes: usize },
    #[error("secret `{name}`: {path}: {source}")]
    Io { name: String, path: PathBuf, source: std::io::Error },
}

/// A secret's value. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// Wrap a value the host obtained (an access token), so it is never shown.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The value itself, for the one place that applies it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// The secrets under one state directory.
#[derive(Debug, Clone)]
pub struct Secrets {
    dir: PathBuf,
}

impl Secrets {
    /// The secrets kept in `dir` (created with mode 0700 on the first `set`).
    pub fn at(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// Store `value` under `name`, replacing any previous value. A single
    /// trailing newline (what `echo` and editors add) is dropped.
    pub fn set(&self, name: &str, value: &[u8]) -> Result<(), SecretError> {
        check_name(name)?;
        let text = String::from_utf8_lossy(value);
        let text = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
        if text.is_empty() {
            return Err(SecretError::Empty { name: name.to_owned() });
        }
        if text.len() > MAX_SECRET_BYTES {
            return Err(SecretError::TooLarge { name: name.to_owned(), bytes: text.len() });
        }
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| SecretError::Io { name: name.to_owned(), path, source }
        };
        fs::DirBuilder::new().recursive(true).create(&self.dir).map_err(io(&self.dir))?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700)).map_err(io(&self.dir))?;
        let staging = self.dir.join(format!(".{name}.{}", std::process::id()));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&staging)
            .map_err(io(&staging))?;
        file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(io(&staging))?;
        fs::rename(&staging, self.path(name)).map_err(io(&staging))
    }

    /// The value stored under `name`.
    pub fn get(&self, name: &str) -> Result<SecretValue, SecretError> {
        check_name(name)?;
        let path = self.path(name);
        match fs::read_to_string(&path) {
            Ok(value) => Ok(SecretValue(value)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(SecretError::NotFound(name.to_owned())),
            Err(source) => Err(SecretError::Io { name: name.to_owned(), path, source }),
        }
    }

    /// Whether a secret named `name` is stored.
    pub fn exists(&self, name: &str) -> bool {
        check_name(name).is_ok() && self.path(name).is_file()
    }

    /// The stored names, sorted.
    pub fn list(&self) -> Result<Vec<String>, SecretError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(SecretError::Io { name: "*".to_owned(), path: self.dir.clone(), source }),
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|name| check_name(name).is_ok())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Remove the secret `name`.
    pub fn delete(&self, name: &str) -> Result<(), SecretError> {
        check_name(name)?;
        let path = self.path(name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(SecretError::NotFound(name.to_owned())),
            Err(source) => Err(SecretError::Io { name: name.to_owned(), path, source }),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Secret names are file names: no separators, no leading dot.
pub fn check_name(name: &str) -> Result<(), SecretError> {
    let valid = (1..=63).contains(&name.len())
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid { Ok(()) } else { Err(SecretError::BadName(name.to_owned())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> (tempfile::TempDir, Secrets) {
        let dir = tempfile::tempdir().expect("tempdir");
        let secrets = Secrets::at(dir.path().join("secrets"));
        (dir, secrets)
    }

    #[test]
    fn values_round_trip_owner_only_and_never_print() {
        let (_dir, secrets) = secrets();
        secrets.set("ray-token", b"s3cr3t\n").expect("set");
        let value = secrets.get("ray-token").expect("get");
        assert_eq!(value.expose(), "s3cr3t", "one trailing newline is dropped");
        assert!(!format!("{value:?}").contains("s3cr3t"));
        let mode = |path: &Path| fs::metadata(path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&secrets.dir), 0o700);
        assert_eq!(mode(&secrets.path("ray-token")), 0o600);
        secrets.set("ray-token", b"new").expect("replace");
        assert_eq!(secrets.get("ray-token").expect("get").expose(), "new");
        assert_eq!(secrets.list().expect("list"), vec!["ray-token"]);
        secrets.delete("ray-token").expect("delete");
        assert!(matches!(secrets.get("ray-token"), Err(SecretError::NotFound(_))));
        assert!(matches!(secrets.delete("ray-token"), Err(SecretError::NotFound(_))));
    }

    #[test]
    fn bad_names_and_values_are_refused() {
        let (_dir, secrets) = secrets();
        for name in ["", "../escape", "a/b", ".hidden", &"x".repeat(64)] {
            assert!(matches!(secrets.set(name, b"v"), Err(SecretError::BadName(_))), "{name:?}");
        }
        assert!(matches!(secrets.set("empty", b"\n"), Err(SecretError::Empty { .. })));
        let huge = vec![b'x'; MAX_SECRET_BYTES + 1];
        assert!(matches!(secrets.set("huge", &huge), Err(SecretError::TooLarge { .. })));
        assert!(secrets.list().expect("list").is_empty(), "nothing half-written is listed");
    }
}
