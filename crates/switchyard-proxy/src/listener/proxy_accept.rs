//! Accepting the PROXY protocol from a load balancer in front of Switchyard
//! (`accept_proxy_protocol = true`).
//!
//! The header is read from the accepted connection before anything else (before HTTP, and
//! before the TLS handshake on `https` listeners). The carried client address then *becomes*
//! the connection's peer address: the stream's Pingora [`SocketDigest`] is replaced by one whose
//! `peer_addr` / `local_addr` are the carried source and destination, so every later reader of
//! `session.client_addr()` (ACLs, `X-Forwarded-For`, `X-Real-IP`, `source_ip_hash`, the PROXY
//! header sent upstream) sees the original client without knowing about the PROXY protocol.
//!
//! * Plain listeners: [`AcceptProxy`] wraps the listener's [`ServerApp`] (e.g. Pingora's
//!   `HttpProxy`).
//! * TLS listeners: [`AcceptProxy`] wraps the listener's TLS termination
//!   ([`super::tls::TlsTerminate`]), so the header is read before the handshake. For embedders
//!   using Pingora's own TLS listener, [`ProxyHeaderAcceptor`] implements Pingora's
//!   [`PreTlsProcess`] (install it with `Listeners::set_pre_tls_callback`).
//!
//! A missing, malformed, oversized or late header closes the connection and counts in
//! `switchyard_proxy_protocol_errors_total{listener}`.
//!
//! With `accept_proxy_protocol_from`, only peers in those blocks (the load balancers) are expected
//! to send the header; any other peer is served as a direct client with its own address, and a
//! PROXY header it sends is not believed (it reaches the HTTP parser as a malformed request, or a
//! `tcp` backend as data) — HAProxy's `tcp-request connection expect-proxy layer4 if { src … }`.

use std::net::SocketAddr;
use std::os::unix::io::AsRawFd;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::listeners::PreTlsProcess;
use pingora::protocols::l4::socket::SocketAddr as PingoraSocketAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, SocketDigest, Stream};
use pingora::server::ShutdownWatch;
use pingora::{Error, ErrorType, Result as PResult};
use switchyard_config::ListenerConfig;
use switchyard_metrics::Metrics;

use crate::proxy_protocol::{read_header, Carried, HeaderError};

/// Reads the PROXY header of one connection and records its addresses in the stream's digest.
#[derive(Debug, Clone)]
pub struct ProxyHeaderAcceptor {
    listener: ListenerConfig,
    metrics: &'static Metrics,
}

impl ProxyHeaderAcceptor {
    /// An acceptor for `listener` (its name is the metric label; its
    /// `accept_proxy_protocol_from` says which peers must send a header), counting errors in
    /// `metrics`.
    pub fn new(listener: &ListenerConfig, metrics: &'static Metrics) -> Self {
        ProxyHeaderAcceptor {
            listener: listener.clone(),
            metrics,
        }
    }

    /// True if the peer of `stream` must send a PROXY header (see
    /// [`ListenerConfig::expects_proxy_header_from`]).
    pub fn expects_header(&self, stream: &L4Stream) -> bool {
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        self.listener.expects_proxy_header_from(peer)
    }

    /// Counts one connection closed for a bad or missing header.
    pub fn count_error(&self, err: &HeaderError) {
        log::info!("listener {}: closing connection: {err}", self.listener.name);
        self.metrics
            .proxy_protocol_errors_total
            .with_label_values(&[&self.listener.name])
            .inc();
    }

    /// Reads the header from `stream` and makes the carried addresses the stream's peer and local
    /// addresses. Errors are counted. `None`: the peer is not one that sends a header (see
    /// [`Self::expects_header`]), nothing was read.
    pub async fn accept(&self, stream: &mut L4Stream) -> Result<Option<Carried>, HeaderError> {
        if !self.expects_header(stream) {
            return Ok(None);
        }
        match read_header(stream).await {
            Ok(carried) => {
                if let Some((src, dst)) = carried.addrs {
                    set_addrs(stream, src, dst);
                }
                Ok(Some(carried))
            }
            Err(e) => {
                self.count_error(&e);
                Err(e)
            }
        }
    }
}

/// Replaces the socket digest of `stream` with one whose peer address is `src` and whose local
/// address is `dst` (the same socket otherwise: TCP info and socket options still work).
pub fn set_addrs(stream: &mut L4Stream, src: SocketAddr, dst: SocketAddr) {
    let digest = SocketDigest::from_raw_fd(stream.as_raw_fd());
    // Both cells are new and empty: `set` cannot fail.
    let _ = digest.peer_addr.set(Some(PingoraSocketAddr::Inet(src)));
    let _ = digest.local_addr.set(Some(PingoraSocketAddr::Inet(dst)));
    stream.set_socket_digest(digest);
}

#[async_trait]
impl PreTlsProcess for ProxyHeaderAcceptor {
    async fn process(&self, stream: &mut L4Stream) -> PResult<()> {
        self.accept(stream)
            .await
            .map(|_| ())
            .map_err(|e| Error::explain(ErrorType::HandshakeError, e.to_string()))
    }
}

/// A [`ServerApp`] that reads the PROXY header, then hands the connection to `inner` (for as
/// many keep-alive rounds as `inner` wants: the header comes once per connection).
#[derive(Debug)]
pub struct AcceptProxy<A> {
    inner: Arc<A>,
    acceptor: ProxyHeaderAcceptor,
}

impl<A> AcceptProxy<A> {
    /// Wraps `inner` for `listener`, counting header errors in `metrics`.
    pub fn new(inner: A, listener: &ListenerConfig, metrics: &'static Metrics) -> Self {
        AcceptProxy {
            inner: Arc::new(inner),
            acceptor: ProxyHeaderAcceptor::new(listener, metrics),
        }
    }
}

#[async_trait]
impl<A> ServerApp for AcceptProxy<A>
where
    A: ServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if !stream.as_any().is::<L4Stream>() {
            log::error!(
                "listener {}: accept_proxy_protocol on a non-TCP stream; closing",
                self.acceptor.listener.name
            );
            return None;
        }
        let mut l4 = match stream.into_any().downcast::<L4Stream>() {
            Ok(l4) => l4,
            Err(_) => return None,
        };
        if self.acceptor.accept(&mut l4).await.is_err() {
            return None;
        }
        super::serve_all_rounds(&self.inner, l4, shutdown).await;
        None
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}
