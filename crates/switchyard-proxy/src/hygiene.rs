//! Request and response hygiene: what the gateway fixes or refuses in a request head before
//! anything reads its host or path, and the response framing a client must not see (see
//! `docs/configuration.md`, "How hostile HTTP/1 input is handled").

use std::borrow::Cow;

use pingora::http::{RequestHeader, ResponseHeader};
use pingora::{Error, ErrorType, Result};

use crate::headers::request_authority;
use crate::host::check_host;
use crate::normalize::{normalize_path, EncodedSlashes};
use crate::reject::Reject;

/// Request hygiene, before anything reads the host or the path:
///
/// * a `Host` (or absolute-form or HTTP/2 authority) is required except for HTTP/1.0, and must be
///   `host[:port]` ([`crate::host::parse_host`]'s checks);
/// * the path is normalised ([`normalize_path`]) and the normal form replaces it, so routes match
///   it and the origin receives it; a target that is not UTF-8 is refused;
/// * identical duplicate `Content-Length` values (which Pingora accepts) become one field.
///
/// ```
/// use pingora::http::RequestHeader;
/// use switchyard_proxy::hygiene::sanitize;
/// use switchyard_proxy::normalize::EncodedSlashes;
/// let mut req = RequestHeader::build("GET", b"/a/../b", None).unwrap();
/// req.insert_header("Host", "example.com").unwrap();
/// sanitize(&mut req, EncodedSlashes::Reject).unwrap();
/// assert_eq!(req.raw_path(), b"/b");
/// ```
pub fn sanitize(
    req: &mut RequestHeader,
    slashes: EncodedSlashes,
) -> std::result::Result<(), Reject> {
    match request_authority(req) {
        Some(authority) => {
            check_host(authority).map_err(|_| Reject::BadHost)?;
        }
        None if matches!(req.version, http::Version::HTTP_10 | http::Version::HTTP_09) => {}
        None => return Err(Reject::BadHost),
    }
    if !req.raw_path_is_utf8() {
        return Err(Reject::BadPath);
    }
    let normal = match normalize_path(req.uri.path(), slashes) {
        Ok(Cow::Borrowed(_)) => None,
        Ok(Cow::Owned(p)) => Some(p),
        Err(_) => return Err(Reject::BadPath),
    };
    if let Some(path) = normal {
        set_path(req, &path).map_err(|_| Reject::BadPath)?;
    }
    single_content_length(req);
    Ok(())
}

/// Replaces the path of `req`'s target with `path`, keeping its query, and the scheme and
/// authority of an absolute-form (HTTP/1) or HTTP/2 target.
fn set_path(req: &mut RequestHeader, path: &str) -> Result<()> {
    let query = req.uri.query();
    let mut pq = String::with_capacity(path.len() + query.map_or(0, |q| q.len() + 1));
    pq.push_str(path);
    if let Some(q) = query {
        pq.push('?');
        pq.push_str(q);
    }
    if let pingora::http::authority::RawTargetAuthority::Absolute {
        scheme, authority, ..
    } = pingora::http::authority::raw_target_authority(req.raw_path())
    {
        let mut target = Vec::with_capacity(scheme.len() + 3 + authority.len() + pq.len());
        target.extend_from_slice(scheme);
        target.extend_from_slice(b"://");
        target.extend_from_slice(authority);
        target.extend_from_slice(pq.as_bytes());
        return req.set_raw_path(&target);
    }
    let mut parts = http::uri::Parts::default();
    parts.scheme = req.uri.scheme().cloned();
    parts.authority = req.uri.authority().cloned();
    parts.path_and_query = Some(
        http::uri::PathAndQuery::try_from(pq)
            .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "normalised path", e))?,
    );
    let uri = http::Uri::from_parts(parts)
        .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "normalised path", e))?;
    req.set_uri(uri);
    Ok(())
}

/// Collapses identical duplicate `Content-Length` values (`5` and `5`, or `5, 5`) into one field.
/// Pingora has already refused differing or invalid ones (and dropped the field beside
/// `Transfer-Encoding`), but forwards duplicates as they came.
fn single_content_length(req: &mut RequestHeader) {
    if let Some(n) = duplicated_content_length(&req.headers) {
        let _ = req.insert_header(http::header::CONTENT_LENGTH, n);
    }
}

/// The value of identical duplicate `Content-Length` fields (several fields, or a list in one),
/// which must become a single field; `None` when there is one plain value or none.
fn duplicated_content_length(headers: &http::HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(http::header::CONTENT_LENGTH).iter();
    let first = values.next()?;
    if values.next().is_none() && !first.as_bytes().contains(&b',') {
        return None;
    }
    first
        .as_bytes()
        .split(|&b| b == b',')
        .next()
        .and_then(|t| std::str::from_utf8(t).ok())
        .and_then(|t| t.trim().parse::<u64>().ok())
}

/// Response framing a client must not see: `Content-Length` and `Transfer-Encoding` on a `204`
/// (RFC 9110 §8.6, RFC 9112 §6.1), `Transfer-Encoding` on a `304`, and identical duplicate
/// `Content-Length` values (collapsed into one field). The body itself is already withheld by
/// Pingora, which reads none for `204`, `304` and `HEAD`.
pub fn tidy_response_framing(resp: &mut ResponseHeader) {
    match resp.status.as_u16() {
        204 => {
            resp.remove_header(&http::header::CONTENT_LENGTH);
            resp.remove_header(&http::header::TRANSFER_ENCODING);
            return;
        }
        304 => {
            resp.remove_header(&http::header::TRANSFER_ENCODING);
        }
        _ => {}
    }
    if let Some(n) = duplicated_content_length(&resp.headers) {
        let _ = resp.insert_header(http::header::CONTENT_LENGTH, n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(head: &[(&str, &str)], target: &[u8], version: http::Version) -> RequestHeader {
        let mut req = RequestHeader::build("GET", target, None).unwrap();
        req.set_version(version);
        for (k, v) in head {
            req.append_header(k.to_string(), *v).unwrap();
        }
        req
    }

    #[test]
    fn sanitize_normalises_origin_absolute_and_h2_targets() {
        let v11 = http::Version::HTTP_11;
        let mut req = request(&[("Host", "a")], b"/x/../y/%7e?q=/../", v11);
        sanitize(&mut req, EncodedSlashes::Reject).unwrap();
        assert_eq!(req.raw_path(), b"/y/~?q=/../");
        let mut req = request(&[], b"http://h.example/a/./b?x", v11);
        sanitize(&mut req, EncodedSlashes::Reject).unwrap();
        assert_eq!(req.raw_path(), b"http://h.example/a/b?x");
        let mut req = request(&[], b"/a//b", http::Version::HTTP_2);
        req.set_uri("https://h.example/a//b".parse().unwrap());
        sanitize(&mut req, EncodedSlashes::Reject).unwrap();
        assert_eq!(req.uri.to_string(), "https://h.example/a/b");
        // Already normal: the target is left as it was.
        let mut req = request(&[("Host", "a")], b"/a/b?c=%2e", v11);
        sanitize(&mut req, EncodedSlashes::Reject).unwrap();
        assert_eq!(req.raw_path(), b"/a/b?c=%2e");
    }

    #[test]
    fn sanitize_refusals() {
        let v11 = http::Version::HTTP_11;
        let bad_path = |target: &[u8]| {
            let mut req = request(&[("Host", "a")], target, v11);
            matches!(
                sanitize(&mut req, EncodedSlashes::Reject),
                Err(Reject::BadPath)
            )
        };
        assert!(bad_path(b"/.."));
        assert!(bad_path(b"/a%2fb"));
        assert!(bad_path(b"/%zz"));
        assert!(bad_path(b"/\xff"));
        let bad_host = |head: &[(&str, &str)], version| {
            let mut req = request(head, b"/", version);
            matches!(
                sanitize(&mut req, EncodedSlashes::Reject),
                Err(Reject::BadHost)
            )
        };
        assert!(bad_host(&[], v11));
        assert!(bad_host(&[("Host", "a b")], v11));
        assert!(bad_host(&[("Host", "a b")], http::Version::HTTP_10));
        assert!(!bad_host(&[], http::Version::HTTP_10));
        assert!(!bad_host(&[("Host", "[::1]:80")], v11));
    }

    #[test]
    fn duplicate_lengths_become_one_field() {
        let v11 = http::Version::HTTP_11;
        for head in [
            &[("Content-Length", "5"), ("content-length", "5")][..],
            &[("Content-Length", "5, 5")],
        ] {
            let mut req = request(head, b"/", v11);
            req.insert_header("Host", "a").unwrap();
            sanitize(&mut req, EncodedSlashes::Reject).unwrap();
            let values: Vec<_> = req.headers.get_all("content-length").iter().collect();
            assert_eq!(values, vec!["5"]);
        }
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.append_header("Content-Length", "3").unwrap();
        resp.append_header("Content-Length", "3").unwrap();
        tidy_response_framing(&mut resp);
        assert_eq!(resp.headers.get_all("content-length").iter().count(), 1);
        let mut resp = ResponseHeader::build(204, None).unwrap();
        resp.append_header("Content-Length", "3").unwrap();
        resp.append_header("Transfer-Encoding", "chunked").unwrap();
        tidy_response_framing(&mut resp);
        assert!(resp.headers.is_empty());
        let mut resp = ResponseHeader::build(304, None).unwrap();
        resp.append_header("Content-Length", "3").unwrap();
        resp.append_header("Transfer-Encoding", "chunked").unwrap();
        tidy_response_framing(&mut resp);
        assert_eq!(resp.headers.len(), 1);
    }
}
