//! `tls` of an `https` listener: the default certificate, more certificates chosen by SNI,
//! client certificates and the lowest TLS version.

use serde::{Deserialize, Serialize};

/// `tls` of an `https` listener.
///
/// ```
/// let cfg = switchyard_config::parse_str(r#"
/// [[listeners]]
/// name = "web"
/// protocol = "https"
/// listen = "0.0.0.0:8443"
/// tls = { cert = "default.pem", key = "default.key",
///         certificates = [ { cert = "b.pem", key = "b.key" } ],
///         client_ca = "clients.pem", client_auth = "optional", min_version = "1.3" }
/// "#).unwrap();
/// let tls = cfg.listeners[0].tls.as_ref().unwrap();
/// assert_eq!(tls.certificates[0].cert, "b.pem");
/// assert_eq!(tls.client_auth, switchyard_config::ClientAuth::Optional);
/// assert_eq!(tls.min_version, switchyard_config::TlsVersion::Tls13);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// `cert`: PEM certificate chain file (leaf first), served when no SNI name matches.
    pub cert: String,
    /// `key`: PEM private key file of `cert`.
    pub key: String,
    /// `certificates`: more certificate/key pairs, chosen by SNI from each certificate's SAN
    /// DNS names (wildcards included). Default empty.
    #[serde(default)]
    pub certificates: Vec<CertKeyPair>,
    /// `client_ca`: PEM file of the CAs client certificates must chain to; needed by
    /// `client_auth = "optional" | "required"`.
    #[serde(default)]
    pub client_ca: Option<String>,
    /// `client_auth`: `off` | `optional` | `required`. Default `off`.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// `min_version`: `"1.2"` | `"1.3"`. Default `"1.2"`.
    #[serde(default)]
    pub min_version: TlsVersion,
}

impl ListenerTls {
    /// Every certificate/key pair in order: `cert`/`key` first, then `certificates`, each with
    /// its key path relative to the listener's `tls` table (`""` for the default pair,
    /// `certificates[1]` for the second entry).
    pub fn pairs(&self) -> impl Iterator<Item = (String, &str, &str)> {
        std::iter::once((String::new(), self.cert.as_str(), self.key.as_str())).chain(
            self.certificates.iter().enumerate().map(|(i, c)| {
                (
                    format!("certificates[{i}]"),
                    c.cert.as_str(),
                    c.key.as_str(),
                )
            }),
        )
    }
}

/// One entry of `tls.certificates`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertKeyPair {
    /// `cert`: PEM certificate chain file (leaf first).
    pub cert: String,
    /// `key`: PEM private key file.
    pub key: String,
}

/// `tls.client_auth`: whether clients present certificates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// No certificate is asked for.
    #[default]
    Off,
    /// A certificate is asked for; one that does not verify fails the handshake, none is served.
    Optional,
    /// A certificate that verifies against `client_ca` is needed to complete the handshake.
    Required,
}

/// `tls.min_version`: the lowest TLS version a client may negotiate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TlsVersion {
    /// TLS 1.2 (and 1.3).
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[serde(rename = "1.3")]
    Tls13,
}
