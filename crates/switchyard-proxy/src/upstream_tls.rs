//! TLS to upstream servers (`scheme = "https"` with the upstream's `tls` table): verification on or
//! off, SNI, extra trusted roots and a client certificate for two-way TLS. Files are read and
//! checked when the configuration is built, so a bad file fails the start-up or the reload, never a
//! request.

use std::sync::{Arc, OnceLock};

use pingora::utils::tls::{parse_x509, CertKey, WrappedX509};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use switchyard_config::UpstreamTls;

use crate::error::BuildError;

/// Ready-to-use TLS settings of one upstream.
#[derive(Clone)]
pub struct UpstreamTlsRuntime {
    /// `verify`.
    pub verify: bool,
    /// `sni`; `None`: the server's address (IP or name) is used, so verification always has a name.
    pub sni: Option<String>,
    /// Extra trusted roots (`ca`).
    pub ca: Option<Arc<[WrappedX509]>>,
    /// Client certificate and key for two-way TLS.
    pub client: Option<Arc<CertKey>>,
    /// The rustls configuration of HTTPS health checks, built from the same files and trust
    /// rules as traffic (see [`UpstreamTlsRuntime::load`]).
    pub checks: Arc<ClientConfig>,
    /// The same for gRPC health checks, offering ALPN `h2` only.
    pub checks_h2: Arc<ClientConfig>,
}

impl std::fmt::Debug for UpstreamTlsRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTlsRuntime")
            .field("verify", &self.verify)
            .field("sni", &self.sni)
            .field("ca", &self.ca.as_ref().map(|c| c.len()))
            .field("client_cert", &self.client.is_some())
            .finish()
    }
}

/// The certificates of the PEM file at `path` as DER, each checked to parse as X.509 (Pingora
/// parses them again and panics on bad DER).
fn read_certs(path: &str) -> Result<Vec<Vec<u8>>, BuildError> {
    crate::pem::certificates(path)?
        .into_iter()
        .map(|der| {
            x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| BuildError::BadFile {
                path: path.to_string(),
                reason: format!("bad certificate: {e}"),
            })?;
            Ok(der.as_ref().to_vec())
        })
        .collect()
}

fn read_key(path: &str) -> Result<Vec<u8>, BuildError> {
    Ok(crate::pem::private_key(path)?.secret_der().to_vec())
}

impl UpstreamTlsRuntime {
    /// Loads the files named by `tls` (absent table: verification on, the platform's roots), once
    /// for both traffic (Pingora's connector) and health checks, with the trust rules of Pingora
    /// 0.9.1's rustls connector: `ca` *replaces* the platform's roots (which include
    /// `SSL_CERT_FILE` / `SSL_CERT_DIR`), `verify = false` accepts any certificate, and the
    /// client certificate is presented for two-way TLS. Checks therefore never trust a server
    /// that traffic would refuse, or the other way round.
    pub fn load(tls: Option<&UpstreamTls>) -> Result<Self, BuildError> {
        let verify = tls.is_none_or(|t| t.verify);
        let ca_der = match tls.and_then(|t| t.ca.as_deref()) {
            Some(path) => Some(read_certs(path)?),
            None => None,
        };
        let client_der = match tls.map(|t| (&t.client_cert, &t.client_key)) {
            Some((Some(cert), Some(key))) => Some((read_certs(cert)?, read_key(key)?)),
            Some((None, None)) | None => None,
            Some(_) => {
                return Err(BuildError::Invalid {
                    key: "tls".to_string(),
                    reason: "client_cert and client_key go together".to_string(),
                })
            }
        };
        let checks = check_config(verify, ca_der.as_deref(), client_der.as_ref())?;
        let mut h2 = (*checks).clone();
        h2.alpn_protocols = vec![b"h2".to_vec()];
        let checks_h2 = Arc::new(h2);
        Ok(UpstreamTlsRuntime {
            verify,
            sni: tls.and_then(|t| t.sni.clone()).filter(|s| !s.is_empty()),
            ca: ca_der.map(|certs| {
                certs
                    .into_iter()
                    .map(|der| WrappedX509::new(der, parse_x509))
                    .collect::<Vec<_>>()
                    .into()
            }),
            client: client_der.map(|(chain, key)| Arc::new(CertKey::new(chain, key))),
            checks,
            checks_h2,
        })
    }

    /// Applies the settings to a peer for a server whose configured host is `host`.
    pub fn apply(&self, peer: &mut pingora::prelude::HttpPeer, host: &str) {
        peer.sni = self.sni.clone().unwrap_or_else(|| host.to_string());
        peer.options.verify_cert = self.verify;
        peer.options.verify_hostname = self.verify;
        peer.options.ca = self.ca.clone();
        peer.client_cert_key = self.client.clone();
    }
}

/// The platform's trusted roots, read once per process, as Pingora's connector reads them
/// (`rustls-native-certs`, honouring `SSL_CERT_FILE` and `SSL_CERT_DIR`).
fn platform_roots() -> Result<Arc<RootCertStore>, BuildError> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let certs = rustls_native_certs::load_native_certs()
                .map_err(|e| format!("cannot load the platform's trusted roots: {e}"))?;
            let mut roots = RootCertStore::empty();
            // Pingora fails on a bad platform root; a check skips it (traffic decides).
            let (_added, _ignored) = roots.add_parsable_certificates(certs);
            Ok(Arc::new(roots))
        })
        .clone()
        .map_err(BuildError::Tls)
}

/// The health checks' rustls configuration (see [`UpstreamTlsRuntime::load`]); ALPN HTTP/1.1.
fn check_config(
    verify: bool,
    ca: Option<&[Vec<u8>]>,
    client: Option<&(Vec<Vec<u8>>, Vec<u8>)>,
) -> Result<Arc<ClientConfig>, BuildError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| BuildError::Tls(format!("protocol versions: {e}")))?;
    let builder = if !verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(crate::tls_any_cert::AcceptAnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            }))
    } else if let Some(ca) = ca {
        let mut roots = RootCertStore::empty();
        for der in ca {
            roots
                .add(CertificateDer::from(der.clone()))
                .map_err(|e| BuildError::Tls(format!("ca: bad CA certificate: {e}")))?;
        }
        builder.with_root_certificates(roots)
    } else {
        builder.with_root_certificates(platform_roots()?)
    };
    let mut config = match client {
        Some((chain, key)) => {
            let chain = chain.iter().cloned().map(CertificateDer::from).collect();
            let key = PrivateKeyDer::try_from(key.clone())
                .map_err(|e| BuildError::Tls(format!("client_key: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| BuildError::Tls(format!("client_cert: {e}")))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_table_trusts_the_platform_roots() {
        let tls = UpstreamTlsRuntime::load(None).unwrap();
        assert!(tls.verify && tls.ca.is_none() && tls.client.is_none());
        assert_eq!(tls.checks.alpn_protocols, [b"http/1.1".to_vec()]);
        assert_eq!(tls.checks_h2.alpn_protocols, [b"h2".to_vec()]);
    }

    #[test]
    fn half_a_client_identity_is_an_error() {
        let tls = UpstreamTls {
            verify: true,
            sni: None,
            ca: None,
            client_cert: Some("/nonexistent.pem".into()),
            client_key: None,
        };
        assert!(UpstreamTlsRuntime::load(Some(&tls)).is_err());
    }

    #[test]
    fn a_missing_ca_file_names_the_path() {
        let tls = UpstreamTls {
            verify: true,
            sni: None,
            ca: Some("/nonexistent/ca.pem".into()),
            client_cert: None,
            client_key: None,
        };
        let e = UpstreamTlsRuntime::load(Some(&tls)).unwrap_err();
        assert!(
            matches!(&e, BuildError::ReadFile { path, .. } if path == "/nonexistent/ca.pem"),
            "{e}"
        );
    }
}
