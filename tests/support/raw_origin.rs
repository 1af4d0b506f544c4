//! [`RawOrigin`]: an HTTP/1 origin that records every byte it receives and answers with scripted
//! bytes, for tests that must see exactly what the gateway sent upstream (a hyper origin merges
//! duplicate fields and hides framing) and what the gateway does with malformed responses.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The longest a [`RawOrigin`] connection lives, and the largest head or body it reads: every
/// loop in it is bounded.
const CONN_LIFETIME: Duration = Duration::from_secs(60);
const MAX_HEAD: usize = 256 * 1024;
const MAX_BODY: usize = 16 * 1024 * 1024;

/// What a [`RawOrigin`] writes back for one request; chosen from the request head.
#[derive(Debug, Clone)]
pub struct RawReply {
    /// Written verbatim.
    pub bytes: Vec<u8>,
    /// Write `bytes` as soon as the head is read, before reading the request body.
    pub before_body: bool,
    /// More bytes written after a pause (a body after a `204`, say).
    pub later: Option<(Duration, Vec<u8>)>,
    /// Close the connection once everything is written.
    pub close: bool,
}

impl RawReply {
    /// `bytes` verbatim, the connection kept open.
    pub fn bytes(bytes: impl Into<Vec<u8>>) -> RawReply {
        RawReply {
            bytes: bytes.into(),
            before_body: false,
            later: None,
            close: false,
        }
    }

    /// A well-formed `200` with `Content-Length` and `body`.
    pub fn ok(body: &str) -> RawReply {
        RawReply::bytes(format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncontent-type: text/plain\r\n\r\n{body}",
            body.len()
        ))
    }

    /// Written before the request body is read.
    pub fn before_body(mut self) -> RawReply {
        self.before_body = true;
        self
    }

    /// `bytes` written `after` the reply.
    pub fn later(mut self, after: Duration, bytes: impl Into<Vec<u8>>) -> RawReply {
        self.later = Some((after, bytes.into()));
        self
    }

    /// The connection closed after the reply.
    pub fn closing(mut self) -> RawReply {
        self.close = true;
        self
    }
}

/// One request as a [`RawOrigin`] received it, byte for byte.
#[derive(Debug, Clone)]
pub struct RawRequest {
    /// The connection it came on (0 for the first connection accepted).
    pub conn: usize,
    /// The head, up to and including the empty line.
    pub head: Vec<u8>,
    /// The body as received (a chunked body with its chunk framing).
    pub body: Vec<u8>,
    /// The body was complete by its framing (false: the connection ended first).
    pub complete: bool,
    /// When the head was read.
    pub at: Instant,
}

impl RawRequest {
    /// The head as text (lossy).
    pub fn head_text(&self) -> String {
        String::from_utf8_lossy(&self.head).into_owned()
    }

    /// The request line, e.g. `GET /a HTTP/1.1`.
    pub fn request_line(&self) -> String {
        self.head_text().lines().next().unwrap_or("").to_string()
    }

    /// The request target of the request line, exactly as sent.
    pub fn target(&self) -> String {
        self.request_line()
            .split(' ')
            .nth(1)
            .unwrap_or("")
            .to_string()
    }

    /// Every value of field `name` (case-insensitive), in order, exactly as sent (trimmed).
    pub fn fields(&self, name: &str) -> Vec<String> {
        header_values(&self.head, name)
    }
}

/// Every value of field `name` in a raw head (case-insensitive name, values trimmed).
pub fn header_values(head: &[u8], name: &str) -> Vec<String> {
    String::from_utf8_lossy(head)
        .split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

type ReplyFn = dyn Fn(&RawRequest) -> RawReply + Send + Sync;

struct RawState {
    reply: Mutex<Arc<ReplyFn>>,
    requests: Mutex<Vec<RawRequest>>,
    /// Every byte received, per connection.
    received: Mutex<Vec<Vec<u8>>>,
    connections: AtomicUsize,
}

/// An origin speaking HTTP/1 from raw bytes. See the module docs.
pub struct RawOrigin {
    addr: SocketAddr,
    state: Arc<RawState>,
    rt: Option<tokio::runtime::Runtime>,
}

impl RawOrigin {
    /// Starts on `127.0.0.1:0`, answering every request [`RawReply::ok`] with body `name`.
    pub fn start(name: &str) -> RawOrigin {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("raw-origin-{name}"))
            .enable_all()
            .build()
            .unwrap();
        let body = name.to_string();
        let state = Arc::new(RawState {
            reply: Mutex::new(Arc::new(move |_: &RawRequest| RawReply::ok(&body))),
            requests: Mutex::new(Vec::new()),
            received: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
        });
        // Bound with std (no runtime needed here, so this works inside an async test too).
        let std_listener =
            std::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let accept_state = Arc::clone(&state);
        rt.spawn(async move {
            let listener = TcpListener::from_std(std_listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                let conn = {
                    let mut received = accept_state.received.lock().unwrap();
                    received.push(Vec::new());
                    received.len() - 1
                };
                accept_state.connections.fetch_add(1, Ordering::SeqCst);
                let state = Arc::clone(&accept_state);
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(CONN_LIFETIME, serve(stream, conn, state)).await;
                });
            }
        });
        RawOrigin {
            addr,
            state,
            rt: Some(rt),
        }
    }

    /// Chooses the reply of every later request from its head (its body is not read yet).
    pub fn set_reply(&self, f: impl Fn(&RawRequest) -> RawReply + Send + Sync + 'static) {
        *self.state.reply.lock().unwrap() = Arc::new(f);
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every request read so far (complete, or cut short by the connection's end).
    pub fn requests(&self) -> Vec<RawRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The number of requests read so far.
    pub fn request_count(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }

    /// The number of connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Every byte received on connection `conn`.
    pub fn received(&self, conn: usize) -> Vec<u8> {
        self.state
            .received
            .lock()
            .unwrap()
            .get(conn)
            .cloned()
            .unwrap_or_default()
    }

    /// Forgets requests and bytes received (connection numbers keep counting).
    pub fn clear(&self) {
        self.state.requests.lock().unwrap().clear();
    }
}

impl Drop for RawOrigin {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// A `[[upstreams]]` table named `name`, group `g`, one server per address.
pub fn upstream_section_for(name: &str, addrs: &[SocketAddr]) -> String {
    let mut s =
        format!("[[upstreams]]\nname = \"{name}\"\n  [[upstreams.groups]]\n  name = \"g\"\n");
    for a in addrs {
        s.push_str(&format!(
            "    [[upstreams.groups.servers]]\n    address = \"{}\"\n    port = {}\n",
            a.ip(),
            a.port()
        ));
    }
    s.push('\n');
    s
}

/// How a request head frames its body.
enum Framing {
    None,
    Length(usize),
    Chunked,
}

fn framing(head: &[u8]) -> Framing {
    let te = header_values(head, "transfer-encoding");
    if te
        .iter()
        .any(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        return Framing::Chunked;
    }
    match header_values(head, "content-length")
        .first()
        .and_then(|v| v.split(',').next().and_then(|n| n.trim().parse().ok()))
    {
        Some(n) => Framing::Length(n),
        None => Framing::None,
    }
}

/// Reads more bytes into `buf` (recording them); false at the end of the connection.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, conn: usize, state: &RawState) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            if let Some(r) = state.received.lock().unwrap().get_mut(conn) {
                r.extend_from_slice(&chunk[..n]);
            }
            true
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The length of a complete chunked body at the start of `buf`, if it is all there.
fn chunked_len(buf: &[u8]) -> Option<usize> {
    let mut pos = 0;
    // Bounded: each round consumes at least one line.
    for _ in 0..buf.len() + 1 {
        let line_end = pos + find(&buf[pos..], b"\r\n")?;
        let size_text = String::from_utf8_lossy(&buf[pos..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        pos = line_end + 2;
        if size == 0 {
            // Trailers end with an empty line.
            let end = pos + find(&buf[pos..], b"\r\n")?;
            if end == pos {
                return Some(pos + 2);
            }
            return find(&buf[pos..], b"\r\n\r\n").map(|i| pos + i + 4);
        }
        pos = pos.checked_add(size)?.checked_add(2)?;
        if pos > buf.len() {
            return None;
        }
    }
    None
}

async fn serve(mut stream: TcpStream, conn: usize, state: Arc<RawState>) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    loop {
        // The head.
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > MAX_HEAD || !fill(&mut stream, &mut buf, conn, &state).await {
                return;
            }
        };
        let head: Vec<u8> = buf.drain(..head_end).collect();
        let mut req = RawRequest {
            conn,
            head,
            body: Vec::new(),
            complete: false,
            at: Instant::now(),
        };
        let reply_fn = Arc::clone(&*state.reply.lock().unwrap());
        let reply = reply_fn(&req);
        if reply.before_body && stream.write_all(&reply.bytes).await.is_err() {
            return;
        }
        // The body.
        let mut open = true;
        let body_len = loop {
            let want = match framing(&req.head) {
                Framing::None => Some(0),
                Framing::Length(n) => (buf.len() >= n).then_some(n),
                Framing::Chunked => chunked_len(&buf),
            };
            if let Some(n) = want {
                break Some(n);
            }
            if buf.len() > MAX_BODY || !fill(&mut stream, &mut buf, conn, &state).await {
                open = false;
                break None;
            }
        };
        match body_len {
            Some(n) => {
                req.body = buf.drain(..n).collect();
                req.complete = true;
            }
            None => req.body = std::mem::take(&mut buf),
        }
        state.requests.lock().unwrap().push(req);
        if !open {
            return;
        }
        if !reply.before_body && stream.write_all(&reply.bytes).await.is_err() {
            return;
        }
        if let Some((after, bytes)) = &reply.later {
            tokio::time::sleep(*after).await;
            if stream.write_all(bytes).await.is_err() {
                return;
            }
        }
        if reply.close {
            let _ = stream.shutdown().await;
            // Drain until the peer closes, so the close is a FIN rather than a reset.
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                let mut sink = [0u8; 1024];
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
            })
            .await;
            return;
        }
    }
}

/// One response read by a [`RawClient`], byte for byte.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// The head, up to and including the empty line.
    pub head: Vec<u8>,
    /// The body as framed by the head, chunked bodies decoded (empty for `HEAD`, `1xx`, `204`,
    /// `304`).
    pub body: Vec<u8>,
    /// The body was complete by its framing.
    pub complete: bool,
}

impl RawResponse {
    /// The head as text (lossy).
    pub fn head_text(&self) -> String {
        String::from_utf8_lossy(&self.head).into_owned()
    }

    /// Every value of field `name`, exactly as sent.
    pub fn fields(&self, name: &str) -> Vec<String> {
        header_values(&self.head, name)
    }

    /// The body as text (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The data of a complete chunked body (chunk framing and trailers removed).
fn dechunk(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(line) = find(&raw[pos..], b"\r\n") {
        let text = String::from_utf8_lossy(&raw[pos..pos + line]);
        let size = text
            .split(';')
            .next()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .unwrap_or(0);
        pos += line + 2;
        if size == 0 || pos + size > raw.len() {
            break;
        }
        out.extend_from_slice(&raw[pos..pos + size]);
        pos += size + 2;
    }
    out
}

/// A client connection that writes raw bytes and reads responses by their framing, so a test can
/// send a second request on the same connection and see exactly what came back.
pub struct RawClient {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The peer closed the connection.
    pub closed: bool,
}

impl RawClient {
    /// Connects to `addr` (≤ 3 s).
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let stream = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        let _ = stream.set_nodelay(true);
        RawClient {
            stream,
            buf: Vec::new(),
            closed: false,
        }
    }

    /// Writes `bytes`; false if the connection is gone.
    pub async fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok()
    }

    /// Reads more bytes before `deadline`; false at the end of the connection or the deadline.
    async fn more(&mut self, deadline: Instant) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                self.closed = true;
                false
            }
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(_) => false,
        }
    }

    /// Reads one response to a request of `method` within `wait`; `None` if no complete head
    /// arrived (the connection closed or the time ran out).
    pub async fn response(&mut self, method: &str, wait: Duration) -> Option<RawResponse> {
        let deadline = Instant::now() + wait;
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if !self.more(deadline).await {
                return None;
            }
        };
        let head: Vec<u8> = self.buf.drain(..head_end).collect();
        let text = String::from_utf8_lossy(&head).into_owned();
        let status: u16 = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        let no_body =
            method == "HEAD" || (100..200).contains(&status) || status == 204 || status == 304;
        let chunked = header_values(&head, "transfer-encoding")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("chunked"));
        let length: Option<usize> = header_values(&head, "content-length")
            .first()
            .and_then(|v| v.parse().ok());
        let mut body = Vec::new();
        let complete = loop {
            let want = if no_body {
                Some(0)
            } else if chunked {
                chunked_len(&self.buf)
            } else if let Some(n) = length {
                (self.buf.len() >= n).then_some(n)
            } else if self.closed {
                Some(self.buf.len())
            } else {
                None
            };
            if let Some(n) = want {
                body = self.buf.drain(..n).collect();
                if chunked && !no_body {
                    body = dechunk(&body);
                }
                break true;
            }
            if !self.more(deadline).await {
                if self.closed && !chunked && length.is_none() {
                    body = std::mem::take(&mut self.buf);
                    break true;
                }
                body.append(&mut self.buf);
                break false;
            }
        };
        Some(RawResponse {
            status,
            head,
            body,
            complete,
        })
    }

    /// Bytes already received beyond the responses read.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// True if the peer closes the connection within `wait` (bytes that arrive meanwhile are
    /// kept in [`RawClient::pending`]).
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        while !self.closed && Instant::now() < deadline {
            self.more(deadline).await;
        }
        self.closed
    }
}
