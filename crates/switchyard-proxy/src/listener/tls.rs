//! Certificates of `https` listeners, loaded and checked when the configuration is built (Pingora
//! would otherwise panic at start-up on a bad file).

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::error::BuildError;

/// Serves one certificate chain for every connection.
#[derive(Debug)]
pub struct FixedCert(Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

/// Loads a PEM certificate chain (leaf first) and private key.
pub fn load(cert_path: &str, key_path: &str) -> Result<FixedCert, BuildError> {
    let certs = crate::pem::certificates(cert_path)?;
    let key = crate::pem::private_key(key_path)?;
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| BuildError::BadFile {
            path: key_path.to_string(),
            reason: format!("unsupported private key: {e}"),
        })?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match().map_err(|e| BuildError::BadFile {
        path: format!("{cert_path} and {key_path}"),
        reason: format!("certificate and key do not match: {e}"),
    })?;
    Ok(FixedCert(Arc::new(ck)))
}
