//! Finding the external programs stepbox drives (bubblewrap, uv, podman).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The program `name` on stepbox's own PATH, if there is an executable one.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| is_executable(candidate))
}

/// Whether `path` is a file someone may execute.
pub fn is_executable(path: &Path) -> bool {
    path.metadata().is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// `override_var`'s value when set (it must name an executable), else `name`
/// on PATH. The error says which was tried.
pub fn locate(name: &str, override_var: &str) -> Result<PathBuf, String> {
    match std::env::var_os(override_var).filter(|value| !value.is_empty()) {
        Some(configured) => {
            let path = PathBuf::from(configured);
            if is_executable(&path) {
                Ok(path)
            } else {
                Err(format!("{override_var} names {}, which is not an executable file", path.display()))
            }
        }
        None => on_path(name).ok_or_else(|| format!("`{name}` is not on PATH (nor set with {override_var})")),
    }
}
