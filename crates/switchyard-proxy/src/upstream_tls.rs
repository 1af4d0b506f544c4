//! TLS to upstream servers (`scheme = "https"` with the upstream's `tls` table): verification on or
//! off, SNI, extra trusted roots and a client certificate for two-way TLS. Files are read and
//! checked when the configuration is built, so a bad file fails the start-up or the reload, never a
//! request.

use std::sync::Arc;

use pingora::utils::tls::{parse_x509, CertKey, WrappedX509};
use switchyard_config::UpstreamTls;

use crate::runtime::BuildError;

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

fn read_certs(path: &str) -> Result<Vec<Vec<u8>>, BuildError> {
    let pem = std::fs::read(path).map_err(|e| BuildError(format!("cannot read {path}: {e}")))?;
    let mut certs = Vec::new();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        let der = c.map_err(|e| BuildError(format!("{path}: bad PEM certificate: {e}")))?;
        // Pingora parses these again and panics on bad DER: check first.
        x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| BuildError(format!("{path}: bad certificate: {e}")))?;
        certs.push(der.as_ref().to_vec());
    }
    if certs.is_empty() {
        return Err(BuildError(format!("{path}: no PEM certificate found")));
    }
    Ok(certs)
}

fn read_key(path: &str) -> Result<Vec<u8>, BuildError> {
    let pem = std::fs::read(path).map_err(|e| BuildError(format!("cannot read {path}: {e}")))?;
    match rustls_pemfile::private_key(&mut pem.as_slice()) {
        Ok(Some(k)) => Ok(k.secret_der().to_vec()),
        Ok(None) => Err(BuildError(format!("{path}: no PEM private key found"))),
        Err(e) => Err(BuildError(format!("{path}: bad PEM private key: {e}"))),
    }
}

impl UpstreamTlsRuntime {
    /// Loads the files named by `tls` (absent table: verification on, web roots).
    pub fn load(tls: Option<&UpstreamTls>) -> Result<Self, BuildError> {
        let Some(tls) = tls else {
            return Ok(UpstreamTlsRuntime {
                verify: true,
                sni: None,
                ca: None,
                client: None,
            });
        };
        let ca = match &tls.ca {
            Some(path) => {
                let certs: Vec<WrappedX509> = read_certs(path)?
                    .into_iter()
                    .map(|der| WrappedX509::new(der, parse_x509))
                    .collect();
                Some(Arc::from(certs))
            }
            None => None,
        };
        let client = match (&tls.client_cert, &tls.client_key) {
            (Some(cert), Some(key)) => {
                Some(Arc::new(CertKey::new(read_certs(cert)?, read_key(key)?)))
            }
            (None, None) => None,
            _ => {
                return Err(BuildError(
                    "tls.client_cert and tls.client_key go together".to_string(),
                ))
            }
        };
        Ok(UpstreamTlsRuntime {
            verify: tls.verify,
            sni: tls.sni.clone().filter(|s| !s.is_empty()),
            ca,
            client,
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
