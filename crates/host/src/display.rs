//! Text a flavor supplied, made safe for a terminal or a table.
//!
//! A flavor's log lines, failure and report messages, and its metadata
//! (display name, description, docs URL) reach people's terminals. Raw, they
//! could carry escape sequences (a clipboard write through OSC 52, a cleared
//! screen), a `\r` that overwrites the line, or a `\n` followed by a line
//! that looks like stepbox's own. [`visible`] turns every control character
//! (C0, DEL, C1) and every bidirectional-override character (Trojan Source)
//! into a visible escape. `-o json` output keeps the exact string: JSON
//! escapes control characters itself.

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` must not reach a terminal as itself.
fn hidden(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

/// `text` with control and bidi characters written as escapes (`\n`, `\r`,
/// `\t`, `\x1b`, `\u{202e}`). Borrowed when there is nothing to change.
pub fn visible(text: &str) -> Cow<'_, str> {
    if !text.chars().any(hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && hidden(c) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if hidden(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_bidi_characters_become_visible() {
        let cases: &[(&str, &str)] = &[
            ("plain text, ünïcode ok", "plain text, ünïcode ok"),
            ("\x1b]52;c;ZXZpbA==\x07", "\\x1b]52;c;ZXZpbA==\\x07"),
            ("\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),
            ("done\rstepbox: all good", "done\\rstepbox: all good"),
            ("line\nstepbox: fake", "line\\nstepbox: fake"),
            ("tab\there", "tab\\there"),
            ("\u{9b}31m", "\\u{9b}31m"),
            ("abc\u{202e}cba", "abc\\u{202e}cba"),
            ("\x7f", "\\x7f"),
        ];
        for (raw, shown) in cases {
            assert_eq!(visible(raw), *shown, "{raw:?}");
        }
        assert!(matches!(visible("nothing to do"), Cow::Borrowed(_)));
    }
}
