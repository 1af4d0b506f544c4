//! The grammar of a route `path` pattern (`/users/{userId}/posts`), parsed by one function,
//! [`PathPattern::parse`], that both config validation and the proxy's router use.
//!
//! A pattern starts with `/`; the text after it is split on `/` into segments, each either
//! literal text or a whole `{name}` capture, where `name` is letters, digits and `_`, not
//! starting with a digit, and unique in the pattern.

use std::fmt;

/// One `/`-separated segment of a [`PathPattern`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSegment {
    /// Text a request path segment must equal (possibly empty, as after a trailing `/`).
    Literal(String),
    /// `{name}`: captures one non-empty request path segment under `name`.
    Param(String),
}

/// A parsed route `path` pattern: its segments, in order.
///
/// ```
/// use switchyard_config::{PathPattern, PathSegment};
/// let p = PathPattern::parse("/users/{userId}/posts/{postId}").unwrap();
/// assert_eq!(p.segments()[0], PathSegment::Literal("users".into()));
/// assert_eq!(p.segments()[1], PathSegment::Param("userId".into()));
/// assert_eq!(p.param_names().collect::<Vec<_>>(), ["userId", "postId"]);
///
/// let err = PathPattern::parse("/users/id-{id}").unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "segment `id-{id}`: a capture must be a whole segment, like `/users/{id}`"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    segments: Vec<PathSegment>,
}

impl PathPattern {
    /// Parses a pattern; see the [module docs](self) for the grammar.
    pub fn parse(path: &str) -> Result<PathPattern, PathPatternError> {
        let Some(rest) = path.strip_prefix('/') else {
            return Err(PathPatternError::NoLeadingSlash);
        };
        let mut segments = Vec::new();
        for seg in rest.split('/') {
            segments.push(parse_segment(seg, &segments)?);
        }
        Ok(PathPattern { segments })
    }

    /// The segments, in order.
    #[inline]
    pub fn segments(&self) -> &[PathSegment] {
        &self.segments
    }

    /// The capture names, in order.
    pub fn param_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.segments.iter().filter_map(|s| match s {
            PathSegment::Param(name) => Some(name.as_str()),
            PathSegment::Literal(_) => None,
        })
    }

    /// How many segments are captures.
    ///
    /// ```
    /// let p = switchyard_config::PathPattern::parse("/a/{x}/b").unwrap();
    /// assert_eq!((p.param_count(), p.segments().len()), (1, 3));
    /// ```
    pub fn param_count(&self) -> usize {
        self.param_names().count()
    }
}

/// One segment, checked against the segments before it (for duplicate captures).
fn parse_segment(seg: &str, before: &[PathSegment]) -> Result<PathSegment, PathPatternError> {
    if !seg.contains(['{', '}']) {
        return Ok(PathSegment::Literal(seg.to_string()));
    }
    let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
        return Err(PathPatternError::PartialCapture(seg.to_string()));
    };
    if !is_ident(name) {
        return Err(PathPatternError::BadName(name.to_string()));
    }
    if before
        .iter()
        .any(|s| matches!(s, PathSegment::Param(n) if n == name))
    {
        return Err(PathPatternError::DuplicateName(name.to_string()));
    }
    Ok(PathSegment::Param(name.to_string()))
}

/// Letters, digits and `_`, not starting with a digit.
fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Why a `path` pattern does not parse; its `Display` is the message config validation reports.
///
/// ```
/// use switchyard_config::{PathPattern, PathPatternError};
/// assert_eq!(PathPattern::parse("users"), Err(PathPatternError::NoLeadingSlash));
/// assert_eq!(
///     PathPattern::parse("/{a}/{a}").unwrap_err().to_string(),
///     "capture `{a}` appears twice"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPatternError {
    /// The pattern does not start with `/`.
    NoLeadingSlash,
    /// A segment holds `{` or `}` but is not one whole `{name}` (the segment's text).
    PartialCapture(String),
    /// A capture name that is not letters, digits and `_` not starting with a digit.
    BadName(String),
    /// A capture name used twice.
    DuplicateName(String),
}

impl fmt::Display for PathPatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathPatternError::NoLeadingSlash => f.write_str("must start with `/`"),
            PathPatternError::PartialCapture(seg) => write!(
                f,
                "segment `{seg}`: a capture must be a whole segment, like `/users/{{id}}`"
            ),
            PathPatternError::BadName(name) => write!(
                f,
                "capture `{{{name}}}`: a name is letters, digits and `_`, not starting with a digit"
            ),
            PathPatternError::DuplicateName(name) => {
                write!(f, "capture `{{{name}}}` appears twice")
            }
        }
    }
}

impl std::error::Error for PathPatternError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_slash_and_root_are_empty_literals() {
        let root = PathPattern::parse("/").unwrap();
        assert_eq!(root.segments(), [PathSegment::Literal(String::new())]);
        let p = PathPattern::parse("/a/").unwrap();
        assert_eq!(
            p.segments(),
            [
                PathSegment::Literal("a".into()),
                PathSegment::Literal(String::new())
            ]
        );
    }

    #[test]
    fn errors_name_the_offending_part() {
        let msg = |p: &str| PathPattern::parse(p).unwrap_err().to_string();
        assert_eq!(msg("a/b"), "must start with `/`");
        assert_eq!(
            msg("/{1x}"),
            "capture `{1x}`: a name is letters, digits and `_`, not starting with a digit"
        );
        assert_eq!(
            msg("/a}"),
            "segment `a}`: a capture must be a whole segment, like `/users/{id}`"
        );
        assert_eq!(msg("/{x}/y/{x}"), "capture `{x}` appears twice");
    }
}
