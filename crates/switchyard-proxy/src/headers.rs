//! Forwarding headers and loop detection.

use std::net::IpAddr;

use http::HeaderValue;
use pingora::http::RequestHeader;

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

/// The Host the client asked for (header, else the URI authority), with port.
pub fn request_host(req: &RequestHeader) -> &str {
    req.headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
        .unwrap_or("")
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
    req.headers.get_all("cdn-loop").iter().any(|v| {
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

/// Sets `X-Forwarded-For` (appended), `X-Forwarded-Proto`, `X-Forwarded-Host`, `X-Real-IP` and
/// appends `instance_id` to `CDN-Loop`.
pub fn set_forwarding(
    req: &mut RequestHeader,
    client_ip: Option<IpAddr>,
    scheme: &'static str,
    client_host: Option<HeaderValue>,
    instance_id: &str,
) -> pingora::Result<()> {
    if let Some(ip) = client_ip {
        let ip_s = ip.to_string();
        let xff = match req
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
        {
            prior if prior.is_empty() => ip_s.clone(),
            prior => format!("{}, {ip_s}", prior.join(", ")),
        };
        req.insert_header("x-forwarded-for", xff)?;
        req.insert_header("x-real-ip", ip_s)?;
    }
    req.insert_header("x-forwarded-proto", scheme)?;
    if let Some(h) = client_host {
        req.insert_header("x-forwarded-host", h)?;
    }
    let cdn_loop = match req.headers.get("cdn-loop").and_then(|v| v.to_str().ok()) {
        Some(prior) if !prior.is_empty() => format!("{prior}, {instance_id}"),
        _ => instance_id.to_string(),
    };
    req.insert_header("cdn-loop", cdn_loop)?;
    Ok(())
}
