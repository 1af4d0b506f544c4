//! `PROXY UNKNOWN` with addresses after it (issue #14, item 5). HAProxy's `proxy-protocol.txt`
//! (§2.1) lets a sender put anything between `UNKNOWN` and the CRLF, within the 107-byte limit,
//! and tells the receiver to ignore it: the connection is then served on its own addresses. The
//! bare `PROXY UNKNOWN\r\n` is covered by `tests/proxy_protocol.rs`' health-check tests.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// The example of the issue and the specification's longest v1 header (107 bytes).
const UNKNOWN_HEADERS: [&str; 2] = [
    "PROXY UNKNOWN 1 2 3 4 5 6\r\n",
    "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
];

/// A TCP backend on 127.0.0.1 that reads each connection until the client half-closes (≤ 5 s)
/// and answers `got:` followed by what it read.
struct EchoBackend {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl EchoBackend {
    async fn start() -> EchoBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let _ = timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
                    let mut answer = b"got:".to_vec();
                    answer.extend_from_slice(&got);
                    let _ = s.write_all(&answer).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        EchoBackend { addr, task }
    }
}

impl Drop for EchoBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `[metrics]` and one listener `l` (`protocol`, `accept_proxy_protocol = true`) to upstream
/// `app` at `server`; http listeners get a catch-all route.
fn config(prefix: &str, protocol: &str, server: SocketAddr) -> String {
    let (listener_extra, route) = if protocol == "tcp" {
        ("upstream = \"app\"\n", String::new())
    } else {
        (
            "",
            "[[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"app\"\n\n".to_string(),
        )
    };
    format!(
        "{}[metrics]\nlisten = \"{}\"\n\n[[listeners]]\nname = \"l\"\nprotocol = \"{protocol}\"\n\
         listen = \"{}\"\naccept_proxy_protocol = true\n{listener_extra}\n{route}\
         [[upstreams]]\nname = \"app\"\n  [[upstreams.groups]]\n  name = \"g\"\n\
         \x20   [[upstreams.groups.servers]]\n    address = \"{}\"\n    port = {}\n",
        server_section(prefix),
        free_addr(),
        free_addr(),
        server.ip(),
        server.port()
    )
}

async fn proxy_protocol_errors(gw: &Gateway) -> f64 {
    metric_sum(
        &gw.metrics().await,
        "switchyard_proxy_protocol_errors_total",
        &[("listener", "l")],
    )
}

/// The error count once the harness's readiness probe (a connection without a header, closed at
/// once) has been counted: two reads 300 ms apart that agree (at most 5 s).
async fn settled_proxy_protocol_errors(gw: &Gateway) -> f64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut last = proxy_protocol_errors(gw).await;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = proxy_protocol_errors(gw).await;
        if now == last || std::time::Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_listener_serves_proxy_unknown_with_addresses_on_the_connection_addresses() {
    let origin = Origin::start("app");
    let gw = Gateway::start(&config("pp-unknown-http", "http", origin.addr()));
    let addr = gw.listener("l");
    // The harness's readiness probe, a connection without a header, is counted as an error a
    // moment after the gateway starts: take the count once it has settled.
    let errors = settled_proxy_protocol_errors(&gw).await;
    for (i, header) in UNKNOWN_HEADERS.iter().enumerate() {
        assert!(header.len() <= 107);
        let req = format!(
            "{header}GET /unknown/{i} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"
        );
        let resp =
            tokio::task::spawn_blocking(move || raw_http(addr, &req, Duration::from_secs(5)))
                .await
                .unwrap();
        assert!(
            resp.starts_with("HTTP/1.1 200"),
            "{header:?} was not served: {resp:?}"
        );
        let r = origin.last_request().expect("origin got no request");
        assert_eq!(r.path(), format!("/unknown/{i}"));
        // The addresses after UNKNOWN are ignored: the client is the connection's peer.
        assert_eq!(r.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    }
    assert_eq!(proxy_protocol_errors(&gw).await, errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_listener_passes_the_payload_after_proxy_unknown_with_addresses() {
    let backend = EchoBackend::start().await;
    let gw = Gateway::start(&config("pp-unknown-tcp", "tcp", backend.addr));
    let addr = gw.listener("l");
    let errors = settled_proxy_protocol_errors(&gw).await;
    for header in UNKNOWN_HEADERS {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(header.as_bytes()).await.unwrap();
        s.write_all(b"payload").await.unwrap();
        s.shutdown().await.unwrap();
        let mut out = Vec::new();
        timeout(Duration::from_secs(10), s.read_to_end(&mut out))
            .await
            .expect("answer timed out")
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out),
            "got:payload",
            "{header:?}: the header must be consumed, the payload passed on"
        );
    }
    assert_eq!(proxy_protocol_errors(&gw).await, errors);
}
