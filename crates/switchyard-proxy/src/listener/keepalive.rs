//! [`KeepAliveDriver`]: serves an HTTP connection's requests one after another — a head deadline
//! per request, the idle wait between requests outside any request future, pipelined requests
//! in order, and prior-knowledge HTTP/2 told apart at the first bytes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use switchyard_metrics::Metrics;

use super::deadline_stream::{DeadlineStream, Preface};

/// A [`ServerApp`] wrapper that bounds the time a client may take to send each request head
/// (see [the connection layer](super)).
#[derive(Debug)]
pub struct KeepAliveDriver<A> {
    inner: Arc<A>,
    timeout: Duration,
    listener: Arc<str>,
    metrics: &'static Metrics,
}

impl<A> KeepAliveDriver<A> {
    /// Wraps `inner` for listener `listener` with `timeout` per request head; heads that miss it
    /// are counted in `metrics`.
    pub fn new(inner: A, timeout: Duration, listener: &str, metrics: &'static Metrics) -> Self {
        KeepAliveDriver {
            inner: Arc::new(inner),
            timeout,
            listener: Arc::from(listener),
            metrics,
        }
    }
}

/// The future of one request on an HTTP/1 connection (Pingora's, boxed).
type RequestFuture<'a> = Pin<Box<dyn Future<Output = Option<ReusedHttpStream>> + Send + 'a>>;

impl<A> KeepAliveDriver<A> {
    /// `stream` wrapped in a [`DeadlineStream`], and (with `h2c`) what its first bytes say.
    /// Boxed: it runs once per connection, and inline its state would size the connection's
    /// future for its whole life.
    fn wrap(
        &self,
        stream: Stream,
        h2c: bool,
    ) -> Pin<Box<dyn Future<Output = (Stream, Preface)> + Send>> {
        let mut wrapped = DeadlineStream::new(
            stream,
            self.timeout,
            Arc::clone(&self.listener),
            self.metrics,
        );
        Box::pin(async move {
            let preface = if h2c {
                wrapped.h2_preface().await
            } else {
                Preface::H1
            };
            (Box::new(wrapped) as Stream, preface)
        })
    }
}

impl<A: HttpServerApp + Send + Sync + 'static> KeepAliveDriver<A> {
    /// The first request of an HTTP/1 connection. A plain function returning Pingora's boxed
    /// request future, so that the session it builds is never a local of the connection's
    /// future (which lives as long as the connection: an idle one would keep room for it).
    fn first_request<'a>(
        &'a self,
        stream: Stream,
        shutdown: &'a ShutdownWatch,
    ) -> RequestFuture<'a> {
        let options = self.inner.server_options();
        let mut session = ServerSession::new_http1(stream);
        // As Pingora's loop does: no keep-alive once shutting down, else 60 s.
        session.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });
        session.set_keepalive_reuses_remaining(options.and_then(|o| o.keepalive_request_limit));
        self.inner.process_new_http(session, shutdown)
    }

    /// A later request of the connection, with the settings the previous one left.
    fn next_request<'a>(
        &'a self,
        stream: Stream,
        settings: Option<HttpPersistentSettings>,
        shutdown: &'a ShutdownWatch,
    ) -> RequestFuture<'a> {
        let mut session = ServerSession::new_http1(stream);
        if let Some(settings) = settings {
            settings.apply_to_session(&mut session);
        }
        self.inner.process_new_http(session, shutdown)
    }
}

/// The longest a keep-alive connection may sit idle between two requests (Pingora's own default,
/// which the HTTP/1 session applies to the next read as well); `header_timeout_ms` usually ends it
/// sooner.
pub const KEEPALIVE_IDLE_MAX: Duration = Duration::from_secs(60);

/// Waits, outside of any request, until the client sends the first byte of its next request.
/// False when the connection should close instead: the peer closed or failed, the wait hit the
/// head deadline or [`KEEPALIVE_IDLE_MAX`], or the server is shutting down (idle keep-alive
/// connections are closed at once on a graceful shutdown, as NGINX does).
///
/// `idle_cap` adds a timer for [`KEEPALIVE_IDLE_MAX`]; without it, the stream's own head deadline
/// (a [`DeadlineStream`] of at most that long) bounds the wait, with no timer per request.
///
/// This wait is what an idle connection's future holds, so it is kept small: a pointer to the
/// stream's peek and the shutdown watch; the capped wait (only with a head deadline over
/// [`KEEPALIVE_IDLE_MAX`]) is boxed, so that its timer does not size every connection.
async fn next_request_arrives<S: PeekFirstByte>(
    stream: &mut S,
    shutdown: &mut ShutdownWatch,
    idle_cap: bool,
) -> bool {
    if *shutdown.borrow() {
        return false;
    }
    if idle_cap {
        return Box::pin(capped_wait(stream, shutdown)).await;
    }
    tokio::select! {
        res = stream.peek_first_byte() => res.is_ok(),
        _ = shutdown.wait_for(|down| *down) => false,
    }
}

/// [`next_request_arrives`] with a [`KEEPALIVE_IDLE_MAX`] timer.
async fn capped_wait<S: PeekFirstByte>(stream: &mut S, shutdown: &mut ShutdownWatch) -> bool {
    tokio::select! {
        res = tokio::time::timeout(KEEPALIVE_IDLE_MAX, stream.peek_first_byte()) => {
            matches!(res, Ok(Ok(_)))
        }
        _ = shutdown.wait_for(|down| *down) => false,
    }
}

/// A stream the keep-alive wait can peek one byte of.
trait PeekFirstByte: Send {
    /// Waits for the first byte of the next request, leaving it to be read.
    fn peek_first_byte(&mut self) -> impl Future<Output = std::io::Result<bool>> + Send;
}

/// The driver's own streams: the peek without a boxed future per request.
impl PeekFirstByte for DeadlineStream {
    fn peek_first_byte(&mut self) -> impl Future<Output = std::io::Result<bool>> + Send {
        DeadlineStream::peek_first_byte(self)
    }
}

/// Any other stream, through Pingora's [`Peek`](pingora::protocols::Peek).
impl PeekFirstByte for Stream {
    async fn peek_first_byte(&mut self) -> std::io::Result<bool> {
        let mut first = [0u8; 1];
        self.try_peek(&mut first).await
    }
}

/// HTTP/1 keep-alive is served here rather than by Pingora's generic loop, for memory: Pingora
/// waits for the next request *inside* the proxy's request future (tens of KiB, all of it touched
/// by the previous request), so every idle keep-alive connection holds one. Here the request
/// future ends with its response; the idle wait is a one-byte peek in this small future, and the
/// next request future is only created once a byte has arrived. The same holds for HTTP/1 over
/// TLS; HTTP/2 (prior knowledge, or negotiated by ALPN) keeps Pingora's loop.
///
/// With HTTP/1.1 pipelining enabled on the sessions (the app's choice; Switchyard's gateway
/// enables it), a session can end with the next request already read and held by Pingora; the
/// stream's [`DeadlineStream::take_maybe_pipelined`] and [`DeadlineStream::take_read_any`] tell
/// when that may be so, and then the next session starts at once instead of waiting for a byte.
#[async_trait]
impl<A> ServerApp for KeepAliveDriver<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let options = self.inner.server_options();
        let tls = stream.get_ssl_digest().is_some();
        // A reused keep-alive connection comes back already wrapped.
        let stream: Stream = if stream.as_any().is::<DeadlineStream>() {
            stream
        } else {
            // Prior-knowledge HTTP/2 on a plain listener: told apart here, at the first bytes,
            // rather than by Pingora's check (see `DeadlineStream::h2_preface`).
            let h2c = !tls && options.is_some_and(|o| o.h2c);
            match self.wrap(stream, h2c).await {
                (stream, Preface::H2) => {
                    return ServerApp::process_new(&self.inner, stream, shutdown).await;
                }
                (_, Preface::Gone) => return None,
                (stream, Preface::H1) => stream,
            }
        };
        // HTTP/2 negotiated by ALPN (and custom protocols) stay with Pingora's loop; HTTP/1 over
        // TLS idles here like plain HTTP/1 (the one-byte wait reads through the TLS stream).
        let generic = options.is_some_and(|o| o.force_custom)
            || (tls && !matches!(stream.selected_alpn_proto(), None | Some(ALPN::H1)));
        if generic {
            return ServerApp::process_new(&self.inner, stream, shutdown).await;
        }
        let mut result = self.first_request(stream, shutdown).await;
        // One receiver for the connection's life, not one per request.
        let mut watch = shutdown.clone();
        let idle_cap = self.timeout > KEEPALIVE_IDLE_MAX;
        let mut held_by_pingora = false;
        while let Some(reused) = result {
            let (mut stream, settings) = reused.consume();
            // Pingora may already hold the next request (pipelined): then it must be served
            // without waiting for more bytes, which may never come. It may when bytes went past
            // a head or came after a response, or when the last session came from such bytes
            // and read nothing more (what it was served from may hold more requests).
            held_by_pingora = match stream.as_any().downcast_ref::<DeadlineStream>() {
                Some(d) => {
                    let read_any = d.take_read_any();
                    d.take_maybe_pipelined() || (held_by_pingora && !read_any)
                }
                None => true,
            };
            if !held_by_pingora {
                // Not held by Pingora means a `DeadlineStream` (above): waited on as itself, so
                // that its peek needs no boxed future. (A failed downcast is not reached.)
                let Ok(mut wrapped) = stream.into_any().downcast::<DeadlineStream>() else {
                    return None;
                };
                if !next_request_arrives(&mut *wrapped, &mut watch, idle_cap).await {
                    return None;
                }
                stream = wrapped;
            }
            result = self.next_request(stream, settings, shutdown).await;
        }
        None
    }

    async fn cleanup(&self) {
        self.inner.http_cleanup().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn loopback() -> (Stream, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let stream: Stream = Box::new(pingora::protocols::l4::stream::Stream::from(server));
        (stream, client)
    }

    /// The wait between two requests is what every idle keep-alive connection holds: the
    /// shutdown watch's wait and a pointer to the stream's peek, no timer (a `tokio` `Sleep`,
    /// 112 B in a debug build) even when `idle_cap` may need one. 320 B with the capped wait
    /// inline, 208 B with it boxed (debug build).
    #[tokio::test]
    async fn the_idle_wait_holds_no_timer() {
        let (_tx, shutdown) = tokio::sync::watch::channel(false);
        let (mut stream, _client) = loopback().await;
        let mut watch = shutdown.clone();
        let shutdown_wait = std::mem::size_of_val(&watch.wait_for(|down| *down));
        let sleep = std::mem::size_of::<tokio::time::Sleep>();
        let wait = std::mem::size_of_val(&next_request_arrives(&mut stream, &mut watch, true));
        assert!(
            wait < shutdown_wait + sleep,
            "the idle wait ({wait} B) holds a timer ({sleep} B) beside the shutdown wait \
             ({shutdown_wait} B)"
        );
    }

    #[tokio::test]
    async fn a_peer_that_closes_ends_the_wait_and_a_byte_continues_it() {
        use tokio::io::AsyncWriteExt;
        let (_tx, shutdown) = tokio::sync::watch::channel(false);
        for idle_cap in [false, true] {
            let (mut stream, mut client) = loopback().await;
            let mut watch = shutdown.clone();
            client.write_all(b"G").await.unwrap();
            assert!(next_request_arrives(&mut stream, &mut watch, idle_cap).await);
            let (mut stream, client) = loopback().await;
            drop(client);
            assert!(!next_request_arrives(&mut stream, &mut watch, idle_cap).await);
        }
    }

    /// The driver's own streams are waited on as `DeadlineStream`s (no boxed peek): a byte ends
    /// the wait and is then read with the rest of the request; a peer that closes ends it with
    /// false. The wait stays small (it is what an idle connection holds).
    #[tokio::test]
    async fn a_deadline_stream_holds_the_peeked_byte_for_the_next_read() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (_tx, shutdown) = tokio::sync::watch::channel(false);
        let metrics = switchyard_metrics::Metrics::global();
        for idle_cap in [false, true] {
            let (inner, mut client) = loopback().await;
            let mut stream =
                DeadlineStream::new(inner, Duration::from_secs(5), Arc::from("t"), metrics);
            let mut watch = shutdown.clone();
            let wait =
                std::mem::size_of_val(&next_request_arrives(&mut stream, &mut watch, idle_cap));
            assert!(wait <= 256, "the idle wait is {wait} B");
            client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
            assert!(next_request_arrives(&mut stream, &mut watch, idle_cap).await);
            // Peeked again (Pingora's or the driver's next wait): the held byte answers at once.
            assert!(next_request_arrives(&mut stream, &mut watch, idle_cap).await);
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            while got.len() < 16 {
                let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
                    .await
                    .unwrap()
                    .unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
            assert_eq!(got, b"GET / HTTP/1.1\r\n");
            drop(client);
            assert!(!next_request_arrives(&mut stream, &mut watch, idle_cap).await);
        }
    }

    #[tokio::test]
    async fn a_shutdown_ends_the_wait() {
        let (tx, shutdown) = tokio::sync::watch::channel(false);
        for idle_cap in [false, true] {
            let (mut stream, _client) = loopback().await;
            let mut watch = shutdown.clone();
            let wait = next_request_arrives(&mut stream, &mut watch, idle_cap);
            let ended = tokio::time::timeout(Duration::from_secs(5), async {
                tokio::join!(wait, async { tx.send_replace(true) }).0
            })
            .await;
            assert_eq!(ended, Ok(false));
            tx.send_replace(false);
        }
    }
}
