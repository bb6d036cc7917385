//! The official flavors shipped with stepbox: `stepbox flavor register
//! builtin:NAME` registers one without a toolchain, and `stepbox flavor
//! list --available` lists them with their sha256.
//!
//! They live in a directory beside the binary, with an index
//! (`builtin.json`: each flavor's name, file, size and sha256) that
//! `scripts/builtin-flavors` writes when it builds them:
//!
//! - `$STEPBOX_BUILTIN_FLAVORS`, when set;
//! - `BIN/../share/stepbox/flavors`: where the pip wheel installs them
//!   (`<venv>/bin/stepbox` and `<venv>/share/stepbox/flavors`), and where
//!   `cargo install --root R` users put them (`R/share/stepbox/flavors`);
//! - `BIN/../builtin-flavors`: a checkout, whose `target/debug/stepbox`
//!   finds `target/builtin-flavors`.
//!
//! A file whose sha256 is not the index's is refused: the index is what
//! `--available` shows and what the flavor record keeps.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use stepbox_store::store::Provenance;

use crate::component::{self, MAX_COMPONENT_BYTES};
use crate::context::Stepbox;
use crate::flavors::{self, FlavorError, Source};
use stepbox_store::store::FlavorRecord;

/// The prefix naming a builtin flavor where a path could stand.
pub const SCHEME: &str = "builtin:";
/// The variable naming the builtin flavors' directory.
pub const DIR_VARIABLE: &str = "STEPBOX_BUILTIN_FLAVORS";
/// The index file in that directory.
pub const INDEX: &str = "builtin.json";
/// The largest index read.
const MAX_INDEX_BYTES: u64 = 1 << 20;

/// One builtin flavor, as the index lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Builtin {
    /// The flavor's name (`builtin:NAME`).
    pub name: String,
    /// Its file in the directory.
    pub file: String,
    /// Its size in bytes.
    pub size: u64,
    /// The sha256 of the file, hex.
    pub sha256: String,
}

#[derive(Deserialize)]
struct Index {
    flavors: Vec<Builtin>,
}

/// Where the builtin flavors are, and what they are.
#[derive(Debug, Clone, Serialize)]
pub struct Available {
    /// Their directory.
    pub dir: PathBuf,
    /// Each, by name.
    pub flavors: Vec<Builtin>,
}

/// The builtin flavors' directory: the first of the places in the module
/// doc that has an index.
pub fn dir() -> Result<PathBuf, FlavorError> {
    if let Some(dir) = std::env::var_os(DIR_VARIABLE) {
        let dir = PathBuf::from(dir);
        if dir.join(INDEX).is_file() {
            return Ok(dir);
        }
        return Err(FlavorError::Input(format!(
            "{DIR_VARIABLE} is {}, which holds no {INDEX}; point it at a directory `scripts/builtin-flavors DIR` wrote, or unset it",
            dir.display()
        )));
    }
    let exe = std::env::current_exe()
        .map_err(|error| FlavorError::Internal(format!("cannot find stepbox's own path: {error}")))?;
    let bin = exe.parent().unwrap_or(Path::new("."));
    let candidates = [bin.join("../share/stepbox/flavors"), bin.join("../builtin-flavors")];
    let found = candidates.iter().find(|dir| dir.join(INDEX).is_file());
    found.map(|dir| std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone())).ok_or_else(|| {
        FlavorError::Input(format!(
            "this stepbox has no builtin flavors: none of {} holds a {INDEX}. The pip package ships them; in a checkout, build them with `scripts/builtin-flavors`; or set {DIR_VARIABLE} to a directory that holds them",
            candidates.iter().map(|dir| dir.display().to_string()).collect::<Vec<_>>().join(", ")
        ))
    })
}

/// The builtin flavors, from the index (nothing is compiled or checked).
pub fn available() -> Result<Available, FlavorError> {
    use std::io::Read as _;
    let dir = dir()?;
    let path = dir.join(INDEX);
    let unreadable = |why: String| {
        FlavorError::Input(format!("the builtin flavors' index {} {why}; reinstall stepbox", path.display()))
    };
    let file = std::fs::File::open(&path).map_err(|error| unreadable(format!("cannot be read: {error}")))?;
    let mut text = Vec::new();
    file.take(MAX_INDEX_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|error| unreadable(format!("cannot be read: {error}")))?;
    if text.len() as u64 > MAX_INDEX_BYTES {
        return Err(unreadable(format!("is over {MAX_INDEX_BYTES} bytes")));
    }
    let index: Index =
        serde_json::from_slice(&text).map_err(|error| unreadable(format!("is not an index ({error})")))?;
    for flavor in &index.flavors {
        let plain = !flavor.file.is_empty() && !flavor.file.contains('/') && flavor.file != ".." && flavor.file != ".";
        if !plain {
            return Err(unreadable(format!("names the file `{}`, which is not a plain file name", flavor.file)));
        }
    }
    let mut flavors = index.flavors;
    flavors.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Available { dir, flavors })
}

/// Register the builtin flavor `name`, checked like any file; it must call
/// itself `name`.
pub async fn register(stepbox: &Stepbox, name: &str, replace: bool) -> Result<FlavorRecord, FlavorError> {
    let (source, bytes) = fetch(name)?;
    let examined = flavors::examine(stepbox, &source, bytes).await?;
    if examined.record.name != name {
        return Err(FlavorError::Input(format!(
            "the builtin flavor file for `{name}` is the flavor `{}`: the installation's index is wrong; reinstall stepbox",
            examined.record.name
        )));
    }
    flavors::register_examined(stepbox, examined, &source.shown, replace).await
}

/// The builtin flavor `name` (from `builtin:NAME`): its bytes, checked
/// against the index's sha256, and where they came from.
pub fn fetch(name: &str) -> Result<(Source, Vec<u8>), FlavorError> {
    let available = available()?;
    let Some(builtin) = available.flavors.iter().find(|flavor| flavor.name == name) else {
        return Err(FlavorError::Input(format!(
            "there is no builtin flavor `{}`; the builtin ones are: {} (`stepbox flavor list --available`)",
            crate::display::visible(name),
            available.flavors.iter().map(|flavor| flavor.name.as_str()).collect::<Vec<_>>().join(", ")
        )));
    };
    let path = available.dir.join(&builtin.file);
    let bytes = component::read_component_file(&path)?;
    let sha256 = component::sha256_hex(&bytes);
    if sha256 != builtin.sha256 || (bytes.len() as u64) > MAX_COMPONENT_BYTES {
        return Err(FlavorError::Input(format!(
            "the builtin flavor file {} has sha256 {sha256}, not the {} its index lists: it changed since stepbox was installed; reinstall stepbox (or rebuild with `scripts/builtin-flavors`)",
            path.display(),
            builtin.sha256
        )));
    }
    let source = Source {
        shown: format!("{SCHEME}{name}"),
        label: builtin.file.clone(),
        recorded: format!("{SCHEME}{name}@sha256:{sha256}"),
        provenance: Provenance::Builtin { sha256 },
    };
    Ok((source, bytes))
}
