//! [`ConnLimit`]: at most `max_connections` client connections of a listener at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::{Shutdown, Stream};
use pingora::server::ShutdownWatch;
use switchyard_metrics::Metrics;
use tokio::io::AsyncWriteExt;

use super::{count, serve_all_rounds};

/// The response to a connection over `max_connections`.
pub const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: text/plain; charset=utf-8\r\n\
content-length: 21\r\n\
retry-after: 1\r\n\
connection: close\r\n\r\n\
too many connections\n";

/// Decrements a connection count when dropped.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A [`ServerApp`] wrapper that serves at most `max` connections at once (0 = unlimited) and
/// answers the others `503` with `Connection: close` (HTTP) or closes them at once (TCP).
#[derive(Debug)]
pub struct ConnLimit<A> {
    inner: Arc<A>,
    max: usize,
    active: Arc<AtomicUsize>,
    listener: String,
    metrics: &'static Metrics,
    /// Written to a connection over the limit before it is closed (empty: nothing).
    refusal: &'static [u8],
}

impl<A> ConnLimit<A> {
    /// Wraps the HTTP app `inner` for listener `listener`; `max` = 0 is unlimited. Connections
    /// over the limit are answered [`TOO_MANY_CONNECTIONS`] and counted in `metrics`.
    pub fn new(inner: A, max: usize, listener: &str, metrics: &'static Metrics) -> Self {
        ConnLimit {
            inner: Arc::new(inner),
            max,
            active: Arc::new(AtomicUsize::new(0)),
            listener: listener.to_string(),
            metrics,
            refusal: TOO_MANY_CONNECTIONS,
        }
    }

    /// Like [`ConnLimit::new`] for a byte-stream app (a `tcp` listener), which has no protocol to
    /// answer in: a connection over the limit is closed before a byte is read or written (NGINX
    /// `stream` `limit_conn`).
    pub fn closing(inner: A, max: usize, listener: &str, metrics: &'static Metrics) -> Self {
        ConnLimit {
            refusal: &[],
            ..ConnLimit::new(inner, max, listener, metrics)
        }
    }

    /// Connections being served now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Writes the refusal to `stream` and closes it (1 s at most). Boxed: the write and its
    /// timer would otherwise size the future of every connection served, for its whole life.
    fn refuse(&self, mut stream: Stream) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let refusal = self.refusal;
        Box::pin(async move {
            let reply = async {
                if !refusal.is_empty() {
                    let _ = stream.write_all(refusal).await;
                }
                let _ = stream.flush().await;
                Shutdown::shutdown(stream.as_mut()).await;
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), reply).await;
        })
    }
}

#[async_trait]
impl<A> ServerApp for ConnLimit<A>
where
    A: ServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if self.max == 0 {
            return self.inner.process_new(stream, shutdown).await;
        }
        let before = self.active.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(Arc::clone(&self.active));
        if before >= self.max {
            drop(slot);
            count(self.metrics, &self.listener, "max_connections");
            log::debug!(
                "listener {}: {} connections open, max_connections {}: refusing one",
                self.listener,
                before,
                self.max
            );
            self.refuse(stream).await;
            return None;
        }
        // Serve every keep-alive round here, so that the slot is held for the connection's life.
        serve_all_rounds(&self.inner, stream, shutdown).await;
        drop(slot);
        None
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_connections_length_matches() {
        let text = String::from_utf8_lossy(TOO_MANY_CONNECTIONS);
        let (_, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert_eq!(body.len(), 21);
    }
}
