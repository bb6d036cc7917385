//! Helpers the policy's table tests share.

use super::Grants;

/// Grants made from `--grant` values, each of which must parse.
pub fn granted(grants: &[&str]) -> Grants {
    let mut made = Grants::default();
    for grant in grants {
        made.grant(grant).expect(grant);
    }
    made
}

/// Owned strings, for commands and requirement lists.
pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| item.to_string()).collect()
}
