//! A job's working directory as a Ray package: the directory's shipped files
//! (see [`crate::source_files`]) in a reproducible zip, named after its
//! content (`_ray_pkg_<hash>.zip`), so an unchanged directory is uploaded
//! once and every later job reuses it.

use std::io::{Cursor, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;

/// Largest package stepbox uploads (Ray keeps packages in its GCS).
pub const MAX_PACKAGE_BYTES: usize = 100 << 20;

/// A zipped working directory.
pub struct Package {
    /// `_ray_pkg_<hex>.zip`, the name in `gcs://NAME`.
    pub name: String,
    pub zip: Vec<u8>,
}

/// Zip the shipped files under `dir`: sorted, with fixed times, so the same
/// files always give the same package name.
pub fn package(dir: &Path) -> Result<Package, String> {
    let rules = crate::source_files::ignore_rules(dir, &[])?;
    let entries = crate::images::layer::entries_under(dir, Path::new(""), |relative, is_dir| {
        crate::source_files::ships(&rules, relative, is_dir)
    })
    .map_err(|error| format!("cannot read the working directory {}: {error}", dir.display()))?;
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let fixed = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default());
    let failed = |error: &dyn std::fmt::Display| format!("cannot zip the working directory {}: {error}", dir.display());
    for entry in entries.iter().filter(|entry| !entry.target.as_os_str().is_empty()) {
        let name = entry.target.to_string_lossy().into_owned();
        let meta = std::fs::symlink_metadata(&entry.source).map_err(|e| failed(&e))?;
        let options = fixed.unix_permissions(meta.permissions().mode() & 0o777);
        if meta.is_dir() {
            writer.add_directory(format!("{name}/"), options).map_err(|e| failed(&e))?;
        } else if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&entry.source).map_err(|e| failed(&e))?;
            writer.add_symlink(name, target.to_string_lossy(), options).map_err(|e| failed(&e))?;
        } else if meta.is_file() {
            let bytes = std::fs::read(&entry.source).map_err(|e| failed(&e))?;
            writer.start_file(name, options).map_err(|e| failed(&e))?;
            writer.write_all(&bytes).map_err(|e| failed(&e))?;
        }
        if writer.get_ref().is_some_and(|zip| zip.get_ref().len() > MAX_PACKAGE_BYTES) {
            return Err(too_large(dir));
        }
    }
    let zip = writer.finish().map_err(|e| failed(&e))?.into_inner();
    if zip.len() > MAX_PACKAGE_BYTES {
        return Err(too_large(dir));
    }
    let digest = hex::encode(Sha256::digest(&zip));
    Ok(Package { name: format!("_ray_pkg_{}.zip", &digest[..32]), zip })
}

fn too_large(dir: &Path) -> String {
    format!(
        "the working directory {} zips to more than {} MiB, more than a Ray job should carry; \
         leave large files out with a .stepboxignore file in it",
        dir.display(),
        MAX_PACKAGE_BYTES >> 20
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_files_give_the_same_package_and_ignored_files_change_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("step.py"), "print('hi')\n").expect("write");
        std::fs::create_dir_all(dir.path().join(".git")).expect("mkdir");
        std::fs::write(dir.path().join(".git/config"), "[remote] url = https://token@host\n").expect("write");
        let first = package(dir.path()).expect("package");
        std::fs::write(dir.path().join(".git/HEAD"), "ref: main\n").expect("write");
        let second = package(dir.path()).expect("package");
        assert_eq!(first.name, second.name, "version-control files do not ship");
        assert!(first.name.starts_with("_ray_pkg_") && first.name.ends_with(".zip"));
        std::fs::write(dir.path().join("step.py"), "print('changed')\n").expect("write");
        assert_ne!(package(dir.path()).expect("package").name, first.name);

        let mut archive = zip::ZipArchive::new(Cursor::new(first.zip)).expect("a zip");
        let names: Vec<String> = (0..archive.len())
            .map(|index| archive.by_index(index).expect("entry").name().expect("a name").into_owned())
            .collect();
        assert_eq!(names, vec!["step.py"]);
    }
}
