//! The server name of HTTPS checks.

use rustls::pki_types::ServerName;

/// The name sent in SNI and verified: `sni` if set, else the host part of `host_port`.
pub(crate) fn server_name(
    sni: Option<&str>,
    host_port: &str,
) -> Result<ServerName<'static>, String> {
    let host = match sni {
        Some(s) => s,
        None => host_of(host_port),
    };
    ServerName::try_from(host.to_string()).map_err(|e| format!("invalid SNI name `{host}`: {e}"))
}

/// `10.0.0.1:80` → `10.0.0.1`, `[::1]:80` → `::1`, `example.com:443` → `example.com`.
pub(crate) fn host_of(host_port: &str) -> &str {
    let host = match host_port.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host_port,
    };
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_strips_port_and_brackets() {
        assert_eq!(host_of("10.0.0.1:80"), "10.0.0.1");
        assert_eq!(host_of("[::1]:8443"), "::1");
        assert_eq!(host_of("example.com:443"), "example.com");
        assert_eq!(host_of("example.com"), "example.com");
    }

    #[test]
    fn server_name_defaults_to_the_host() {
        assert_eq!(
            server_name(None, "127.0.0.1:443").unwrap(),
            ServerName::try_from("127.0.0.1").unwrap()
        );
        assert_eq!(
            server_name(Some("api.internal"), "127.0.0.1:443").unwrap(),
            ServerName::try_from("api.internal").unwrap()
        );
        assert!(server_name(Some("bad name!"), "x:1").is_err());
    }
}
