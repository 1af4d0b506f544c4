//! TLS of `https` listeners: certificates chosen by SNI, client certificates, the lowest version.
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` | [`ListenerTlsRuntime`]: one listener's acceptor and certificate list, built with each runtime |
//! | `certificate.rs` | reading and checking one certificate/key pair ([`CertificateInfo`]) |
//! | `sni.rs` | [`SniResolver`]: the certificate for a ClientHello's SNI |
//! | `server_config.rs` | the rustls `ServerConfig`: versions, client verification, ALPN |
//! | `subject.rs` | the client certificate's subject, sent upstream as `X-Client-Cert-Subject` |
//!
//! Certificates are part of the [`crate::Runtime`]: every reload (SIGHUP, `POST /api/reload`, a
//! cluster revision) reads the files again, even when the configuration text is unchanged, and
//! publishes a new acceptor with the new runtime. A connection takes the acceptor of the runtime
//! current when it is accepted, so handshakes in progress finish with the certificates they
//! started with; a file that cannot be used fails the reload and the running certificates stay.

mod certificate;
mod server_config;
mod sni;
pub mod subject;

pub use certificate::{rfc3339, CertificateInfo};
pub use sni::SniResolver;

use std::sync::Arc;

use pingora::listeners::tls::Acceptor;
use switchyard_config::{ClientAuth, Config, ListenerConfig};
use switchyard_metrics::Metrics;

use crate::error::BuildError;

/// One `https` listener's TLS, as built from its `tls` table and the files it names.
pub struct ListenerTlsRuntime {
    /// The handshake side: the rustls configuration (SNI resolver, client verifier, versions).
    pub acceptor: Acceptor,
    /// `client_auth`.
    pub client_auth: ClientAuth,
    /// Every certificate in configuration order, the default first.
    pub certificates: Vec<CertificateInfo>,
}

impl std::fmt::Debug for ListenerTlsRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerTlsRuntime")
            .field("client_auth", &self.client_auth)
            .field("certificates", &self.certificates)
            .finish()
    }
}

impl ListenerTlsRuntime {
    /// Reads and checks the files of listener `l` (the `index`-th) at Unix time `now`; `None`
    /// for a listener without `tls`.
    pub fn load(
        index: usize,
        l: &ListenerConfig,
        now: i64,
    ) -> Result<Option<ListenerTlsRuntime>, BuildError> {
        let Some(tls) = &l.tls else {
            return Ok(None);
        };
        let at = format!("listeners[{index}].tls");
        let mut loaded = Vec::new();
        for (entry, cert, key) in tls.pairs() {
            let (key_path, needs_name) = if entry.is_empty() {
                (at.clone(), false)
            } else {
                (format!("{at}.{entry}"), true)
            };
            loaded.push(certificate::load(&key_path, cert, key, now, needs_name)?);
        }
        let (resolver, served) = SniResolver::new(
            loaded
                .iter()
                .map(|c| (Arc::clone(&c.key), c.info.names.as_slice()))
                .collect(),
        );
        let mut certificates = Vec::with_capacity(loaded.len());
        for (c, served_names) in loaded.into_iter().zip(served) {
            let mut info = c.info;
            if !info.default && served_names.is_empty() {
                log::warn!(
                    "listener {}: {} ({}) is never chosen: each of its names belongs to an \
                     earlier certificate",
                    l.name,
                    info.key_path,
                    info.cert
                );
            }
            info.served_names = served_names;
            certificates.push(info);
        }
        let config = server_config::build(
            &at,
            resolver,
            tls.client_auth,
            tls.client_ca.as_deref(),
            tls.min_version,
        )?;
        Ok(Some(ListenerTlsRuntime {
            acceptor: Acceptor::from_server_config(Arc::new(config)),
            client_auth: tls.client_auth,
            certificates,
        }))
    }

    /// True when client certificates are asked for (`optional` or `required`).
    #[inline]
    pub fn verifies_clients(&self) -> bool {
        self.client_auth != ClientAuth::Off
    }

    /// The `(name, expiry)` series of `switchyard_tls_certificate_expiry_seconds` for this
    /// listener: one per name a certificate is chosen for, and `(default)` for the default
    /// certificate (whatever names it has).
    pub fn expiry_series(&self) -> impl Iterator<Item = (&str, i64)> {
        self.certificates.iter().flat_map(|c| {
            let default = c.default.then_some((DEFAULT_SERIES, c.not_after_unix));
            default.into_iter().chain(
                c.served_names
                    .iter()
                    .map(move |n| (n.as_str(), c.not_after_unix)),
            )
        })
    }
}

/// The `name` label of the default certificate's expiry series (not a DNS name, so it cannot
/// clash with one).
pub const DEFAULT_SERIES: &str = "(default)";

/// Loads the TLS of every listener of `cfg`, in order (`None` for plain listeners).
pub fn load_all(cfg: &Config) -> Result<Vec<Option<Arc<ListenerTlsRuntime>>>, BuildError> {
    let now = now_unix();
    cfg.listeners
        .iter()
        .enumerate()
        .map(|(i, l)| Ok(ListenerTlsRuntime::load(i, l, now)?.map(Arc::new)))
        .collect()
}

/// Sets `switchyard_tls_certificate_expiry_seconds` to the certificates of `listeners` (name and
/// TLS of each), removing the series of `previous` that no longer exist.
pub fn publish_expiry<'a>(
    metrics: &Metrics,
    listeners: impl Iterator<Item = (&'a str, Option<&'a ListenerTlsRuntime>)> + Clone,
    previous: impl Iterator<Item = (&'a str, Option<&'a ListenerTlsRuntime>)>,
) {
    let gauge = &metrics.tls_certificate_expiry_seconds;
    for (listener, tls) in previous {
        for (name, _) in tls.into_iter().flat_map(|t| t.expiry_series()) {
            let kept = listeners.clone().any(|(l, t)| {
                l == listener && t.is_some_and(|t| t.expiry_series().any(|(n, _)| n == name))
            });
            if !kept {
                let _ = gauge.remove_label_values(&[listener, name]);
            }
        }
    }
    for (listener, tls) in listeners {
        for (name, expiry) in tls.into_iter().flat_map(|t| t.expiry_series()) {
            gauge.with_label_values(&[listener, name]).set(expiry);
        }
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
