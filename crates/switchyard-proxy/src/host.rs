//! The `Host` header (or the authority of an absolute-form target or an HTTP/2 `:authority`):
//! valid when it is `host[:port]` by RFC 3986 §3.2.2–3.2.3, without userinfo.
//!
//! * `host` is an IP literal in brackets (an IPv6 address, or `v<hex>.<…>` IPvFuture), or a
//!   reg-name: unreserved characters, sub-delims (`!$&'()*+,;=`) and valid percent-encodings. An
//!   IPv4 address is a reg-name by this grammar. An empty host is refused (as NGINX does), though
//!   RFC 3986 allows an empty reg-name.
//! * `port` is digits, possibly none (`host:`), as RFC 3986 allows.
//!
//! Anything else — spaces, `/`, `\`, `?`, `#`, `@`, a second `:`, an unclosed `[` — is invalid
//! and the request gets `400`. Validation scans the bytes once and never allocates.

/// A valid `Host` split into its parts (borrowed from the value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostPort<'a> {
    /// The host: a reg-name or an IP literal with its brackets.
    pub host: &'a str,
    /// The port digits after `:`, if there is a `:` (possibly empty).
    pub port: Option<&'a str>,
}

/// Why a `Host` value is not `host[:port]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Empty, or only a port.
    #[error("empty host")]
    Empty,
    /// A character a reg-name cannot hold, or a malformed percent-encoding.
    #[error("invalid character in the host")]
    BadHost,
    /// An IP literal that is not an IPv6 address or IPvFuture, or is not closed.
    #[error("invalid IP literal")]
    BadIpLiteral,
    /// Something other than digits after the `:`.
    #[error("invalid port")]
    BadPort,
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

/// True if `name` is a non-empty RFC 3986 reg-name.
fn is_reg_name(name: &[u8]) -> bool {
    let mut i = 0;
    while i < name.len() {
        let b = name[i];
        if b == b'%' {
            let hex = |j: usize| name.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
            continue;
        }
        if !(is_unreserved(b) || is_sub_delim(b)) {
            return false;
        }
        i += 1;
    }
    !name.is_empty()
}

/// True if `inner` (between the brackets) is an IPv6 address or an IPvFuture.
fn is_ip_literal(inner: &[u8]) -> bool {
    if let Some(rest) = inner
        .strip_prefix(b"v")
        .or_else(|| inner.strip_prefix(b"V"))
    {
        // IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
        let Some(dot) = rest.iter().position(|&b| b == b'.') else {
            return false;
        };
        let (version, tail) = (&rest[..dot], &rest[dot + 1..]);
        return !version.is_empty()
            && version.iter().all(u8::is_ascii_hexdigit)
            && !tail.is_empty()
            && tail
                .iter()
                .all(|&b| is_unreserved(b) || is_sub_delim(b) || b == b':');
    }
    std::str::from_utf8(inner).is_ok_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok())
}

/// Parses a `Host` value as `host[:port]`.
///
/// ```
/// use switchyard_proxy::host::{parse_host, HostError};
/// let hp = parse_host(b"Example.com:8080").unwrap();
/// assert_eq!((hp.host, hp.port), ("Example.com", Some("8080")));
/// assert_eq!(parse_host(b"[::1]").unwrap().host, "[::1]");
/// assert_eq!(parse_host(b"a b"), Err(HostError::BadHost));
/// assert_eq!(parse_host(b"a/b"), Err(HostError::BadHost));
/// assert_eq!(parse_host(b"a:80x"), Err(HostError::BadPort));
/// assert_eq!(parse_host(b""), Err(HostError::Empty));
/// ```
pub fn parse_host(value: &[u8]) -> Result<HostPort<'_>, HostError> {
    let (host, port) = split_host(value)?;
    // Every byte checked by `split_host` is ASCII, so both parts are valid UTF-8.
    Ok(HostPort {
        host: ascii(host)?,
        port: port.map(ascii).transpose()?,
    })
}

/// Checks a `Host` value as [`parse_host`] does, without making text of its parts: for a caller
/// that only needs the verdict (request hygiene, once per request).
///
/// ```
/// use switchyard_proxy::host::{check_host, HostError};
/// assert_eq!(check_host(b"Example.com:8080"), Ok(()));
/// assert_eq!(check_host(b"a:80x"), Err(HostError::BadPort));
/// ```
pub fn check_host(value: &[u8]) -> Result<(), HostError> {
    split_host(value).map(|_| ())
}

/// `value` split into its host and port, each checked (see [`parse_host`]).
fn split_host(value: &[u8]) -> Result<(&[u8], Option<&[u8]>), HostError> {
    if value.is_empty() {
        return Err(HostError::Empty);
    }
    let (host, port): (&[u8], Option<&[u8]>) = if value[0] == b'[' {
        let close = value
            .iter()
            .position(|&b| b == b']')
            .ok_or(HostError::BadIpLiteral)?;
        if !is_ip_literal(&value[1..close]) {
            return Err(HostError::BadIpLiteral);
        }
        match &value[close + 1..] {
            [] => (&value[..=close], None),
            [b':', port @ ..] => (&value[..=close], Some(port)),
            _ => return Err(HostError::BadPort),
        }
    } else {
        match value.iter().rposition(|&b| b == b':') {
            Some(colon) => (&value[..colon], Some(&value[colon + 1..])),
            None => (value, None),
        }
    };
    if host.is_empty() {
        return Err(HostError::Empty);
    }
    if host[0] != b'[' && !is_reg_name(host) {
        return Err(HostError::BadHost);
    }
    if port.is_some_and(|p| !p.iter().all(u8::is_ascii_digit)) {
        return Err(HostError::BadPort);
    }
    Ok((host, port))
}

fn ascii(b: &[u8]) -> Result<&str, HostError> {
    std::str::from_utf8(b).map_err(|_| HostError::BadHost)
}

/// The name routes match: `host` without one trailing dot (`example.com.` is the fully qualified
/// form of `example.com`, as NGINX and Envoy treat it).
///
/// ```
/// use switchyard_proxy::host::route_name;
/// assert_eq!(route_name("public.example."), "public.example");
/// assert_eq!(route_name("public.example"), "public.example");
/// assert_eq!(route_name("[::1]"), "[::1]");
/// ```
pub fn route_name(host: &str) -> &str {
    host.strip_suffix('.').unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages() {
        assert_eq!(HostError::Empty.to_string(), "empty host");
        assert_eq!(
            HostError::BadHost.to_string(),
            "invalid character in the host"
        );
        assert_eq!(HostError::BadIpLiteral.to_string(), "invalid IP literal");
        assert_eq!(HostError::BadPort.to_string(), "invalid port");
    }

    #[test]
    fn valid_hosts() {
        for (value, host, port) in [
            ("a", "a", None),
            ("a:80", "a", Some("80")),
            ("a:", "a", Some("")),
            ("127.0.0.1:8080", "127.0.0.1", Some("8080")),
            ("[::1]", "[::1]", None),
            ("[::1]:443", "[::1]", Some("443")),
            ("[2001:db8::7]:1", "[2001:db8::7]", Some("1")),
            ("[v1.fe80::a+en1]", "[v1.fe80::a+en1]", None),
            ("public.example.", "public.example.", None),
            ("x_y-z~1.example", "x_y-z~1.example", None),
            ("a%41b", "a%41b", None),
            ("a!$&'()*+,;=b", "a!$&'()*+,;=b", None),
        ] {
            let hp = parse_host(value.as_bytes()).unwrap_or_else(|e| panic!("{value}: {e}"));
            assert_eq!(check_host(value.as_bytes()), Ok(()), "{value}");
            assert_eq!((hp.host, hp.port), (host, port), "{value}");
        }
    }

    #[test]
    fn invalid_hosts() {
        use HostError::*;
        for (value, err) in [
            ("", Empty),
            (":80", Empty),
            ("a b", BadHost),
            ("a/b", BadHost),
            ("a\\b", BadHost),
            ("a?b", BadHost),
            ("a#b", BadHost),
            ("user@a", BadHost),
            ("a:b:c", BadHost),
            ("a%zz", BadHost),
            ("a%4", BadHost),
            ("caf\u{e9}", BadHost),
            ("a\tb", BadHost),
            ("a:80x", BadPort),
            ("a:-1", BadPort),
            ("[::1", BadIpLiteral),
            ("[zz::1]", BadIpLiteral),
            ("[127.0.0.1]", BadIpLiteral),
            ("[v.x]", BadIpLiteral),
            ("[v1.]", BadIpLiteral),
            ("[::1]x", BadPort),
            ("[::1]:8a", BadPort),
            ("[]", BadIpLiteral),
        ] {
            assert_eq!(parse_host(value.as_bytes()), Err(err), "{value:?}");
            assert_eq!(check_host(value.as_bytes()), Err(err), "{value:?}");
        }
    }
}
