//! A local OCI image layout: `oci-layout`, `index.json` and
//! `blobs/sha256/…`. stepbox's own (`$STEPBOX_HOME/images`) caches every blob
//! it pulls or builds and lists every image it builds; a base image can also
//! come from any other layout on disk (`oci:PATH[:TAG]`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// The annotation that names an image in a layout's index.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An OCI layout directory.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout at `root`, created (empty) if missing.
    pub fn create(root: &Path) -> io::Result<Self> {
        fs::create_dir_all(root.join("blobs").join("sha256"))?;
        let marker = root.join("oci-layout");
        if !marker.exists() {
            fs::write(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let index = root.join("index.json");
        if !index.exists() {
            crate::files::write_atomically(&index, br#"{"schemaVersion":2,"manifests":[]}"#)?;
        }
        Ok(Self { root: root.to_owned() })
    }

    /// An existing layout at `root`.
    pub fn open(root: &Path) -> io::Result<Self> {
        if !root.join("index.json").is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} is not an OCI image layout (it has no index.json)", root.display()),
            ));
        }
        Ok(Self { root: root.to_owned() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob `digest` (`sha256:…`) is, or would be.
    pub fn blob_path(&self, digest: &str) -> io::Result<PathBuf> {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("`{digest}` is not a sha256 digest")))?;
        Ok(self.root.join("blobs").join("sha256").join(hex))
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_ok_and(|path| path.is_file())
    }

    pub fn read_blob(&self, digest: &str) -> io::Result<Vec<u8>> {
        fs::read(self.blob_path(digest)?)
    }

    /// Store `bytes` as a blob; returns its digest.
    pub fn write_blob(&self, bytes: &[u8]) -> io::Result<String> {
        use sha2::Digest;
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)));
        let path = self.blob_path(&digest)?;
        if !path.is_file() {
            crate::files::write_atomically(&path, bytes)?;
        }
        Ok(digest)
    }

    /// A temporary file in this layout, for a blob being written.
    pub fn temp_file(&self) -> io::Result<tempfile::NamedTempFile> {
        tempfile::NamedTempFile::new_in(self.root.join("blobs"))
    }

    /// Move a finished temporary blob into place under `digest`.
    pub fn adopt_blob(&self, temp: tempfile::NamedTempFile, digest: &str) -> io::Result<()> {
        temp.persist(self.blob_path(digest)?).map(drop).map_err(|error| error.error)
    }

    /// The manifest descriptor named `name` (or the only one, if `name` is
    /// None and the index holds exactly one).
    pub fn find_manifest(&self, name: Option<&str>) -> io::Result<Value> {
        let index: Value = serde_json::from_slice(&fs::read(self.root.join("index.json"))?)?;
        let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
        let found = match name {
            Some(name) => manifests
                .into_iter()
                .find(|m| m["annotations"][REF_NAME].as_str() == Some(name) || m["digest"].as_str() == Some(name)),
            None if manifests.len() == 1 => manifests.into_iter().next(),
            None => None,
        };
        found.ok_or_else(|| {
            let what = name.map_or("exactly one image (name one with :TAG)".to_owned(), |n| format!("an image `{n}`"));
            io::Error::new(io::ErrorKind::NotFound, format!("{} has no {what}", self.root.display()))
        })
    }

    /// List a manifest in the index under `name`, replacing one of that name.
    pub fn tag(&self, name: &str, manifest_digest: &str, size: u64, media_type: &str) -> io::Result<()> {
        // One writer at a time: concurrent builds must not lose each other's entries.
        let lock = fs::File::options().create(true).truncate(false).write(true).open(self.root.join("index.lock"))?;
        lock.lock()?;
        let path = self.root.join("index.json");
        let mut index: Value = serde_json::from_slice(&fs::read(&path)?)?;
        let mut manifests = index["manifests"].as_array().cloned().unwrap_or_default();
        manifests.retain(|m| m["annotations"][REF_NAME].as_str() != Some(name));
        manifests.push(json!({
            "mediaType": media_type,
            "digest": manifest_digest,
            "size": size,
            "annotations": { REF_NAME: name },
        }));
        index["manifests"] = Value::Array(manifests);
        crate::files::write_atomically(&path, &serde_json::to_vec_pretty(&index)?)
    }
}
