//! Cross-site request forgery and DNS rebinding defences of the admin API.
//!
//! A browser on another site can send requests to `127.0.0.1:9000` (a form post, an image, a
//! `fetch` in `no-cors` mode), and a name that an attacker re-points at `127.0.0.1` (DNS
//! rebinding) makes those requests same-origin in the browser's eyes. Both carry tell-tale
//! headers, which the API checks before anything else, whatever the method and even with a valid
//! token (a browser may hold Basic credentials for the status page):
//!
//! * an `Origin` header whose `host:port` is not the request's `Host` (or `Origin: null`, or one
//!   that does not parse) → `403` ([`same_origin`]);
//! * with no token configured, a `Host` that is not a loopback IP or `localhost` → `403`
//!   ([`is_loopback_host`]): a rebinding attacker's page sends its own name;
//! * a state-changing method with a form content type (`application/x-www-form-urlencoded`,
//!   `multipart/form-data`, `text/plain`: the ones a cross-site form can send without a CORS
//!   preflight) → `415` ([`is_form_content_type`]). `GET` never changes anything (`405`).

use std::net::{Ipv4Addr, Ipv6Addr};

use switchyard_proxy::host::parse_host;

/// The default port of an origin's scheme, if it is one the admin API could be reached by.
fn default_port(scheme: &str) -> Option<u16> {
    match scheme.to_ascii_lowercase().as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// `(host, port)` of a `host[:port]` value, the port defaulting to `default`.
fn host_and_port(value: &[u8], default: u16) -> Option<(&str, u16)> {
    let hp = parse_host(value).ok()?;
    let port = match hp.port {
        None | Some("") => default,
        Some(p) => p.parse().ok()?,
    };
    Some((hp.host, port))
}

/// True if the `Origin` value `origin` names the same `host:port` as the request's `Host`
/// (`host`; the admin listener is plain HTTP, so a `Host` without a port means port 80).
///
/// ```
/// use switchyard_admin::guard::same_origin;
/// assert!(same_origin(b"http://127.0.0.1:9000", Some(b"127.0.0.1:9000")));
/// assert!(same_origin(b"http://LOCALHOST", Some(b"localhost:80")));
/// assert!(!same_origin(b"http://evil.example", Some(b"127.0.0.1:9000")));
/// assert!(!same_origin(b"null", Some(b"127.0.0.1:9000")));
/// assert!(!same_origin(b"https://127.0.0.1", Some(b"127.0.0.1")));
/// ```
pub fn same_origin(origin: &[u8], host: Option<&[u8]>) -> bool {
    let Some(host) = host else {
        return false;
    };
    let Ok(origin) = std::str::from_utf8(origin) else {
        return false;
    };
    let Some((scheme, rest)) = origin.trim().split_once("://") else {
        return false;
    };
    let Some(default) = default_port(scheme) else {
        return false;
    };
    let (Some((o_host, o_port)), Some((h_host, h_port))) = (
        host_and_port(rest.as_bytes(), default),
        host_and_port(host, 80),
    ) else {
        return false;
    };
    o_host.eq_ignore_ascii_case(h_host) && o_port == h_port
}

/// True if `host` (a `Host` value) is `localhost` or a loopback IP address, with any port.
///
/// ```
/// use switchyard_admin::guard::is_loopback_host;
/// assert!(is_loopback_host(b"127.0.0.1:9000"));
/// assert!(is_loopback_host(b"[::1]:9000"));
/// assert!(is_loopback_host(b"LocalHost"));
/// assert!(!is_loopback_host(b"evil.example:9000"));
/// assert!(!is_loopback_host(b"localhost.evil.example"));
/// ```
pub fn is_loopback_host(host: &[u8]) -> bool {
    let Ok(hp) = parse_host(host) else {
        return false;
    };
    if hp.host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    if let Some(v6) = hp.host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6
            .parse::<Ipv6Addr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback());
    }
    hp.host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// True if a `Content-Type` value is one a cross-site HTML form can send (its media type,
/// case-insensitive, parameters ignored).
///
/// ```
/// use switchyard_admin::guard::is_form_content_type;
/// assert!(is_form_content_type(b"application/x-www-form-urlencoded"));
/// assert!(is_form_content_type(b"Multipart/Form-Data; boundary=x"));
/// assert!(is_form_content_type(b"text/plain;charset=UTF-8"));
/// assert!(!is_form_content_type(b"application/json"));
/// ```
pub fn is_form_content_type(value: &[u8]) -> bool {
    let media = value.split(|&b| b == b';').next().unwrap_or_default();
    let media = String::from_utf8_lossy(media).trim().to_ascii_lowercase();
    matches!(
        media.as_str(),
        "application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let h = Some(&b"127.0.0.1:9000"[..]);
        assert!(same_origin(b"http://127.0.0.1:9000", h));
        assert!(same_origin(b"HTTP://127.0.0.1:9000", h));
        for foreign in [
            &b"http://127.0.0.1:9001"[..],
            b"http://127.0.0.1",
            b"https://127.0.0.1:9000x",
            b"http://127.0.0.1:9000/path",
            b"ftp://127.0.0.1:9000",
            b"127.0.0.1:9000",
            b"null",
            b"",
            b"\xff",
        ] {
            assert!(
                !same_origin(foreign, h),
                "{}",
                String::from_utf8_lossy(foreign)
            );
        }
        assert!(same_origin(b"http://[::1]:9000", Some(b"[::1]:9000")));
        assert!(same_origin(b"https://a.example", Some(b"a.example:443")));
        assert!(!same_origin(b"http://a.example", None));
        assert!(!same_origin(b"http://a.example", Some(b"a b")));
    }

    #[test]
    fn loopback_hosts() {
        for ok in [
            &b"127.0.0.1"[..],
            b"127.1.2.3:1",
            b"localhost:9000",
            b"[::1]",
            b"[::ffff:127.0.0.1]:9000",
        ] {
            assert!(is_loopback_host(ok), "{}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b"10.0.0.1"[..],
            b"0.0.0.0",
            b"[::]",
            b"localhost.",
            b"sub.localhost",
            b"127.0.0.1.nip.io",
            b"",
            b"a b",
        ] {
            assert!(!is_loopback_host(bad), "{}", String::from_utf8_lossy(bad));
        }
    }
}
