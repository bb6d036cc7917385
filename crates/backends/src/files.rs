//! Writing files so that a reader, or a crash, never sees half of one: the
//! precompiled components, the flavor blobs, OCI layouts and environment
//! markers all go through here.

use std::io::Write;
use std::path::Path;

/// Write `bytes` to `path` through a temporary file and a rename, so readers
/// never see half a file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|error| error.error)?;
    Ok(())
}
