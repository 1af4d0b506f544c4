//! [`TlsTerminate`]: the TLS handshake of an `https` listener's connections, done by Switchyard
//! rather than by Pingora's TLS listener, so that
//!
//! * the certificates, client verification and versions are those of the runtime current when the
//!   connection is accepted ([`crate::listener_tls`]: a reload swaps them, no upgrade needed), and
//!   a handshake in progress keeps the ones it started with;
//! * the handshake is bounded by `[limits] header_timeout_ms` (Pingora's own limit is a fixed
//!   60 s): a client that stays silent or stops half-way through its ClientHello is closed at the
//!   deadline and counted in `switchyard_rejected_requests_total{reason="handshake_timeout"}`
//!   (a failed handshake: `reason="handshake_failed"`);
//! * with client certificates, the verified subject is recorded for `X-Client-Cert-Subject`.
//!
//! The HTTP app behind it sees a Pingora TLS stream, exactly as from Pingora's TLS listener:
//! ALPN (`h2` or `http/1.1`) and the TLS digest are Pingora's.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::tls::server::{handshake, handshake_with_callback};
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;

use crate::listener_tls::subject::RecordSubject;
use crate::listener_tls::ListenerTlsRuntime;
use crate::shared::Shared;

/// A [`ServerApp`] wrapper that terminates TLS on each connection, then hands the TLS stream to
/// `inner` for as many keep-alive rounds as it wants.
#[derive(Debug)]
pub struct TlsTerminate<A> {
    inner: Arc<A>,
    shared: Arc<Shared>,
    listener: String,
    /// The listener's position in the runtimes (listeners keep their order across reloads).
    index: Option<usize>,
    deadline: Duration,
}

impl<A> TlsTerminate<A> {
    /// Wraps `inner` for listener `listener`, whose TLS comes from `shared`'s current runtime;
    /// each handshake must end within `deadline`.
    pub fn new(inner: A, shared: Arc<Shared>, listener: &str, deadline: Duration) -> Self {
        let index = shared.snapshot().listener_index(listener);
        TlsTerminate {
            inner: Arc::new(inner),
            shared,
            listener: listener.to_string(),
            index,
            deadline,
        }
    }

    /// This listener's TLS in the current runtime.
    fn current(&self) -> Option<Arc<ListenerTlsRuntime>> {
        let rt = self.shared.snapshot();
        let l = match self.index.and_then(|i| rt.listeners.get(i)) {
            Some(l) if l.cfg.name == self.listener => l,
            _ => rt
                .listener_index(&self.listener)
                .map(|i| &rt.listeners[i])?,
        };
        l.tls.clone()
    }

    fn count(&self, reason: &str) {
        super::count(self.shared.metrics(), &self.listener, reason);
    }
}

impl<A> TlsTerminate<A> {
    /// The TLS handshake of `stream` under the deadline: the TLS stream, or `None` (logged and
    /// counted) when it fails or times out.
    async fn accept(&self, stream: Stream) -> Option<Stream> {
        let Some(tls) = self.current() else {
            log::error!("listener {}: no TLS settings; closing", self.listener);
            return None;
        };
        let l4 = match stream.into_any().downcast::<L4Stream>() {
            Ok(l4) => *l4,
            Err(_) => {
                log::error!(
                    "listener {}: TLS on a non-TCP stream; closing",
                    self.listener
                );
                return None;
            }
        };
        let accepted = if tls.verifies_clients() {
            tokio::time::timeout(
                self.deadline,
                handshake_with_callback(&tls.acceptor, l4, &RecordSubject),
            )
            .await
        } else {
            tokio::time::timeout(self.deadline, handshake(&tls.acceptor, l4)).await
        };
        drop(tls);
        match accepted {
            Ok(Ok(s)) => Some(Box::new(s)),
            Ok(Err(e)) => {
                log::debug!("listener {}: TLS handshake failed: {e}", self.listener);
                self.count("handshake_failed");
                None
            }
            Err(_) => {
                log::debug!(
                    "listener {}: TLS handshake not done within {} ms; closing",
                    self.listener,
                    self.deadline.as_millis()
                );
                self.count("handshake_timeout");
                None
            }
        }
    }
}

#[async_trait]
impl<A> ServerApp for TlsTerminate<A>
where
    A: ServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // The handshake is boxed for the few round trips it lasts: its state (rustls', the
        // timer's, and the TLS stream by value until it is boxed, several KiB) would otherwise
        // size this future, which lives as long as the connection.
        let tls_stream = Box::pin(self.accept(stream)).await?;
        super::serve_all_rounds(&self.inner, tls_stream, shutdown).await;
        None
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}
