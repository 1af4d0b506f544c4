//! [`DeadlineStream`]: a client stream whose request heads must each arrive within a time limit,
//! which also tells the keep-alive driver when Pingora may already hold a pipelined request.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    UniqueID, UniqueIDType,
};
use switchyard_metrics::Metrics;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::count;
use super::head_scan::{is_final_response_head, Framing, HeadScan};

/// A client stream whose request heads must each arrive within a time limit.
pub struct DeadlineStream {
    inner: Stream,
    timeout: Duration,
    listener: Arc<str>,
    /// Where a missed deadline is counted.
    metrics: &'static Metrics,
    /// The deadline of the head being read, when one is being read.
    armed: bool,
    /// A final response was written since the last head: the next read starts a new head.
    responded: bool,
    /// When the head being read must be complete.
    deadline: Instant,
    /// The timer behind `deadline`, registered lazily: it may be set for an earlier deadline
    /// than the current one (see [`deadline_passed`]).
    sleep: Pin<Box<Sleep>>,
    scan: HeadScan,
    /// Bytes read by a peek (the keep-alive wait's one byte, or the start of a connection while
    /// looking for the HTTP/2 preface), served first by the next reads.
    held: Held,
    /// Bytes were handed to Pingora beyond the end of a request (its head and its
    /// `Content-Length` body), or after a response: they may be (the start of) a pipelined request
    /// that Pingora keeps for the next session (see [`DeadlineStream::take_maybe_pipelined`]).
    /// Bytes after a head whose body length it does not give (chunked) set it too, erring on the
    /// side of "maybe".
    maybe_pipelined: AtomicBool,
    /// Body bytes still to come after the current head (`None`: not known from the head).
    body_left: Option<u64>,
    /// Bytes were read from the socket (see [`DeadlineStream::take_read_any`]).
    read_any: AtomicBool,
}

/// The client connection preface of HTTP/2 (RFC 9113 §3.4), sent first by a prior-knowledge
/// (h2c) client.
pub const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Up to [`H2_PREFACE`]'s length of peeked bytes, inline (no allocation per connection).
#[derive(Debug, Default, Clone, Copy)]
struct Held {
    buf: [u8; H2_PREFACE.len()],
    start: u8,
    end: u8,
}

impl Held {
    fn bytes(&self) -> &[u8] {
        &self.buf[usize::from(self.start)..usize::from(self.end)]
    }

    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    fn set(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.buf.len());
        self.buf[..n].copy_from_slice(&bytes[..n]);
        self.start = 0;
        // n ≤ 24.
        self.end = u8::try_from(n).unwrap_or(0);
    }

    /// Moves as many held bytes as fit into `buf`.
    fn drain_into(&mut self, buf: &mut ReadBuf<'_>) {
        let n = self.bytes().len().min(buf.remaining());
        buf.put_slice(&self.bytes()[..n]);
        // n ≤ 24.
        self.start += u8::try_from(n).unwrap_or(0);
    }
}

/// What a connection's first bytes say about its protocol (see [`DeadlineStream::h2_preface`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preface {
    /// The HTTP/2 connection preface: an h2c client.
    H2,
    /// Anything else: HTTP/1.
    H1,
    /// The client closed, failed, or sent nothing before the head deadline.
    Gone,
}

/// True once `deadline` has passed; otherwise `cx` is woken no later than at `deadline`.
///
/// Arming a deadline (once per request on a keep-alive connection) only moves `deadline`: it does
/// not touch the timer wheel. The timer still holds an earlier deadline; when that one fires
/// early, the timer is moved to the current deadline here. So a busy connection re-registers its
/// timer at most once per `header_timeout_ms` instead of once per request.
fn deadline_passed(sleep: &mut Pin<Box<Sleep>>, deadline: Instant, cx: &mut Context<'_>) -> bool {
    loop {
        if sleep.as_mut().poll(cx).is_pending() {
            return false;
        }
        if Instant::now() >= deadline {
            return true;
        }
        sleep.as_mut().reset(deadline);
    }
}

impl std::fmt::Debug for DeadlineStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadlineStream")
            .field("inner", &self.inner)
            .field("timeout", &self.timeout)
            .field("armed", &self.armed)
            .finish()
    }
}

impl DeadlineStream {
    /// Wraps `inner` of `listener`; the first head's deadline starts now. A missed deadline is
    /// counted in `metrics`.
    pub fn new(
        inner: Stream,
        timeout: Duration,
        listener: Arc<str>,
        metrics: &'static Metrics,
    ) -> Self {
        let deadline = Instant::now() + timeout;
        DeadlineStream {
            inner,
            timeout,
            listener,
            metrics,
            armed: true,
            responded: false,
            deadline,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            scan: HeadScan::default(),
            held: Held::default(),
            maybe_pipelined: AtomicBool::new(false),
            body_left: Some(0),
            read_any: AtomicBool::new(false),
        }
    }

    /// True if, since the last call, any bytes were read from the socket. A session that read
    /// nothing was served from bytes Pingora already held, which may hold still more.
    pub fn take_read_any(&self) -> bool {
        self.read_any.swap(false, Ordering::Relaxed)
    }

    /// True if, since the last call, bytes were read that may be a pipelined request now held
    /// by Pingora (a request parsed from them needs no read from the socket, so waiting for one
    /// would stall the connection). False means Pingora holds nothing beyond what it answered.
    pub fn take_maybe_pipelined(&self) -> bool {
        self.maybe_pipelined.swap(false, Ordering::Relaxed)
    }

    /// Notes `bytes`, just handed to Pingora (or held for it): ends the head deadline at a head's
    /// end, and notes bytes past it.
    fn saw(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.read_any.store(true, Ordering::Relaxed);
        if !self.armed {
            // The body, or else the next request (early, or read by Pingora's idle probe).
            self.past_head(bytes.len());
            return;
        }
        if let Some(end) = self.scan.feed(bytes) {
            self.armed = false;
            self.body_left = match self.scan.framing() {
                Framing::None => Some(0),
                Framing::Length(n) => Some(n),
                Framing::Unknown => None,
            };
            self.past_head(bytes.len() - end - 1);
        }
    }

    /// Accounts for `n` bytes after the current head: the body's first, then any beyond it may
    /// be a pipelined request (as may any when the body's length is not known).
    fn past_head(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        match self.body_left {
            Some(left) if left >= n => self.body_left = Some(left - n),
            _ => {
                self.body_left = Some(0);
                self.maybe_pipelined.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Reads the first bytes of a new connection until they either are the HTTP/2 connection
    /// preface or cannot be (an HTTP/1 request's first byte or two tell), within the head
    /// deadline, and holds them for the next reads.
    ///
    /// Pingora's own h2c check waits for 24 bytes, so an HTTP/1 request shorter than that (a
    /// bare `GET / HTTP/1.0` is 18 bytes) would wait until the deadline; this never waits for
    /// bytes an HTTP/1 client might not send.
    pub async fn h2_preface(&mut self) -> Preface {
        let mut got = [0u8; H2_PREFACE.len()];
        let mut len = 0;
        while len < got.len() {
            match tokio::io::AsyncReadExt::read(self, &mut got[len..]).await {
                Ok(0) | Err(_) => return Preface::Gone,
                Ok(n) => len += n,
            }
            if got[..len] != H2_PREFACE[..len] {
                self.held.set(&got[..len]);
                return Preface::H1;
            }
        }
        self.held.set(&got);
        Preface::H2
    }

    /// The keep-alive wait's peek (a [`Peek::try_peek`] of one byte) as a plain `async fn`: the
    /// keep-alive driver awaits it without the boxed future of the trait's method, once per
    /// request. Reads the first byte of the next request and holds it for the next read (bounded
    /// by the head deadline, as any read); `Ok(true)` at once if bytes are already held.
    pub async fn peek_first_byte(&mut self) -> io::Result<bool> {
        if !self.held.is_empty() {
            return Ok(true);
        }
        // Pingora's own peek reads the byte and pushes it back in a fresh allocation, after
        // which the request head arrives in two reads.
        let mut one = [0u8; 1];
        // This byte starts the next request, read by the next session: not a pipelined one.
        let hint = self.maybe_pipelined.load(Ordering::Relaxed);
        let n = tokio::io::AsyncReadExt::read(self, &mut one).await?;
        self.maybe_pipelined.store(hint, Ordering::Relaxed);
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed while waiting for a request",
            ));
        }
        self.held.set(&one);
        Ok(true)
    }

    fn arm(&mut self) {
        self.armed = true;
        self.responded = false;
        self.scan = HeadScan::default();
        self.body_left = Some(0);
        self.deadline = Instant::now() + self.timeout;
    }

    fn timed_out(&self) -> io::Error {
        count(self.metrics, &self.listener, "header_timeout");
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "request head not received within header_timeout_ms ({} ms)",
                self.timeout.as_millis()
            ),
        )
    }

    fn note_write(&mut self, buf: &[u8]) {
        if !self.armed && is_final_response_head(buf) {
            self.responded = true;
        }
    }
}

impl AsyncRead for DeadlineStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.held.is_empty() {
            // The bytes of a peek (already fed to the head scan), then whatever else is ready,
            // so that the request head arrives in one read as it would without the peek.
            // Pending or an error is left for the next read.
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            this.held.drain_into(buf);
            if !this.held.is_empty() {
                return Poll::Ready(Ok(()));
            }
            let before = buf.filled().len();
            if buf.remaining() > 0 {
                if let Poll::Ready(Ok(())) = Pin::new(&mut this.inner).poll_read(cx, buf) {
                    this.saw(&buf.filled()[before..]);
                }
            }
            return Poll::Ready(Ok(()));
        }
        let after_response = !this.armed && this.responded;
        if after_response {
            this.arm();
        }
        if this.armed && deadline_passed(&mut this.sleep, this.deadline, cx) {
            return Poll::Ready(Err(this.timed_out()));
        }
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            let filled = buf.filled();
            if after_response && filled.len() > before {
                // Read while the session that answered may still own the stream (Pingora's idle
                // probe): these bytes may stay with Pingora for the next session.
                this.maybe_pipelined.store(true, Ordering::Relaxed);
            }
            this.saw(&filled[before..]);
        }
        res
    }
}

impl AsyncWrite for DeadlineStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.note_write(buf);
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            this.note_write(first);
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for DeadlineStream {
    async fn shutdown(&mut self) {
        Shutdown::shutdown(self.inner.as_mut()).await
    }
}

impl UniqueID for DeadlineStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for DeadlineStream {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<pingora::protocols::ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for DeadlineStream {
    fn get_timing_digest(&self) -> Vec<Option<pingora::protocols::TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for DeadlineStream {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: pingora::protocols::raw_connect::ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for DeadlineStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for DeadlineStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        // A peek happens before the first head is read (HTTP/2 prior-knowledge detection) or
        // while a keep-alive connection waits for its next request: it is bounded by the same
        // deadline, armed again after a response as a read would.
        if !self.held.is_empty() {
            let held = self.held.bytes();
            if held.len() >= buf.len() {
                buf.copy_from_slice(&held[..buf.len()]);
                return Ok(true);
            }
            // Not reached: the only peeks are the keep-alive wait's one byte and Pingora's
            // h2c preface check, which `h2_preface` has already answered with held bytes.
            return Err(io::Error::other("peek longer than the bytes already held"));
        }
        if buf.len() == 1 {
            self.peek_first_byte().await?;
            if let Some(&first) = self.held.bytes().first() {
                buf[0] = first;
            }
            return Ok(true);
        }
        if !self.armed && self.responded {
            self.arm();
        }
        if !self.armed {
            return self.inner.try_peek(buf).await;
        }
        // The stream's own timer bounds the peek (no timer of its own per peek).
        let peeked = {
            let DeadlineStream {
                inner,
                sleep,
                deadline,
                ..
            } = &mut *self;
            let deadline = *deadline;
            let mut peek = inner.try_peek(buf);
            std::future::poll_fn(|cx| {
                if let Poll::Ready(res) = peek.as_mut().poll(cx) {
                    return Poll::Ready(Some(res));
                }
                if deadline_passed(sleep, deadline, cx) {
                    return Poll::Ready(None);
                }
                Poll::Pending
            })
            .await
        };
        peeked.unwrap_or_else(|| Err(self.timed_out()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `writes` through a [`DeadlineStream`] over a loopback TCP connection, reading
    /// everything as Pingora would, and says whether it saw bytes that may be a pipelined request.
    async fn maybe_pipelined_after(writes: &[&[u8]]) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let inner: Stream = Box::new(pingora::protocols::l4::stream::Stream::from(server));
        let metrics = switchyard_metrics::Metrics::global();
        let mut stream =
            DeadlineStream::new(inner, Duration::from_secs(5), Arc::from("t"), metrics);
        let total: usize = writes.iter().map(|w| w.len()).sum();
        let mut got = 0;
        let mut buf = [0u8; 4096];
        for w in writes {
            client.write_all(w).await.unwrap();
            client.flush().await.unwrap();
            // Read what this write sent before the next one goes out.
            let want = got + w.len();
            while got < want {
                got += stream.read(&mut buf).await.unwrap();
            }
        }
        assert_eq!(got, total);
        stream.take_maybe_pipelined()
    }

    #[tokio::test]
    async fn bodies_are_not_taken_for_pipelined_requests() {
        let get = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n";
        let post = b"POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
        // One request, its body in the same read or in a later one: nothing beyond it.
        assert!(!maybe_pipelined_after(&[get]).await);
        assert!(!maybe_pipelined_after(&[post]).await);
        assert!(!maybe_pipelined_after(&[&post[..post.len() - 5], b"hel", b"lo"]).await);
        // Anything after the head (no body) or after the body is a next request.
        let mut two = get.to_vec();
        two.extend_from_slice(b"G");
        assert!(maybe_pipelined_after(&[&two]).await);
        let mut post_then = post.to_vec();
        post_then.extend_from_slice(get);
        assert!(maybe_pipelined_after(&[&post_then]).await);
        assert!(maybe_pipelined_after(&[post, b"GET"]).await);
        // A body whose length the head does not give: any byte after the head may be one.
        let chunked = b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(maybe_pipelined_after(&[chunked, b"0\r\n\r\n"]).await);
    }
}
