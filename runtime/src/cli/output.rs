//! Printing lists and records as tables or JSON. Every table cell and field
//! value goes through [`crate::display::visible`]: much of what is printed
//! (names, messages, a flavor's metadata) was supplied by a flavor.

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
    /// Add a row; each cell is made [`crate::display::visible`].
    pub fn add_row<I: IntoIterator<Item = String>>(&mut self, cells: I) -> &mut Self {
        self.0.add_row(cells.into_iter().map(|cell| crate::display::visible(&cell).into_owned()));
        self
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
    println!("{text}");
    Ok(())
}

/// `key: value` lines, aligned.
pub fn fields(rows: &[(&str, String)]) {
    let width = rows.iter().map(|(key, _)| key.len()).max().unwrap_or(0);
    for (key, value) in rows {
        println!("{key:>width$}  {}", crate::display::visible(value));
    }
}

/// The first 8 characters of an id, for tables.
pub fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}
