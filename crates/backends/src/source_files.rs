//! Which files of a step's source directory ship with it, wherever code is
//! shipped (an image's code layer, a Ray job's working-directory package):
//! everything but version-control directories, the patterns a flavor gives,
//! and those in the directory's own `.stepboxignore` (gitignore syntax).

use std::path::Path;

use ignore::gitignore::{Gitignore, GitignoreBuilder};

/// Never shipped: version-control metadata.
pub const ALWAYS_IGNORED: &[&str] = &[".git/", ".hg/", ".svn/"];

/// The file, in a source directory, listing more patterns to leave out.
pub const IGNORE_FILE: &str = ".stepboxignore";

/// The rules for `source`: [`ALWAYS_IGNORED`], `.stepboxignore`, `extra`.
pub fn ignore_rules(source: &Path, extra: &[String]) -> Result<Gitignore, String> {
    let mut patterns = GitignoreBuilder::new(source);
    let ignore_file = source.join(IGNORE_FILE);
    if ignore_file.is_file()
        && let Some(error) = patterns.add(&ignore_file)
    {
        return Err(format!("cannot read {}: {error}", ignore_file.display()));
    }
    for pattern in ALWAYS_IGNORED.iter().copied().chain(extra.iter().map(String::as_str)) {
        patterns
            .add_line(None, pattern)
            .map_err(|error| format!("the ignore pattern `{pattern}` is not valid: {error}"))?;
    }
    patterns.build().map_err(|error| format!("the ignore patterns are not valid: {error}"))
}

/// Whether `relative` (a path under the source directory) ships.
pub fn ships(rules: &Gitignore, relative: &Path, is_dir: bool) -> bool {
    !rules.matched_path_or_any_parents(relative, is_dir).is_ignore()
}
