//! Parsing the quantities users type: memory sizes and `KEY=VALUE` pairs.

use thiserror::Error;

/// A quantity that could not be understood.
#[derive(Debug, Error, PartialEq)]
pub enum UnitError {
    #[error(
        "`{0}` is not a memory size: write a number and a unit, for example 512MiB, 4GiB or 2GB (units: B, KB, KiB, MB, MiB, GB, GiB, TB, TiB, PB, PiB)"
    )]
    Memory(String),
    #[error("`{0}` is not KEY=VALUE")]
    KeyValue(String),
    #[error("`{0}` is not a valid environment variable name (letters, digits and _, not starting with a digit)")]
    EnvName(String),
}

/// Parse a memory size the way ZenML's `ResourceSettings.memory` writes it
/// (`4GiB`, `512MB`, `1024B`), returning bytes.
pub fn parse_memory(text: &str) -> Result<u64, UnitError> {
    let trimmed = text.trim();
    let split = trimmed.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let factor: u64 = match unit.trim() {
        "B" => 1,
        "KB" => 1000,
        "KiB" => 1 << 10,
        "MB" => 1000_u64.pow(2),
        "MiB" => 1 << 20,
        "GB" => 1000_u64.pow(3),
        "GiB" => 1 << 30,
        "TB" => 1000_u64.pow(4),
        "TiB" => 1 << 40,
        "PB" => 1000_u64.pow(5),
        "PiB" => 1 << 50,
        _ => return Err(UnitError::Memory(text.to_owned())),
    };
    let value: f64 = number.parse().map_err(|_| UnitError::Memory(text.to_owned()))?;
    let bytes = value * factor as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(UnitError::Memory(text.to_owned()));
    }
    Ok(bytes as u64)
}

/// Split `KEY=VALUE` at the first `=`.
pub fn parse_key_value(text: &str) -> Result<(String, String), UnitError> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(UnitError::KeyValue(text.to_owned())),
    }
}

/// `KEY=VALUE` where KEY must be a valid environment variable name.
pub fn parse_env_var(text: &str) -> Result<(String, String), UnitError> {
    let (key, value) = parse_key_value(text)?;
    if !is_env_name(&key) {
        return Err(UnitError::EnvName(key));
    }
    Ok((key, value))
}

/// Letters, digits and `_`, not starting with a digit.
pub fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_follow_zenml_units() {
        let cases = [
            ("1024B", 1024),
            ("4GiB", 4 << 30),
            ("2GB", 2_000_000_000),
            ("512MiB", 512 << 20),
            ("1.5GiB", 3 << 29),
            ("1KB", 1000),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_memory(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn memory_sizes_without_units_or_numbers_are_refused() {
        for text in ["4", "GiB", "4 gigs", "-1GiB", "", "0B"] {
            assert!(parse_memory(text).is_err(), "{text} should be refused");
        }
    }

    #[test]
    fn key_values_split_at_the_first_equals() {
        assert_eq!(parse_key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_key_value("a="), Ok(("a".into(), "".into())));
        assert!(parse_key_value("=b").is_err());
        assert!(parse_key_value("ab").is_err());
        assert!(parse_env_var("1A=x").is_err());
        assert_eq!(parse_env_var("_A1=x"), Ok(("_A1".into(), "x".into())));
    }
}
