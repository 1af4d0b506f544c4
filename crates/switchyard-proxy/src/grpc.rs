//! gRPC at the proxy: telling a gRPC call from other requests, its deadline (`grpc-timeout`), and
//! the trailers-only answers the proxy sends when it fails a call itself (as Envoy does: HTTP 200
//! with `grpc-status` and `grpc-message` in the header block, end of stream).
//!
//! ```
//! use std::time::Duration;
//! use switchyard_proxy::grpc::{self, GrpcStatus};
//!
//! assert!(grpc::is_grpc_content_type(b"application/grpc+proto"));
//! assert_eq!(grpc::parse_timeout(b"250m"), Some(Duration::from_millis(250)));
//! assert_eq!(grpc::format_timeout(Duration::from_millis(250)), "250000u");
//! let resp = grpc::trailers_only(GrpcStatus::Unavailable, "no server available").unwrap();
//! assert_eq!(resp.headers.get("grpc-status").unwrap(), "14");
//! ```

use std::time::Duration;

use http::HeaderMap;
use pingora::http::{RequestHeader, ResponseHeader};

/// The gRPC status codes the proxy itself answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcStatus {
    /// 4: the deadline (the client's `grpc-timeout` or the route's `timeout_ms`) passed.
    DeadlineExceeded,
    /// 8: a limit refused the call (rate limit, queue).
    ResourceExhausted,
    /// 12: the route cannot carry gRPC at all.
    Unimplemented,
    /// 13: the proxy or the configuration is at fault (e.g. gRPC routed to an HTTP/1 upstream).
    Internal,
    /// 14: no server could take the call (none available, connect failure, all down).
    Unavailable,
}

impl GrpcStatus {
    /// The numeric code sent in `grpc-status`.
    pub fn code(self) -> u8 {
        match self {
            GrpcStatus::DeadlineExceeded => 4,
            GrpcStatus::ResourceExhausted => 8,
            GrpcStatus::Unimplemented => 12,
            GrpcStatus::Internal => 13,
            GrpcStatus::Unavailable => 14,
        }
    }

    /// The status a proxy-made HTTP error becomes for a gRPC call: 504 → DEADLINE_EXCEEDED,
    /// 429 → RESOURCE_EXHAUSTED, 500 → INTERNAL, anything else (502, 503, …) → UNAVAILABLE,
    /// following gRPC's HTTP-to-gRPC mapping (doc/http-grpc-status-mapping.md) except that a
    /// proxy's timeout is a deadline, not an unavailable server.
    ///
    /// ```
    /// use switchyard_proxy::grpc::GrpcStatus;
    /// assert_eq!(GrpcStatus::for_http(504), GrpcStatus::DeadlineExceeded);
    /// assert_eq!(GrpcStatus::for_http(503), GrpcStatus::Unavailable);
    /// ```
    pub fn for_http(status: u16) -> GrpcStatus {
        match status {
            504 | 408 => GrpcStatus::DeadlineExceeded,
            429 => GrpcStatus::ResourceExhausted,
            500 => GrpcStatus::Internal,
            _ => GrpcStatus::Unavailable,
        }
    }
}

/// One gRPC call as the proxy follows it: the client's deadline and how the call ended.
///
/// ```
/// use std::time::Duration;
/// use switchyard_proxy::grpc::GrpcCall;
///
/// let mut req = pingora::http::RequestHeader::build("POST", b"/pkg.Svc/Call", None).unwrap();
/// req.insert_header("content-type", "application/grpc").unwrap();
/// req.insert_header("grpc-timeout", "2S").unwrap();
/// let call = GrpcCall::of(&req).unwrap();
/// // 500 ms after the start, with a 10 s route timeout, 1.5 s are left for the call.
/// let left = call.time_left(Duration::from_secs(10), Duration::from_millis(500));
/// assert_eq!(left, Duration::from_millis(1500));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrpcCall {
    /// The client's deadline (`grpc-timeout`), counted from the start of the request.
    pub deadline: Option<Duration>,
    /// The `grpc-status` the call ended with, once known.
    pub status: Option<u8>,
}

impl GrpcCall {
    /// The call `req` makes, if it is gRPC (see [`is_grpc_content_type`]).
    #[inline]
    pub fn of(req: &RequestHeader) -> Option<GrpcCall> {
        // Every gRPC call is a POST (gRPC over HTTP/2 spec): other requests cost no header
        // lookup.
        if req.method != http::Method::POST {
            return None;
        }
        let content_type = req.headers.get(http::header::CONTENT_TYPE)?;
        if !is_grpc_content_type(content_type.as_bytes()) {
            return None;
        }
        Some(GrpcCall {
            deadline: req
                .headers
                .get("grpc-timeout")
                .and_then(|v| parse_timeout(v.as_bytes())),
            status: None,
        })
    }

    /// What is left of the call's deadline `elapsed` after its start: the client's deadline,
    /// capped by the route's `timeout_ms` (`route`).
    pub fn time_left(&self, route: Duration, elapsed: Duration) -> Duration {
        upstream_timeout(self.deadline, route).saturating_sub(elapsed)
    }

    /// Notes the `grpc-status` of `headers` (a trailers-only answer's header block, or the
    /// trailers), if any.
    pub fn note_status(&mut self, headers: &HeaderMap) {
        if let Some(s) = headers
            .get("grpc-status")
            .and_then(|v| parse_status(v.as_bytes()))
        {
            self.status = Some(s);
        }
    }
}

/// A `grpc-status` value: a decimal number up to 255.
pub fn parse_status(value: &[u8]) -> Option<u8> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// True for `application/grpc` and its `+proto`, `+json`, `;…` variants (gRPC-Web is not gRPC
/// here: it is plain HTTP to the proxy).
pub fn is_grpc_content_type(value: &[u8]) -> bool {
    const BASE: &[u8] = b"application/grpc";
    value.len() >= BASE.len()
        && value[..BASE.len()].eq_ignore_ascii_case(BASE)
        && matches!(value.get(BASE.len()), None | Some(b'+' | b';'))
}

/// Parses a `grpc-timeout` value: 1 to 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
pub fn parse_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Formats `d` as a `grpc-timeout` value in the finest unit that fits 8 digits (rounded down,
/// never below `1n`).
pub fn format_timeout(d: Duration) -> String {
    const MAX: u128 = 99_999_999;
    let nanos = d.as_nanos().max(1);
    for (unit, per) in [
        ('n', 1u128),
        ('u', 1_000),
        ('m', 1_000_000),
        ('S', 1_000_000_000),
        ('M', 60_000_000_000),
    ] {
        if nanos / per <= MAX {
            return format!("{}{unit}", (nanos / per).max(1));
        }
    }
    format!("{}H", (nanos / 3_600_000_000_000).min(MAX))
}

/// The deadline to send upstream: the client's, lowered to what is left of the route's
/// `timeout_ms` (`left`).
pub fn upstream_timeout(client: Option<Duration>, left: Duration) -> Duration {
    client.map_or(left, |c| c.min(left))
}

/// `grpc-message` percent-encoding (gRPC over HTTP/2 spec): bytes outside `0x20..=0x7E`, and
/// `%`, become `%XX`.
pub fn encode_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7E).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A trailers-only gRPC answer: HTTP 200, `content-type: application/grpc`, `grpc-status`,
/// `grpc-message` (encoded), to be written with end of stream.
pub fn trailers_only(status: GrpcStatus, message: &str) -> pingora::Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(200, Some(4))?;
    resp.insert_header("content-type", "application/grpc")?;
    resp.insert_header("grpc-status", status.code().to_string())?;
    resp.insert_header("grpc-message", encode_message(message))?;
    Ok(resp)
}

/// The `grpc-message` of a call the proxy failed with HTTP `code` (`error`: Pingora's error
/// type, for other failures).
///
/// ```
/// assert_eq!(switchyard_proxy::grpc::failure_message(503, ""), "no server available");
/// ```
pub fn failure_message(code: u16, error: &str) -> String {
    match code {
        503 => "no server available".to_string(),
        504 => {
            "deadline exceeded at the proxy (grpc-timeout or the route's timeout_ms)".to_string()
        }
        _ => format!("upstream failed: {error}"),
    }
}

/// Answers the call on `session` with a trailers-only `status` and `message` (end of stream),
/// keeping the client connection (an h2 stream ends cleanly; on HTTP/1 the answer is framed).
pub async fn respond(
    session: &mut pingora::proxy::Session,
    status: GrpcStatus,
    message: &str,
) -> pingora::Result<()> {
    let mut resp = trailers_only(status, message)?;
    crate::responses::copy_request_id(session, &mut resp)?;
    session.write_response_header(Box::new(resp), true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        for yes in [
            &b"application/grpc"[..],
            b"application/grpc+proto",
            b"Application/GRPC+json",
            b"application/grpc;charset=utf-8",
        ] {
            assert!(is_grpc_content_type(yes), "{yes:?}");
        }
        for no in [
            &b"application/grpc-web"[..],
            b"application/grpc-web+proto",
            b"application/json",
            b"application/grp",
            b"",
        ] {
            assert!(!is_grpc_content_type(no), "{no:?}");
        }
    }

    #[test]
    fn timeouts_parse_every_unit_and_refuse_the_rest() {
        assert_eq!(parse_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout(b"2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_timeout(b"3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_timeout(b"4m"), Some(Duration::from_millis(4)));
        assert_eq!(parse_timeout(b"5u"), Some(Duration::from_micros(5)));
        assert_eq!(
            parse_timeout(b"99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in [
            &b""[..],
            b"S",
            b"123456789S",
            b"10s",
            b"-1S",
            b"1.5S",
            b"10 S",
        ] {
            assert_eq!(parse_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn timeouts_format_in_the_finest_unit_that_fits_and_round_trip() {
        assert_eq!(format_timeout(Duration::from_nanos(0)), "1n");
        assert_eq!(
            format_timeout(Duration::from_nanos(99_999_999)),
            "99999999n"
        );
        assert_eq!(format_timeout(Duration::from_millis(100)), "100000u");
        assert_eq!(format_timeout(Duration::from_secs(1000)), "1000000m");
        assert_eq!(format_timeout(Duration::from_secs(200_000)), "200000S");
        assert_eq!(format_timeout(Duration::from_secs(200_000_000)), "3333333M");
        for d in [
            Duration::from_millis(1),
            Duration::from_millis(1234),
            Duration::from_secs(86_400),
        ] {
            let back = parse_timeout(format_timeout(d).as_bytes()).unwrap();
            assert!(
                back <= d && d - back < Duration::from_secs(60),
                "{d:?} -> {back:?}"
            );
        }
    }

    #[test]
    fn the_upstream_deadline_is_the_smaller_one() {
        let s = Duration::from_secs;
        assert_eq!(upstream_timeout(None, s(5)), s(5));
        assert_eq!(upstream_timeout(Some(s(2)), s(5)), s(2));
        assert_eq!(upstream_timeout(Some(s(30)), s(5)), s(5));
    }

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(encode_message("no server"), "no server");
        assert_eq!(encode_message("100% down"), "100%25 down");
        assert_eq!(encode_message("é\n"), "%C3%A9%0A");
    }

    #[test]
    fn a_call_is_known_by_its_content_type_and_keeps_its_deadline() {
        let mut get = RequestHeader::build("GET", b"/a.B/C", None).unwrap();
        get.insert_header("content-type", "application/grpc")
            .unwrap();
        assert_eq!(GrpcCall::of(&get), None, "gRPC calls are POSTs");
        let mut req = RequestHeader::build("POST", b"/a.B/C", None).unwrap();
        assert_eq!(GrpcCall::of(&req), None);
        req.insert_header("content-type", "application/json")
            .unwrap();
        assert_eq!(GrpcCall::of(&req), None);
        req.insert_header("content-type", "application/grpc+proto")
            .unwrap();
        let call = GrpcCall::of(&req).unwrap();
        assert_eq!(call.deadline, None);
        let s = Duration::from_secs;
        assert_eq!(call.time_left(s(10), s(4)), s(6));
        req.insert_header("grpc-timeout", "bogus").unwrap();
        assert_eq!(GrpcCall::of(&req).unwrap().deadline, None);
        req.insert_header("grpc-timeout", "3S").unwrap();
        let mut call = GrpcCall::of(&req).unwrap();
        assert_eq!(call.time_left(s(10), s(1)), s(2));
        assert_eq!(call.time_left(s(10), s(5)), Duration::ZERO);
        let mut trailers = HeaderMap::new();
        call.note_status(&trailers);
        assert_eq!(call.status, None);
        trailers.insert("grpc-status", "14".parse().unwrap());
        call.note_status(&trailers);
        assert_eq!(call.status, Some(14));
        assert_eq!(parse_status(b"x"), None);
    }

    #[test]
    fn trailers_only_answers_carry_the_status() {
        let r = trailers_only(GrpcStatus::DeadlineExceeded, "timed out").unwrap();
        assert_eq!(r.status.as_u16(), 200);
        assert_eq!(r.headers.get("content-type").unwrap(), "application/grpc");
        assert_eq!(r.headers.get("grpc-status").unwrap(), "4");
        assert_eq!(r.headers.get("grpc-message").unwrap(), "timed out");
        assert_eq!(GrpcStatus::for_http(502), GrpcStatus::Unavailable);
        assert_eq!(GrpcStatus::for_http(429), GrpcStatus::ResourceExhausted);
    }
}
