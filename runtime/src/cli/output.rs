//! Printing lists and records as tables or JSON. Every table cell and field
//! value goes through [`crate::display::visible`]: much of what is printed
//! (names, messages, a flavor's metadata) was supplied by a flavor.
//!
//! Nothing here panics on a closed stream: `stepbox runs list | head` ends the
//! command quietly ([`Failure::closed_pipe`]) instead of printing a backtrace,
//! and a message to a closed stderr is dropped.

use std::fmt::Display;
use std::io::Write;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use serde::Serialize;

use super::Failure;
use crate::exit;

/// `-o table|json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table for people.
    #[default]
    Table,
    /// JSON for programs.
    Json,
}

/// A table for a terminal whose cells show control characters as escapes.
pub struct TextTable(Table);

impl TextTable {
    /// Add a row; each cell is made [`crate::display::visible`] and cut to
    /// [`MAX_CELL_CHARS`].
    pub fn add_row<I: IntoIterator<Item = String>>(&mut self, cells: I) -> &mut Self {
        self.0.add_row(cells.into_iter().map(|cell| shortened(&crate::display::visible(&cell))));
        self
    }
}

/// The most characters a table cell shows. Laying out a table costs more
/// than linear time in its cells' length (a 4 MiB config value took 96 s),
/// and nobody reads a 4 MiB cell: `-o json` prints values whole.
pub const MAX_CELL_CHARS: usize = 400;

/// `cell`, or its first [`MAX_CELL_CHARS`] characters and how much was left out.
fn shortened(cell: &str) -> String {
    match cell.char_indices().nth(MAX_CELL_CHARS) {
        None => cell.to_owned(),
        Some((cut, _)) => format!("{}… ({} bytes in all; -o json shows it whole)", &cell[..cut], cell.len()),
    }
}

impl std::fmt::Display for TextTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A table with a header row.
pub fn table(header: &[&str]) -> TextTable {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().copied());
    TextTable(table)
}

/// Print `value` as pretty JSON.
pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Failure::new(exit::INTERNAL, e))?;
    line(text)
}

/// `key: value` lines, aligned.
pub fn fields(rows: &[(&str, String)]) -> Result<(), Failure> {
    let width = rows.iter().map(|(key, _)| key.len()).max().unwrap_or(0);
    for (key, value) in rows {
        line(format_args!("{key:>width$}  {}", crate::display::visible(value)))?;
    }
    Ok(())
}

/// Print `text` and a newline to stdout.
pub fn line(text: impl Display) -> Result<(), Failure> {
    text_to(&mut std::io::stdout().lock(), format_args!("{text}\n"))
}

/// Print `text` to stdout as it is.
pub fn text(text: impl Display) -> Result<(), Failure> {
    text_to(&mut std::io::stdout().lock(), text)
}

/// Write `text` to `out` and flush it; a reader that went away is [`Failure::closed_pipe`].
fn text_to(out: &mut impl Write, text: impl Display) -> Result<(), Failure> {
    write!(out, "{text}").and_then(|()| out.flush()).map_err(|error| match error.kind() {
        std::io::ErrorKind::BrokenPipe => Failure::closed_pipe(),
        _ => Failure::new(exit::INTERNAL, format!("cannot write to stdout: {error}")),
    })
}

/// Print a message for the user on stderr, and a newline. A closed stderr
/// loses the message and nothing else: the command goes on.
pub fn note(text: impl Display) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}").and_then(|()| err.flush());
}

/// The first 8 characters of an id, for tables.
pub fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_cells_are_cut_and_say_so_and_short_ones_are_whole() {
        assert_eq!(shortened("timeout=30"), "timeout=30");
        let long = "é".repeat(4 << 20);
        let cut = shortened(&long);
        assert!(cut.starts_with(&"é".repeat(MAX_CELL_CHARS)), "cut on a character boundary");
        assert!(cut.ends_with(&format!("… ({} bytes in all; -o json shows it whole)", long.len())), "{}", &cut[..40]);
        let mut table = table(&["CONFIG"]);
        table.add_row(vec![long]);
        assert!(table.to_string().len() < 16 * 1024, "the table holds the cut cell, not 8 MiB");
    }
}
