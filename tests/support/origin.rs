//! In-process HTTP/1.1 origins (hyper) that record what they were sent.

use super::*;

/// How an [`Origin`] answers a request (after reading the whole request, body included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginMode {
    /// Answer normally: the configured status, after the configured delay.
    Normal,
    /// Reset the connection (TCP RST, `SO_LINGER` 0) without answering.
    Reset,
    /// Close the connection (FIN) without answering.
    Close,
    /// Never answer (until the origin is stopped or dropped).
    Hang,
}

impl OriginMode {
    fn to_u8(self) -> u8 {
        match self {
            OriginMode::Normal => 0,
            OriginMode::Reset => 1,
            OriginMode::Close => 2,
            OriginMode::Hang => 3,
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => OriginMode::Reset,
            2 => OriginMode::Close,
            3 => OriginMode::Hang,
            _ => OriginMode::Normal,
        }
    }
}

/// One request as an [`Origin`] received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// The method, e.g. `GET`.
    pub method: String,
    /// Path and query, e.g. `/users/7?x=1`.
    pub uri: String,
    /// Every request header.
    pub headers: HeaderMap,
    /// The whole request body.
    pub body: Bytes,
    /// The peer (the gateway's side of the connection).
    pub peer: SocketAddr,
    /// When the request head was received.
    pub at: Instant,
}

impl RecordedRequest {
    /// The first value of header `name` as a string (lossy), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    /// Every value of header `name`, in order.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("")
    }
}

/// State shared between an [`Origin`] handle and its tasks.
struct OriginState {
    name: String,
    status: AtomicU16,
    delay_ms: AtomicU64,
    mode: AtomicU8,
    connections: AtomicUsize,
    /// Requests being answered now, and the most ever at once (see [`Origin::peak_concurrency`]).
    active: AtomicUsize,
    peak: AtomicUsize,
    requests: Mutex<Vec<RecordedRequest>>,
    conn_tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// An in-process HTTP/1.1 origin server for tests. See the module docs.
///
/// It runs on its own multi-threaded tokio runtime, so it works from plain `#[test]`s and from
/// any `#[tokio::test]` flavor, and a test that blocks its own thread never starves it. All methods
/// are synchronous and return quickly.
pub struct Origin {
    addr: SocketAddr,
    state: Arc<OriginState>,
    accept_task: Mutex<Option<JoinHandle<()>>>,
    rt: Option<Runtime>,
}

/// Reads a whole request (body included) into what an origin records.
pub(super) async fn record(
    req: Request<hyper::body::Incoming>,
    peer: SocketAddr,
) -> RecordedRequest {
    let at = Instant::now();
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let uri = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| parts.uri.to_string());
    RecordedRequest {
        method: parts.method.to_string(),
        uri,
        headers: parts.headers,
        body,
        peer,
        at,
    }
}

impl Origin {
    /// Starts an origin named `name` on `127.0.0.1:0` (a fresh port).
    pub fn start(name: &str) -> Origin {
        Origin::start_on(name, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
    }

    /// Starts an origin named `name` on `addr` (e.g. `127.0.0.2:0` or a fixed port).
    pub fn start_on(name: &str, addr: SocketAddr) -> Origin {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("origin-{name}"))
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(OriginState {
            name: name.to_string(),
            status: AtomicU16::new(200),
            delay_ms: AtomicU64::new(0),
            mode: AtomicU8::new(OriginMode::Normal.to_u8()),
            connections: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
            conn_tasks: Mutex::new(Vec::new()),
        });
        let mut origin = Origin {
            addr,
            state,
            accept_task: Mutex::new(None),
            rt: Some(rt),
        };
        origin.addr = origin.bind(addr);
        origin
    }

    /// Binds `addr` (with `SO_REUSEADDR`, so a restart after `stop` works despite TIME_WAIT) and
    /// spawns the accept loop; returns the bound address.
    fn bind(&self, addr: SocketAddr) -> SocketAddr {
        let rt = self.rt.as_ref().unwrap();
        let _guard = rt.enter();
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket
            .bind(addr)
            .unwrap_or_else(|e| panic!("origin {}: cannot bind {addr}: {e}", self.state.name));
        let listener = socket.listen(1024).unwrap();
        let bound = listener.local_addr().unwrap();
        let state = self.state.clone();
        let task = rt.spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(x) => x,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                };
                state.connections.fetch_add(1, Ordering::SeqCst);
                let conn_state = state.clone();
                let handle = tokio::spawn(serve_connection(stream, peer, conn_state));
                let mut tasks = state.conn_tasks.lock().unwrap();
                tasks.retain(|t| !t.is_finished());
                tasks.push(handle);
            }
        });
        *self.accept_task.lock().unwrap() = Some(task);
        bound
    }

    /// The origin's name (its `x-origin` header and body).
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://<addr>` for direct requests.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sets the status code of normal answers (default 200).
    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    /// Sets a delay before each answer (default none).
    pub fn set_delay(&self, delay: Duration) {
        self.state
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Sets how requests are answered (default [`OriginMode::Normal`]).
    pub fn set_mode(&self, mode: OriginMode) {
        self.state.mode.store(mode.to_u8(), Ordering::SeqCst);
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The number of requests received so far.
    pub fn request_count(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }

    /// The last request received, if any.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.state.requests.lock().unwrap().last().cloned()
    }

    /// The number of TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// The most requests this origin was answering at once (from the request head to the end of
    /// its answer's delay), as the origin itself counted them.
    pub fn peak_concurrency(&self) -> usize {
        self.state.peak.load(Ordering::SeqCst)
    }

    /// Requests being answered now.
    pub fn active_requests(&self) -> usize {
        self.state.active.load(Ordering::SeqCst)
    }

    /// Forgets recorded requests and resets the connection counter.
    pub fn clear(&self) {
        self.state.requests.lock().unwrap().clear();
        self.state.connections.store(0, Ordering::SeqCst);
    }

    /// Closes the listener and every open connection, and waits (≤ 5 s) until they are closed.
    /// New connections to the port are refused until [`Origin::restart`].
    pub fn stop(&self) {
        let accept = self.accept_task.lock().unwrap().take();
        if let Some(task) = accept {
            task.abort();
            wait_finished(&task);
        }
        let conns: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.state.conn_tasks.lock().unwrap());
        for t in &conns {
            t.abort();
        }
        for t in &conns {
            wait_finished(t);
        }
    }

    /// Binds the same address again after [`Origin::stop`]. Panics if the origin is running.
    pub fn restart(&self) {
        assert!(
            self.accept_task.lock().unwrap().is_none(),
            "origin {} is already running",
            self.state.name
        );
        self.bind(self.addr);
    }

    /// True while the listener is open.
    pub fn is_running(&self) -> bool {
        self.accept_task.lock().unwrap().is_some()
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            // Never blocks, so dropping an origin inside an async test is fine.
            rt.shutdown_background();
        }
    }
}

fn wait_finished(task: &JoinHandle<()>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !task.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A TCP stream that is reset (RST) instead of closed (FIN) when dropped with `reset` set.
struct ResettableIo {
    inner: TokioTcpStream,
    reset: Arc<AtomicU8>,
}

impl Drop for ResettableIo {
    fn drop(&mut self) {
        if self.reset.load(Ordering::SeqCst) == 1 {
            let _ = self.inner.set_zero_linger();
        }
    }
}

impl AsyncRead for ResettableIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Counts a request as answered when its handler ends (or is dropped with its connection).
struct ActiveGuard(Arc<OriginState>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve_connection(stream: TokioTcpStream, peer: SocketAddr, state: Arc<OriginState>) {
    let _ = stream.set_nodelay(true);
    // 0 = keep going, 1 = reset, 2 = close.
    let abort_kind = Arc::new(AtomicU8::new(0));
    let abort = Arc::new(Notify::new());
    let io = ResettableIo {
        inner: stream,
        reset: abort_kind.clone(),
    };
    let svc = {
        let abort_kind = abort_kind.clone();
        let abort = abort.clone();
        service_fn(move |req: Request<hyper::body::Incoming>| {
            let state = state.clone();
            let abort_kind = abort_kind.clone();
            let abort = abort.clone();
            async move {
                let now = state.active.fetch_add(1, Ordering::SeqCst) + 1;
                state.peak.fetch_max(now, Ordering::SeqCst);
                let _active = ActiveGuard(state.clone());
                let recorded = record(req, peer).await;
                state.requests.lock().unwrap().push(recorded);
                let mode = OriginMode::from_u8(state.mode.load(Ordering::SeqCst));
                match mode {
                    OriginMode::Normal => {}
                    OriginMode::Reset | OriginMode::Close => {
                        let kind = if mode == OriginMode::Reset { 1 } else { 2 };
                        abort_kind.store(kind, Ordering::SeqCst);
                        abort.notify_one();
                        std::future::pending::<()>().await;
                    }
                    OriginMode::Hang => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                }
                let delay = state.delay_ms.load(Ordering::SeqCst);
                if delay > 0 {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
                let status = StatusCode::from_u16(state.status.load(Ordering::SeqCst))
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let mut resp = Response::new(Full::new(Bytes::from(state.name.clone())));
                *resp.status_mut() = status;
                resp.headers_mut()
                    .insert("x-origin", HeaderValue::from_str(&state.name).unwrap());
                resp.headers_mut()
                    .insert("content-type", HeaderValue::from_static("text/plain"));
                Ok::<_, Infallible>(resp)
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), svc);
    tokio::select! {
        _ = conn => {}
        _ = abort.notified() => {
            // Dropping the connection drops `ResettableIo`: RST for Reset, FIN for Close.
        }
    }
}
