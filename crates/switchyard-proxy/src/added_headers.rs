//! The fields Switchyard adds to every request and response (`X-Request-Id`, `traceparent`,
//! the `X-Forwarded-*` family, `X-Real-IP`, `CDN-Loop`), inserted without per-request work on
//! their names, and their per-request values cut from a per-thread slab.
//!
//! Pingora's `insert_header` parses the name it is given on every call and, for a name outside
//! the standard ones, copies it into a new `HeaderName` and clones that copy for its case map:
//! two allocations per field. These names are parsed once, at compile time
//! (`HeaderName::from_static`), and inserted with `insert_parsed_header` (vendor patch 0005),
//! whose clone of a static name is free. The spelling on the wire is the name's lower-case
//! text, as before.
//!
//! A value made per request (the request id, the client's address, `traceparent`) is cut from a
//! per-thread slab ([`crate::value_slab`]): no allocation of its own, and a clone (the request
//! id goes upstream and into the response) only counts a reference, where a `HeaderValue`
//! copied from a slice allocates again on its first clone.

use http::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::Result;

/// `X-Request-Id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// W3C `traceparent`.
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `X-Forwarded-For`.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Real-IP`.
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
/// `X-Forwarded-Proto`.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// `CDN-Loop` (RFC 8586).
pub static CDN_LOOP: HeaderName = HeaderName::from_static("cdn-loop");

/// The most fields Switchyard's `upstream_request_filter` adds to a request: the five
/// forwarding fields, `traceparent`, and a route's `Host`, `grpc-timeout` and cascade
/// signature. Reserved in one step before the inserts, so each header map grows at most once.
pub const UPSTREAM_REQUEST_FIELDS: usize = 9;

/// Sets `name` (one of this module's statics) to `value` on `req`, replacing any other value.
#[inline]
pub fn insert_request(req: &mut RequestHeader, name: &'static HeaderName, value: HeaderValue) {
    req.insert_parsed_header(name.clone(), name.as_str(), value);
}

/// Sets `name` (one of this module's statics) to `value` on `resp`, replacing any other value.
#[inline]
pub fn insert_response(resp: &mut ResponseHeader, name: &'static HeaderName, value: HeaderValue) {
    resp.insert_parsed_header(name.clone(), name.as_str(), value);
}

/// The first `len` bytes of `buf` (all of it if `len` is longer) as a header value cut from the
/// thread's value slab ([`crate::value_slab`]); its clones share it. An error
/// (`InvalidHTTPHeader`, naming `what`) if they are not a valid value.
pub fn owned_value<const N: usize>(
    buf: [u8; N],
    len: usize,
    what: &'static str,
) -> Result<HeaderValue> {
    crate::value_slab::header_value(&buf[..len.min(N)], what)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(req: &RequestHeader) -> Vec<u8> {
        let mut buf = Vec::new();
        req.header_to_h1_wire(&mut buf);
        buf
    }

    /// The parsed-name insert puts the same bytes on the wire as `insert_header` with the
    /// lower-case name did, replacing a client's field of any spelling.
    #[test]
    fn parsed_insert_is_byte_identical_to_insert_by_name() {
        for name in [
            &X_REQUEST_ID,
            &TRACEPARENT,
            &X_FORWARDED_FOR,
            &X_REAL_IP,
            &X_FORWARDED_PROTO,
            &X_FORWARDED_HOST,
            &CDN_LOOP,
        ] {
            let build = || {
                let mut req = RequestHeader::build("GET", b"/", None).unwrap();
                req.append_header("Host", "h").unwrap();
                req.append_header(name.as_str().to_ascii_uppercase(), "client")
                    .unwrap();
                req.append_header("Accept", "*/*").unwrap();
                req
            };
            let mut by_name = build();
            by_name.insert_header(name.as_str(), "v").unwrap();
            let mut parsed = build();
            insert_request(&mut parsed, name, HeaderValue::from_static("v"));
            assert_eq!(wire(&by_name), wire(&parsed), "{name}");
            assert_eq!(parsed.headers.get_all(name).iter().count(), 1);

            let mut resp = ResponseHeader::build(200, None).unwrap();
            resp.append_header(name.as_str().to_ascii_uppercase(), "x")
                .unwrap();
            insert_response(&mut resp, name, HeaderValue::from_static("v"));
            let mut buf = Vec::new();
            resp.header_to_h1_wire(&mut buf);
            assert_eq!(buf, format!("{name}: v\r\n").into_bytes());
        }
    }

    #[test]
    fn owned_value_shows_the_prefix_and_clones_share_it() {
        let mut buf = [b'x'; 48];
        buf[..9].copy_from_slice(b"127.0.0.1");
        let v = owned_value(buf, 9, "test").unwrap();
        assert_eq!(v.as_bytes(), b"127.0.0.1");
        let c = v.clone();
        assert_eq!(c.as_bytes().as_ptr(), v.as_bytes().as_ptr());
        assert_eq!(owned_value(buf, 48, "test").unwrap().len(), 48);
        // A length past the buffer shows the whole buffer, never more.
        assert_eq!(owned_value(buf, 99, "test").unwrap().len(), 48);
        assert_eq!(owned_value([0u8; 0], 0, "test").unwrap().len(), 0);
        let mut bad = [b'a'; 4];
        bad[1] = b'\n';
        assert!(owned_value(bad, 4, "test").is_err());
    }
}
