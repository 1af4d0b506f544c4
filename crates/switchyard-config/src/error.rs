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
        let path = path.trim_start_matches('.');
        // serde reports a missing key at its table; name the key itself.
        let missing = e
            .message()
            .strip_prefix("missing field `")
            .and_then(|m| m.split_once('`'))
            .map(|(field, _)| field);
        let full;
        let path = match missing {
            Some(field) if path.is_empty() => field,
            Some(field) => {
                full = format!("{path}.{field}");
                full.as_str()
            }
            None => path,
        };
        // toml's span of a serde error is the value being deserialized, which for an element of
        // an array is the whole array; the key path is more precise when it leads somewhere.
        let exact = if path.is_empty() || e.span().is_none() {
            None
        } else {
            toml::de::DeTable::parse(text)
                .ok()
                .and_then(|doc| locate_path(&doc, path))
                .and_then(|(offset, exact)| exact.then_some(offset))
        };
        let (line, column) = match exact.or(e.span().map(|s| s.start)) {
            Some(offset) => {
                let (l, c) = line_col(text, offset);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        ConfigErrors::single(ConfigError {
            path: path.to_string(),
            message: e.message().trim().to_string(),
            line,
            column,
        })
    }

    /// Fills in line and column of each error from the TOML text it came from, and sorts the
    /// errors by line.
    ///
    /// Each error's key path is walked in a spanned parse of `text`: the location is the key's
    /// value when the key exists, else the innermost table on the path that does exist (the
    /// `[[upstreams]]` header of `upstreams[0]` for a missing `upstreams[0].tls`, say). Errors
    /// that already have a line keep it; errors with an empty path stay without one.
    ///
    /// ```
    /// use switchyard_config::{ConfigError, ConfigErrors};
    /// let text = "[server]\nthreads = 0\n";
    /// let errs = ConfigErrors::single(ConfigError::new("server.threads", "must be at least 1"));
    /// let errs = errs.locate(text);
    /// assert_eq!((errs.errors[0].line, errs.errors[0].column), (Some(2), Some(11)));
    /// ```
    pub fn locate(mut self, text: &str) -> Self {
        if let Ok(doc) = toml::de::DeTable::parse(text) {
            for e in &mut self.errors {
                if e.line.is_some() || e.path.is_empty() {
                    continue;
                }
                if let Some((offset, _)) = locate_path(&doc, &e.path) {
                    let (l, c) = line_col(text, offset);
                    e.line = Some(l);
                    e.column = Some(c);
                }
            }
        }
        // Located errors first, in file order; then the rest in the order they were found.
        self.errors
            .sort_by_key(|e| (e.line.is_none(), e.line, e.column));
        self
    }

    /// Appends the errors of `other`.
    pub fn extend(&mut self, other: ConfigErrors) {
        self.errors.extend(other.errors);
    }
}

/// One step of a key path.
#[derive(Debug, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// Splits `a.b[2]."x.y"` into segments; `None` if the path is malformed.
fn parse_path(path: &str) -> Option<Vec<Segment>> {
    let mut segs = Vec::new();
    let mut chars = path.chars().peekable();
    let mut expect_key = true;
    while let Some(&c) = chars.peek() {
        match c {
            '.' => {
                chars.next();
                expect_key = true;
            }
            '[' => {
                chars.next();
                let mut digits = String::new();
                for d in chars.by_ref() {
                    if d == ']' {
                        break;
                    }
                    digits.push(d);
                }
                segs.push(Segment::Index(digits.parse().ok()?));
                expect_key = false;
            }
            '"' if expect_key => {
                chars.next();
                let mut key = String::new();
                while let Some(k) = chars.next() {
                    match k {
                        '"' => break,
                        '\\' => key.push(chars.next()?),
                        _ => key.push(k),
                    }
                }
                segs.push(Segment::Key(key));
                expect_key = false;
            }
            _ if expect_key => {
                let mut key = String::new();
                while let Some(&k) = chars.peek() {
                    if k == '.' || k == '[' {
                        break;
                    }
                    key.push(k);
                    chars.next();
                }
                segs.push(Segment::Key(key));
                expect_key = false;
            }
            _ => return None,
        }
    }
    Some(segs)
}

/// Writes one key of a path: bare when it is a plain TOML bare key, else quoted.
pub(crate) fn key_segment(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_string()
    } else {
        format!("\"{}\"", key.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// The byte offset an error at `path` should point at (see [`ConfigErrors::locate`]), and
/// whether the whole path exists (else the offset is that of the innermost existing table).
fn locate_path(doc: &toml::Spanned<toml::de::DeTable<'_>>, path: &str) -> Option<(usize, bool)> {
    use toml::de::DeValue;
    let segs = parse_path(path)?;
    // The innermost existing container; the document itself has no location of its own.
    let mut best: Option<usize> = None;
    let mut table = Some(doc.get_ref());
    let mut array: Option<&toml::de::DeArray<'_>> = None;
    for seg in segs {
        let next = match (&seg, table, array) {
            (Segment::Key(k), Some(t), _) => t.get(k.as_str()),
            (Segment::Index(i), _, Some(a)) => a.get(*i),
            _ => None,
        };
        let Some(value) = next else {
            return best.map(|b| (b, false));
        };
        best = Some(value.span().start);
        table = None;
        array = None;
        match value.get_ref() {
            DeValue::Table(t) => table = Some(t),
            DeValue::Array(a) => array = Some(a),
            _ => {}
        }
    }
    best.map(|b| (b, true))
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
