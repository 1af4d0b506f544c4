//! The rustls server configuration of an `https` listener: the SNI resolver, client
//! certificates (`client_auth` with `client_ca`), the lowest version and ALPN (`h2`, then
//! `http/1.1`).

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use switchyard_config::{ClientAuth, TlsVersion};

use super::sni::SniResolver;
use crate::error::BuildError;

/// The server configuration of one listener whose `tls` table is at `at`.
pub fn build(
    at: &str,
    resolver: SniResolver,
    client_auth: ClientAuth,
    client_ca: Option<&str>,
    min_version: TlsVersion,
) -> Result<ServerConfig, BuildError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&'static rustls::SupportedProtocolVersion] = match min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .map_err(|e| BuildError::Tls(format!("{at}: protocol versions: {e}")))?;
    let builder = match (client_auth, client_ca) {
        (ClientAuth::Off, _) => builder.with_no_client_auth(),
        (_, None) => {
            // Validation requires `client_ca` with client auth; refuse rather than accept anyone.
            return Err(BuildError::Invalid {
                key: format!("{at}.client_ca"),
                reason: "client_auth needs client_ca".into(),
            });
        }
        (mode, Some(ca)) => {
            let ca_key = format!("{at}.client_ca");
            let mut roots = RootCertStore::empty();
            for der in crate::pem::certificates(ca).map_err(|e| e.within(&ca_key))? {
                roots.add(der).map_err(|e| BuildError::Invalid {
                    key: ca_key.clone(),
                    reason: format!("{ca}: not a usable CA certificate: {e}"),
                })?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
            let verifier = if mode == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier.build().map_err(|e| BuildError::Invalid {
                key: ca_key.clone(),
                reason: format!("{ca}: {e}"),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
