//! TCP (L4) listeners: byte-exact proxying, half-close, failover to a live server, security
//! groups, selectors on open connections, idle timeout, metrics, and the example `conf/tcp.toml`.
//!
//! The servers behind the gateway are plain tokio TCP servers started by each test on 127.0.0.1.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// What a [`TcpServer`] does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Writes `<name>\n`, then echoes every byte until the client half-closes, then closes.
    GreetEcho,
    /// Reads until the client half-closes, then writes `<name> got <n> bytes` and closes.
    ReplyAtEof,
}

/// A TCP server on 127.0.0.1 that counts its connections.
struct TcpServer {
    addr: SocketAddr,
    conns: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl TcpServer {
    async fn start(name: &str, mode: Mode) -> TcpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let name = name.to_string();
        let counter = conns.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    continue;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let name = name.clone();
                tokio::spawn(async move {
                    match mode {
                        Mode::GreetEcho => {
                            if s.write_all(format!("{name}\n").as_bytes()).await.is_err() {
                                return;
                            }
                            let (mut r, mut w) = s.split();
                            let _ = tokio::io::copy(&mut r, &mut w).await;
                            let _ = w.shutdown().await;
                        }
                        Mode::ReplyAtEof => {
                            let mut got = Vec::new();
                            if s.read_to_end(&mut got).await.is_err() {
                                return;
                            }
                            let reply = format!("{name} got {} bytes", got.len());
                            let _ = s.write_all(reply.as_bytes()).await;
                            let _ = s.shutdown().await;
                        }
                    }
                });
            }
        });
        TcpServer { addr, conns, task }
    }

    fn conns(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }

    /// Closes the listening socket: new connections are refused.
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// A config with a `tcp` listener `db` (extra lines `listener_extra`) to upstream `pool`
/// (extra lines `upstream_extra`) over `servers`, and a metrics endpoint.
fn config(
    prefix: &str,
    listener_extra: &str,
    upstream_extra: &str,
    servers: &[SocketAddr],
) -> String {
    let mut s = format!(
        "{}[metrics]\nlisten = \"{}\"\n\n[[listeners]]\nname = \"db\"\nprotocol = \"tcp\"\nlisten = \"{}\"\n\
         upstream = \"pool\"\n{listener_extra}\n\n[[upstreams]]\nname = \"pool\"\n{upstream_extra}\n  \
         [[upstreams.groups]]\n  name = \"g\"\n",
        server_section(prefix),
        free_addr(),
        free_addr(),
    );
    for a in servers {
        s.push_str(&format!(
            "    [[upstreams.groups.servers]]\n    address = \"{}\"\n    port = {}\n",
            a.ip(),
            a.port()
        ));
    }
    s
}

async fn connect(addr: SocketAddr) -> TcpStream {
    timeout(Duration::from_secs(3), TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect failed")
}

/// Connects from `local_ip` (e.g. 127.0.0.2) to `addr`.
async fn connect_from(local_ip: &str, addr: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(format!("{local_ip}:0").parse().unwrap()).unwrap();
    timeout(Duration::from_secs(3), sock.connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect failed")
}

/// Reads one `\n`-terminated line (≤ 256 bytes, ≤ 5 s).
async fn read_line<R: AsyncRead + Unpin>(r: &mut R) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while out.len() < 256 {
        let n = timeout(Duration::from_secs(5), r.read(&mut b))
            .await
            .expect("read timed out")
            .expect("read failed");
        if n == 0 || b[0] == b'\n' {
            break;
        }
        out.push(b[0]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Greeting of a new connection through the gateway (which server took it).
async fn greeting_of(s: &mut TcpStream) -> String {
    read_line(s).await
}

async fn wait_metric(gw: &Gateway, name: &str, labels: &[(&str, &str)], at_least: f64) -> f64 {
    let mut v = 0.0;
    for _ in 0..100 {
        v = metric_sum(&gw.metrics().await, name, labels);
        if v >= at_least {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_of_one_mebibyte_round_trips_and_is_counted() {
    let echo = TcpServer::start("echo", Mode::GreetEcho).await;
    let gw = Gateway::start(&config("tcp-echo", "", "", &[echo.addr]));
    let mut s = connect(gw.listener("db")).await;
    assert_eq!(greeting_of(&mut s).await, "echo");
    let data: Vec<u8> = (0..(1usize << 20)).map(|i| (i * 31 % 251) as u8).collect();
    let (mut r, mut w) = s.into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut back = Vec::with_capacity(data.len());
    timeout(Duration::from_secs(30), r.read_to_end(&mut back))
        .await
        .expect("echo timed out")
        .unwrap();
    writer.await.unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data, "echoed bytes differ");

    let closed = wait_metric(
        &gw,
        "switchyard_tcp_connections_total",
        &[
            ("listener", "db"),
            ("upstream", "pool"),
            ("outcome", "closed"),
        ],
        1.0,
    )
    .await;
    assert!(closed >= 1.0, "closed connections: {closed}");
    let bytes_in = wait_metric(
        &gw,
        "switchyard_tcp_bytes_total",
        &[("listener", "db"), ("direction", "in")],
        (1 << 20) as f64,
    )
    .await;
    assert!(bytes_in >= (1 << 20) as f64, "bytes in: {bytes_in}");
    let bytes_out = metric_sum(
        &gw.metrics().await,
        "switchyard_tcp_bytes_total",
        &[("listener", "db"), ("direction", "out")],
    );
    assert!(bytes_out >= (1 << 20) as f64, "bytes out: {bytes_out}");
    let mut active = 1.0;
    for _ in 0..100 {
        active = metric_sum(
            &gw.metrics().await,
            "switchyard_tcp_active_connections",
            &[("listener", "db")],
        );
        if active == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(active, 0.0, "active connections after close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_lets_the_client_read_the_reply() {
    let srv = TcpServer::start("srv", Mode::ReplyAtEof).await;
    let gw = Gateway::start(&config("tcp-half", "", "", &[srv.addr]));
    let mut s = connect(gw.listener("db")).await;
    s.write_all(b"hello, half-closed world").await.unwrap();
    s.shutdown().await.unwrap();
    let mut reply = String::new();
    timeout(Duration::from_secs(10), s.read_to_string(&mut reply))
        .await
        .expect("reply timed out")
        .unwrap();
    assert_eq!(reply, "srv got 24 bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_s_connections_go_to_the_live_one() {
    let a = TcpServer::start("a", Mode::GreetEcho).await;
    let b = TcpServer::start("b", Mode::GreetEcho).await;
    let gw = Gateway::start(&config("tcp-failover", "", "", &[a.addr, b.addr]));
    let mut seen = Vec::new();
    for _ in 0..4 {
        let mut s = connect(gw.listener("db")).await;
        seen.push(greeting_of(&mut s).await);
    }
    assert!(
        seen.iter().any(|g| g == "a") && seen.iter().any(|g| g == "b"),
        "{seen:?}"
    );
    b.stop().await;
    for i in 0..10 {
        let mut s = connect(gw.listener("db")).await;
        assert_eq!(greeting_of(&mut s).await, "a", "connection {i}");
        s.write_all(b"ping").await.unwrap();
        s.shutdown().await.unwrap();
        let mut back = Vec::new();
        timeout(Duration::from_secs(5), s.read_to_end(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, b"ping");
    }
    let failures = metric_sum(
        &gw.metrics().await,
        "switchyard_upstream_requests_total",
        &[("upstream", "pool"), ("outcome", "connect_error")],
    );
    assert!(failures >= 1.0, "connect errors counted: {failures}");
}

/// Issue 14: the first connection after the only primary died used to be closed without a
/// byte (the retry had no primary left and never looked at the standby tier). Every connection
/// now reaches the standby server, the very first one included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_after_the_primary_died_reach_the_standby_server() {
    let primary = TcpServer::start("primary", Mode::GreetEcho).await;
    let standby = TcpServer::start("standby", Mode::GreetEcho).await;
    let mut text = config("tcp-standby", "", "", &[primary.addr, standby.addr]);
    text.push_str("    standby = true\n");
    let gw = Gateway::start(&text);
    for _ in 0..3 {
        let mut s = connect(gw.listener("db")).await;
        assert_eq!(greeting_of(&mut s).await, "primary");
    }
    primary.stop().await;
    for i in 0..10 {
        let mut s = connect(gw.listener("db")).await;
        let greeting = greeting_of(&mut s).await;
        if greeting != "standby" {
            // What the gateway counted, to tell a refusal from a connection that reached
            // something else (it failed once in CI, never locally).
            let metrics = gw.metrics().await;
            let counted: Vec<String> = metrics
                .iter()
                .filter(|m| m.labels.values().any(|v| v == "pool" || v == "db"))
                .map(|m| format!("{} {:?} {}", m.name, m.labels, m.value))
                .collect();
            panic!(
                "connection {i}: greeting {greeting:?}; standby saw {} connections; metrics:\n{}\n{}",
                standby.conns(),
                counted.join("\n"),
                gw.log()
            );
        }
    }
    assert_eq!(standby.conns(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_client_is_refused_before_any_backend_connection() {
    let srv = TcpServer::start("srv", Mode::GreetEcho).await;
    let gw = Gateway::start(&config(
        "tcp-deny",
        "deny = [\"127.0.0.0/8\"]",
        "",
        &[srv.addr],
    ));
    let mut s = connect(gw.listener("db")).await;
    let _ = s.write_all(b"let me in").await;
    let mut buf = [0u8; 64];
    let res = timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("a denied connection must be closed");
    assert!(
        matches!(res, Ok(0) | Err(_)),
        "denied connection got data: {res:?}"
    );
    assert_eq!(srv.conns(), 0, "the backend saw a denied client");
    let denied = wait_metric(
        &gw,
        "switchyard_tcp_connections_total",
        &[("listener", "db"), ("outcome", "denied")],
        1.0,
    )
    .await;
    assert!(denied >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_conn_counts_open_connections() {
    let a = TcpServer::start("a", Mode::GreetEcho).await;
    let b = TcpServer::start("b", Mode::GreetEcho).await;
    let gw = Gateway::start(&config(
        "tcp-lc",
        "",
        "algorithm = \"least_conn\"",
        &[a.addr, b.addr],
    ));
    // Let the start-up probe's connection close.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut held = Vec::new();
    let mut names = Vec::new();
    for _ in 0..4 {
        let mut s = connect(gw.listener("db")).await;
        names.push(greeting_of(&mut s).await);
        held.push(s);
    }
    // While connections stay open, each new one goes to the server with fewer.
    assert_ne!(names[0], names[1], "{names:?}");
    assert_ne!(names[2], names[3], "{names:?}");
    assert_eq!(names.iter().filter(|n| *n == "a").count(), 2, "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_ip_hash_keeps_a_client_on_one_server() {
    let servers = [
        TcpServer::start("a", Mode::GreetEcho).await,
        TcpServer::start("b", Mode::GreetEcho).await,
        TcpServer::start("c", Mode::GreetEcho).await,
    ];
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let gw = Gateway::start(&config(
        "tcp-hash",
        "",
        "algorithm = \"source_ip_hash\"",
        &addrs,
    ));
    for ip in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        let mut first = None;
        for _ in 0..5 {
            let mut s = connect_from(ip, gw.listener("db")).await;
            let g = greeting_of(&mut s).await;
            match &first {
                None => first = Some(g),
                Some(f) => assert_eq!(&g, f, "client {ip} moved"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_idle_timeout() {
    let srv = TcpServer::start("srv", Mode::GreetEcho).await;
    let gw = Gateway::start(&config(
        "tcp-idle",
        "idle_timeout_ms = 300",
        "",
        &[srv.addr],
    ));
    let mut s = connect(gw.listener("db")).await;
    assert_eq!(greeting_of(&mut s).await, "srv");
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let res = timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("idle connection was not closed");
    assert!(matches!(res, Ok(0) | Err(_)), "{res:?}");
    assert!(started.elapsed() >= Duration::from_millis(200));
    let idle = wait_metric(
        &gw,
        "switchyard_tcp_connections_total",
        &[("listener", "db"), ("outcome", "idle_timeout")],
        1.0,
    )
    .await;
    assert!(idle >= 1.0);
}

#[test]
fn the_example_conf_tcp_toml_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/tcp.toml");
    let (code, out, err) = check_file(&path);
    assert_eq!(code, 0, "conf/tcp.toml:\nstdout: {out}\nstderr: {err}");
    let text = std::fs::read_to_string(&path).unwrap();
    let table: toml::Table = text.parse().unwrap();
    let listeners = table["listeners"].as_array().unwrap();
    assert!(listeners
        .iter()
        .any(|l| l.get("protocol").and_then(|p| p.as_str()) == Some("tcp")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_max_connections_are_closed_unserved() {
    let srv = TcpServer::start("srv", Mode::GreetEcho).await;
    let toml = "[limits]\nmax_connections = 2\n\n".to_string()
        + &config("tcp-maxconn", "", "", &[srv.addr]);
    let gw = Gateway::start(&toml);
    let addr = gw.listener("db");
    // Two connections, each proxied (the server greets) and held open.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = connect(addr).await;
        assert_eq!(greeting_of(&mut s).await, "srv");
        held.push(s);
    }
    // Further connections are closed without a byte and never reach a backend (the count
    // includes the harness's readiness probe, so compare with the count now).
    let backend_conns = srv.conns();
    for i in 0..3 {
        let mut s = connect(addr).await;
        let _ = s.write_all(b"hello").await;
        let mut buf = [0u8; 64];
        let res = timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("a connection over the limit must be closed");
        assert!(
            matches!(res, Ok(0) | Err(_)),
            "connection {i} over the limit got data: {res:?}"
        );
    }
    assert_eq!(
        srv.conns(),
        backend_conns,
        "a connection over the limit reached the backend"
    );
    let refused = wait_metric(
        &gw,
        "switchyard_rejected_requests_total",
        &[("listener", "db"), ("reason", "max_connections")],
        3.0,
    )
    .await;
    assert!(refused >= 3.0, "max_connections rejections: {refused}");
    // Closing one frees its slot.
    drop(held.pop());
    let mut served = false;
    for _ in 0..50 {
        let mut s = connect(addr).await;
        let mut buf = [0u8; 64];
        if let Ok(Ok(n)) = timeout(Duration::from_secs(2), s.read(&mut buf)).await {
            if buf[..n].starts_with(b"srv") {
                served = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "a slot was not released after a connection closed");
    assert_eq!(held.len(), 1);
}

/// `max_in_flight_per_server` counts connections: the second one waits in the queue until the
/// first closes, a third finds the queue full and is closed without reaching the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_honour_max_in_flight_and_the_queue() {
    let a = TcpServer::start("a", Mode::GreetEcho).await;
    let gw = Gateway::start(&config(
        "tcp-limit",
        "",
        "max_in_flight_per_server = 1\nqueue_size = 1\nqueue_timeout_ms = 3000",
        &[a.addr],
    ));
    let addr = gw.listener("db");
    let mut first = connect(addr).await;
    assert_eq!(read_line(&mut first).await, "a");
    // The harness's readiness probe was proxied too.
    let base = a.conns();
    let mut second = connect(addr).await;
    let mut b = [0u8; 1];
    assert!(
        timeout(Duration::from_millis(300), second.read(&mut b))
            .await
            .is_err(),
        "the second connection waits: the server has one in flight"
    );
    let mut third = connect(addr).await;
    let n = timeout(Duration::from_secs(2), third.read(&mut b))
        .await
        .expect("the third connection is closed at once")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without a greeting (queue full)");
    assert_eq!(a.conns(), base, "neither reached the server");
    drop(first);
    assert_eq!(
        read_line(&mut second).await,
        "a",
        "served once the slot freed"
    );
    assert_eq!(a.conns(), base + 1);
    let samples = gw.metrics().await;
    assert_eq!(
        metric_sum(
            &samples,
            "switchyard_queue_rejected_total",
            &[("upstream", "pool"), ("reason", "full")]
        ),
        1.0
    );
    assert_eq!(
        metric_sum(
            &samples,
            "switchyard_tcp_connections_total",
            &[("outcome", "overloaded")]
        ),
        1.0
    );
    a.stop().await;
}
