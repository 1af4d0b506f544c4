//! The rustls client configuration of HTTPS checks, built once per upstream from its `tls` table.

use std::fs::File;
use std::io::BufReader;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use switchyard_config::UpstreamTls;

use crate::HealthError;

/// Builds the client configuration: ring provider (installed explicitly, not the process
/// default), web PKI roots plus `ca`, or no verification with `verify = false`, and a client
/// certificate for two-way TLS when `client_cert` and `client_key` are set.
pub(crate) fn client_config(tls: Option<&UpstreamTls>) -> Result<Arc<ClientConfig>, HealthError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| HealthError::Tls(format!("protocol versions: {e}")))?;
    let verify = tls.is_none_or(|t| t.verify);
    let builder = if verify {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(ca) = tls.and_then(|t| t.ca.as_deref()) {
            let certs = read_certs(ca)?;
            if certs.is_empty() {
                return Err(HealthError::Pem {
                    path: ca.to_string(),
                    message: "no certificate found".to_string(),
                });
            }
            for cert in certs {
                roots.add(cert).map_err(|e| HealthError::Pem {
                    path: ca.to_string(),
                    message: format!("bad CA certificate: {e}"),
                })?;
            }
        }
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            }))
    };
    let cert = tls.and_then(|t| t.client_cert.as_deref());
    let key = tls.and_then(|t| t.client_key.as_deref());
    let mut config = match (cert, key) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert)?;
            if chain.is_empty() {
                return Err(HealthError::Pem {
                    path: cert.to_string(),
                    message: "no certificate found".to_string(),
                });
            }
            let key = read_key(key)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| HealthError::Tls(format!("client certificate: {e}")))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(HealthError::Tls(
                "client_cert and client_key must be set together".to_string(),
            ))
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn open(path: &str) -> Result<BufReader<File>, HealthError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|e| HealthError::Pem {
            path: path.to_string(),
            message: e.to_string(),
        })
}

fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, HealthError> {
    let mut reader = open(path)?;
    rustls_pemfile::certs(&mut reader)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| HealthError::Pem {
            path: path.to_string(),
            message: e.to_string(),
        })
}

fn read_key(path: &str) -> Result<PrivateKeyDer<'static>, HealthError> {
    let mut reader = open(path)?;
    match rustls_pemfile::private_key(&mut reader) {
        Ok(Some(key)) => Ok(key),
        Ok(None) => Err(HealthError::Pem {
            path: path.to_string(),
            message: "no private key found".to_string(),
        }),
        Err(e) => Err(HealthError::Pem {
            path: path.to_string(),
            message: e.to_string(),
        }),
    }
}

/// `verify = false`: accepts any server certificate (expired, self-signed, for another name).
///
/// The risk: anyone who can intercept the connection can impersonate the server, so a health
/// check then proves only that *something* answers. Handshake signatures are still checked, which
/// proves the peer holds the key of the certificate it sent, not that the certificate is trusted.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

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

    #[test]
    fn default_config_builds() {
        assert!(client_config(None).is_ok());
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
        assert!(matches!(
            client_config(Some(&tls)),
            Err(HealthError::Tls(_))
        ));
    }

    #[test]
    fn missing_ca_file_names_the_path() {
        let tls = UpstreamTls {
            verify: true,
            sni: None,
            ca: Some("/nonexistent/ca.pem".into()),
            client_cert: None,
            client_key: None,
        };
        match client_config(Some(&tls)) {
            Err(HealthError::Pem { path, .. }) => assert_eq!(path, "/nonexistent/ca.pem"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
