//! Where a trusted key's signatures count: a registry, or a repository
//! prefix in it (`REGISTRY[/PREFIX]`), matched on whole path segments, so
//! a key trusted for `registry.example.com/team` vouches for
//! `registry.example.com/team/local` but never for
//! `registry.example.com/team-b/local` or another registry.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A parsed `REGISTRY[/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TrustScope {
    /// `host[:port]`, lowercase.
    registry: String,
    /// Repository path segments; empty for the whole registry.
    prefix: Vec<String>,
}

impl TrustScope {
    /// Parse `REGISTRY[/PREFIX]` (an `oci://` prefix is allowed). The
    /// registry is a host with a dot or a port, or `localhost`; the prefix
    /// is lowercase repository path segments, without a tag, digest or `*`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bare = text.strip_prefix("oci://").unwrap_or(text).trim_end_matches('/');
        let (registry, prefix) = bare.split_once('/').unwrap_or((bare, ""));
        if registry.is_empty() {
            return Err(
                "it names no registry; write REGISTRY or REGISTRY/PREFIX, e.g. registry.example.com/flavors".to_owned()
            );
        }
        if !(registry.contains(['.', ':']) || registry.eq_ignore_ascii_case("localhost")) {
            return Err(format!(
                "`{registry}` is not a registry host (one with a dot or a port, or localhost); write REGISTRY[/PREFIX], e.g. registry.example.com/flavors"
            ));
        }
        if !registry.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']')) {
            return Err(format!("`{registry}` is not a registry host"));
        }
        let prefix: Vec<String> =
            if prefix.is_empty() { Vec::new() } else { prefix.split('/').map(str::to_owned).collect() };
        for segment in &prefix {
            if !valid_segment(segment) {
                return Err(format!(
                    "`{segment}` is not a repository path segment (lowercase letters and digits, separated by `.`, `_`, `__` or `-`); a scope is a registry and a repository prefix, without tag, digest or wildcard"
                ));
            }
        }
        Ok(Self { registry: registry.to_ascii_lowercase(), prefix })
    }

    /// Whether the repository `REGISTRY/REPOSITORY` is in this scope.
    pub fn covers(&self, repository: &str) -> bool {
        let Some((registry, path)) = repository.split_once('/') else {
            return false;
        };
        if !registry.eq_ignore_ascii_case(&self.registry) {
            return false;
        }
        let mut segments = path.split('/');
        self.prefix.iter().all(|want| segments.next() == Some(want.as_str()))
    }
}

fn valid_segment(segment: &str) -> bool {
    // OCI distribution: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
    let bytes = segment.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.first().is_none_or(|b| !alnum(*b)) || bytes.last().is_none_or(|b| !alnum(*b)) {
        return false;
    }
    let mut run = String::new();
    for &b in bytes {
        if alnum(b) {
            if !(run.is_empty() || run == "." || run == "_" || run == "__" || run.bytes().all(|r| r == b'-')) {
                return false;
            }
            run.clear();
        } else if matches!(b, b'.' | b'_' | b'-') {
            run.push(b as char);
        } else {
            return false;
        }
    }
    true
}

impl fmt::Display for TrustScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.registry)?;
        for segment in &self.prefix {
            write!(f, "/{segment}")?;
        }
        Ok(())
    }
}

impl TryFrom<String> for TrustScope {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text)
    }
}

impl From<TrustScope> for String {
    fn from(scope: TrustScope) -> String {
        scope.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::TrustScope;

    #[test]
    fn scopes_cover_whole_segments_of_one_registry() {
        let cases: &[(&str, &str, bool)] = &[
            ("registry.example.com/team", "registry.example.com/team/local", true),
            ("registry.example.com/team", "registry.example.com/team", true),
            ("registry.example.com/team", "registry.example.com/team/a/b", true),
            ("registry.example.com/team", "registry.example.com/team-b/local", false),
            ("registry.example.com/team", "registry.example.com/teamx", false),
            ("registry.example.com/team", "other.example.com/team/local", false),
            ("registry.example.com/team", "registry.example.com.evil.net/team/local", false),
            ("registry.example.com", "registry.example.com/anything/here", true),
            ("REGISTRY.example.com/team", "registry.example.com/team/local", true),
            ("oci://127.0.0.1:5000/flavors/", "127.0.0.1:5000/flavors/local", true),
            ("127.0.0.1:5000/flavors", "127.0.0.1:5001/flavors/local", false),
            ("registry.example.com/a/b", "registry.example.com/a", false),
        ];
        for (scope, repository, covered) in cases {
            let parsed = TrustScope::parse(scope).unwrap_or_else(|e| panic!("{scope}: {e}"));
            assert_eq!(parsed.covers(repository), *covered, "{scope} covers {repository}");
        }
    }

    #[test]
    fn malformed_scopes_are_refused_with_the_form() {
        for (scope, expected) in [
            ("", "names no registry"),
            ("team/local", "not a registry host"),
            ("registry.example.com/team/*", "without tag, digest or wildcard"),
            ("registry.example.com/Team", "not a repository path segment"),
            ("registry.example.com/team:1.0", "not a repository path segment"),
            ("registry.example.com//x", "not a repository path segment"),
            ("reg istry.example.com/x", "not a registry host"),
        ] {
            let error = TrustScope::parse(scope).expect_err(scope);
            assert!(error.contains(expected), "{scope}: {error}");
        }
        assert_eq!(
            TrustScope::parse("oci://Registry.Example.com/a/b/").expect("parses").to_string(),
            "registry.example.com/a/b"
        );
        assert!(TrustScope::parse("r.example.com/a__b.c-d--e").is_ok());
    }
}
