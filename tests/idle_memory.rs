//! What an idle keep-alive client connection costs the gateway in memory (issue 22): each
//! connection sends one request, reads its response and stays open; the gateway's resident set
//! (`VmRSS`) is read before and after opening a batch of such connections, over plain HTTP/1 and
//! over TLS. The batch is measured on top of a first, unmeasured one, so that one-time costs
//! (allocator pools, the upstream connection pool, the first TLS session) are not counted.
//!
//! `make bench-scenarios` scenario c measures the same over 10,000 connections on a release
//! build; these bounds are looser (a debug build's futures are larger) but fail when an idle
//! connection holds a read buffer, its request future or its TLS handshake state again.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connections opened before the first reading.
const WARM: usize = 100;
/// Connections between the two readings.
const MEASURED: usize = 500;

/// The gateway's resident set, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS for pid {pid}"))
}

/// Sends one `GET` on `conn` and reads its whole response (by `Content-Length`); the connection
/// stays open.
async fn one_request<S: AsyncRead + AsyncWrite + Unpin>(conn: &mut S) {
    conn.write_all(b"GET /idle HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    conn.flush().await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            assert!(head.starts_with("http/1.1 200"), "{head}");
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .expect("a content-length");
            if got.len() >= end + 4 + len {
                return;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, conn.read(&mut buf))
            .await
            .expect("a response within 10 s")
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
}

/// Opens `n` connections to `addr` (through `tls` if given), one request each, kept open.
async fn open_idle(
    addr: SocketAddr,
    n: usize,
    tls: Option<&tokio_rustls::TlsConnector>,
) -> Vec<Box<dyn Idle>> {
    let mut conns: Vec<Box<dyn Idle>> = Vec::with_capacity(n);
    for _ in 0..n {
        let tcp = TcpStream::connect(addr).await.unwrap();
        match tls {
            Some(connector) => {
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let mut conn = connector.connect(name, tcp).await.unwrap();
                one_request(&mut conn).await;
                conns.push(Box::new(conn));
            }
            None => {
                let mut conn = tcp;
                one_request(&mut conn).await;
                conns.push(Box::new(conn));
            }
        }
    }
    conns
}

/// A client connection kept open (plain or TLS).
trait Idle: Send {}
impl<T: Send> Idle for T {}

/// KiB per idle connection of `MEASURED` connections opened on top of `WARM` ones.
async fn idle_cost_kib(gw: &Gateway, tls: Option<&tokio_rustls::TlsConnector>) -> f64 {
    let warm = open_idle(gw.addr(), WARM, tls).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(gw.pid());
    let measured = open_idle(gw.addr(), MEASURED, tls).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = rss_kib(gw.pid());
    drop((warm, measured));
    let per = after.saturating_sub(before) as f64 / MEASURED as f64;
    println!(
        "gateway RSS {before} → {after} KiB over {MEASURED} idle connections: {per:.2} KiB each"
    );
    per
}

fn config(listener: &str, origin: &Origin) -> String {
    format!(
        "{}[limits]\nheader_timeout_ms = 60000\n\n{listener}\
         [[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"u\"\n\n{}",
        server_section("idle-memory"),
        upstream_section("u", &[origin]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_plain_keep_alive_connection_costs_a_few_kib() {
    let o = Origin::start("o");
    let gw = Gateway::start(&config(&listener_section("web", &free_addr()), &o));
    let per = idle_cost_kib(&gw, None).await;
    // 19.5 KiB in a release build before issue 22 (a 4 KiB read buffer, a 1.4 KiB write buffer
    // and an 8.8 KiB task per connection), more in a debug build.
    assert!(per <= 6.0, "{per:.2} KiB per idle plain connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tls_keep_alive_connection_costs_a_few_kib_more() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("idle memory CA");
    let (cert, key) = ca.issue(&["localhost"]).write(dir.path(), "idle");
    let o = Origin::start("o");
    let listener = format!(
        "[[listeners]]\nname = \"secure\"\nprotocol = \"https\"\nlisten = \"{}\"\n\
         tls = {{ cert = {}, key = {} }}\n\n",
        free_addr(),
        toml::Value::String(cert.display().to_string()),
        toml::Value::String(key.display().to_string()),
    );
    let gw = Gateway::start(&config(&listener, &o));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der()).unwrap();
    let mut client = rustls::ClientConfig::builder_with_provider(ring_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Every connection a full handshake, as from distinct clients.
    client.resumption = rustls::client::Resumption::disabled();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let per = idle_cost_kib(&gw, Some(&connector)).await;
    // Before issue 22: the 64 KiB read buffer of `https` listeners, Pingora's request future and
    // the TLS handshake's state stayed with every idle TLS connection (126 KiB in a release
    // build). rustls keeps its own 4 KiB record buffer and its session state (not ours to free).
    assert!(per <= 24.0, "{per:.2} KiB per idle TLS connection");
}
