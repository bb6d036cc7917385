//! The contract: its WIT and its version, written once.
//!
//! The WIT ships inside this crate, one directory per release as Zed's
//! extension API does (`wit/since_v0.2.0/`, `wit/since_v0.2.1/`, …; a
//! released directory never changes). This file names the newest, and the
//! version is read from that WIT's `package` line at compile time. The
//! runtime compiles this same file (`crates/host/src/contract.rs` and
//! `crates/host/wit` are symlinks to it and to `wit/`, which `cargo package`
//! follows), so the SDK, the host and the projects `stepbox flavor new`
//! writes agree by construction.

/// The contract's WIT, as `stepbox flavor new` copies it into projects.
pub const WIT: &str = include_str!("../wit/since_v0.2.1/operator.wit");

/// The contract's WIT package name.
pub const PACKAGE: &str = "stepbox:operator";

/// The contract's version, from [`WIT`]'s `package stepbox:operator@VERSION;` line.
pub const VERSION: &str = version_of(WIT);

/// The version in `wit`'s `package stepbox:operator@VERSION;` line (a
/// compile error if there is none: this only ever reads the file above).
const fn version_of(wit: &str) -> &str {
    let bytes = wit.as_bytes();
    let needle = b"\npackage stepbox:operator@";
    let mut at = 0;
    while at + needle.len() <= bytes.len() {
        let mut matched = 0;
        while matched < needle.len() && bytes[at + matched] == needle[matched] {
            matched += 1;
        }
        if matched == needle.len() {
            let (_, rest) = bytes.split_at(at + needle.len());
            let mut end = 0;
            while end < rest.len() && rest[end] != b';' {
                end += 1;
            }
            let (version, _) = rest.split_at(end);
            return match core::str::from_utf8(version) {
                Ok(version) => version,
                Err(_) => panic!("the contract's version is not UTF-8"),
            };
        }
        at += 1;
    }
    panic!("the contract's WIT has no `package stepbox:operator@VERSION;` line")
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    /// The workspace root: this file is compiled by `guest-sdk` and by `stepbox-host`, at
    /// different depths, so look upwards for the directory holding `guest-sdk/wit`.
    fn workspace() -> PathBuf {
        let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        crate_dir
            .ancestors()
            .find(|dir| dir.join("guest-sdk/wit").is_dir())
            .unwrap_or_else(|| panic!("no guest-sdk/wit above {}", crate_dir.display()))
            .to_owned()
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
    }

    /// `(version, its WIT)` for every `wit/since_vVERSION/operator.wit`, oldest first.
    fn releases() -> Vec<(String, String)> {
        let dir = workspace().join("guest-sdk/wit");
        let mut releases: Vec<(String, String)> = std::fs::read_dir(&dir)
            .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let version = entry.file_name().to_str()?.strip_prefix("since_v")?.to_owned();
                Some((version, read(&entry.path().join("operator.wit"))))
            })
            .collect();
        let key = |version: &str| version.split('.').map(|part| part.parse::<u32>().unwrap_or(0)).collect::<Vec<_>>();
        releases.sort_by_key(|(version, _)| key(version));
        releases
    }

    #[test]
    fn every_release_directory_holds_the_wit_of_its_version_and_the_newest_is_the_contract() {
        let releases = releases();
        assert!(
            releases.len() >= 2,
            "0.2.0 and later are kept: {:?}",
            releases.iter().map(|r| &r.0).collect::<Vec<_>>()
        );
        for (version, wit) in &releases {
            assert_eq!(version_of(wit), version, "since_v{version} declares its own version");
        }
        let (newest, wit) = releases.last().expect("a release");
        assert_eq!(newest, VERSION, "the contract is the newest release directory");
        assert_eq!(wit, WIT);
    }

    /// The example flavors in other languages name the contract's version by
    /// hand (their toolchains read no Rust constant): they must name this one.
    #[test]
    fn the_example_flavors_in_other_languages_import_this_version() {
        let root = workspace().join("example-flavors");
        for file in ["python-local/wit/world.wit", "js-local/wit/world.wit", "js-local/flavor.js"] {
            let text = read(&root.join(file));
            let versions: Vec<&str> = text
                .match_indices("stepbox:operator/")
                .filter_map(|(at, _)| text[at..].split_once('@'))
                .map(|(_, rest)| rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.')).next().unwrap_or(""))
                .collect();
            assert!(!versions.is_empty(), "{file} imports the contract");
            assert!(versions.iter().all(|version| *version == VERSION), "{file} imports {versions:?}, not {VERSION}");
        }
    }
}
