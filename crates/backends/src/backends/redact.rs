//! Secret values scrubbed from job output before it reaches anyone: the
//! terminal, the job's log file, `job.logs()` (and so the flavor), the
//! database. Every secret the launch can reach is a pattern; a match is
//! replaced by [`MARKER`].
//!
//! Output arrives in chunks that can split a secret anywhere, so each stream
//! keeps back the bytes that could still be the start of a secret — the
//! longest end of the output that some secret begins with, never more — until
//! the next chunk or the end. Output that cannot begin a secret (a prompt, a
//! `started` line) is passed on at once, so streaming stays live.
//! Matching is Aho-Corasick (the `aho-corasick` crate, leftmost-longest):
//! one pass over the bytes whatever the number of secrets.

use aho_corasick::{AhoCorasick, MatchKind};

/// What replaces a secret value in output.
pub const MARKER: &[u8] = b"[redacted by stepbox]";

/// Values shorter than this are not scrubbed: replacing every `abc` in a
/// step's output would mangle it and hide nothing (and a secret that short
/// protects nothing). docs/SECURITY.md says so.
pub const MIN_SECRET_BYTES: usize = 4;

/// The secrets to scrub, compiled once per launch.
pub struct Redactor {
    matcher: Option<AhoCorasick>,
    /// The values, for the prefix checks at a chunk's end.
    values: Vec<Vec<u8>>,
}

impl Redactor {
    /// A redactor that scrubs nothing.
    pub fn none() -> Self {
        Self { matcher: None, values: Vec::new() }
    }

    /// A redactor for `values` (short ones skipped, duplicates merged).
    pub fn new<I: IntoIterator<Item = String>>(values: I) -> Self {
        let mut values: Vec<String> = values.into_iter().filter(|value| value.len() >= MIN_SECRET_BYTES).collect();
        values.sort();
        values.dedup();
        let matcher = AhoCorasick::builder().match_kind(MatchKind::LeftmostLongest).build(&values).ok();
        match matcher {
            Some(matcher) if !values.is_empty() => {
                Self { matcher: Some(matcher), values: values.into_iter().map(String::into_bytes).collect() }
            }
            _ => Self::none(),
        }
    }

    /// The values to scrub for a stored secret: the whole text, and each
    /// string inside it when it is JSON (a credential's `password`).
    pub fn values_of(secret: &str) -> Vec<String> {
        let mut values = vec![secret.to_owned()];
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(secret) {
            collect_strings(&json, &mut values);
        }
        values
    }

    /// Whether there is anything to scrub.
    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    /// Scrub `held` followed by `chunk`: returns what may be written now,
    /// and leaves in `held` what could still begin a secret. With `end`,
    /// nothing is held back.
    pub fn scrub(&self, held: &mut Vec<u8>, chunk: &[u8], end: bool) -> Vec<u8> {
        let Some(matcher) = &self.matcher else {
            let mut out = std::mem::take(held);
            out.extend_from_slice(chunk);
            return out;
        };
        let mut buffer = std::mem::take(held);
        buffer.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(buffer.len());
        let mut written = 0;
        for found in matcher.find_iter(&buffer) {
            // A match that a longer secret could still continue is decided
            // with the next chunk (else that secret's end would show).
            if !end && self.could_continue(&buffer[found.start()..]) {
                break;
            }
            out.extend_from_slice(&buffer[written..found.start()]);
            out.extend_from_slice(MARKER);
            written = found.end();
        }
        let rest = &buffer[written..];
        let keep = if end { 0 } else { self.secret_start(rest) };
        out.extend_from_slice(&rest[..rest.len() - keep]);
        held.extend_from_slice(&rest[rest.len() - keep..]);
        out
    }

    /// Whether some secret is longer than `tail` and begins with all of it.
    fn could_continue(&self, tail: &[u8]) -> bool {
        self.values.iter().any(|value| value.len() > tail.len() && value.starts_with(tail))
    }

    /// The length of the longest end of `text` that some secret begins with
    /// (and is longer than): the bytes that may be the start of a secret.
    fn secret_start(&self, text: &[u8]) -> usize {
        let longest = self.values.iter().map(Vec::len).max().unwrap_or(0);
        let from = text.len().saturating_sub(longest.saturating_sub(1));
        (from..text.len()).find(|&start| self.could_continue(&text[start..])).map_or(0, |start| text.len() - start)
    }

    /// Scrub a whole text at once (a message, not a stream).
    pub fn scrub_text(&self, text: &str) -> String {
        if self.is_empty() {
            return text.to_owned();
        }
        String::from_utf8_lossy(&self.scrub(&mut Vec::new(), text.as_bytes(), true)).into_owned()
    }
}

fn collect_strings(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(text) => out.push(text.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|item| collect_strings(item, out)),
        serde_json::Value::Object(map) => map.values().for_each(|item| collect_strings(item, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(redactor: &Redactor, chunks: &[&[u8]]) -> Vec<u8> {
        let mut held = Vec::new();
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend(redactor.scrub(&mut held, chunk, false));
        }
        out.extend(redactor.scrub(&mut held, b"", true));
        out
    }

    #[test]
    fn a_secret_is_scrubbed_however_the_output_is_split() {
        let redactor =
            Redactor::new(["hunter2-secret".to_owned(), "s3cr3t-token-value".to_owned(), "s3cr3t".to_owned()]);
        let text = b"password=hunter2-secret and token s3cr3t-token-value; again hunter2-secret.";
        let expected = String::from_utf8_lossy(text)
            .replace("hunter2-secret", "[redacted by stepbox]")
            .replace("s3cr3t-token-value", "[redacted by stepbox]");
        for split in 0..text.len() {
            for second in split..text.len() {
                let out = stream(&redactor, &[&text[..split], &text[split..second], &text[second..]]);
                assert_eq!(String::from_utf8_lossy(&out), expected, "split at {split}, {second}");
            }
        }
        // One byte at a time.
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(String::from_utf8_lossy(&stream(&redactor, &bytes)), expected);
    }

    #[test]
    fn nothing_but_a_secret_prefix_is_held_back() {
        let redactor = Redactor::new(["abcdefgh".to_owned(), "abcdefghijkl".to_owned()]);
        let mut held = Vec::new();
        // Output that cannot begin a secret passes at once: streaming stays live.
        assert_eq!(redactor.scrub(&mut held, b"started\n", false), b"started\n");
        assert!(held.is_empty());
        // The end that a secret begins with stays, and only that.
        assert_eq!(redactor.scrub(&mut held, b"progress 50%\rabc", false), b"progress 50%\r");
        assert_eq!(held, b"abc");
        assert_eq!(redactor.scrub(&mut held, b"", true), b"abc");
        // A whole shorter secret that a longer one may continue waits for the next chunk.
        assert_eq!(redactor.scrub(&mut held, b"key=abcdefgh", false), b"key=");
        assert_eq!(redactor.scrub(&mut held, b"ijkl.", false), b"[redacted by stepbox].");
        assert_eq!(redactor.scrub(&mut held, b"abcdefgh!", false), b"[redacted by stepbox]!");
        assert!(held.is_empty());
    }

    #[test]
    fn short_values_and_json_parts() {
        assert!(Redactor::new(["abc".to_owned()]).is_empty());
        let values = Redactor::values_of(r#"{"username": "robot", "password": "p4ssw0rd!"}"#);
        let redactor = Redactor::new(values);
        assert_eq!(redactor.scrub_text("login robot:p4ssw0rd!"), "login [redacted by stepbox]:[redacted by stepbox]");
        assert_eq!(Redactor::none().scrub_text("as is"), "as is");
    }
}
