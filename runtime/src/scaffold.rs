//! `stepbox new`: a flavor project in Rust, Python or JavaScript that builds
//! and registers as it comes. The templates live in `runtime/templates/` and
//! are compiled into the binary (the JavaScript build script is the js-local
//! example's own `build.mjs`), with the contract (`operator.wit`, from the SDK's `wit/since_v…`) this
//! stepbox implements, so a new project always matches its runtime.

use std::fs;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// The pinned componentize-py a Python project builds with.
pub const COMPONENTIZE_PY: &str = "0.25.1";
/// The pinned componentize-js a JavaScript project builds with.
pub const COMPONENTIZE_JS: &str = "0.23.0";

const CONTRACT: &str = crate::contract::WIT;

/// A language `stepbox new` scaffolds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

/// Why a project could not be made.
#[derive(Debug, Error)]
pub enum ScaffoldError {
    #[error("`{0}` is not a valid flavor name: use 1-63 lowercase letters, digits, `-` or `_`, starting with a letter")]
    BadName(String),
    #[error("{0} already exists and is not empty; choose another name or --dir")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// (path in the project, template text). The Rust template's manifest is
/// `Cargo.toml.in`: a file named `Cargo.toml` would make cargo take the
/// template for a nested package and leave it out of the published crate.
fn files(lang: Lang) -> Vec<(&'static str, &'static str)> {
    match lang {
        Lang::Rust => vec![
            ("Cargo.toml", include_str!("../templates/rust/Cargo.toml.in")),
            ("src/lib.rs", include_str!("../templates/rust/src/lib.rs")),
            ("README.md", include_str!("../templates/rust/README.md")),
            ("wit/operator.wit", CONTRACT),
            (".gitignore", "target/\n"),
        ],
        Lang::Python => vec![
            ("app.py", include_str!("../templates/python/app.py")),
            ("build.sh", include_str!("../templates/python/build.sh")),
            ("README.md", include_str!("../templates/python/README.md")),
            ("wit/world.wit", include_str!("../templates/python/world.wit")),
            ("wit/deps/stepbox-operator/operator.wit", CONTRACT),
            (".gitignore", ".venv/\n__pycache__/\n*.wasm\n"),
        ],
        Lang::Js => vec![
            ("flavor.js", include_str!("../templates/js/flavor.js")),
            ("build.mjs", include_str!("../templates/js/build.mjs")),
            ("package.json", include_str!("../templates/js/package.json")),
            ("README.md", include_str!("../templates/js/README.md")),
            ("wit/world.wit", include_str!("../templates/js/world.wit")),
            ("wit/deps/stepbox-operator/operator.wit", CONTRACT),
            (".gitignore", "node_modules/\n*.wasm\n"),
        ],
    }
}

/// Write a new `lang` flavor project named `name` into `dir`; returns the
/// files written, relative to `dir`.
pub fn create(name: &str, lang: Lang, dir: &Path) -> Result<Vec<String>, ScaffoldError> {
    let valid = (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        return Err(ScaffoldError::BadName(name.to_owned()));
    }
    if fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(ScaffoldError::Exists(dir.to_owned()));
    }
    let crate_name = name.replace('-', "_");
    let mut written = Vec::new();
    for (relative, template) in files(lang) {
        let text = template
            .replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
            .replace("{{contract}}", crate::CONTRACT_VERSION)
            .replace("{{componentize_py}}", COMPONENTIZE_PY)
            .replace("{{componentize_js}}", COMPONENTIZE_JS);
        let path = dir.join(relative);
        let write = |source| ScaffoldError::Write { path: path.clone(), source };
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(write)?;
        }
        fs::write(&path, text).map_err(write)?;
        if relative.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).map_err(write)?;
        }
        written.push(relative.to_owned());
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_is_filled_and_bad_names_are_refused() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            let dir = tempfile::tempdir().expect("tempdir");
            let project = dir.path().join("my-flavor");
            let written = create("my-flavor", lang, &project).expect("created");
            for file in written {
                let text = fs::read_to_string(project.join(&file)).expect("read");
                assert!(!text.contains("{{"), "{lang:?} {file} has an unfilled placeholder");
            }
            assert!(matches!(create("my-flavor", lang, &project), Err(ScaffoldError::Exists(_))));
        }
        let dir = tempfile::tempdir().expect("tempdir");
        for bad in ["My-Flavor", "9lives", "", "a/b"] {
            assert!(matches!(create(bad, Lang::Rust, &dir.path().join("x")), Err(ScaffoldError::BadName(_))), "{bad}");
        }
    }
}
