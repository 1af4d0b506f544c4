//! Protective limits on the client connections of HTTP listeners (`[limits]`).
//!
//! Pingora reads a request head before any [`pingora::proxy::ProxyHttp`] hook runs, and the only
//! timeout it applies while doing so is a *per read* timeout (60 s by default), so a client that
//! trickles one byte every few seconds (slowloris) keeps a connection forever. The hooks
//! (`early_request_filter`, `Session::set_read_timeout`) only see a request once its head is
//! complete. The limits therefore live below HTTP, as [`ServerApp`] wrappers around the listener's
//! Pingora HTTP app:
//!
//! * [`HeaderDeadline`] wraps each connection's stream in a [`DeadlineStream`]: from the first
//!   read of a request head, the whole head must arrive within `header_timeout_ms`, else the read
//!   fails and Pingora closes the connection (without a response, like NGINX's
//!   `client_header_timeout`). The deadline is armed again after each final response (the idle
//!   time of a keep-alive connection counts, like HAProxy's `timeout http-keep-alive` defaulting
//!   to `timeout http-request`). Request bodies and upgraded connections are not affected.
//! * [`ConnLimit`] counts a listener's open connections and answers the ones over
//!   `max_connections` with `503` and `Connection: close`, before reading anything (a `tcp`
//!   listener's are closed without a byte: [`ConnLimit::closing`]).
//!
//! Both count in `switchyard_rejected_requests_total{listener, reason}` with the reasons
//! `header_timeout` and `max_connections`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    UniqueID, UniqueIDType,
};
use pingora::server::ShutdownWatch;
use switchyard_metrics::Metrics;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The most keep-alive rounds a wrapper hands one connection to its inner app.
pub const MAX_REUSES: usize = 1_000_000;

/// Hands `stream` to `inner` for every keep-alive round of the connection (an app returns the
/// stream when it may be reused), up to [`MAX_REUSES`]. Wrappers that must see the whole life of a
/// connection (a connection slot, a PROXY header read once) serve it through this.
pub async fn serve_all_rounds<A: ServerApp + Send + Sync + 'static>(
    inner: &Arc<A>,
    stream: Stream,
    shutdown: &ShutdownWatch,
) {
    let mut next = Some(stream);
    for _ in 0..MAX_REUSES {
        let Some(s) = next.take() else {
            return;
        };
        next = inner.process_new(s, shutdown).await;
    }
}

/// The response to a connection over `max_connections`.
pub const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: text/plain; charset=utf-8\r\n\
content-length: 21\r\n\
retry-after: 1\r\n\
connection: close\r\n\r\n\
too many connections\n";

fn count(listener: &str, reason: &str) {
    Metrics::global()
        .rejected_requests_total
        .with_label_values(&[listener, reason])
        .inc();
}

/// Finds the end of a request head in bytes read in pieces: two line feeds in a row (CRLF CRLF,
/// or the bare LF LF that Pingora's parser also accepts), after at least one other byte (empty
/// lines before a request line do not end a head). On the way it notes how the head frames its
/// body, so that bytes after the head can be told apart from a pipelined next request.
#[derive(Debug, Default, Clone, Copy)]
struct HeadScan {
    seen_content: bool,
    newlines: u8,
    /// The start of the current line: enough for `content-length: ` and a 16-digit value.
    line: [u8; LINE_PREFIX],
    line_len: u8,
    /// The current line is longer than [`LINE_PREFIX`].
    line_cut: bool,
    framing: Framing,
}

/// How much of each head line [`HeadScan`] keeps to recognise the framing fields.
const LINE_PREFIX: usize = 32;

/// A request head's body framing, as far as [`HeadScan`] can tell.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No `Content-Length` and no `Transfer-Encoding`: no body.
    #[default]
    None,
    /// One `Content-Length` with this value.
    Length(u64),
    /// `Transfer-Encoding`, several or unreadable `Content-Length` fields: not known here.
    Unknown,
}

impl HeadScan {
    /// Feeds `bytes`; once a head end has been seen, the index in `bytes` of its last byte.
    fn feed(&mut self, bytes: &[u8]) -> Option<usize> {
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'\n' => {
                    self.end_line();
                    self.newlines += 1;
                    if self.newlines >= 2 && self.seen_content {
                        return Some(i);
                    }
                }
                b'\r' => {}
                _ => {
                    self.seen_content = true;
                    self.newlines = 0;
                    match self.line.get_mut(usize::from(self.line_len)) {
                        Some(slot) => {
                            *slot = b;
                            self.line_len += 1;
                        }
                        None => self.line_cut = true,
                    }
                }
            }
        }
        None
    }

    /// Notes a framing field in the line just ended.
    fn end_line(&mut self) {
        let line = &self.line[..usize::from(self.line_len)];
        let cut = std::mem::take(&mut self.line_cut);
        self.line_len = 0;
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            return;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.framing = Framing::Unknown;
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let length = std::str::from_utf8(value.trim_ascii())
                .ok()
                .filter(|_| !cut)
                .filter(|v| v.bytes().all(|c| c.is_ascii_digit()))
                .and_then(|v| v.parse().ok());
            self.framing = match (self.framing, length) {
                (Framing::None, Some(n)) => Framing::Length(n),
                _ => Framing::Unknown,
            };
        }
    }
}

/// True when `buf` starts a final (non-1xx) HTTP/1 response head.
fn is_final_response_head(buf: &[u8]) -> bool {
    buf.len() >= 12 && buf.starts_with(b"HTTP/1.") && buf[8] == b' ' && buf[9] != b'1'
}

/// A client stream whose request heads must each arrive within a time limit.
pub struct DeadlineStream {
    inner: Stream,
    timeout: Duration,
    listener: Arc<str>,
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
    /// Wraps `inner`; the first head's deadline starts now.
    pub fn new(inner: Stream, timeout: Duration, listener: Arc<str>) -> Self {
        let deadline = Instant::now() + timeout;
        DeadlineStream {
            inner,
            timeout,
            listener,
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
            self.body_left = match self.scan.framing {
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

    fn arm(&mut self) {
        self.armed = true;
        self.responded = false;
        self.scan = HeadScan::default();
        self.body_left = Some(0);
        self.deadline = Instant::now() + self.timeout;
    }

    fn timed_out(&self) -> io::Error {
        count(&self.listener, "header_timeout");
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
            // The keep-alive wait: read the byte and hold it for the next read (bounded by the
            // head deadline, as any read). Pingora's own peek reads it and pushes it back in a
            // fresh allocation, after which the request head arrives in two reads.
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
            buf[0] = one[0];
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

/// A [`ServerApp`] wrapper that bounds the time a client may take to send each request head
/// (see the module documentation).
#[derive(Debug)]
pub struct HeaderDeadline<A> {
    inner: Arc<A>,
    timeout: Duration,
    listener: Arc<str>,
}

impl<A> HeaderDeadline<A> {
    /// Wraps `inner` for listener `listener` with `timeout` per request head.
    pub fn new(inner: A, timeout: Duration, listener: &str) -> Self {
        HeaderDeadline {
            inner: Arc::new(inner),
            timeout,
            listener: Arc::from(listener),
        }
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
async fn next_request_arrives(
    stream: &mut Stream,
    shutdown: &mut ShutdownWatch,
    idle_cap: bool,
) -> bool {
    if *shutdown.borrow() {
        return false;
    }
    let mut first = [0u8; 1];
    let peek = stream.try_peek(&mut first);
    if idle_cap {
        tokio::select! {
            res = tokio::time::timeout(KEEPALIVE_IDLE_MAX, peek) => matches!(res, Ok(Ok(_))),
            _ = shutdown.wait_for(|down| *down) => false,
        }
    } else {
        tokio::select! {
            res = peek => res.is_ok(),
            _ = shutdown.wait_for(|down| *down) => false,
        }
    }
}

/// HTTP/1 keep-alive is served here rather than by Pingora's generic loop, for memory: Pingora
/// waits for the next request *inside* the proxy's request future (tens of KiB, all of it touched
/// by the previous request), so every idle keep-alive connection holds one. Here the request
/// future ends with its response; the idle wait is a one-byte peek in this small future, and the
/// next request future is only created once a byte has arrived. HTTP/2 and TLS streams (which
/// cannot peek) keep Pingora's loop.
///
/// With HTTP/1.1 pipelining enabled on the sessions (the app's choice; Switchyard's gateway
/// enables it), a session can end with the next request already read and held by Pingora; the
/// stream's [`DeadlineStream::take_maybe_pipelined`] and [`DeadlineStream::take_read_any`] tell
/// when that may be so, and then the next session starts at once instead of waiting for a byte.
#[async_trait]
impl<A> ServerApp for HeaderDeadline<A>
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
            let mut wrapped = DeadlineStream::new(stream, self.timeout, Arc::clone(&self.listener));
            // Prior-knowledge HTTP/2 on a plain listener: told apart here, at the first bytes,
            // rather than by Pingora's check (see `DeadlineStream::h2_preface`).
            if !tls && options.is_some_and(|o| o.h2c) {
                match wrapped.h2_preface().await {
                    Preface::H2 => {
                        return ServerApp::process_new(&self.inner, Box::new(wrapped), shutdown)
                            .await;
                    }
                    Preface::Gone => return None,
                    Preface::H1 => {}
                }
            }
            Box::new(wrapped)
        };
        let generic = options.is_some_and(|o| o.force_custom) || tls;
        if generic {
            return ServerApp::process_new(&self.inner, stream, shutdown).await;
        }
        let mut session = ServerSession::new_http1(stream);
        // As Pingora's loop does: no keep-alive once shutting down, else 60 s.
        session.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });
        session.set_keepalive_reuses_remaining(options.and_then(|o| o.keepalive_request_limit));
        let mut result = self.inner.process_new_http(session, shutdown).await;
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
            if !held_by_pingora && !next_request_arrives(&mut stream, &mut watch, idle_cap).await {
                return None;
            }
            let mut session = ServerSession::new_http1(stream);
            if let Some(settings) = settings {
                settings.apply_to_session(&mut session);
            }
            result = self.inner.process_new_http(session, shutdown).await;
        }
        None
    }

    async fn cleanup(&self) {
        self.inner.http_cleanup().await;
    }
}

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
    /// Written to a connection over the limit before it is closed (empty: nothing).
    refusal: &'static [u8],
}

impl<A> ConnLimit<A> {
    /// Wraps the HTTP app `inner` for listener `listener`; `max` = 0 is unlimited. Connections
    /// over the limit are answered [`TOO_MANY_CONNECTIONS`].
    pub fn new(inner: A, max: usize, listener: &str) -> Self {
        ConnLimit {
            inner: Arc::new(inner),
            max,
            active: Arc::new(AtomicUsize::new(0)),
            listener: listener.to_string(),
            refusal: TOO_MANY_CONNECTIONS,
        }
    }

    /// Like [`ConnLimit::new`] for a byte-stream app (a `tcp` listener), which has no protocol to
    /// answer in: a connection over the limit is closed before a byte is read or written (NGINX
    /// `stream` `limit_conn`).
    pub fn closing(inner: A, max: usize, listener: &str) -> Self {
        ConnLimit {
            refusal: &[],
            ..ConnLimit::new(inner, max, listener)
        }
    }

    /// Connections being served now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }
}

#[async_trait]
impl<A> ServerApp for ConnLimit<A>
where
    A: ServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if self.max == 0 {
            return self.inner.process_new(stream, shutdown).await;
        }
        let before = self.active.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(Arc::clone(&self.active));
        if before >= self.max {
            drop(slot);
            count(&self.listener, "max_connections");
            log::debug!(
                "listener {}: {} connections open, max_connections {}: refusing one",
                self.listener,
                before,
                self.max
            );
            let reply = async {
                if !self.refusal.is_empty() {
                    let _ = stream.write_all(self.refusal).await;
                }
                let _ = stream.flush().await;
                Shutdown::shutdown(stream.as_mut()).await;
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), reply).await;
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

/// The Pingora HTTP app of `gateway` on `listener` behind [`HeaderDeadline`]
/// (`limits.header_timeout_ms`).
pub fn header_deadline<SV>(
    conf: &Arc<pingora::server::configuration::ServerConf>,
    gateway: SV,
    listener: &switchyard_config::ListenerConfig,
    limits: &switchyard_config::LimitsConfig,
) -> HeaderDeadline<pingora::proxy::HttpProxy<SV>>
where
    SV: pingora::proxy::ProxyHttp + Send + Sync + 'static,
    SV::CTX: Send + Sync,
{
    let timeout = Duration::from_millis(limits.header_timeout_ms);
    let mut proxy = pingora::proxy::http_proxy(conf, gateway);
    proxy.server_options = Some(server_options(listener, timeout));
    HeaderDeadline::new(proxy, timeout, &listener.name)
}

/// Pingora's HTTP server options for `listener`: HTTP/2 with prior knowledge (h2c) on plain
/// `http` listeners (`https` ones offer HTTP/2 through ALPN), and an HTTP/2 connection with no
/// stream in flight for `idle` is closed, as an idle HTTP/1 keep-alive connection is after the
/// head deadline.
pub fn server_options(
    listener: &switchyard_config::ListenerConfig,
    idle: Duration,
) -> pingora::apps::HttpServerOptions {
    let mut options = pingora::apps::HttpServerOptions::default();
    options.h2c = listener.protocol == switchyard_config::ListenerProtocol::Http;
    options.h2_idle_timeout = Some(idle);
    options
}

/// The listening service of `listener`: `app` behind [`ConnLimit`] (`limits.max_connections`).
pub fn service<A>(
    app: A,
    listener: &switchyard_config::ListenerConfig,
    limits: &switchyard_config::LimitsConfig,
) -> pingora::services::listening::Service<ConnLimit<A>>
where
    A: ServerApp + Send + Sync + 'static,
{
    let mut svc = pingora::services::listening::Service::new(
        format!("listener {}", listener.name),
        ConnLimit::new(app, limits.max_connections, &listener.name),
    );
    svc.add_listener(
        pingora::listeners::ListenerConfig::tcp(listener.listen.to_string())
            .l4_buffer(read_buffer(listener, limits)),
    );
    svc
}

/// The L4 buffers of `listener`'s client connections: `limits.read_buffer_bytes` for reading
/// (by default 4 KiB for `http`, 64 KiB for `https`), Pingora's default for writing.
///
/// Pingora keeps a 64 KiB read buffer for the life of every client connection; for plain HTTP a
/// small one costs nothing (a request head fits, and body reads larger than the buffer bypass
/// it) and saves tens of KiB per idle keep-alive connection.
pub fn read_buffer(
    listener: &switchyard_config::ListenerConfig,
    limits: &switchyard_config::LimitsConfig,
) -> pingora::listeners::L4BufferSettings {
    pingora::listeners::L4BufferSettings::default().read(limits.read_buffer_for(listener.protocol))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_scan_finds_crlf_and_bare_lf_ends_across_pieces() {
        let mut s = HeadScan::default();
        assert_eq!(s.feed(b"GET / HTTP/1.1\r\nHost: a\r"), None);
        assert_eq!(s.feed(b"\n\r"), None);
        assert_eq!(s.feed(b"\n"), Some(0));
        let mut s = HeadScan::default();
        assert_eq!(s.feed(b"GET / HTTP/1.1\nHost: a\n\n"), Some(23));
    }

    #[test]
    fn head_scan_ignores_leading_empty_lines() {
        let mut s = HeadScan::default();
        assert_eq!(s.feed(b"\r\n\r\n\r\n\n\n"), None);
        assert_eq!(s.feed(b"G"), None);
        assert_eq!(s.feed(b"ET / HTTP/1.1\r\n"), None);
        assert_eq!(s.feed(b"\r\n"), Some(1));
    }

    #[test]
    fn head_scan_reads_the_body_framing() {
        let framing = |head: &[u8]| {
            let mut s = HeadScan::default();
            assert!(s.feed(head).is_some());
            s.framing
        };
        assert_eq!(framing(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Framing::None);
        assert_eq!(
            framing(b"POST / HTTP/1.1\r\nContent-Length:  12 \r\n\r\n"),
            Framing::Length(12)
        );
        assert_eq!(
            framing(b"POST / HTTP/1.1\r\ncontent-LENGTH: 0\r\n\r\n"),
            Framing::Length(0)
        );
        for head in [
            &b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 123456789012345678901234\r\n\r\n",
        ] {
            assert_eq!(
                framing(head),
                Framing::Unknown,
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }

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
        let mut stream = DeadlineStream::new(inner, Duration::from_secs(5), Arc::from("t"));
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

    #[test]
    fn head_scan_says_where_a_head_ends_in_a_pipelined_read() {
        let mut s = HeadScan::default();
        let two = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\n";
        let end = s.feed(two).expect("first head ends");
        assert_eq!(&two[..=end], b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(end + 1 < two.len(), "bytes of the next request follow");
    }

    #[test]
    fn final_response_heads_only() {
        assert!(is_final_response_head(b"HTTP/1.1 200 OK\r\n"));
        assert!(is_final_response_head(
            b"HTTP/1.0 503 Service Unavailable\r\n"
        ));
        assert!(!is_final_response_head(b"HTTP/1.1 100 Continue\r\n"));
        assert!(!is_final_response_head(
            b"HTTP/1.1 101 Switching Protocols\r\n"
        ));
        assert!(!is_final_response_head(b"hello"));
    }

    #[test]
    fn too_many_connections_length_matches() {
        let text = String::from_utf8_lossy(TOO_MANY_CONNECTIONS);
        let (_, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert_eq!(body.len(), 21);
    }
}
