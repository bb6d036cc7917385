//! Reproducible layers: a directory tree as a gzip-compressed tar with fixed
//! ownership, times and order, so the same files always give the same digest.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

/// A finished layer blob.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Layer {
    /// `sha256:…` of the compressed blob (what manifests name).
    pub digest: String,
    /// `sha256:…` of the uncompressed tar (what the config's `diff_ids` name).
    pub diff_id: String,
    /// Bytes of the compressed blob.
    pub size: u64,
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// One file or directory to put in a layer: where it is, where it goes.
pub struct Entry {
    pub source: PathBuf,
    /// Path inside the image, relative to `/`.
    pub target: PathBuf,
}

/// Write `entries` (in the order given; callers sort them) as a layer blob at
/// `blob_path`.
pub fn write_layer(entries: &[Entry], blob_path: &Path) -> io::Result<Layer> {
    let file = File::create(blob_path)?;
    let compressed = Hashing { inner: BufWriter::new(file), hasher: Sha256::new(), count: 0 };
    let gzip = flate2::GzBuilder::new().mtime(0).write(compressed, Compression::new(6));
    let uncompressed = Hashing { inner: gzip, hasher: Sha256::new(), count: 0 };
    let mut tar = tar::Builder::new(uncompressed);
    tar.mode(tar::HeaderMode::Deterministic);
    tar.follow_symlinks(false);
    for entry in entries {
        append(&mut tar, entry)?;
    }
    let uncompressed = tar.into_inner()?;
    let diff_id = format!("sha256:{}", hex::encode(uncompressed.hasher.finalize()));
    let gzip: GzEncoder<Hashing<BufWriter<File>>> = uncompressed.inner;
    let mut compressed = gzip.finish()?;
    compressed.flush()?;
    let digest = format!("sha256:{}", hex::encode(compressed.hasher.finalize()));
    Ok(Layer { digest, diff_id, size: compressed.count })
}

fn append<W: Write>(tar: &mut tar::Builder<W>, entry: &Entry) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(&entry.source)?;
    let mut header = tar::Header::new_gnu();
    header.set_metadata_in_mode(&meta, tar::HeaderMode::Deterministic);
    header.set_uid(0);
    header.set_gid(0);
    if meta.is_dir() {
        header.set_size(0);
        tar.append_data(&mut header, &entry.target, io::empty())
    } else if meta.file_type().is_symlink() {
        let link = std::fs::read_link(&entry.source)?;
        header.set_size(0);
        tar.append_link(&mut header, &entry.target, link)
    } else {
        let file = File::open(&entry.source)?;
        tar.append_data(&mut header, &entry.target, file)
    }
}

/// Every file, directory and symlink under `root` (not following links),
/// sorted, mapped under `prefix` inside the image; `keep` filters by the path
/// relative to `root`.
pub fn entries_under(root: &Path, prefix: &Path, keep: impl Fn(&Path, bool) -> bool) -> io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    // The prefix's own directories first, so the tree is complete.
    let mut parents = Vec::new();
    let mut dir = prefix.to_path_buf();
    while !dir.as_os_str().is_empty() {
        parents.push(dir.clone());
        dir = dir.parent().map(Path::to_path_buf).unwrap_or_default();
    }
    for parent in parents.into_iter().rev() {
        out.push(Entry { source: root.to_path_buf(), target: parent });
    }
    walk(root, root, prefix, &keep, &mut out)?;
    Ok(out)
}

fn walk(
    root: &Path,
    dir: &Path,
    prefix: &Path,
    keep: &impl Fn(&Path, bool) -> bool,
    out: &mut Vec<Entry>,
) -> io::Result<()> {
    let mut children: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    children.sort_by_key(|child| child.file_name());
    for child in children {
        let path = child.path();
        let relative = path.strip_prefix(root).map_err(io::Error::other)?.to_path_buf();
        let file_type = child.file_type()?;
        if !keep(&relative, file_type.is_dir()) {
            continue;
        }
        out.push(Entry { source: path.clone(), target: prefix.join(&relative) });
        if file_type.is_dir() {
            walk(root, &path, prefix, keep, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_files_give_the_same_digest_and_a_change_gives_another() {
        let dir = tempfile::tempdir().expect("temp dir");
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("pkg")).expect("mkdir");
        std::fs::write(src.join("pkg/step.py"), "print('hi')\n").expect("write");
        std::fs::write(src.join("notes.txt"), "x").expect("write");
        let layer = |name: &str| {
            let entries =
                entries_under(&src, Path::new("app"), |path, _| path != Path::new("notes.txt")).expect("walk");
            write_layer(&entries, &dir.path().join(name)).expect("layer")
        };
        let first = layer("a.tar.gz");
        // Times change, content does not: same layer.
        std::fs::write(src.join("pkg/step.py"), "print('hi')\n").expect("rewrite");
        assert_eq!(layer("b.tar.gz"), first);
        // Ignored files do not count either.
        std::fs::write(src.join("notes.txt"), "y").expect("write");
        assert_eq!(layer("c.tar.gz"), first);
        std::fs::write(src.join("pkg/step.py"), "print('bye')\n").expect("change");
        assert_ne!(layer("d.tar.gz").digest, first.digest);
    }
}
