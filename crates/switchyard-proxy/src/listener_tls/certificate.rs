//! One certificate/key pair of an `https` listener, read and checked: the chain parses, the key
//! matches the leaf, the leaf has not expired and (for SNI entries) names at least one DNS name.
//! Every error starts with the key path of the file it is about
//! (`listeners[0].tls.certificates[1].cert: ...`).

use std::sync::Arc;

use rustls::sign::CertifiedKey;
use serde::Serialize;
use x509_parser::extensions::GeneralName;

use crate::error::BuildError;

/// A loaded certificate chain with its key, and what the listener needs to know about its leaf.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    /// The chain and signing key, as rustls serves them.
    pub key: Arc<CertifiedKey>,
    /// What the admin API, the status page and the metrics show.
    pub info: CertificateInfo,
}

/// What an operator sees of one certificate: where it came from, the names it serves and when
/// it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateInfo {
    /// The key path of its table (`listeners[0].tls` for the default pair,
    /// `listeners[0].tls.certificates[1]` for an SNI entry).
    pub key_path: String,
    /// The certificate file.
    pub cert: String,
    /// True for `cert`/`key`, served when no SNI name matches.
    pub default: bool,
    /// The DNS names of its subjectAltName, lower-case (wildcards as `*.example.com`).
    pub names: Vec<String>,
    /// The names SNI selects this certificate for (a name listed by an earlier entry is that
    /// entry's).
    pub served_names: Vec<String>,
    /// The leaf's subject (RFC 4514).
    pub subject: String,
    /// `notAfter` of the leaf, Unix seconds.
    pub not_after_unix: i64,
    /// `notAfter` of the leaf, RFC 3339.
    pub not_after: String,
}

/// Reads the pair at `at` (the key path of its table): `cert_path` (PEM chain, leaf first) and
/// `key_path` (PEM private key), checked at Unix time `now`. `needs_name`: a certificate that is
/// only reachable by SNI must carry at least one usable DNS name.
pub fn load(
    at: &str,
    cert_path: &str,
    key_path: &str,
    now: i64,
    needs_name: bool,
) -> Result<LoadedCert, BuildError> {
    let cert_key = format!("{at}.cert");
    let certs = crate::pem::certificates(cert_path).map_err(|e| e.within(&cert_key))?;
    let key = crate::pem::private_key(key_path).map_err(|e| e.within(format!("{at}.key")))?;
    let invalid = |key: &str, reason: String| BuildError::Invalid {
        key: key.to_string(),
        reason,
    };
    let signing = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| {
        invalid(
            &format!("{at}.key"),
            format!("{key_path}: unsupported private key: {e}"),
        )
    })?;
    let leaf = certs
        .first()
        .ok_or_else(|| invalid(&cert_key, format!("{cert_path}: no certificate")))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| invalid(&cert_key, format!("{cert_path}: bad certificate: {e}")))?;
    let ck = CertifiedKey::new(certs.clone(), signing);
    ck.keys_match().map_err(|e| {
        invalid(
            &format!("{at}.key"),
            format!("{key_path} does not match the certificate in {cert_path}: {e}"),
        )
    })?;
    let not_after_unix = parsed.validity().not_after.timestamp();
    let not_after = rfc3339(not_after_unix);
    if not_after_unix < now {
        return Err(invalid(
            &cert_key,
            format!("{cert_path}: the certificate expired at {not_after}"),
        ));
    }
    let names = dns_names(&parsed);
    if needs_name && names.is_empty() {
        return Err(invalid(
            &cert_key,
            format!(
                "{cert_path}: the certificate has no usable DNS name in its subjectAltName (the \
                 common name is not used), so SNI could never choose it"
            ),
        ));
    }
    Ok(LoadedCert {
        key: Arc::new(ck),
        info: CertificateInfo {
            key_path: at.to_string(),
            cert: cert_path.to_string(),
            default: !needs_name,
            names,
            served_names: Vec::new(),
            subject: super::subject::rfc4514(parsed.subject()),
            not_after_unix,
            not_after,
        },
    })
}

/// The usable DNS names of a certificate's subjectAltName, lower-case, without a trailing dot,
/// in order, once each. A wildcard is usable only as a whole first label (`*.example.com`);
/// names with a `*` elsewhere, IP addresses and other kinds of names are skipped (IP addresses
/// are not sent in SNI).
fn dns_names(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return out;
    };
    for gn in &san.value.general_names {
        let GeneralName::DNSName(raw) = gn else {
            continue;
        };
        if let Some(name) = usable_name(raw) {
            if !out.contains(&name) {
                out.push(name);
            }
        }
    }
    out
}

/// `raw` as a name SNI can select, or `None`.
fn usable_name(raw: &str) -> Option<String> {
    let name = raw.trim_end_matches('.').to_ascii_lowercase();
    let rest = name.strip_prefix("*.").unwrap_or(&name);
    let ok = !rest.is_empty()
        && rest.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    ok.then_some(name)
}

/// Unix seconds as RFC 3339 in UTC (`2027-03-01T12:00:00Z`).
pub fn rfc3339(unix_s: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix_s)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix_s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_names() {
        assert_eq!(
            usable_name("API.Example.com."),
            Some("api.example.com".into())
        );
        assert_eq!(usable_name("*.example.com"), Some("*.example.com".into()));
        assert_eq!(usable_name("f*.example.com"), None);
        assert_eq!(usable_name("*.*.example.com"), None);
        assert_eq!(usable_name("*."), None);
        assert_eq!(usable_name("a..b"), None);
    }

    #[test]
    fn rfc3339_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_800_000_000), "2027-01-15T08:00:00Z");
    }
}
