//! Forwarding headers and loop detection.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use http::HeaderValue;
use pingora::http::RequestHeader;
use pingora::{Error, ErrorType};

use crate::added_headers::{
    insert_request, owned_value, CDN_LOOP, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO,
    X_REAL_IP,
};

/// The request's host without port, lower-cased by the router when compared.
///
/// ```
/// use switchyard_proxy::headers::strip_port;
/// assert_eq!(strip_port("example.com:8080"), "example.com");
/// assert_eq!(strip_port("[::1]:8080"), "[::1]");
/// assert_eq!(strip_port("example.com"), "example.com");
/// ```
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// The Host the client asked for, with port: the `Host` header, else the URI's authority (HTTP/2
/// `:authority`), else the authority of an absolute-form target; `""` if there is none.
pub fn request_host(req: &RequestHeader) -> &str {
    request_authority(req)
        .and_then(|a| std::str::from_utf8(a).ok())
        .unwrap_or("")
}

/// The raw bytes [`request_host`] reads, if any.
pub fn request_authority(req: &RequestHeader) -> Option<&[u8]> {
    req.headers
        .get(http::header::HOST)
        .map(|h| h.as_bytes())
        .or_else(|| req.uri.authority().map(|a| a.as_str().as_bytes()))
        .or_else(|| pingora::http::authority::raw_target_authority(req.raw_path()).authority())
}

/// True if a `CDN-Loop` header (RFC 8586) already lists `instance_id`.
///
/// ```
/// use switchyard_proxy::headers::loop_detected;
/// let mut req = pingora::http::RequestHeader::build("GET", b"/", None).unwrap();
/// req.append_header("CDN-Loop", "edge-1, gw-2; v=1").unwrap();
/// assert!(loop_detected(&req, "gw-2"));
/// assert!(!loop_detected(&req, "gw-3"));
/// ```
pub fn loop_detected(req: &RequestHeader, instance_id: &str) -> bool {
    req.headers.get_all(&CDN_LOOP).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',').any(|entry| {
                entry
                    .split(';')
                    .next()
                    .is_some_and(|id| id.trim().eq_ignore_ascii_case(instance_id))
            })
        })
    })
}

/// Room for the text of any [`IpAddr`]: at most 39 bytes (eight groups of four hex digits).
const IP_TEXT_MAX: usize = 48;

/// `ip` as a header value, formatted on the stack and kept in one allocation that the value's
/// clones share (`X-Forwarded-For` and `X-Real-IP` both carry it). An IPv4 address is written
/// digit by digit (~100 instructions where `core::fmt` took ~1,000, every request); IPv6 goes
/// through `Display`.
fn ip_value(ip: IpAddr) -> pingora::Result<HeaderValue> {
    let mut buf = [0u8; IP_TEXT_MAX];
    let len = match ip {
        IpAddr::V4(v4) => ipv4_text(v4, &mut buf),
        IpAddr::V6(_) => {
            let mut rest = &mut buf[..];
            if write!(rest, "{ip}").is_err() {
                return HeaderValue::try_from(ip.to_string()).map_err(|e| {
                    Error::because(ErrorType::InvalidHTTPHeader, "invalid client address", e)
                });
            }
            IP_TEXT_MAX - rest.len()
        }
    };
    owned_value(buf, len, "invalid client address")
}

/// The dotted-decimal text of `ip`, byte for byte what its `Display` writes, at the start of
/// `buf`; returns its length (7 to 15).
fn ipv4_text(ip: Ipv4Addr, buf: &mut [u8; IP_TEXT_MAX]) -> usize {
    let mut n = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            buf[n] = b'.';
            n += 1;
        }
        if octet >= 100 {
            buf[n] = b'0' + octet / 100;
            n += 1;
        }
        if octet >= 10 {
            buf[n] = b'0' + octet / 10 % 10;
            n += 1;
        }
        buf[n] = b'0' + octet % 10;
        n += 1;
    }
    n
}

/// `X-Forwarded-Proto` for `scheme`, without copying the usual two.
fn proto_value(scheme: &'static str) -> pingora::Result<HeaderValue> {
    match scheme {
        "http" => Ok(HeaderValue::from_static("http")),
        "https" => Ok(HeaderValue::from_static("https")),
        other => HeaderValue::from_str(other)
            .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "invalid scheme", e)),
    }
}

/// `prior, last` (each item of `prior` followed by `, `) in one exactly sized buffer, so the
/// value takes it without another copy. `prior` is called twice: to size, then to fill.
fn joined_value<'a, I: Iterator<Item = &'a str>>(
    prior: impl Fn() -> I,
    last: &[u8],
) -> pingora::Result<HeaderValue> {
    let len = prior().map(|p| p.len() + 2).sum::<usize>() + last.len();
    let mut out = Vec::with_capacity(len);
    for p in prior() {
        out.extend_from_slice(p.as_bytes());
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(last);
    HeaderValue::try_from(out)
        .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "invalid forwarding value", e))
}

/// `instance_id` as the value [`set_forwarding`] appends to `CDN-Loop`; build it once.
pub fn instance_id_value(instance_id: &str) -> Option<HeaderValue> {
    HeaderValue::try_from(instance_id.to_string()).ok()
}

/// Sets `X-Forwarded-For` (appended), `X-Forwarded-Proto`, `X-Forwarded-Host`, `X-Real-IP` and
/// appends `instance_id` (see [`instance_id_value`]) to `CDN-Loop`.
///
/// The names are inserted pre-parsed ([`crate::added_headers`]); the origin sees them in lower
/// case.
pub fn set_forwarding(
    req: &mut RequestHeader,
    client_ip: Option<IpAddr>,
    scheme: &'static str,
    client_host: Option<HeaderValue>,
    instance_id: &HeaderValue,
) -> pingora::Result<()> {
    if let Some(ip) = client_ip {
        let ip_v = ip_value(ip)?;
        let prior_xff = req.headers.get_all(&X_FORWARDED_FOR);
        let prior = || prior_xff.iter().filter_map(|v| v.to_str().ok());
        let xff = if prior().next().is_none() {
            ip_v.clone()
        } else {
            joined_value(prior, ip_v.as_bytes())?
        };
        insert_request(req, &X_FORWARDED_FOR, xff);
        insert_request(req, &X_REAL_IP, ip_v);
    }
    insert_request(req, &X_FORWARDED_PROTO, proto_value(scheme)?);
    if let Some(h) = client_host {
        insert_request(req, &X_FORWARDED_HOST, h);
    }
    let cdn_loop = match req.headers.get(&CDN_LOOP).and_then(|v| v.to_str().ok()) {
        Some(prior) if !prior.is_empty() => {
            joined_value(|| std::iter::once(prior), instance_id.as_bytes())?
        }
        _ => instance_id.clone(),
    };
    insert_request(req, &CDN_LOOP, cdn_loop);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(headers: &[(&'static str, &[u8])]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for (n, v) in headers {
            req.append_header(*n, HeaderValue::from_bytes(v).unwrap())
                .unwrap();
        }
        req
    }

    fn wire(req: &RequestHeader) -> String {
        let mut buf = Vec::new();
        req.header_to_h1_wire(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Applies [`set_forwarding`] (instance id `gw-1`) and checks the headers on the wire.
    fn check(
        headers: &[(&'static str, &[u8])],
        ip: Option<&str>,
        scheme: &'static str,
        host: Option<&'static str>,
        want: &str,
    ) {
        let mut req = build(headers);
        let id = instance_id_value("gw-1").unwrap();
        let ip = ip.map(|ip| ip.parse().unwrap());
        let host = host.map(HeaderValue::from_static);
        set_forwarding(&mut req, ip, scheme, host, &id).unwrap();
        assert_eq!(wire(&req), want);
    }

    /// The expected bytes are those of the first implementation (which formatted `String`s).
    #[test]
    fn forwarding_headers_are_byte_identical() {
        check(
            &[("Host", b"example.com")],
            Some("127.0.0.1"),
            "http",
            Some("example.com"),
            "Host: example.com\r\nx-forwarded-for: 127.0.0.1\r\nx-real-ip: 127.0.0.1\r\n\
             x-forwarded-proto: http\r\nx-forwarded-host: example.com\r\ncdn-loop: gw-1\r\n",
        );
        check(
            &[
                ("X-Forwarded-For", b"198.51.100.7"),
                ("Accept", b"*/*"),
                ("x-forwarded-for", b"10.0.0.1, 10.0.0.2"),
                ("X-Real-IP", b"1.2.3.4"),
                ("X-Forwarded-Proto", b"http"),
                ("CDN-Loop", b"other-cdn"),
                ("cdn-loop", b"third"),
            ],
            Some("2001:db8::1"),
            "https",
            None,
            "x-forwarded-for: 198.51.100.7, 10.0.0.1, 10.0.0.2, 2001:db8::1\r\nAccept: */*\r\n\
             x-real-ip: 2001:db8::1\r\nx-forwarded-proto: https\r\ncdn-loop: other-cdn, gw-1\r\n",
        );
        check(
            &[("cdn-loop", b""), ("X-Forwarded-Host", b"spoof")],
            None,
            "http",
            Some("h.example:8080"),
            "cdn-loop: gw-1\r\nx-forwarded-host: h.example:8080\r\nx-forwarded-proto: http\r\n",
        );
        check(
            &[("X-Forwarded-For", b"\xff\xfe"), ("CDN-Loop", b"caf\xe9")],
            Some("::ffff:10.0.0.1"),
            "http",
            None,
            "x-forwarded-for: ::ffff:10.0.0.1\r\ncdn-loop: gw-1\r\nx-real-ip: ::ffff:10.0.0.1\r\n\
             x-forwarded-proto: http\r\n",
        );
        check(
            &[
                ("X-Forwarded-For", b""),
                ("x-forwarded-for", b"\xff"),
                ("x-forwarded-for", b"9.9.9.9"),
            ],
            Some("255.255.255.255"),
            "https",
            None,
            "x-forwarded-for: , 9.9.9.9, 255.255.255.255\r\nx-real-ip: 255.255.255.255\r\n\
             x-forwarded-proto: https\r\ncdn-loop: gw-1\r\n",
        );
        check(
            &[],
            Some("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"),
            "http",
            None,
            "x-forwarded-for: ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff\r\n\
             x-real-ip: ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff\r\nx-forwarded-proto: http\r\n\
             cdn-loop: gw-1\r\n",
        );
    }

    #[test]
    fn every_ip_fits_the_stack_buffer() {
        for ip in [
            "::ffff:255.255.255.255",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "255.255.255.255",
            "::",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_value(ip).unwrap().as_bytes(), ip.to_string().as_bytes());
        }
    }

    /// The digit-by-digit IPv4 text is `Display`'s, for every octet value in every position.
    #[test]
    fn ipv4_text_is_display() {
        for a in 0..=255u8 {
            for ip in [
                Ipv4Addr::new(a, 0, 0, 0),
                Ipv4Addr::new(0, a, 0, 0),
                Ipv4Addr::new(1, 2, a, 9),
                Ipv4Addr::new(255, 10, 99, a),
                Ipv4Addr::new(a, a, a, a),
            ] {
                let mut buf = [0u8; IP_TEXT_MAX];
                let len = ipv4_text(ip, &mut buf);
                assert_eq!(&buf[..len], ip.to_string().as_bytes());
                assert_eq!(
                    ip_value(IpAddr::V4(ip)).unwrap().as_bytes(),
                    ip.to_string().as_bytes()
                );
            }
        }
    }
}
