//! What an environment holds, normalized so that equal sets of requirements
//! get the same environment however a flavor spelled them.

use std::str::FromStr;

use pep508_rs::{Requirement, VerbatimUrl, VersionOrUrl};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Characters of the hash kept in a handle.
const HANDLE_HASH_LEN: usize = 20;
const HANDLE_PREFIX: &str = "py-";

/// A requirements list or Python version that cannot be used.
#[derive(Debug, Error, PartialEq)]
pub enum SpecError {
    #[error("`{requirement}` is not a valid requirement (PEP 508): {message}")]
    Requirement { requirement: String, message: String },
    #[error("`{0}` is not a Python version; give one such as 3.11 or 3.12.4")]
    Python(String),
}

/// The leading package name of `text` when it ends in `.`, `-` or `_`
/// followed by more of the requirement (`six.=1`). pep508_rs 0.9.2 accepts
/// such a name and then panics building it (found by `cargo fuzz run
/// requirements`); a flavor's requirements must never crash the host, so
/// they are refused here first.
fn name_ending_in_a_separator(text: &str) -> Option<&str> {
    let end = text.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))).unwrap_or(text.len());
    let name = &text[..end];
    (end < text.len() && name.ends_with(['.', '-', '_'])).then_some(name)
}

/// One requirement parsed, or why not: never a panic.
fn parse(text: &str) -> Result<Requirement<VerbatimUrl>, SpecError> {
    if let Some(name) = name_ending_in_a_separator(text) {
        return Err(SpecError::Requirement {
            requirement: text.to_owned(),
            message: format!("the package name `{name}` must end with a letter or digit"),
        });
    }
    // pep508_rs panics on some malformed extras: contained, and reported as invalid.
    crate::contained_panics::catch(|| Requirement::<VerbatimUrl>::from_str(text))
        .map_err(|panic| SpecError::Requirement {
            requirement: text.to_owned(),
            message: format!("it cannot be parsed ({panic})"),
        })?
        .map_err(|error| SpecError::Requirement { requirement: text.to_owned(), message: error.message.to_string() })
}

/// Requirements parsed, normalized (names lowercased with `-`), deduplicated
/// and sorted; a Python version checked.
#[derive(Debug, Clone, PartialEq)]
pub struct NormalizedSpec {
    requirements: Vec<String>,
    python_version: Option<String>,
    /// Requirements naming a URL or path instead of a version from the index.
    direct_references: Vec<String>,
}

impl NormalizedSpec {
    /// Normalize `requirements` (PEP 508 strings) and `python_version`.
    pub fn new(requirements: &[String], python_version: Option<&str>) -> Result<Self, SpecError> {
        let mut normalized = Vec::with_capacity(requirements.len());
        let mut direct_references = Vec::new();
        for text in requirements.iter().map(|text| text.trim()).filter(|text| !text.is_empty()) {
            let parsed = parse(text)?;
            let written = parsed.to_string();
            // What is installed, described and hashed is the normalized text, so it must read
            // back as itself. pep508_rs does not always (a `file://` URL with an odd host loses
            // the host on the second reading: found by fuzzing); such a requirement would be
            // one thing in the handle and another in the environment, so it is refused.
            let again = parse(&written).map(|parsed| parsed.to_string());
            if again.as_deref() != Ok(written.as_str()) {
                return Err(SpecError::Requirement {
                    requirement: text.to_owned(),
                    message: format!(
                        "it is normalized to `{written}`, which does not read back the same; write the URL or version plainly"
                    ),
                });
            }
            if matches!(parsed.version_or_url, Some(VersionOrUrl::Url(_))) {
                direct_references.push(written.clone());
            }
            normalized.push(written);
        }
        normalized.sort();
        normalized.dedup();
        let python_version = match python_version.map(str::trim).filter(|v| !v.is_empty()) {
            Some(version) if is_python_version(version) => Some(version.to_owned()),
            Some(other) => return Err(SpecError::Python(other.to_owned())),
            None => None,
        };
        Ok(Self { requirements: normalized, python_version, direct_references })
    }

    /// Requirements that name a URL or a path (`pkg @ https://…`) rather
    /// than a version from the package index.
    pub fn direct_references(&self) -> &[String] {
        &self.direct_references
    }

    pub fn requirements(&self) -> &[String] {
        &self.requirements
    }

    pub fn python_version(&self) -> Option<&str> {
        self.python_version.as_deref()
    }

    /// The environment's handle: `py-` and a hash of the normalized spec.
    pub fn handle(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(format!("python={}\n", self.python_version.as_deref().unwrap_or("default")));
        for requirement in &self.requirements {
            hasher.update(requirement.as_bytes());
            hasher.update(b"\n");
        }
        let digest = hex::encode(hasher.finalize());
        format!("{HANDLE_PREFIX}{}", &digest[..HANDLE_HASH_LEN])
    }

    /// A short description for progress lines.
    pub fn describe(&self) -> String {
        let python = self.python_version.as_deref().map_or("the default Python".to_owned(), |v| format!("Python {v}"));
        match self.requirements.len() {
            0 => format!("{python}, no requirements"),
            1 => format!("{python}, {}", self.requirements[0]),
            n => format!("{python}, {n} requirements"),
        }
    }
}

/// Whether `text` could be a handle made by [`NormalizedSpec::handle`] (so it
/// is safe to use as a directory name).
pub fn is_handle(text: &str) -> bool {
    text.strip_prefix(HANDLE_PREFIX)
        .is_some_and(|hash| hash.len() == HANDLE_HASH_LEN && hash.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `3`, `3.11` or `3.11.4`.
fn is_python_version(text: &str) -> bool {
    let parts: Vec<&str> = text.split('.').collect();
    parts.len() <= 3 && parts.iter().all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_ending_in_a_separator_is_refused_not_a_panic() {
        // Each of these panicked inside pep508_rs 0.9.2 (found by fuzzing).
        for text in ["six.=1", "six-==1", "six_ [x]", "six.;python_version>'3'", "s.@ https://example.com/x.whl"] {
            let refused = NormalizedSpec::new(&[text.to_owned()], None).expect_err(text);
            assert!(refused.to_string().contains("must end with a letter or digit"), "{text}: {refused}");
        }
        // An extra name ending in a separator: pep508_rs panics; contained, and refused.
        for text in ["s[o. kg]", "s[o. kg", "pkg[a_ ,b]==1"] {
            let refused = NormalizedSpec::new(&[text.to_owned()], None).expect_err(text);
            assert!(refused.to_string().contains("is not a valid requirement"), "{text}: {refused}");
        }
        for text in ["six", "zope.interface==6", "typing_extensions>=4", "a-b[c]==1"] {
            assert!(NormalizedSpec::new(&[text.to_owned()], None).is_ok(), "{text}");
        }
    }

    #[test]
    fn a_requirement_whose_normal_form_reads_back_differently_is_refused() {
        // Found by fuzzing: pep508_rs writes this URL so that it loses its host when read again.
        let text = "local @ file://Gtl-`//\t\t\te://5.0.0.0/\t\t\tnkI";
        let refused = NormalizedSpec::new(&[text.to_owned()], None).expect_err(text);
        assert!(refused.to_string().contains("does not read back the same"), "{refused}");
        let plain = "local @ file:///srv/wheels/local-1.0-py3-none-any.whl";
        assert!(NormalizedSpec::new(&[plain.to_owned()], None).is_ok(), "{plain}");
    }

    fn spec(requirements: &[&str], python: Option<&str>) -> Result<NormalizedSpec, SpecError> {
        let owned: Vec<String> = requirements.iter().map(|r| r.to_string()).collect();
        NormalizedSpec::new(&owned, python)
    }

    #[test]
    fn equal_sets_spelled_differently_share_a_handle() {
        let a = spec(&["Requests>=2", "six", "six"], Some("3.11")).expect("valid");
        let b = spec(&["  six ", "requests >= 2", ""], Some("3.11")).expect("valid");
        assert_eq!(a, b);
        assert_eq!(a.handle(), b.handle());
        assert!(is_handle(&a.handle()), "{}", a.handle());
    }

    #[test]
    fn different_sets_or_pythons_get_different_handles() {
        let base = spec(&["six"], None).expect("valid").handle();
        let cases = [spec(&["six==1.16.0"], None), spec(&["six"], Some("3.11")), spec(&[], None)];
        for other in cases {
            assert_ne!(other.expect("valid").handle(), base);
        }
    }

    #[test]
    fn bad_requirements_and_versions_name_the_problem() {
        let bad = spec(&["six", "not a requirement!"], None).unwrap_err();
        assert!(bad.to_string().contains("`not a requirement!` is not a valid requirement"), "{bad}");
        assert_eq!(spec(&[], Some("latest")).unwrap_err(), SpecError::Python("latest".to_owned()));
        assert!(spec(&[], Some("3.11.4")).is_ok());
    }

    #[test]
    fn direct_references_are_told_apart_from_index_versions() {
        let mixed = spec(&["six==1.16.0", "evil @ https://example.invalid/evil-1.0.tar.gz"], None).expect("valid");
        assert_eq!(mixed.direct_references().len(), 1, "{:?}", mixed.direct_references());
        assert!(mixed.direct_references()[0].starts_with("evil @ "));
        assert!(spec(&["six>=1", "requests[socks]"], None).expect("valid").direct_references().is_empty());
    }

    #[test]
    fn handles_are_checked_before_they_name_a_directory() {
        for bad in ["", "py-", "py-../../etc", "../py-0123456789abcdef0123", "py-0123456789abcdef012g"] {
            assert!(!is_handle(bad), "{bad:?}");
        }
    }
}
