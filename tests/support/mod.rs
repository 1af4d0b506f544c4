//! Shared black-box test harness for the Switchyard acceptance suite.
//!
//! Every test file starts with `mod support;` and uses:
//!
//! * [`Origin`]: an in-process HTTP/1.1 origin (hyper 1) on its own tokio runtime. It answers with
//!   header `x-origin: <name>` and body `<name>`, records every request and counts accepted TCP
//!   connections. Status, delay and failure modes ([`OriginMode`]) can be changed at run time;
//!   [`Origin::stop`] closes the listener *and* every open connection, [`Origin::restart`] binds the
//!   same address again.
//! * [`Gateway`]: the real `switchyard` binary started with `run -c <file>` on a config written into
//!   a temporary directory. [`Gateway::start`] returns once every `listen` address of the config
//!   accepts TCP connections; dropping the gateway kills the process.
//! * [`check`] / [`run_cli`]: run `switchyard check -c <file>` or any other command line.
//! * [`free_port`], [`client`], [`send`], [`get`], [`get_with_host`], [`raw_http`]: client helpers.
//! * [`parse_metrics`], [`Sample`], [`metric_sum`]: a small Prometheus text-format parser.
//! * [`RawOrigin`]: an HTTP/1 origin that records every byte it receives and answers with
//!   scripted bytes (malformed responses included); [`upstream_section_for`] names it in a config.
//!
//! Nothing here talks to anything but 127.0.0.0/8 and ::1, and every wait is bounded.

#![allow(dead_code)]

mod raw_origin;
#[allow(unused_imports)]
pub use raw_origin::*;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener as StdTcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream as TokioTcpStream};
use tokio::runtime::Runtime;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

// ---------------------------------------------------------------------------------------------
// Origin
// ---------------------------------------------------------------------------------------------

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
async fn record(req: Request<hyper::body::Incoming>, peer: SocketAddr) -> RecordedRequest {
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

// ---------------------------------------------------------------------------------------------
// Locating and running the binary
// ---------------------------------------------------------------------------------------------

/// The workspace root (this package's manifest directory).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>` of the running test binary (tests run from `target/<profile>/deps/`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().unwrap().to_path_buf()
    } else {
        deps.to_path_buf()
    }
}

fn newest_mtime(dir: &Path, newest: &mut SystemTime, budget: &mut usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let path = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            newest_mtime(&path, newest, budget);
        } else if name.ends_with(".rs") || name == "Cargo.toml" {
            if let Ok(m) = meta.modified() {
                if m > *newest {
                    *newest = m;
                }
            }
        }
    }
}

/// True if any source of the gateway (`crates/`, `bin/`, manifests, lock file) is newer than `bin`.
fn is_stale(bin: &Path) -> bool {
    let Ok(bin_mtime) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return true;
    };
    let root = workspace_root();
    let mut newest = SystemTime::UNIX_EPOCH;
    let mut budget = 20_000;
    newest_mtime(&root.join("crates"), &mut newest, &mut budget);
    newest_mtime(&root.join("bin"), &mut newest, &mut budget);
    for f in ["Cargo.toml", "Cargo.lock"] {
        if let Ok(m) = std::fs::metadata(root.join(f)).and_then(|m| m.modified()) {
            newest = newest.max(m);
        }
    }
    newest > bin_mtime
}

/// The path of the `switchyard` binary, building it once per test process when it is missing or
/// older than its sources (`cargo build -p switchyard --bin switchyard` with the same target dir
/// and profile). `SWITCHYARD_BIN` overrides the path and skips the build.
pub fn switchyard_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("SWITCHYARD_BIN") {
            return PathBuf::from(p);
        }
        let profile_dir = profile_dir();
        let bin = profile_dir.join(format!("switchyard{}", std::env::consts::EXE_SUFFIX));
        if is_stale(&bin) {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
            let mut cmd = Command::new(cargo);
            cmd.current_dir(workspace_root())
                .args(["build", "-p", "switchyard", "--bin", "switchyard"])
                .arg("--target-dir")
                .arg(profile_dir.parent().unwrap());
            match profile_dir.file_name().and_then(|n| n.to_str()) {
                Some("debug") | None => {}
                Some("release") => {
                    cmd.arg("--release");
                }
                Some(other) => {
                    cmd.args(["--profile", other]);
                }
            }
            let started = Instant::now();
            let out = cmd.output().expect("cannot run cargo");
            assert!(
                out.status.success(),
                "building the switchyard binary failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            // This build counts in the first test's time: say so, or a slow first run looks
            // like a slow gateway.
            eprintln!(
                "note: the switchyard binary was older than its sources; building it took {:.1?}",
                started.elapsed()
            );
        }
        assert!(bin.exists(), "no switchyard binary at {}", bin.display());
        bin
    })
    .clone()
}

/// The path of example `name` of `switchyard-proxy`, built once per test process when missing
/// or older than its sources.
pub fn example_bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let profile_dir = profile_dir();
    let bin = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    BUILT.get_or_init(|| {
        if is_stale(&bin) {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
            let out = Command::new(cargo)
                .current_dir(workspace_root())
                .args(["build", "-p", "switchyard-proxy", "--examples"])
                .arg("--target-dir")
                .arg(profile_dir.parent().unwrap())
                .output()
                .expect("cannot run cargo");
            assert!(
                out.status.success(),
                "building the examples failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    });
    assert!(bin.exists(), "no example binary at {}", bin.display());
    bin
}

/// Runs `child` to completion, killing it after `timeout`; returns (exit code, stdout, stderr).
/// The exit code is -1 if the process was killed or ended by a signal.
fn wait_output(mut child: Child, timeout: Duration) -> (i32, String, String) {
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = String::from_utf8_lossy(&out_t.join().unwrap()).into_owned();
    let err = String::from_utf8_lossy(&err_t.join().unwrap()).into_owned();
    let code = status.and_then(|s| s.code()).unwrap_or(-1);
    (code, out, err)
}

/// Runs the binary with `args` (≤ 30 s); returns (exit code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let child = Command::new(switchyard_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(child, Duration::from_secs(30))
}

/// Writes `toml` to a temporary file and runs `switchyard check -c <file>`;
/// returns (exit code, stdout, stderr).
pub fn check(toml: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.toml");
    std::fs::write(&path, toml).unwrap();
    check_file(&path)
}

/// Runs `switchyard check -c <path>`; returns (exit code, stdout, stderr).
pub fn check_file(path: &Path) -> (i32, String, String) {
    run_cli(&["check", "-c", path.to_str().unwrap()])
}

// ---------------------------------------------------------------------------------------------
// Gateway
// ---------------------------------------------------------------------------------------------

/// A running `switchyard run -c <file>` process. Dropping it kills the process (SIGKILL) and
/// waits for it; if the test is panicking, the gateway's log is printed to stderr first.
pub struct Gateway {
    child: Child,
    dir: tempfile::TempDir,
    config_path: PathBuf,
    listeners: Vec<(String, SocketAddr)>,
    metrics: Option<SocketAddr>,
    admin: Option<SocketAddr>,
}

/// Turns a wildcard listen address into one a client can connect to.
fn connectable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

/// The `listen` addresses of a config: `(listener name, addr)`, `[metrics]`, `[admin]`.
#[allow(clippy::type_complexity)]
fn listen_addrs(
    toml_text: &str,
) -> (
    Vec<(String, SocketAddr)>,
    Option<SocketAddr>,
    Option<SocketAddr>,
) {
    let table: toml::Table = toml_text
        .parse()
        .unwrap_or_else(|e| panic!("test config is not valid TOML: {e}\n{toml_text}"));
    let parse = |v: &toml::Value| -> SocketAddr {
        connectable(
            v.as_str()
                .unwrap_or_else(|| panic!("listen must be a string: {v}"))
                .parse()
                .unwrap_or_else(|e| panic!("bad listen address {v}: {e}")),
        )
    };
    let mut listeners = Vec::new();
    if let Some(arr) = table.get("listeners").and_then(|v| v.as_array()) {
        for l in arr {
            let name = l
                .get("name")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string();
            if let Some(addr) = l.get("listen") {
                listeners.push((name, parse(addr)));
            }
        }
    }
    let metrics = table
        .get("metrics")
        .and_then(|m| m.get("listen"))
        .map(parse);
    let admin = table.get("admin").map(|a| {
        a.get("listen")
            .map(parse)
            .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::LOCALHOST, 9000)))
    });
    (listeners, metrics, admin)
}

/// Adds `pid_file` and `upgrade_sock` inside `dir` to `[server]` unless the config sets them, so
/// that gateways of parallel tests never share `/tmp/switchyard.pid` or the upgrade socket. The rest
/// of the text is kept verbatim (only lines after `[server]` shift).
fn isolate_server_paths(toml_text: &str, dir: &Path) -> String {
    let table: toml::Table = toml_text.parse().unwrap();
    let server = table.get("server").and_then(|v| v.as_table());
    let mut extra = String::new();
    if server.is_none_or(|s| !s.contains_key("pid_file")) {
        extra.push_str(&format!(
            "pid_file = {}\n",
            toml::Value::String(dir.join("switchyard.pid").display().to_string())
        ));
    }
    if server.is_none_or(|s| !s.contains_key("upgrade_sock")) {
        extra.push_str(&format!(
            "upgrade_sock = {}\n",
            toml::Value::String(dir.join("upgrade.sock").display().to_string())
        ));
    }
    if extra.is_empty() {
        return toml_text.to_string();
    }
    let mut out = String::with_capacity(toml_text.len() + extra.len() + 16);
    let mut done = false;
    for line in toml_text.lines() {
        out.push_str(line);
        out.push('\n');
        if !done && line.trim() == "[server]" {
            out.push_str(&extra);
            done = true;
        }
    }
    if !done {
        return format!("[server]\n{extra}\n{toml_text}");
    }
    out
}

impl Gateway {
    /// Starts `switchyard run -c <file>` with `toml` written into a temporary directory and
    /// `RUST_LOG=info`; returns once every `listen` address (listeners, `[metrics]`, `[admin]`)
    /// accepts TCP connections. Panics with the gateway's log if that takes over 30 s or the
    /// process exits.
    pub fn start(toml: &str) -> Gateway {
        Gateway::start_with_env(toml, &[])
    }

    /// Like [`Gateway::start`] with extra environment variables (tokens, keys).
    pub fn start_with_env(toml: &str, env: &[(&str, &str)]) -> Gateway {
        Gateway::spawn(switchyard_bin(), &["run", "-c"], toml, env)
    }

    /// Starts an example program of `switchyard-proxy` (an embedder's gateway built with
    /// `Gateway::builder`) as `<example> <config file>`, building it when missing.
    pub fn start_example(example: &str, toml: &str, env: &[(&str, &str)]) -> Gateway {
        Gateway::spawn(example_bin(example), &[], toml, env)
    }

    fn spawn(program: PathBuf, args: &[&str], toml: &str, env: &[(&str, &str)]) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("switchyard.toml");
        let text = isolate_server_paths(toml, dir.path());
        std::fs::write(&config_path, &text).unwrap();
        let (listeners, metrics, admin) = listen_addrs(&text);
        let stdout = std::fs::File::create(dir.path().join("stdout.log")).unwrap();
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let mut cmd = Command::new(program);
        cmd.args(args)
            .arg(&config_path)
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let mut gw = Gateway {
            child,
            dir,
            config_path,
            listeners,
            metrics,
            admin,
        };
        gw.wait_ready(Duration::from_secs(30));
        gw
    }

    fn wait_ready(&mut self, timeout: Duration) {
        let started = Instant::now();
        let deadline = started + timeout;
        let mut addrs: Vec<SocketAddr> = self.listeners.iter().map(|(_, a)| *a).collect();
        addrs.extend(self.metrics);
        addrs.extend(self.admin);
        for addr in addrs {
            loop {
                if let Some(status) = self.child.try_wait().unwrap() {
                    panic!(
                        "switchyard exited ({status}) before {addr} accepted connections; log:\n{}",
                        self.log()
                    );
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    break;
                }
                if Instant::now() > deadline {
                    panic!(
                        "switchyard did not accept connections on {addr} within {timeout:?}; log:\n{}",
                        self.log()
                    );
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        }
        // Readiness normally takes well under a second; say so when it did not, to find the
        // occasional slow test run.
        if started.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "note: switchyard ({}) took {:?} to accept connections",
                self.config_path.display(),
                started.elapsed()
            );
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the gateway wrote so far (stdout, then stderr).
    pub fn log(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        let out = read("stdout.log");
        let err = read("stderr.log");
        format!("{out}{err}")
    }

    /// Waits (≤ `timeout`) until the log contains `needle`; returns whether it did.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The path of the config file the gateway was started with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The temporary directory holding the config and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Overwrites the config file (for reload tests).
    pub fn write_config(&self, toml: &str) {
        let text = isolate_server_paths(toml, self.dir.path());
        std::fs::write(&self.config_path, text).unwrap();
    }

    /// Sends a signal (`"HUP"`, `"TERM"`, ...) to the process with `kill(1)`.
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(st.success(), "kill -{sig} {} failed", self.pid());
    }

    /// Waits (≤ `timeout`) for the process to exit; returns its exit code (-1 for a signal) or
    /// `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st.code().unwrap_or(-1));
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The address of the listener named `name`.
    pub fn listener(&self, name: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no listener named {name}"))
    }

    /// The address of the first listener.
    pub fn addr(&self) -> SocketAddr {
        self.listeners.first().expect("config has no listeners").1
    }

    /// `http://<first listener><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr(), path)
    }

    /// `http://<listener name><path>`.
    pub fn listener_url(&self, name: &str, path: &str) -> String {
        format!("http://{}{}", self.listener(name), path)
    }

    /// The `[metrics]` address.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics.expect("config has no [metrics]")
    }

    /// The `[admin]` address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.expect("config has no [admin]")
    }

    /// `http://<admin><path>`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin_addr(), path)
    }

    /// Fetches `/metrics` and returns its text (panics on a non-200 answer).
    pub async fn metrics_text(&self) -> String {
        let url = format!("http://{}/metrics", self.metrics_addr());
        let resp = client().get(url).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "GET /metrics");
        resp.text().await.unwrap()
    }

    /// Fetches and parses `/metrics`.
    pub async fn metrics(&self) -> Vec<Sample> {
        parse_metrics(&self.metrics_text().await)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let tail: String = {
                let chars: Vec<char> = log.chars().collect();
                let start = chars.len().saturating_sub(16_000);
                chars[start..].iter().collect()
            };
            eprintln!(
                "----- switchyard log ({}) -----\n{tail}\n----- end of log -----",
                self.config_path.display()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Config helpers
// ---------------------------------------------------------------------------------------------

/// A process-wide unique instance id: `<prefix>-<pid>-<n>`.
pub fn unique_id(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A `[server]` table for tests: unique `instance_id`, one thread, 1 s grace period.
pub fn server_section(prefix: &str) -> String {
    format!(
        "[server]\ninstance_id = \"{}\"\nthreads = 1\ngrace_period_s = 1\n\n",
        unique_id(prefix)
    )
}

// ---------------------------------------------------------------------------------------------
// Client helpers
// ---------------------------------------------------------------------------------------------

/// A free TCP port on 127.0.0.1 (bound, read and released), never the same one twice in a test
/// process; another process may still take it in between (a tiny race is accepted).
pub fn free_port() -> u16 {
    // The kernel may give the same ephemeral port to two binds in a row once the first socket is
    // closed; a test that asks for two ports (a listener and [metrics]) must get two.
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    for _ in 0..1000 {
        let port = StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut seen = HANDED_OUT.lock().unwrap();
        if !seen.contains(&port) {
            seen.push(port);
            return port;
        }
    }
    panic!("no unused loopback port after 1000 tries");
}

/// `127.0.0.1:<free_port()>` as a string, for `listen = "..."`.
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// An HTTP client that ignores proxy settings, with short timeouts, HTTP/1.1 and keep-alive.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

/// A response read completely.
#[derive(Debug, Clone)]
pub struct Resp {
    /// The status code.
    pub status: u16,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body as text (lossy).
    pub body: String,
}

impl Resp {
    /// The `x-origin` header: which [`Origin`] answered, if any.
    pub fn origin(&self) -> Option<String> {
        self.header("x-origin")
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }
}

/// Sends `method url` with an optional Host header and extra headers; reads the whole answer.
pub async fn send(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    host: Option<&str>,
    headers: &[(&str, &str)],
) -> Resp {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = client.request(method, url);
    if let Some(h) = host {
        req = req.header(reqwest::header::HOST, h);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("request to {url} failed: {e:?}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await.unwrap_or_default();
    Resp {
        status,
        headers,
        body,
    }
}

/// `GET url`.
pub async fn get(client: &reqwest::Client, url: &str) -> Resp {
    send(client, "GET", url, None, &[]).await
}

/// `GET url` with `Host: host`.
pub async fn get_with_host(client: &reqwest::Client, url: &str, host: &str) -> Resp {
    send(client, "GET", url, Some(host), &[]).await
}

/// Writes `request` verbatim to `addr` and returns everything read until the peer closes or
/// `timeout` passes (send `Connection: close` to get a prompt answer).
pub fn raw_http(addr: SocketAddr, request: &str, timeout: Duration) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Polls `f` every 20 ms until it returns true or `timeout` passes; returns the last result.
pub async fn eventually<F: FnMut() -> bool>(timeout: Duration, mut f: F) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Prometheus text format
// ---------------------------------------------------------------------------------------------

/// One sample of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name, e.g. `switchyard_requests_total` or `..._bucket`.
    pub name: String,
    /// Its labels, order-independent.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

impl Sample {
    /// True if every `(key, value)` of `want` is among the labels.
    pub fn has_labels(&self, want: &[(&str, &str)]) -> bool {
        want.iter()
            .all(|(k, v)| self.labels.get(*k).is_some_and(|x| x == v))
    }
}

/// Parses the Prometheus text exposition format (comments skipped, escapes in label values
/// decoded, an optional timestamp ignored). Lines it cannot parse are skipped.
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(s) = parse_sample(line) {
            out.push(s);
        }
    }
    out
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if rest.starts_with('{') {
        let mut chars = rest[1..].char_indices();
        let mut key = String::new();
        let end;
        loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => {
                    end = i + 2;
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    let (_, q) = chars.next()?;
                    if q != '"' {
                        return None;
                    }
                    let mut val = String::new();
                    loop {
                        let (_, c) = chars.next()?;
                        match c {
                            '\\' => match chars.next()?.1 {
                                'n' => val.push('\n'),
                                other => val.push(other),
                            },
                            '"' => break,
                            other => val.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key).trim().to_string(), val);
                }
                other => key.push(other),
            }
        }
        rest = &rest[end..];
    }
    let value_str = rest.split_whitespace().next()?;
    let value = match value_str {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// The sum of every sample named `name` whose labels include `want`.
pub fn metric_sum(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && s.has_labels(want))
        .map(|s| s.value)
        .sum()
}

/// The samples named `name` whose labels include `want`.
pub fn metric_find<'a>(
    samples: &'a [Sample],
    name: &str,
    want: &[(&str, &str)],
) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| s.name == name && s.has_labels(want))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Config snippets
// ---------------------------------------------------------------------------------------------

/// A `[[listeners]]` table: an `http` listener named `name` on `listen`.
pub fn listener_section(name: &str, listen: &str) -> String {
    format!("[[listeners]]\nname = \"{name}\"\nprotocol = \"http\"\nlisten = \"{listen}\"\n\n")
}

/// A `[[upstreams]]` table named `name` with one group `g` holding `origins` (default weights).
/// Server identities are `g/127.0.0.1:<port>`.
pub fn upstream_section(name: &str, origins: &[&Origin]) -> String {
    let mut s =
        format!("[[upstreams]]\nname = \"{name}\"\n  [[upstreams.groups]]\n  name = \"g\"\n");
    for o in origins {
        s.push_str(&format!(
            "    [[upstreams.groups.servers]]\n    address = \"{}\"\n    port = {}\n",
            o.addr().ip(),
            o.port()
        ));
    }
    s.push('\n');
    s
}

// ---------------------------------------------------------------------------------------------
// TLS: a test PKI and a TLS origin
// ---------------------------------------------------------------------------------------------

/// The ring crypto provider, passed explicitly so that no process-wide default is needed.
pub fn ring_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate authority generated for one test (rcgen), issuing server and client certificates.
pub struct TestCa {
    cert_pem: String,
    cert_der: rustls::pki_types::CertificateDer<'static>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// A certificate issued by a [`TestCa`] (or self-signed), with its private key.
#[derive(Clone)]
pub struct IssuedCert {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The PKCS#8 private key (PEM).
    pub key_pem: String,
    /// The certificate (DER).
    pub cert_der: rustls::pki_types::CertificateDer<'static>,
    /// The PKCS#8 private key (DER).
    pub key_der: Vec<u8>,
}

impl IssuedCert {
    /// The private key for rustls.
    pub fn private_key(&self) -> rustls::pki_types::PrivateKeyDer<'static> {
        rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
            self.key_der.clone(),
        ))
    }

    /// Writes `<stem>.pem` (certificate) and `<stem>-key.pem` (key) into `dir`; returns both paths.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}-key.pem"));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }
}

impl TestCa {
    /// A new self-signed CA whose common name is `name`.
    pub fn new(name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name.to_string());
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// The CA certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate (DER).
    pub fn cert_der(&self) -> rustls::pki_types::CertificateDer<'static> {
        self.cert_der.clone()
    }

    /// Writes the CA certificate to `dir/<file>`; returns the path.
    pub fn write(&self, dir: &Path, file: &str) -> PathBuf {
        let p = dir.join(file);
        std::fs::write(&p, &self.cert_pem).unwrap();
        p
    }

    /// Issues a leaf certificate for `names` (DNS names or IP addresses; the first is also the
    /// common name), usable both as a server and as a client certificate.
    pub fn issue(&self, names: &[&str]) -> IssuedCert {
        let sans: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(sans).unwrap();
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, first.to_string());
        }
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::KeyEncipherment,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }
}

/// State shared between a [`TlsOrigin`] handle and its tasks.
struct TlsOriginState {
    name: String,
    requests: Mutex<Vec<RecordedRequest>>,
    snis: Mutex<Vec<Option<String>>>,
    client_certs: Mutex<Vec<bool>>,
    handshakes_ok: AtomicUsize,
    handshakes_failed: AtomicUsize,
}

/// An in-process HTTPS (HTTP/1.1 over TLS) origin: serves `cert`, optionally requires a client
/// certificate issued by a given CA, answers `200` with header `x-origin: <name>` and body
/// `<name>`, and records every request, the SNI of every handshake and handshake outcomes.
pub struct TlsOrigin {
    addr: SocketAddr,
    state: Arc<TlsOriginState>,
    rt: Option<Runtime>,
}

impl TlsOrigin {
    /// Starts on `127.0.0.1:0` with `cert`; with `client_ca`, a client certificate issued by that
    /// CA is required (handshakes without one fail).
    pub fn start(name: &str, cert: &IssuedCert, client_ca: Option<&TestCa>) -> TlsOrigin {
        let builder = rustls::ServerConfig::builder_with_provider(ring_provider())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(ca.cert_der()).unwrap();
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    ring_provider(),
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(vec![cert.cert_der.clone()], cert.private_key())
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("tls-origin-{name}"))
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(TlsOriginState {
            name: name.to_string(),
            requests: Mutex::new(Vec::new()),
            snis: Mutex::new(Vec::new()),
            client_certs: Mutex::new(Vec::new()),
            handshakes_ok: AtomicUsize::new(0),
            handshakes_failed: AtomicUsize::new(0),
        });
        let listener = {
            let _guard = rt.enter();
            let std_listener = StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            std_listener.set_nonblocking(true).unwrap();
            tokio::net::TcpListener::from_std(std_listener).unwrap()
        };
        let addr = listener.local_addr().unwrap();
        let st = state.clone();
        rt.spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                let acceptor = acceptor.clone();
                let st = st.clone();
                tokio::spawn(async move {
                    let tls = match tokio::time::timeout(
                        Duration::from_secs(10),
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(tls)) => tls,
                        _ => {
                            st.handshakes_failed.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    };
                    st.handshakes_ok.fetch_add(1, Ordering::SeqCst);
                    {
                        let (_, conn) = tls.get_ref();
                        st.snis
                            .lock()
                            .unwrap()
                            .push(conn.server_name().map(|s| s.to_string()));
                        st.client_certs
                            .lock()
                            .unwrap()
                            .push(conn.peer_certificates().is_some_and(|c| !c.is_empty()));
                    }
                    let svc_state = st.clone();
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let st = svc_state.clone();
                        async move {
                            let recorded = record(req, peer).await;
                            st.requests.lock().unwrap().push(recorded);
                            let mut resp = Response::new(Full::new(Bytes::from(st.name.clone())));
                            resp.headers_mut()
                                .insert("x-origin", HeaderValue::from_str(&st.name).unwrap());
                            resp.headers_mut()
                                .insert("content-type", HeaderValue::from_static("text/plain"));
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        TlsOrigin {
            addr,
            state,
            rt: Some(rt),
        }
    }

    /// The origin's name.
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

    /// Every request received so far.
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

    /// The SNI of every completed handshake (`None`: the client sent none, e.g. for an IP).
    pub fn snis(&self) -> Vec<Option<String>> {
        self.state.snis.lock().unwrap().clone()
    }

    /// For every completed handshake: whether the client presented a certificate.
    pub fn client_certs(&self) -> Vec<bool> {
        self.state.client_certs.lock().unwrap().clone()
    }

    /// Completed handshakes.
    pub fn handshakes_ok(&self) -> usize {
        self.state.handshakes_ok.load(Ordering::SeqCst)
    }

    /// Failed (or timed out) handshakes.
    pub fn handshakes_failed(&self) -> usize {
        self.state.handshakes_failed.load(Ordering::SeqCst)
    }
}

impl Drop for TlsOrigin {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
