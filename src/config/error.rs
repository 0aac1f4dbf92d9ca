//! Configuration errors that point at a file, line and column and say what would be accepted.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// What would be accepted instead.
    pub hint: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )?;
        if !self.hint.is_empty() {
            write!(f, "; {}", self.hint)?;
        }
        Ok(())
    }
}

/// All errors found in one file, in the order of their position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Turns byte offsets of one source text into 1-based line and column numbers.
pub struct Locator<'a> {
    file: &'a Path,
    source: &'a str,
}

impl<'a> Locator<'a> {
    pub fn new(file: &'a Path, source: &'a str) -> Self {
        Self { file, source }
    }

    /// The 1-based line and column (counted in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.source.len());
        let before = self.source.get(..offset).unwrap_or(self.source);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        (line, column)
    }

    pub fn error(
        &self,
        span: Range<usize>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = self.line_col(span.start);
        ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            message: message.into(),
            hint: hint.into(),
        }
    }
}

/// serde's and toml's phrases, and what a config file's reader calls them.
const SERDE_WORDS: [(&str, &str); 8] = [
    ("unknown field `", "unknown key `"),
    ("missing field `", "missing key `"),
    ("duplicate field `", "duplicate key `"),
    ("there are no fields", "expected no keys in this table"),
    ("invalid type: sequence", "invalid type: array"),
    ("invalid type: map", "invalid type: table"),
    ("expected i64", "expected an integer"),
    ("expected a sequence", "expected an array"),
];

/// A TOML syntax or type error as one line: what is wrong; what would be accepted.
pub fn toml_error(loc: &Locator<'_>, e: &toml::de::Error) -> ConfigError {
    let span = e.span().unwrap_or(0..0);
    // One line, in the words of the file (key, table, array), not of serde or Rust.
    // toml gives no message for some syntax errors (a carriage return alone, for one).
    let mut message = match e.message().trim() {
        "" => "invalid TOML syntax".to_owned(),
        m => m.replace('\n', ", "),
    };
    for (from, to) in SERDE_WORDS {
        message = message.replace(from, to);
    }
    match message.split_once(", expected ") {
        Some((what, expected)) if expected.starts_with("struct ") => {
            loc.error(span, what, "expected a table")
        }
        Some((what, expected)) => loc.error(span, what, format!("expected {expected}")),
        None if message.starts_with("missing key") => {
            loc.error(span, message, "add it to this table")
        }
        None => loc.error(span, message, "see docs/config.md for the accepted form"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let src = "a = 1\nbb = 2\n";
        let l = Locator::new(Path::new("f.toml"), src);
        assert_eq!(l.line_col(0), (1, 1));
        assert_eq!(l.line_col(6), (2, 1));
        assert_eq!(l.line_col(9), (2, 4));
        assert_eq!(l.line_col(1000), (3, 1));
    }
}
