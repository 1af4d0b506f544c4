//! PROXY protocol, sent and accepted: byte-exact v1 and v2 headers to backends of tcp listeners
//! (IPv4 and IPv6) and of HTTP upstreams, and headers accepted from a load balancer in front of
//! http and tcp listeners (client address used for forwarding headers, ACLs and the outgoing
//! header; garbage closes the connection).
//!
//! 203.0.113.9 (TEST-NET-3) only ever appears inside a PROXY header: no traffic goes there.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;

const V2_SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// A PROXY v2 `PROXY` command header for a TCP connection from `src` to `dst` (both IPv4 or
/// both IPv6), built field by field as the specification lays it out.
fn v2_header(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut h = V2_SIG.to_vec();
    match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            h.extend_from_slice(&[0x21, 0x11, 0x00, 12]);
            h.extend_from_slice(&s.ip().octets());
            h.extend_from_slice(&d.ip().octets());
        }
        (SocketAddr::V6(s), SocketAddr::V6(d)) => {
            h.extend_from_slice(&[0x21, 0x21, 0x00, 36]);
            h.extend_from_slice(&s.ip().octets());
            h.extend_from_slice(&d.ip().octets());
        }
        _ => panic!("v2_header: {src} and {dst} are of different families"),
    }
    h.extend_from_slice(&src.port().to_be_bytes());
    h.extend_from_slice(&dst.port().to_be_bytes());
    h
}

/// A socket address from its text (test literals only).
fn sa(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// Starts a gateway with tcp listener `db` on `listen` (extra lines `listener_extra`) in front
/// of `rec`, connects from `client` (an IP with port 0), sends `payload` and checks the `ok`
/// answer: what the recorder got, the client's port, and the listener's address.
async fn through_tcp_listener(
    rec: &Recorder,
    prefix: &str,
    listen: &str,
    listener_extra: &str,
    client: &str,
    payload: &[u8],
) -> (Vec<u8>, u16, SocketAddr) {
    let gw = Gateway::start(&tcp_config(prefix, listen, listener_extra, rec.addr));
    let addr = gw.listener("db");
    let mut s = connect_from(client, addr).await;
    let sport = s.local_addr().unwrap().port();
    assert_eq!(exchange(&mut s, payload).await, b"ok");
    let got = rec.connection_ending_with(payload).await;
    drop(gw);
    (got, sport, addr)
}

/// A TCP server on 127.0.0.1 that records every byte each connection sent until it half-closed
/// (≤ 5 s), then answers `ok` and closes.
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
    task: JoinHandle<()>,
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let rec = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    continue;
                };
                let rec = rec.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let _ = timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
                    rec.lock().unwrap().push(got);
                    let _ = s.write_all(b"ok").await;
                    let _ = s.shutdown().await;
                });
            }
        });
        Recorder { addr, seen, task }
    }

    /// The bytes of the connection whose payload ended with `tail` (waits ≤ 5 s).
    async fn connection_ending_with(&self, tail: &[u8]) -> Vec<u8> {
        for _ in 0..250 {
            if let Some(c) = self.seen.lock().unwrap().iter().find(|c| c.ends_with(tail)) {
                return c.clone();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "no connection ending with {:?}; seen {:?}",
            String::from_utf8_lossy(tail),
            self.seen.lock().unwrap()
        );
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A raw HTTP/1.1 origin on 127.0.0.1 that expects a PROXY header before each connection's first
/// request: records the bytes before the request line and answers `200 ok` with
/// `Connection: close` (a strict one answers `400` when nothing came before the request line, as
/// NGINX's `listen ... proxy_protocol` does).
struct ProxyHttpOrigin {
    addr: SocketAddr,
    headers: Arc<Mutex<Vec<Vec<u8>>>>,
    task: JoinHandle<()>,
}

impl ProxyHttpOrigin {
    async fn start() -> ProxyHttpOrigin {
        Self::start_with(false).await
    }

    async fn start_with(strict: bool) -> ProxyHttpOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let headers = Arc::new(Mutex::new(Vec::new()));
        let rec = headers.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    continue;
                };
                let rec = rec.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut buf = [0u8; 4096];
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
                    while !got.windows(4).any(|w| w == b"\r\n\r\n".as_slice())
                        || !has_request_after_header(&got)
                    {
                        let Ok(Ok(n)) = tokio::time::timeout_at(deadline, s.read(&mut buf)).await
                        else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        got.extend_from_slice(&buf[..n]);
                    }
                    let start = got
                        .windows(4)
                        .position(|w| w == b"GET ")
                        .unwrap_or(got.len());
                    rec.lock().unwrap().push(got[..start].to_vec());
                    let answer: &[u8] = if strict && start == 0 {
                        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 5\r\nConnection: close\r\n\r\nno pp"
                    } else {
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                    };
                    let _ = s.write_all(answer).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        ProxyHttpOrigin {
            addr,
            headers,
            task,
        }
    }

    fn headers(&self) -> Vec<Vec<u8>> {
        self.headers.lock().unwrap().clone()
    }
}

fn has_request_after_header(got: &[u8]) -> bool {
    match got.windows(4).position(|w| w == b"GET ") {
        Some(p) => got[p..].windows(4).any(|w| w == b"\r\n\r\n"),
        None => false,
    }
}

impl Drop for ProxyHttpOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects from `local` (an IP with port 0) to `addr`.
async fn connect_from(local: &str, addr: SocketAddr) -> TcpStream {
    let local: SocketAddr = local.parse().unwrap();
    let sock = if local.is_ipv4() {
        TcpSocket::new_v4().unwrap()
    } else {
        TcpSocket::new_v6().unwrap()
    };
    sock.bind(local).unwrap();
    timeout(Duration::from_secs(3), sock.connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect failed")
}

/// Sends `payload`, half-closes, and reads the answer to the end (≤ 10 s).
async fn exchange(s: &mut TcpStream, payload: &[u8]) -> Vec<u8> {
    s.write_all(payload).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    let _ = timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("answer timed out");
    out
}

/// Sends an HTTP request (`Connection: close`) and reads the answer to the end (≤ 10 s),
/// without half-closing first (Pingora treats a half-closed HTTP client as gone).
async fn http_exchange(s: &mut TcpStream, request: &[u8]) -> Vec<u8> {
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("answer timed out");
    out
}

/// A tcp listener `db` on `listen` to a one-server upstream at `server`.
fn tcp_config(prefix: &str, listen: &str, listener_extra: &str, server: SocketAddr) -> String {
    format!(
        "{}[metrics]\nlisten = \"{}\"\n\n[[listeners]]\nname = \"db\"\nprotocol = \"tcp\"\n\
         listen = \"{listen}\"\nupstream = \"pool\"\n{listener_extra}\n\n\
         [[upstreams]]\nname = \"pool\"\n  [[upstreams.groups]]\n  name = \"g\"\n\
             [[upstreams.groups.servers]]\n    address = \"{}\"\n    port = {}\n",
        server_section(prefix),
        free_addr(),
        server.ip(),
        server.port()
    )
}

/// An http listener `web` (extra lines `listener_extra`) routing everything to upstream `app`
/// (extra lines `upstream_extra`) at `server`.
fn http_config(
    prefix: &str,
    listener_extra: &str,
    upstream_extra: &str,
    server: SocketAddr,
) -> String {
    format!(
        "{}[metrics]\nlisten = \"{}\"\n\n[[listeners]]\nname = \"web\"\nprotocol = \"http\"\n\
         listen = \"{}\"\n{listener_extra}\n\n[[routes]]\nname = \"r\"\npath_prefix = \"/\"\n\
         upstream = \"app\"\n\n[[upstreams]]\nname = \"app\"\n{upstream_extra}\n  \
         [[upstreams.groups]]\n  name = \"g\"\n    [[upstreams.groups.servers]]\n    \
         address = \"{}\"\n    port = {}\n",
        server_section(prefix),
        free_addr(),
        free_addr(),
        server.ip(),
        server.port()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_listener_sends_a_byte_exact_v1_header() {
    let rec = Recorder::start().await;
    let (got, sport, listen) = through_tcp_listener(
        &rec,
        "pp-v1",
        &free_addr(),
        "proxy_protocol = \"v1\"",
        "127.0.0.2:0",
        b"hello-v1",
    )
    .await;
    let want = format!(
        "PROXY TCP4 127.0.0.2 127.0.0.1 {sport} {}\r\nhello-v1",
        listen.port()
    );
    assert_eq!(String::from_utf8_lossy(&got), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_listener_sends_a_byte_exact_v2_header() {
    let rec = Recorder::start().await;
    let (got, sport, listen) = through_tcp_listener(
        &rec,
        "pp-v2",
        &free_addr(),
        "proxy_protocol = \"v2\"",
        "127.0.0.2:0",
        b"hello-v2",
    )
    .await;
    let mut want = V2_SIG.to_vec();
    want.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c]);
    want.extend_from_slice(&[127, 0, 0, 2, 127, 0, 0, 1]);
    want.extend_from_slice(&sport.to_be_bytes());
    want.extend_from_slice(&listen.port().to_be_bytes());
    want.extend_from_slice(b"hello-v2");
    assert_eq!(got, want);
    // The builder the other v2 tests use writes the same bytes.
    let mut built = v2_header(sa(&format!("127.0.0.2:{sport}")), listen);
    built.extend_from_slice(b"hello-v2");
    assert_eq!(built, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_clients_get_tcp6_and_v2_ipv6_headers() {
    let rec = Recorder::start().await;
    let free_v6 = || {
        let l = std::net::TcpListener::bind("[::1]:0").unwrap();
        format!("{}", l.local_addr().unwrap())
    };
    let (got, sport, listen) = through_tcp_listener(
        &rec,
        "pp-v6",
        &free_v6(),
        "proxy_protocol = \"v1\"",
        "[::1]:0",
        b"hello-v6",
    )
    .await;
    assert!(listen.is_ipv6());
    assert_eq!(
        String::from_utf8_lossy(&got),
        format!("PROXY TCP6 ::1 ::1 {sport} {}\r\nhello-v6", listen.port())
    );
    let (got, sport, listen) = through_tcp_listener(
        &rec,
        "pp-v6-2",
        &free_v6(),
        "proxy_protocol = \"v2\"",
        "[::1]:0",
        b"hello-v6-v2",
    )
    .await;
    let mut want = v2_header(sa(&format!("[::1]:{sport}")), listen);
    want.extend_from_slice(b"hello-v6-v2");
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_listener_uses_the_client_address_of_an_accepted_v1_header() {
    let origin = Origin::start("app");
    let gw = Gateway::start(&http_config(
        "pp-accept-http",
        "accept_proxy_protocol = true",
        "",
        origin.addr(),
    ));
    let addr = gw.listener("web");
    let req = format!(
        "PROXY TCP4 203.0.113.9 {} 40123 {}\r\nGET /who HTTP/1.1\r\nHost: app.test\r\n\
         Connection: close\r\n\r\n",
        addr.ip(),
        addr.port()
    );
    let resp = tokio::task::spawn_blocking(move || raw_http(addr, &req, Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let r = origin.last_request().expect("origin got no request");
    assert_eq!(r.path(), "/who");
    assert_eq!(r.header("x-forwarded-for").as_deref(), Some("203.0.113.9"));
    assert_eq!(r.header("x-real-ip").as_deref(), Some("203.0.113.9"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_listener_accepts_a_v2_header_too() {
    let origin = Origin::start("app");
    let gw = Gateway::start(&http_config(
        "pp-accept-v2",
        "accept_proxy_protocol = true",
        "",
        origin.addr(),
    ));
    let addr = gw.listener("web");
    let mut bytes = v2_header(sa("203.0.113.9:40124"), addr);
    bytes.extend_from_slice(b"GET /v2 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n");
    let mut s = TcpStream::connect(addr).await.unwrap();
    let resp = http_exchange(&mut s, &bytes).await;
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let r = origin.last_request().expect("origin got no request");
    assert_eq!(r.header("x-forwarded-for").as_deref(), Some("203.0.113.9"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_apply_to_the_carried_client_address() {
    let origin = Origin::start("app");
    let gw = Gateway::start(&http_config(
        "pp-acl",
        "accept_proxy_protocol = true\ndeny = [\"203.0.113.0/24\"]",
        "",
        origin.addr(),
    ));
    let addr = gw.listener("web");
    let ask = |client: &'static str| {
        let req = format!(
            "PROXY TCP4 {client} 127.0.0.1 40125 {}\r\nGET / HTTP/1.1\r\nHost: a\r\n\
             Connection: close\r\n\r\n",
            addr.port()
        );
        tokio::task::spawn_blocking(move || raw_http(addr, &req, Duration::from_secs(5)))
    };
    let denied = ask("203.0.113.9").await.unwrap();
    assert!(denied.starts_with("HTTP/1.1 403"), "{denied}");
    let allowed = ask("198.51.100.7").await.unwrap();
    assert!(allowed.starts_with("HTTP/1.1 200"), "{allowed}");
    assert_eq!(origin.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_a_proxy_header_closes_the_connection_and_is_counted() {
    let origin = Origin::start("app");
    let gw = Gateway::start(&http_config(
        "pp-garbage",
        "accept_proxy_protocol = true",
        "",
        origin.addr(),
    ));
    let addr = gw.listener("web");
    let before = metric_sum(
        &gw.metrics().await,
        "switchyard_proxy_protocol_errors_total",
        &[("listener", "web")],
    );
    let resp = tokio::task::spawn_blocking(move || {
        raw_http(
            addr,
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        )
    })
    .await
    .unwrap();
    assert_eq!(
        resp, "",
        "a connection without a PROXY header got an answer"
    );
    // A malformed v1 header too.
    let resp = tokio::task::spawn_blocking(move || {
        raw_http(
            addr,
            "PROXY TCP4 203.0.113.999 127.0.0.1 1 2\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
            Duration::from_secs(5),
        )
    })
    .await
    .unwrap();
    assert_eq!(resp, "");
    assert_eq!(origin.request_count(), 0);
    let mut after = before;
    for _ in 0..100 {
        after = metric_sum(
            &gw.metrics().await,
            "switchyard_proxy_protocol_errors_total",
            &[("listener", "web")],
        );
        if after >= before + 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        after >= before + 2.0,
        "errors before {before}, after {after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_listener_passes_the_accepted_client_on_in_its_own_header() {
    let rec = Recorder::start().await;
    let gw = Gateway::start(&tcp_config(
        "pp-chain",
        &free_addr(),
        "accept_proxy_protocol = true\nproxy_protocol = \"v1\"",
        rec.addr,
    ));
    let listen = gw.listener("db");
    let mut s = TcpStream::connect(listen).await.unwrap();
    let mut payload = format!(
        "PROXY TCP4 203.0.113.9 127.0.0.1 40126 {}\r\n",
        listen.port()
    )
    .into_bytes();
    payload.extend_from_slice(b"chained");
    assert_eq!(exchange(&mut s, &payload).await, b"ok");
    let got = rec.connection_ending_with(b"chained").await;
    assert_eq!(
        String::from_utf8_lossy(&got),
        format!(
            "PROXY TCP4 203.0.113.9 127.0.0.1 40126 {}\r\nchained",
            listen.port()
        )
    );
    // Garbage on the same listener: closed, nothing reaches the backend.
    let mut s = TcpStream::connect(listen).await.unwrap();
    assert_eq!(exchange(&mut s, b"no header here, sorry").await, b"");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!rec
        .seen
        .lock()
        .unwrap()
        .iter()
        .any(|c| c.ends_with(b"sorry")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_upstreams_with_proxy_protocol_get_a_header_per_connection() {
    let origin = ProxyHttpOrigin::start().await;
    let gw = Gateway::start(&http_config(
        "pp-http-up",
        "",
        "proxy_protocol = \"v1\"",
        origin.addr,
    ));
    let listen = gw.listener("web");
    let mut s = connect_from("127.0.0.2:0", listen).await;
    let sport = s.local_addr().unwrap().port();
    let resp = http_exchange(
        &mut s,
        b"GET /a HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with("ok"), "{resp}");
    let headers = origin.headers();
    let want = format!(
        "PROXY TCP4 127.0.0.2 127.0.0.1 {sport} {}\r\n",
        listen.port()
    );
    assert!(
        headers.iter().any(|h| h == want.as_bytes()),
        "want {want:?}, origin saw {:?}",
        headers
            .iter()
            .map(|h| String::from_utf8_lossy(h).into_owned())
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_client_goes_upstream_in_a_v2_header() {
    let origin = ProxyHttpOrigin::start().await;
    let gw = Gateway::start(&http_config(
        "pp-http-chain",
        "accept_proxy_protocol = true",
        "proxy_protocol = \"v2\"",
        origin.addr,
    ));
    let listen = gw.listener("web");
    let mut s = TcpStream::connect(listen).await.unwrap();
    let mut payload = format!(
        "PROXY TCP4 203.0.113.9 127.0.0.1 40127 {}\r\n",
        listen.port()
    )
    .into_bytes();
    payload.extend_from_slice(b"GET /b HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n");
    let resp = http_exchange(&mut s, &payload).await;
    assert!(
        resp.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&resp)
    );
    let want = v2_header(sa("203.0.113.9:40127"), listen);
    assert!(
        origin.headers().contains(&want),
        "origin saw {:?}",
        origin.headers()
    );
}

/// HTTPS listener with `accept_proxy_protocol`: the PROXY header comes before the TLS handshake,
/// and the carried client address is what the origin is told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_listener_reads_the_proxy_header_before_the_tls_handshake() {
    let origin = Origin::start("app");
    let ca = TestCa::new("pp-test-ca");
    let leaf = ca.issue(&["app.test", "127.0.0.1"]);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = leaf.write(dir.path(), "listener");
    let listen = free_addr();
    let toml = format!(
        "{}[[listeners]]\nname = \"web\"\nprotocol = \"https\"\nlisten = \"{listen}\"\n\
         accept_proxy_protocol = true\ntls = {{ cert = \"{}\", key = \"{}\" }}\n\n\
         [[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"app\"\n\n\
         [[upstreams]]\nname = \"app\"\n  [[upstreams.groups]]\n  name = \"g\"\n    \
         [[upstreams.groups.servers]]\n    address = \"127.0.0.1\"\n    port = {}\n",
        server_section("pp-https"),
        cert.display(),
        key.display(),
        origin.port()
    );
    let gw = Gateway::start(&toml);
    let addr = gw.listener("web");

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der()).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(ring_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));

    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let header = format!(
        "PROXY TCP4 203.0.113.9 {} 40123 {}\r\n",
        addr.ip(),
        addr.port()
    );
    tcp.write_all(header.as_bytes()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("app.test").unwrap();
    let mut stream = timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .expect("TLS handshake timed out")
        .expect("TLS handshake after the PROXY header failed");
    stream
        .write_all(b"GET /secure-who HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = Vec::new();
    timeout(Duration::from_secs(5), stream.read_to_end(&mut resp))
        .await
        .expect("no response")
        .ok();
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let r = origin.last_request().expect("origin got no request");
    assert_eq!(r.path(), "/secure-who");
    assert_eq!(r.header("x-forwarded-for").as_deref(), Some("203.0.113.9"));
    assert_eq!(r.header("x-forwarded-proto").as_deref(), Some("https"));

    // Without a PROXY header the TLS handshake never starts: the connection is closed.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("app.test").unwrap();
    let plain = timeout(Duration::from_secs(10), connector.connect(name, tcp)).await;
    assert!(
        !matches!(plain, Ok(Ok(_))),
        "a TLS handshake without the PROXY header must fail"
    );
}

/// `[upstreams.health.active]` lines for fast checks of `/health`, healthy after one pass.
const FAST_CHECKS: &str = "\n  [upstreams.health.active]\n  path = \"/health\"\n  \
                           interval_ms = 200\n  timeout_ms = 1000\n  healthy_threshold = 1\n  \
                           unhealthy_threshold = 1\n";

/// Waits (≤ 10 s) until the origin has recorded a connection that began with `want`.
async fn wait_for_header(origin: &ProxyHttpOrigin, want: &[u8]) -> Vec<Vec<u8>> {
    for _ in 0..100 {
        let seen = origin.headers();
        if seen.iter().any(|h| h == want) {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "origin never saw {:?}; it saw {:?}",
        String::from_utf8_lossy(want),
        origin
            .headers()
            .iter()
            .map(|h| String::from_utf8_lossy(h).into_owned())
            .collect::<Vec<_>>()
    );
}

/// Sends one `GET /a` through `listen` and returns the whole answer.
async fn one_request(listen: SocketAddr) -> String {
    let mut s = connect_from("127.0.0.1:0", listen).await;
    let resp = http_exchange(
        &mut s,
        b"GET /a HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    String::from_utf8_lossy(&resp).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_checks_send_proxy_unknown_to_servers_that_expect_a_header() {
    // The origin refuses a connection without a PROXY header, as NGINX's `listen ...
    // proxy_protocol` does: it is only healthy, and so only gets traffic, if the checks send one.
    let origin = ProxyHttpOrigin::start_with(true).await;
    let gw = Gateway::start(&http_config(
        "pp-check-v1",
        "",
        &format!("proxy_protocol = \"v1\"{FAST_CHECKS}"),
        origin.addr,
    ));
    wait_for_header(&origin, b"PROXY UNKNOWN\r\n").await;
    let resp = one_request(gw.listener("web")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with("ok"), "{resp}");
    // Checks carry no client; proxied requests carry theirs.
    let seen = origin.headers();
    assert!(
        seen.iter()
            .any(|h| h.starts_with(b"PROXY TCP4 127.0.0.1 127.0.0.1 ")),
        "{seen:?}"
    );
    assert!(seen.iter().all(|h| h.starts_with(b"PROXY ")), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_of_a_tcp_listeners_upstream_send_a_v2_local_header() {
    let origin = ProxyHttpOrigin::start_with(true).await;
    let config = tcp_config(
        "pp-check-v2",
        &free_addr(),
        "proxy_protocol = \"v2\"",
        origin.addr,
    ) + FAST_CHECKS;
    let gw = Gateway::start(&config);
    let mut local = V2_SIG.to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    wait_for_header(&origin, &local).await;
    // Healthy, so the tcp listener carries an HTTP exchange to it (with its own v2 PROXY header).
    let resp = one_request(gw.listener("db")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let seen = origin.headers();
    assert!(
        seen.iter()
            .any(|h| h.starts_with(V2_SIG) && h.get(12) == Some(&0x21)),
        "no proxied connection with a v2 PROXY header: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_told_proxy_protocol_off_send_none() {
    // Same upstream as the v1 test, checks told to send no header: the strict origin refuses
    // them, so its one server is unhealthy and clients get 503 (this is what the header
    // prevents).
    let origin = ProxyHttpOrigin::start_with(true).await;
    let checks = FAST_CHECKS.to_string() + "  proxy_protocol = \"off\"\n";
    let gw = Gateway::start(&http_config(
        "pp-check-off",
        "",
        &format!("proxy_protocol = \"v1\"{checks}"),
        origin.addr,
    ));
    wait_for_header(&origin, b"").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let resp = one_request(gw.listener("web")).await;
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
    assert!(
        !origin
            .headers()
            .iter()
            .any(|h| h.starts_with(b"PROXY UNKNOWN")),
        "{:?}",
        origin.headers()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_listed_peers_are_believed_on_an_http_listener() {
    let origin = Origin::start("app");
    let gw = Gateway::start(&http_config(
        "pp-from-http",
        "accept_proxy_protocol = true\naccept_proxy_protocol_from = [\"127.0.0.2/32\"]",
        "",
        origin.addr(),
    ));
    let listen = gw.listener("web");
    let header = format!(
        "PROXY TCP4 203.0.113.9 {} 40123 {}\r\n",
        listen.ip(),
        listen.port()
    );
    let request = "GET /who HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n";
    // The load balancer (127.0.0.2) sends the header: its client is believed.
    let mut lb = connect_from("127.0.0.2:0", listen).await;
    let resp = http_exchange(&mut lb, format!("{header}{request}").as_bytes()).await;
    assert!(String::from_utf8_lossy(&resp).starts_with("HTTP/1.1 200"));
    let r = origin.last_request().expect("origin got no request");
    assert_eq!(r.header("x-forwarded-for").as_deref(), Some("203.0.113.9"));
    // Another peer is a direct client: served without a header, under its own address.
    let mut direct = connect_from("127.0.0.3:0", listen).await;
    let resp = http_exchange(&mut direct, request.as_bytes()).await;
    assert!(String::from_utf8_lossy(&resp).starts_with("HTTP/1.1 200"));
    let r = origin.last_request().expect("origin got no request");
    assert_eq!(r.header("x-forwarded-for").as_deref(), Some("127.0.0.3"));
    // A header from that peer is not believed: it is not HTTP, so the request is refused.
    let before = origin.request_count();
    let mut spoof = connect_from("127.0.0.3:0", listen).await;
    let resp = http_exchange(&mut spoof, format!("{header}{request}").as_bytes()).await;
    let resp = String::from_utf8_lossy(&resp);
    assert!(
        resp.is_empty() || resp.starts_with("HTTP/1.1 400"),
        "{resp}"
    );
    assert_eq!(
        origin.request_count(),
        before,
        "a spoofed header reached the origin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_listed_peers_are_believed_on_a_tcp_listener() {
    let rec = Recorder::start().await;
    let gw = Gateway::start(&tcp_config(
        "pp-from-tcp",
        &free_addr(),
        "accept_proxy_protocol = true\naccept_proxy_protocol_from = [\"127.0.0.2/32\"]\n\
         proxy_protocol = \"v1\"",
        rec.addr,
    ));
    let listen = gw.listener("db");
    // Listed peer: its header is read and its client passed on.
    let mut lb = connect_from("127.0.0.2:0", listen).await;
    let mut payload = format!(
        "PROXY TCP4 203.0.113.9 127.0.0.1 40126 {}\r\n",
        listen.port()
    )
    .into_bytes();
    payload.extend_from_slice(b"from-lb");
    assert_eq!(exchange(&mut lb, &payload).await, b"ok");
    let got = rec.connection_ending_with(b"from-lb").await;
    assert!(
        got.starts_with(b"PROXY TCP4 203.0.113.9 127.0.0.1 40126 "),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // Any other peer: no header expected, its own address goes upstream.
    let mut direct = connect_from("127.0.0.3:0", listen).await;
    let sport = direct.local_addr().unwrap().port();
    assert_eq!(exchange(&mut direct, b"direct").await, b"ok");
    let got = rec.connection_ending_with(b"direct").await;
    assert_eq!(
        String::from_utf8_lossy(&got),
        format!(
            "PROXY TCP4 127.0.0.3 127.0.0.1 {sport} {}\r\ndirect",
            listen.port()
        )
    );
}
