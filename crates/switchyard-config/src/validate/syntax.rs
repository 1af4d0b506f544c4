//! The syntax of the strings a config holds: names, instance ids (HTTP tokens), DNS names and
//! Host header values.

use std::net::{IpAddr, SocketAddr};

/// Names of listeners, routes, upstreams and groups: letters, digits, `-`, `_`, `.`.
pub(super) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_string());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "`{name}` contains `{c}`; use letters, digits, `-`, `_` and `.`"
        ));
    }
    Ok(())
}

/// An instance id goes into `CDN-Loop` and `Switchyard-Cascade` headers: an HTTP token.
pub(super) fn check_instance_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".to_string());
    }
    if let Some(c) = id.chars().find(|c| !c.is_ascii() || !is_tchar(*c as u8)) {
        return Err(format!(
            "`{id}` contains {}; an instance id is letters, digits and !#$%&'*+-.^_`|~ \
             (no spaces or commas)",
            if c == ' ' {
                "a space".to_string()
            } else {
                format!("`{c}`")
            }
        ));
    }
    Ok(())
}

/// RFC 9110 `tchar`.
pub(super) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A DNS name: dot-separated labels of letters, digits, `-` and `_` (not at a label's ends), at
/// most 63 characters each and 253 in all; one trailing dot is allowed.
pub(super) fn check_dns_name(name: &str) -> Result<(), String> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.is_empty() {
        return Err("must not be empty".to_string());
    }
    if bare.len() > 253 {
        return Err(format!("`{name}` is longer than 253 characters"));
    }
    for label in bare.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "`{name}` is not a valid host name (labels of letters, digits and `-`, separated by dots)"
            ));
        }
    }
    Ok(())
}

/// A Host header value: a host name or IP, with an optional port.
pub(super) fn check_host_header(h: &str) -> Result<(), String> {
    if h.parse::<IpAddr>().is_ok() || h.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let host = match h.rsplit_once(':') {
        Some((host, port)) => {
            if port.parse::<u16>().is_err() {
                return Err(format!("`{h}` has an invalid port"));
            }
            host
        }
        None => h,
    };
    check_dns_name(host)
}
