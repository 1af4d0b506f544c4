//! Request path normalisation, applied before routing: the normalised path is what routes match
//! and what goes upstream.
//!
//! Rules, in the order a segment meets them (RFC 3986 §6.2.2 and §5.2.4):
//!
//! 1. The path is split into segments at every `/` (a raw slash; an encoded one is not a
//!    separator).
//! 2. In each segment, a percent-encoded unreserved character (`A-Z a-z 0-9 - . _ ~`) is decoded
//!    (`%7E` → `~`, `%2e` → `.`); every other percent-encoding is upper-cased (`%c3` → `%C3`).
//!    A `%` not followed by two hex digits is an error.
//! 3. `%2F` and `%5C` (an encoded `/` or `\`), and a raw `\`, are an error with
//!    [`EncodedSlashes::Reject`]; with [`EncodedSlashes::Keep`] they stay encoded (upper-cased,
//!    a raw `\` becomes `%5C`) inside their segment, and a segment whose pieces between them are
//!    `.` or `..` is an error (the origin would see dot segments once it decodes).
//! 4. Empty segments (`//`) are merged, `.` segments removed, and `..` removes the segment before
//!    it (after decoding, so `%2e%2e` and `.%2E` are `..`); a `..` with nothing left to remove
//!    (above `/`) is an error. A path that ended in `/`, `/.` or `/..` keeps a final `/`.
//!
//! The query string is not part of the path and is never touched. A path that does not start
//! with `/` (`*` of `OPTIONS *`) is left alone.
//!
//! The common case — a path already normal — is recognised by one scan without allocating
//! ([`normalize_path`] returns it borrowed).

use std::borrow::Cow;

pub use switchyard_config::EncodedSlashes;

/// Why a path cannot be normalised (the request gets `400`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// `..` climbs above `/`.
    #[error("the path climbs above /")]
    AboveRoot,
    /// `%2F`, `%5C` or a raw `\` with [`EncodedSlashes::Reject`].
    #[error("encoded slash or backslash in the path")]
    EncodedSlash,
    /// With [`EncodedSlashes::Keep`]: `.` or `..` between encoded slashes (`..%2F`).
    #[error("a dot segment between encoded slashes in the path")]
    DotSegmentBetweenEncodedSlashes,
    /// `%` not followed by two hex digits.
    #[error("malformed percent-encoding in the path")]
    BadPercentEncoding,
}

/// True for RFC 3986 unreserved characters.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The byte a `%XY` at `bytes[i]` encodes, if `XY` are hex digits.
fn escaped(bytes: &[u8], i: usize) -> Result<u8, PathError> {
    match (bytes.get(i + 1), bytes.get(i + 2)) {
        (Some(&h), Some(&l)) => match (hex_value(h), hex_value(l)) {
            (Some(h), Some(l)) => Ok(h << 4 | l),
            _ => Err(PathError::BadPercentEncoding),
        },
        _ => Err(PathError::BadPercentEncoding),
    }
}

/// Normalises `path` (without its query) by the rules of the module docs.
///
/// ```
/// use switchyard_proxy::normalize::{normalize_path, EncodedSlashes::*, PathError};
/// assert_eq!(normalize_path("/a/b", Reject).unwrap(), "/a/b"); // borrowed: nothing to do
/// assert_eq!(normalize_path("/napi/%2e%2E/admin", Reject).unwrap(), "/admin");
/// assert_eq!(normalize_path("/a//b/./c/..", Reject).unwrap(), "/a/b/");
/// assert_eq!(normalize_path("/%7euser/%c3%a9", Reject).unwrap(), "/~user/%C3%A9");
/// assert_eq!(normalize_path("/a/../..", Reject), Err(PathError::AboveRoot));
/// assert_eq!(normalize_path("/a%2fb", Reject), Err(PathError::EncodedSlash));
/// assert_eq!(normalize_path("/a%2fb", Keep).unwrap(), "/a%2Fb");
/// assert_eq!(normalize_path("/..%2fb", Keep), Err(PathError::DotSegmentBetweenEncodedSlashes));
/// ```
pub fn normalize_path(path: &str, slashes: EncodedSlashes) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') || is_normal(path, slashes)? {
        return Ok(Cow::Borrowed(path));
    }
    let normal = rebuild(path, slashes)?;
    Ok(if normal == path {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(normal)
    })
}

/// One scan, no allocation: `Ok(true)` if `path` (starting with `/`) is already normal,
/// `Ok(false)` if [`rebuild`] must decide, or an error it would also return.
fn is_normal(path: &str, slashes: EncodedSlashes) -> Result<bool, PathError> {
    let bytes = path.as_bytes();
    let mut normal = true;
    // Start of the current segment (just after its `/`).
    let mut seg_start = 1;
    let mut i = 1;
    while i <= bytes.len() {
        let b = bytes.get(i).copied();
        match b {
            None | Some(b'/') => {
                let seg = &bytes[seg_start..i];
                // An empty segment before the end is `//`; `.` and `..` are dot segments.
                if (seg.is_empty() && b.is_some()) || seg == b"." || seg == b".." {
                    normal = false;
                }
                seg_start = i + 1;
            }
            Some(b'%') => {
                let v = escaped(bytes, i)?;
                if v == b'/' || v == b'\\' {
                    if slashes == EncodedSlashes::Reject {
                        return Err(PathError::EncodedSlash);
                    }
                    // Kept: the dot-segment check between encoded slashes is rebuild's.
                    normal = false;
                } else if is_unreserved(v) || bytes[i + 1..i + 3].iter().any(u8::is_ascii_lowercase)
                {
                    normal = false;
                }
                i += 2;
            }
            Some(b'\\') => {
                if slashes == EncodedSlashes::Reject {
                    return Err(PathError::EncodedSlash);
                }
                normal = false;
            }
            Some(_) => {}
        }
        i += 1;
    }
    Ok(normal)
}

/// Appends segment `seg` to `out`, decoded as the module docs say.
fn push_segment(seg: &str, slashes: EncodedSlashes, out: &mut String) -> Result<(), PathError> {
    let bytes = seg.as_bytes();
    let mut run = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                out.push_str(&seg[run..i]);
                let v = escaped(bytes, i)?;
                match v {
                    b'/' | b'\\' if slashes == EncodedSlashes::Reject => {
                        return Err(PathError::EncodedSlash)
                    }
                    b'/' => out.push_str("%2F"),
                    b'\\' => out.push_str("%5C"),
                    v if is_unreserved(v) => out.push(char::from(v)),
                    _ => {
                        out.push('%');
                        out.push(char::from(bytes[i + 1].to_ascii_uppercase()));
                        out.push(char::from(bytes[i + 2].to_ascii_uppercase()));
                    }
                }
                i += 3;
                run = i;
            }
            b'\\' => {
                if slashes == EncodedSlashes::Reject {
                    return Err(PathError::EncodedSlash);
                }
                out.push_str(&seg[run..i]);
                out.push_str("%5C");
                i += 1;
                run = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&seg[run..]);
    Ok(())
}

/// The normal form of `path` (starting with `/`).
fn rebuild(path: &str, slashes: EncodedSlashes) -> Result<String, PathError> {
    let mut out = String::with_capacity(path.len());
    // Where each kept segment starts in `out` (at its leading `/`).
    let mut starts: Vec<usize> = Vec::new();
    let mut trailing_slash = false;
    let mut segments = path[1..].split('/').peekable();
    while let Some(raw) = segments.next() {
        let last = segments.peek().is_none();
        let start = out.len();
        out.push('/');
        push_segment(raw, slashes, &mut out)?;
        let seg = &out[start + 1..];
        match seg {
            "" | "." => {
                out.truncate(start);
                trailing_slash = last;
            }
            ".." => {
                out.truncate(start);
                let prev = starts.pop().ok_or(PathError::AboveRoot)?;
                out.truncate(prev);
                trailing_slash = last;
            }
            _ => {
                if slashes == EncodedSlashes::Keep && has_dot_piece(seg) {
                    return Err(PathError::DotSegmentBetweenEncodedSlashes);
                }
                starts.push(start);
                trailing_slash = false;
            }
        }
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

/// True if a (normalised) segment holding encoded slashes has a `.` or `..` piece between them.
fn has_dot_piece(seg: &str) -> bool {
    if !seg.contains("%2F") && !seg.contains("%5C") {
        return false;
    }
    seg.split("%2F")
        .flat_map(|p| p.split("%5C"))
        .any(|p| p == "." || p == "..")
}

#[cfg(test)]
mod tests {
    use super::EncodedSlashes::{Keep, Reject};
    use super::*;

    #[test]
    fn error_messages() {
        assert_eq!(PathError::AboveRoot.to_string(), "the path climbs above /");
        assert_eq!(
            PathError::EncodedSlash.to_string(),
            "encoded slash or backslash in the path"
        );
        assert_eq!(
            PathError::DotSegmentBetweenEncodedSlashes.to_string(),
            "a dot segment between encoded slashes in the path"
        );
        assert_eq!(
            PathError::BadPercentEncoding.to_string(),
            "malformed percent-encoding in the path"
        );
    }

    fn norm(p: &str) -> Result<String, PathError> {
        normalize_path(p, Reject).map(Cow::into_owned)
    }

    #[test]
    fn normal_paths_are_borrowed() {
        for p in [
            "/",
            "/a",
            "/a/",
            "/a/b.c/d..e/.f/..g",
            "/%C3%A9/%00/%25",
            "/caf\u{e9}",
            "/a;b=c/d,e",
            "*",
            "",
        ] {
            assert!(
                matches!(normalize_path(p, Reject), Ok(Cow::Borrowed(_))),
                "{p}"
            );
            assert!(
                matches!(normalize_path(p, Keep), Ok(Cow::Borrowed(_))),
                "{p}"
            );
        }
        // Kept encoded slashes that are already upper-case need no copy either.
        assert!(matches!(
            normalize_path("/a%2Fb%5Cc", Keep),
            Ok(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn rfc3986_dot_segment_examples() {
        // RFC 3986 §5.2.4 and §5.4 (paths only).
        assert_eq!(norm("/a/b/c/./../../g").unwrap(), "/a/g");
        assert_eq!(norm("/b/c/./g").unwrap(), "/b/c/g");
        assert_eq!(norm("/b/c/.").unwrap(), "/b/c/");
        assert_eq!(norm("/b/c/./").unwrap(), "/b/c/");
        assert_eq!(norm("/b/c/..").unwrap(), "/b/");
        assert_eq!(norm("/b/c/../").unwrap(), "/b/");
        assert_eq!(norm("/b/c/../g").unwrap(), "/b/g");
        assert_eq!(norm("/b/c/g;x=1/./y").unwrap(), "/b/c/g;x=1/y");
        assert_eq!(norm("/b/c/g;x=1/../y").unwrap(), "/b/c/y");
        assert_eq!(norm("/b/c/g..").unwrap(), "/b/c/g..");
        assert_eq!(norm("/b/c/..g").unwrap(), "/b/c/..g");
        assert_eq!(norm("/.").unwrap(), "/");
        assert_eq!(norm("/./").unwrap(), "/");
        assert_eq!(norm("/a/..").unwrap(), "/");
    }

    #[test]
    fn encoded_dots_slashes_and_merging() {
        assert_eq!(norm("/napi/../admin").unwrap(), "/admin");
        assert_eq!(norm("/napi/%2e%2e/admin").unwrap(), "/admin");
        assert_eq!(norm("/napi/%2E%2E/admin").unwrap(), "/admin");
        assert_eq!(norm("/napi/.%2e/admin").unwrap(), "/admin");
        assert_eq!(norm("/napi//../admin").unwrap(), "/admin");
        assert_eq!(norm("//a///b//").unwrap(), "/a/b/");
        assert_eq!(norm("/a/%2e/b").unwrap(), "/a/b");
        assert_eq!(norm("/%41%62%2D%5f%7e%2E").unwrap(), "/Ab-_~.");
        assert_eq!(norm("/%c3%a9%3a%3F%25").unwrap(), "/%C3%A9%3A%3F%25");
        assert_eq!(norm("/%2541").unwrap(), "/%2541");
        for p in ["/..", "/../a", "/a/../..", "/%2e%2e", "/./..", "//.."] {
            assert_eq!(norm(p), Err(PathError::AboveRoot), "{p}");
        }
        for p in ["/..%2fadmin", "/a%2Fb", "/a%5cb", "/a\\b", "/%2F"] {
            assert_eq!(norm(p), Err(PathError::EncodedSlash), "{p}");
        }
        for p in ["/%", "/%4", "/%zz", "/a%g0", "/100%", "/%%41"] {
            assert_eq!(norm(p), Err(PathError::BadPercentEncoding), "{p}");
        }
    }

    #[test]
    fn kept_encoded_slashes() {
        let keep = |p| normalize_path(p, Keep).map(Cow::into_owned);
        assert_eq!(keep("/a%2fb").unwrap(), "/a%2Fb");
        assert_eq!(keep("/a\\b/%5c").unwrap(), "/a%5Cb/%5C");
        assert_eq!(keep("/x/../a%2fb").unwrap(), "/a%2Fb");
        assert_eq!(keep("/a%2F%2F").unwrap(), "/a%2F%2F");
        for p in [
            "/..%2fadmin",
            "/%2e%2e%2fadmin",
            "/a%2F..",
            "/a%5C.%5Cb",
            "/.%2Fa",
            "/a\\..",
        ] {
            assert_eq!(
                keep(p),
                Err(PathError::DotSegmentBetweenEncodedSlashes),
                "{p}"
            );
        }
        assert_eq!(keep("/a%2F...%2Fb").unwrap(), "/a%2F...%2Fb");
        assert_eq!(keep("/.."), Err(PathError::AboveRoot));
    }

    #[test]
    fn output_is_normal_and_stable() {
        for p in [
            "/a/./b//../c/%7e%2e%2E/",
            "/%c3%a9//x/./..",
            "/caf\u{e9}/../\u{1f600}",
            "/a/b/c/../../..",
        ] {
            for mode in [Reject, Keep] {
                let once = normalize_path(p, mode).unwrap().into_owned();
                assert!(
                    matches!(normalize_path(&once, mode), Ok(Cow::Borrowed(_))),
                    "{p} → {once} is not normal"
                );
            }
        }
    }
}
