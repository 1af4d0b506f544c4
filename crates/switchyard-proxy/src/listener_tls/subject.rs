//! Client certificates on `https` listeners: the verified certificate's subject as an RFC 4514
//! string, recorded once per connection when the handshake completes, and sent upstream as
//! `X-Client-Cert-Subject` on every request of that connection.
//!
//! A client-supplied `X-Client-Cert-Subject` is removed on every listener, so an origin can trust
//! the header whenever it is present.

use std::fmt::Write as _;
use std::sync::Arc;

use async_trait::async_trait;
use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use pingora::protocols::Digest;
use x509_parser::der_parser::asn1_rs::ToDer;
use x509_parser::x509::X509Name;

/// The request header that carries the verified client certificate's subject upstream.
pub const SUBJECT_HEADER: HeaderName = HeaderName::from_static("x-client-cert-subject");

/// The subject of a connection's verified client certificate, ready to send as a header value.
#[derive(Debug, Clone)]
pub struct ClientSubject(pub HeaderValue);

/// Records the subject of the client certificate of each completed handshake (rustls has
/// verified it against `client_ca` by then) in the connection's TLS digest.
#[derive(Debug, Clone, Copy)]
pub struct RecordSubject;

#[async_trait]
impl TlsAccept for RecordSubject {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        let der = tls.peer_certificate_der()?;
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let value = HeaderValue::from_str(&rfc4514(cert.subject())).ok()?;
        Some(Arc::new(ClientSubject(value)))
    }
}

/// Removes a client-sent `X-Client-Cert-Subject` from `req`, then, when the listener verifies
/// client certificates (`client_auth`) and the connection presented one, sets it to that
/// certificate's subject.
pub fn forward_subject(
    req: &mut RequestHeader,
    digest: Option<&Digest>,
    client_auth: bool,
) -> pingora::Result<()> {
    if req.headers.contains_key(&SUBJECT_HEADER) {
        req.remove_header(&SUBJECT_HEADER);
    }
    if !client_auth {
        return Ok(());
    }
    let subject = digest
        .and_then(|d| d.ssl_digest.as_ref())
        .and_then(|s| s.extension.get::<ClientSubject>());
    if let Some(ClientSubject(value)) = subject {
        req.insert_header(SUBJECT_HEADER, value.clone())?;
    }
    Ok(())
}

/// `name` as an RFC 4514 string: relative distinguished names from the last to the first,
/// separated by `,`; attributes of one RDN joined by `+`; the short names of RFC 4514 §3 (`CN`,
/// `O`, `OU`, `C`, `L`, `ST`, `STREET`, `DC`, `UID`), other types as dotted OIDs with the value's
/// DER in hex (`1.2.840.113549.1.9.1=#160d...`). Values are escaped as §2.4 asks, and control
/// and non-ASCII bytes are written as `\XX` hex pairs (as OpenSSL's RFC 2253 output does), so
/// the string is always a valid header value.
pub fn rfc4514(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    for (i, rdn) in name
        .iter_rdn()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .enumerate()
    {
        if i > 0 {
            out.push(',');
        }
        for (j, atv) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let oid = atv.attr_type().to_id_string();
            match (short_name(&oid), atv.as_str()) {
                (Some(short), Ok(value)) => {
                    out.push_str(short);
                    out.push('=');
                    escape_value(value, &mut out);
                }
                _ => {
                    out.push_str(&oid);
                    out.push_str("=#");
                    let der = atv.attr_value().to_der_vec().unwrap_or_default();
                    out.push_str(&hex::encode(der));
                }
            }
        }
    }
    out
}

/// The RFC 4514 §3 short name of the attribute type `oid` (dotted), if it has one.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.6" => "C",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// Appends `value` escaped as RFC 4514 §2.4 asks (`"+,;<>\` with a backslash, a leading `#` or
/// space and a trailing space too), with control and non-ASCII bytes as `\XX`.
fn escape_value(value: &str, out: &mut String) {
    let bytes = value.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let edge_space = b == b' ' && (i == 0 || i + 1 == bytes.len());
        match b {
            b'"' | b'+' | b',' | b';' | b'<' | b'>' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            b'#' if i == 0 => out.push_str("\\#"),
            _ if edge_space => out.push_str("\\ "),
            0x21..=0x7e | b' ' => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\{b:02X}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(v: &str) -> String {
        let mut s = String::new();
        escape_value(v, &mut s);
        s
    }

    #[test]
    fn values_are_escaped_as_rfc_4514_asks() {
        assert_eq!(escaped("Acme, Inc."), "Acme\\, Inc.");
        assert_eq!(escaped("a+b;c<d>e\"f\\g"), "a\\+b\\;c\\<d\\>e\\\"f\\\\g");
        assert_eq!(escaped("#1 "), "\\#1\\ ");
        assert_eq!(escaped(" x#"), "\\ x#");
        assert_eq!(escaped("Müller\n"), "M\\C3\\BCller\\0A");
        assert!(HeaderValue::from_str(&escaped("a\0b\u{7f}ü")).is_ok());
    }

    #[test]
    fn a_subject_reads_from_the_last_rdn_to_the_first() {
        let mut params = rcgen::CertificateParams::new(vec!["a.test".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CountryName, "DE");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Acme, Inc.");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "client 1");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.der()).unwrap();
        assert_eq!(rfc4514(parsed.subject()), "CN=client 1,O=Acme\\, Inc.,C=DE");
    }
}
