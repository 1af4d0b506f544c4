//! gRPC through the gateway (issue 17): real tonic clients and origins (`bin/grpc-echo`), every
//! call shape over h2c and h2/TLS on both sides, trailers and metadata, balancing, deadlines,
//! proxy-made errors as gRPC statuses, gRPC health checks, and HTTP/1 beside it.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use grpc_echo::pb::echo_client::EchoClient;
use grpc_echo::pb::EchoRequest;
use grpc_echo::ServingStatus;
use support::*;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Code;

/// A CA, a certificate for `localhost` and the TLS configurations built from them.
struct Pki {
    ca: TestCa,
    leaf: IssuedCert,
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let ca = TestCa::new("grpc test ca");
        let leaf = ca.issue(&["localhost", "127.0.0.1"]);
        Pki {
            ca,
            leaf,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A server configuration offering `alpn`.
    fn server(&self, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        let mut cfg = rustls::ServerConfig::builder_with_provider(ring_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![self.leaf.cert_der.clone()], self.leaf.private_key())
            .unwrap();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }

    /// A client configuration trusting the CA, offering `h2`.
    fn client(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.cert_der()).unwrap();
        let mut cfg = rustls::ClientConfig::builder_with_provider(ring_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        Arc::new(cfg)
    }

    /// `tls = { cert, key }` of an https listener.
    fn listener_tls(&self) -> String {
        let (cert, key) = self.leaf.write(self.dir.path(), "leaf");
        format!(
            "tls = {{ cert = {}, key = {} }}",
            toml_str(&cert),
            toml_str(&key)
        )
    }

    /// `tls = { ca }` of an https upstream.
    fn upstream_tls(&self) -> String {
        let ca = self.ca.write(self.dir.path(), "ca.pem");
        format!("tls = {{ ca = {}, sni = \"localhost\" }}", toml_str(&ca))
    }
}

fn toml_str(p: &std::path::Path) -> String {
    toml::Value::String(p.display().to_string()).to_string()
}

/// The gateway's two listeners (`web`: plain, h2c; `secure`: https) and one route per upstream
/// in `upstreams` (`/switchyard.test.Echo/` goes to the first), plus `extra` TOML.
fn gateway_config(prefix: &str, pki: &Pki, route_lines: &str, upstreams: &str) -> String {
    format!(
        "{}[metrics]\nlisten = \"{}\"\n\n{}[[listeners]]\nname = \"secure\"\nprotocol = \"https\"\nlisten = \"{}\"\n{}\n\n\
         [[routes]]\nname = \"grpc\"\npath_prefix = \"/\"\nupstream = \"g\"\n{route_lines}\n\n\
         {upstreams}",
        server_section(prefix),
        free_addr(),
        listener_section("web", &free_addr()),
        free_addr(),
        pki.listener_tls(),
    )
}

/// An upstream `name` with `protocol`, `scheme` and the given servers, plus `extra` lines.
fn upstream(
    name: &str,
    protocol: &str,
    scheme: &str,
    servers: &[SocketAddr],
    extra: &str,
) -> String {
    let mut s = format!(
        "[[upstreams]]\nname = \"{name}\"\nprotocol = \"{protocol}\"\nscheme = \"{scheme}\"\n{extra}\n\
         \x20 [[upstreams.groups]]\n  name = \"g\"\n"
    );
    for a in servers {
        s.push_str(&format!(
            "    [[upstreams.groups.servers]]\n    address = \"{}\"\n    port = {}\n",
            a.ip(),
            a.port()
        ));
    }
    s.push('\n');
    s
}

fn req(message: &str, payload: Vec<u8>) -> EchoRequest {
    EchoRequest {
        message: message.into(),
        payload,
        count: 0,
    }
}

/// A payload that differs per message and is not all one byte (sizes 0 .. ~9 KiB).
fn payload(i: usize) -> Vec<u8> {
    (0..(i * 97) % 9000).map(|b| (b * 31 + i) as u8).collect()
}

async fn h2c_client(gw: &Gateway) -> EchoClient<Channel> {
    grpc_echo::client::h2c(gw.listener("web")).await.unwrap()
}

async fn tls_client(gw: &Gateway, pki: &Pki) -> EchoClient<Channel> {
    grpc_echo::client::tls(gw.listener("secure"), "localhost", pki.client())
        .await
        .unwrap()
}

/// Unary, server-, client- and bidi-streaming calls with 100 messages each way, byte-exact.
async fn every_call_shape(c: &mut EchoClient<Channel>, expect_server: &str) {
    let r = c.unary_echo(req("unary", payload(7))).await.unwrap();
    assert_eq!(r.get_ref().payload, payload(7));
    assert_eq!(r.get_ref().server, expect_server);

    let mut s = c
        .server_streaming_echo(EchoRequest {
            count: 100,
            ..req("down", payload(3))
        })
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while let Some(m) = s.next().await {
        let m = m.unwrap();
        assert_eq!(m.seq, n);
        assert_eq!(m.payload, payload(3));
        n += 1;
    }
    assert_eq!(n, 100);

    let up = tokio_stream::iter((0..100).map(|i| req(&i.to_string(), payload(i))));
    let r = c.client_streaming_echo(up).await.unwrap().into_inner();
    assert_eq!(r.seq, 100);
    let want: Vec<u8> = (0..100).flat_map(payload).collect();
    assert_eq!(r.payload.len(), want.len());
    assert!(r.payload == want, "client-streamed payloads differ");

    let up = tokio_stream::iter((0..100).map(|i| req(&format!("b{i}"), payload(i + 1))));
    let mut s = c
        .bidirectional_streaming_echo(up)
        .await
        .unwrap()
        .into_inner();
    let mut n = 0usize;
    while let Some(m) = s.next().await {
        let m = m.unwrap();
        assert_eq!(m.message, format!("b{n}"));
        assert!(m.payload == payload(n + 1), "bidi payload {n} differs");
        n += 1;
    }
    assert_eq!(n, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_shape_through_h2c_and_tls_listeners_to_h2c_and_tls_upstreams() {
    let pki = Pki::new();
    let plain = grpc_echo::Origin::start("plain", None).await.unwrap();
    let secure = grpc_echo::Origin::start("secure", Some(pki.server(&[b"h2"])))
        .await
        .unwrap();
    for (scheme, origin, tls) in [
        ("http", &plain, String::new()),
        ("https", &secure, pki.upstream_tls()),
    ] {
        let gw = Gateway::start(&gateway_config(
            "grpc-shapes",
            &pki,
            "",
            &upstream("g", "http2", scheme, &[origin.addr], &tls),
        ));
        let label = if scheme == "http" { "plain" } else { "secure" };
        every_call_shape(&mut h2c_client(&gw).await, label).await;
        every_call_shape(&mut tls_client(&gw, &pki).await, label).await;
    }
    assert_eq!(plain.calls(), 8);
    assert_eq!(secure.calls(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_trailers_and_an_origin_s_error_pass_through() {
    let pki = Pki::new();
    let origin = grpc_echo::Origin::start("o", None).await.unwrap();
    let gw = Gateway::start(&gateway_config(
        "grpc-meta",
        &pki,
        "",
        &upstream("g", "http2", "http", &[origin.addr], ""),
    ));
    let mut c = h2c_client(&gw).await;

    // Request metadata reaches the origin, response metadata comes back.
    let mut r = tonic::Request::new(req("m", vec![1, 2, 3]));
    r.metadata_mut()
        .insert("x-echo-token", "abc".parse().unwrap());
    r.metadata_mut().insert_bin(
        "x-echo-raw-bin",
        tonic::metadata::MetadataValue::from_bytes(&[0, 255, 7]),
    );
    let resp = c.unary_echo(r).await.unwrap();
    assert_eq!(resp.metadata().get("x-echo-token").unwrap(), "abc");
    assert_eq!(resp.metadata().get("x-origin").unwrap(), "o");

    // Trailers after a stream that ends OK.
    let mut r = tonic::Request::new(EchoRequest {
        count: 3,
        ..req("t", vec![])
    });
    r.metadata_mut()
        .insert("x-trailer", "after-ok".parse().unwrap());
    let mut s = c.server_streaming_echo(r).await.unwrap().into_inner();
    let mut n = 0;
    while let Some(m) = s.next().await {
        m.unwrap();
        n += 1;
    }
    assert_eq!(n, 3);
    let trailers = s.trailers().await.unwrap().unwrap();
    assert_eq!(trailers.get("x-trailer-echo").unwrap(), "after-ok");

    // An origin's own error: code, message and trailer metadata intact.
    let mut r = tonic::Request::new(req("e", vec![]));
    r.metadata_mut().insert("x-fail-code", "9".parse().unwrap());
    // `%` is sent percent-encoded in grpc-message (`%25`) and must arrive decoded once.
    r.metadata_mut().insert(
        "x-fail-message",
        "precondition: 100% unmet".parse().unwrap(),
    );
    r.metadata_mut()
        .insert("x-trailer", "on-error".parse().unwrap());
    let err = c.unary_echo(r).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(err.message(), "precondition: 100% unmet");
    assert_eq!(err.metadata().get("x-trailer-echo").unwrap(), "on-error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrr_splits_calls_over_two_grpc_origins() {
    let pki = Pki::new();
    let a = grpc_echo::Origin::start("a", None).await.unwrap();
    let b = grpc_echo::Origin::start("b", None).await.unwrap();
    let mut ups = upstream("g", "http2", "http", &[a.addr], "");
    // b with weight 3.
    ups.push_str(&format!(
        "    [[upstreams.groups.servers]]\n    address = \"127.0.0.1\"\n    port = {}\n    weight = 3\n\n",
        b.addr.port()
    ));
    let gw = Gateway::start(&gateway_config("grpc-wrr", &pki, "", &ups));
    let mut c = h2c_client(&gw).await;
    let mut counts = std::collections::HashMap::<String, usize>::new();
    for i in 0..40 {
        let r = c.unary_echo(req(&i.to_string(), vec![])).await.unwrap();
        *counts.entry(r.into_inner().server).or_default() += 1;
    }
    assert_eq!(counts.get("a"), Some(&10), "{counts:?}");
    assert_eq!(counts.get("b"), Some(&30), "{counts:?}");
    let m = gw.metrics().await;
    let ok = [("route", "grpc"), ("upstream", "g"), ("grpc_status", "0")];
    assert_eq!(metric_sum(&m, "switchyard_grpc_requests_total", &ok), 40.0);
    let http = [("route", "grpc"), ("code", "200")];
    assert_eq!(metric_sum(&m, "switchyard_requests_total", &http), 40.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_conn_counts_streams_and_avoids_a_slow_origin() {
    let pki = Pki::new();
    let fast = grpc_echo::Origin::start("fast", None).await.unwrap();
    let slow = grpc_echo::Origin::start("slow", None).await.unwrap();
    slow.set_delay_ms(400);
    let gw = Gateway::start(&gateway_config(
        "grpc-lc",
        &pki,
        "",
        &upstream(
            "g",
            "http2",
            "http",
            &[fast.addr, slow.addr],
            "algorithm = \"least_conn\"",
        ),
    ));
    // One client connection: every call is a stream on it, so only stream counting can tell
    // the servers apart.
    let c = h2c_client(&gw).await;
    // One connection to each origin first (sequential calls alternate on ties): concurrent
    // first calls may each open one before any is pooled.
    for i in 0..4 {
        c.clone()
            .unary_echo(req(&format!("warm-{i}"), vec![]))
            .await
            .unwrap();
    }
    let warm = fast.connections() + slow.connections();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for round in 0..6 {
        for i in 0..8 {
            let mut c = c.clone();
            tasks.push(tokio::spawn(async move {
                c.unary_echo(req(&format!("{round}-{i}"), vec![]))
                    .await
                    .map(|r| r.into_inner().server)
            }));
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let mut by = std::collections::HashMap::<String, usize>::new();
    for t in tasks {
        *by.entry(t.await.unwrap().unwrap()).or_default() += 1;
    }
    let (f, s) = (
        by.get("fast").copied().unwrap_or(0),
        by.get("slow").copied().unwrap_or(0),
    );
    assert_eq!(f + s, 48);
    assert!(
        f >= 3 * s,
        "least_conn should favour the fast origin: {by:?}"
    );
    assert!(
        slow.stats.max_in_flight() >= 2,
        "streams ran concurrently on the slow origin"
    );
    // Many streams per connection: the 48 calls, up to 8 at once per round, ride the pooled
    // HTTP/2 connections (with `max_concurrent_streams = 1` every concurrent call opens one).
    let conns = fast.connections() + slow.connections();
    assert!(
        conns <= warm + 2,
        "{conns} upstream connections ({warm} after warm-up) for 48 calls: not multiplexed"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_server_is_unavailable_and_plain_http_keeps_its_502() {
    let pki = Pki::new();
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw = Gateway::start(&gateway_config(
        "grpc-unavail",
        &pki,
        "",
        &upstream("g", "http2", "http", &[dead], ""),
    ));
    let mut c = h2c_client(&gw).await;
    let started = Instant::now();
    let err = c.unary_echo(req("x", vec![])).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(!err.message().is_empty());
    assert!(started.elapsed() < Duration::from_secs(10));
    // Streaming calls too.
    let err = c
        .bidirectional_streaming_echo(tokio_stream::iter(vec![req("x", vec![])]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    // Counted by gRPC status (and under HTTP 200, what was sent).
    let m = gw.metrics().await;
    let unavailable = metric_sum(
        &m,
        "switchyard_grpc_requests_total",
        &[("route", "grpc"), ("upstream", "g"), ("grpc_status", "14")],
    );
    assert_eq!(unavailable, 2.0);
    // A plain HTTP request to the same upstream is a 502, not a gRPC status.
    let r = get(&client(), &gw.url("/plain")).await;
    assert_eq!(r.status, 502);
    assert!(r.header("grpc-status").is_none());
}

/// A unary call by hand over h2c (the `h2` crate, no gRPC library): `grpc-timeout` is sent but
/// nothing on the client enforces it, so only the proxy can end the call. Returns the
/// `grpc-status` (header block or trailers) and how long the answer took.
async fn raw_unary(addr: SocketAddr, grpc_timeout: Option<&str>) -> (Option<String>, Duration) {
    use prost::Message;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (h2, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut h2 = h2.ready().await.unwrap();
    let mut head = http::Request::post(format!("http://{addr}/switchyard.test.Echo/UnaryEcho"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(t) = grpc_timeout {
        head = head.header("grpc-timeout", t);
    }
    let msg = req("raw", vec![]).encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    frame.extend_from_slice(&msg);
    let started = Instant::now();
    let (resp, mut body) = h2.send_request(head.body(()).unwrap(), false).unwrap();
    body.send_data(frame.into(), true).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), resp)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    if let Some(s) = resp.headers().get("grpc-status") {
        return (Some(s.to_str().unwrap().to_string()), started.elapsed());
    }
    let mut body = resp.into_body();
    while let Some(chunk) = body.data().await {
        if chunk.is_err() {
            break;
        }
    }
    let trailers = body.trailers().await.ok().flatten();
    let status = trailers.and_then(|t| {
        t.get("grpc-status")
            .map(|v| v.to_str().unwrap().to_string())
    });
    (status, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_ends_a_slow_call_with_deadline_exceeded() {
    let pki = Pki::new();
    let origin = grpc_echo::Origin::start("o", None).await.unwrap();
    origin.set_delay_ms(3000);
    let gw = Gateway::start(&gateway_config(
        "grpc-deadline",
        &pki,
        "timeout_ms = 1000",
        &upstream("g", "http2", "http", &[origin.addr], ""),
    ));
    let web = gw.listener("web");

    // The client's deadline (300 ms), shorter than the route's: sent upstream, and the call ends
    // at it. Whoever's timer fires first answers: the proxy's (DEADLINE_EXCEEDED, 4) or the
    // origin's own (tonic servers say CANCELLED, 1, for an expired deadline).
    let deadline_ended = |s: &Option<String>| matches!(s.as_deref(), Some("4") | Some("1"));
    let (status, took) = raw_unary(web, Some("300m")).await;
    assert!(deadline_ended(&status), "{status:?} after {took:?}");
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert!(took < Duration::from_millis(900), "{took:?}");
    let sent = origin.stats.last_grpc_timeout().unwrap();
    let sent = parse_grpc_timeout(&sent);
    assert!(
        sent <= Duration::from_millis(300) && sent > Duration::from_millis(100),
        "{sent:?}"
    );

    // No client deadline: the route's timeout_ms (1 s) bounds the wait for the answer, as a
    // gRPC status; no deadline is invented upstream (it would end long-lived streams there).
    let (status, took) = raw_unary(web, None).await;
    assert_eq!(status.as_deref(), Some("4"));
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_millis(2500), "{took:?}");
    assert_eq!(origin.stats.last_grpc_timeout(), None);

    // A client deadline longer than the route's is lowered to it on the way upstream.
    let (status, took) = raw_unary(web, Some("30S")).await;
    assert!(deadline_ended(&status), "{status:?} after {took:?}");
    assert!(took < Duration::from_millis(2500), "{took:?}");
    let sent = parse_grpc_timeout(&origin.stats.last_grpc_timeout().unwrap());
    assert!(sent <= Duration::from_millis(1000), "{sent:?}");

    // And a tonic client without a deadline sees the proxy's DEADLINE_EXCEEDED.
    let mut c = h2c_client(&gw).await;
    let err = c.unary_echo(req("d", vec![])).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_ms_bounds_the_wait_for_headers_not_the_life_of_a_stream() {
    let pki = Pki::new();
    let origin = grpc_echo::Origin::start("o", None).await.unwrap();
    let gw = Gateway::start(&gateway_config(
        "grpc-quiet-stream",
        &pki,
        "timeout_ms = 400",
        &upstream("g", "http2", "http", &[origin.addr], ""),
    ));
    let mut c = h2c_client(&gw).await;

    // A server stream quiet for 700 ms between its messages (longer than timeout_ms) and 2.1 s in
    // all: every message and the final status arrive.
    let quiet = |extra: Option<(&'static str, &str)>| {
        let mut r = tonic::Request::new(EchoRequest {
            count: 4,
            ..req("quiet", vec![])
        });
        r.metadata_mut().insert("x-gap-ms", "700".parse().unwrap());
        if let Some((k, v)) = extra {
            r.metadata_mut().insert(k, v.parse().unwrap());
        }
        r
    };
    let started = Instant::now();
    let mut s = c
        .server_streaming_echo(quiet(None))
        .await
        .unwrap()
        .into_inner();
    let mut seqs = Vec::new();
    while let Some(m) = s.next().await {
        seqs.push(m.expect("a quiet stream is not cut by timeout_ms").seq);
    }
    assert_eq!(seqs, vec![0, 1, 2, 3]);
    assert!(
        started.elapsed() >= Duration::from_millis(2000),
        "{:?}",
        started.elapsed()
    );

    // The wait for the response headers is still bounded by timeout_ms.
    let started = Instant::now();
    let err = c
        .server_streaming_echo(quiet(Some(("x-delay-ms", "2000"))))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );

    // With a client deadline, the call as a whole ends at it (capped by timeout_ms and sent
    // upstream), however the stream is paced.
    let mut r = quiet(None);
    r.set_timeout(Duration::from_millis(1000));
    let started = Instant::now();
    let ended = match c.server_streaming_echo(r).await {
        Err(e) => e,
        Ok(resp) => {
            let mut s = resp.into_inner();
            loop {
                match s.next().await {
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => break e,
                    None => panic!("a stream longer than its deadline ended OK"),
                }
            }
        }
    };
    assert!(
        matches!(ended.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{ended:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1600),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_call_gets_resource_exhausted_and_never_reaches_the_origin() {
    let pki = Pki::new();
    let origin = grpc_echo::Origin::start("o", None).await.unwrap();
    let gw = Gateway::start(&gateway_config(
        "grpc-rate",
        &pki,
        "[routes.rate_limit]\nrequests_per_s = 1\nburst = 2\nkey = \"route\"",
        &upstream("g", "http2", "http", &[origin.addr], ""),
    ));
    let mut c = h2c_client(&gw).await;
    let mut codes = Vec::new();
    for i in 0..5 {
        match c.unary_echo(req(&format!("r{i}"), vec![])).await {
            Ok(_) => codes.push(Code::Ok),
            Err(e) => {
                if e.code() == Code::ResourceExhausted {
                    assert_eq!(e.message(), "rate limited");
                }
                codes.push(e.code())
            }
        }
    }
    // A burst of 2 passes, the rest (well within the second) are refused as gRPC answers.
    assert_eq!(&codes[..2], &[Code::Ok, Code::Ok], "{codes:?}");
    assert!(
        codes[2..].iter().all(|c| *c == Code::ResourceExhausted),
        "{codes:?}"
    );
    assert_eq!(origin.calls(), 2);
    let samples = gw.metrics().await;
    assert_eq!(
        metric_sum(
            &samples,
            "switchyard_rate_limited_total",
            &[("route", "grpc")]
        ),
        3.0
    );
}

/// A `grpc-timeout` value as a duration (test side: digits and a unit).
fn parse_grpc_timeout(v: &str) -> Duration {
    let (n, unit) = v.split_at(v.len() - 1);
    let n: u64 = n.parse().unwrap();
    match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => panic!("bad grpc-timeout {v}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_takes_a_not_serving_origin_out_and_brings_it_back() {
    let pki = Pki::new();
    let a = grpc_echo::Origin::start("a", None).await.unwrap();
    let b = grpc_echo::Origin::start("b", None).await.unwrap();
    let gw = Gateway::start(&gateway_config(
        "grpc-health",
        &pki,
        "",
        &upstream(
            "g",
            "http2",
            "http",
            &[a.addr, b.addr],
            "  [upstreams.health.active]\n  protocol = \"grpc\"\n  interval_ms = 100\n  \
             timeout_ms = 500\n  healthy_threshold = 1\n  unhealthy_threshold = 1\n",
        ),
    ));
    let c = h2c_client(&gw).await;
    let servers = |n: usize, mut c: EchoClient<Channel>| async move {
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..n {
            seen.insert(
                c.unary_echo(req(&i.to_string(), vec![]))
                    .await
                    .unwrap()
                    .into_inner()
                    .server,
            );
        }
        seen
    };
    assert_eq!(servers(10, c.clone()).await.len(), 2);

    a.set_health("", ServingStatus::NotServing).await;
    let gone = Instant::now();
    loop {
        let seen = servers(6, c.clone()).await;
        if seen.len() == 1 && seen.contains("b") {
            break;
        }
        assert!(
            gone.elapsed() < Duration::from_secs(5),
            "a still served: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.set_health("", ServingStatus::Serving).await;
    let back = Instant::now();
    loop {
        if servers(6, c.clone()).await.len() == 2 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "a did not come back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_upstreams_on_the_same_gateway_are_unaffected_and_refuse_grpc_clearly() {
    let pki = Pki::new();
    let grpc = grpc_echo::Origin::start("g", None).await.unwrap();
    let web = Origin::start("web");
    let ws = UpgradeOrigin::start().await;
    let config = format!(
        "{}{}[[listeners]]\nname = \"secure\"\nprotocol = \"https\"\nlisten = \"{}\"\n{}\n\n\
         [[routes]]\nname = \"misrouted\"\npath_prefix = \"/switchyard.test.Echo/ClientStreamingEcho\"\nupstream = \"w\"\n\n\
         [[routes]]\nname = \"grpc\"\npath_prefix = \"/switchyard.test.Echo/\"\nupstream = \"g\"\n\n\
         [[routes]]\nname = \"ws\"\npath_prefix = \"/ws\"\nupstream = \"s\"\n\n\
         [[routes]]\nname = \"web\"\npath_prefix = \"/\"\nupstream = \"w\"\n\n{}{}{}",
        server_section("grpc-mixed"),
        listener_section("web", &free_addr()),
        free_addr(),
        pki.listener_tls(),
        upstream("g", "http2", "http", &[grpc.addr], ""),
        upstream("w", "http1", "http", &[web.addr()], ""),
        upstream("s", "http1", "http", &[ws.addr()], ""),
    );
    let gw = Gateway::start(&config);
    let mut c = h2c_client(&gw).await;
    let r = c.unary_echo(req("x", vec![])).await.unwrap();
    assert_eq!(r.into_inner().server, "g");

    // HTTP/1.1 and h2 clients of the web route reach the HTTP/1 origin (which speaks only
    // HTTP/1.1).
    let r = get(&client(), &gw.url("/page")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.origin().as_deref(), Some("web"));
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2.get(gw.url("/page-h2")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.unwrap(), "web");

    // A WebSocket upgrade through an http1 upstream still works.
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(5);
    while !got.windows(4).any(|w| w == b"\r\n\r\n") && Instant::now() < deadline {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    s.write_all(b"ping").await.unwrap();
    let mut echoed = Vec::new();
    while !echoed.ends_with(b"echo:ping") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        echoed.extend_from_slice(&buf[..n]);
    }

    // A gRPC call routed to the http1 upstream fails with a gRPC status saying why, and the
    // HTTP/1 origin never sees it.
    let before = web.request_count();
    let err = c
        .client_streaming_echo(tokio_stream::iter(vec![req("x", vec![])]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    assert!(err.message().contains("http2"), "{}", err.message());
    assert_eq!(web.request_count(), before);
    assert!(
        gw.wait_for_log("HTTP/1", Duration::from_secs(3)),
        "{}",
        gw.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_uses_h2_when_a_tls_origin_offers_it_and_http1_when_not() {
    let pki = Pki::new();
    let h2 = grpc_echo::Origin::start("h2", Some(pki.server(&[b"h2"])))
        .await
        .unwrap();
    let gw = Gateway::start(&gateway_config(
        "grpc-auto",
        &pki,
        "",
        &upstream("g", "auto", "https", &[h2.addr], &pki.upstream_tls()),
    ));
    // gRPC only works over HTTP/2: a successful streaming call proves h2 was negotiated.
    every_call_shape(&mut h2c_client(&gw).await, "h2").await;

    // An HTTPS origin offering only HTTP/1.1: auto falls back, http2 refuses it (502).
    let ca = &pki.ca;
    let cert = ca.issue(&["localhost"]);
    let h1 = TlsOrigin::start("h1", &cert, None);
    let h1_addr: SocketAddr = h1.addr();
    for (protocol, want) in [("auto", 200), ("http2", 502)] {
        let gw = Gateway::start(&gateway_config(
            "grpc-auto-h1",
            &pki,
            "",
            &upstream("g", protocol, "https", &[h1_addr], &pki.upstream_tls()),
        ));
        let r = get(&client(), &gw.url("/over-h1")).await;
        assert_eq!(r.status, want, "protocol = {protocol}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_conf_grpc_toml_checks_and_runs() {
    let path = workspace_root().join("conf/grpc.toml");
    let (code, out, err) = check_file(&path);
    assert_eq!(code, 0, "conf/grpc.toml:\nstdout: {out}\nstderr: {err}");

    let a = grpc_echo::Origin::start("a", None).await.unwrap();
    let b = grpc_echo::Origin::start("b", None).await.unwrap();
    let mut table: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    table["listeners"].as_array_mut().unwrap()[0]["listen"] = toml::Value::String(free_addr());
    table["metrics"]["listen"] = toml::Value::String(free_addr());
    let servers = table["upstreams"].as_array_mut().unwrap()[0]["groups"]
        .as_array_mut()
        .unwrap()[0]["servers"]
        .as_array_mut()
        .unwrap();
    for (s, o) in servers.iter_mut().zip([&a, &b]) {
        s["port"] = toml::Value::Integer(o.addr.port().into());
    }
    let gw = Gateway::start(&toml::to_string(&table).unwrap());
    let mut c = h2c_client(&gw).await;
    // Health checks pass within a check interval; then both servers answer.
    let started = Instant::now();
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 2 && started.elapsed() < Duration::from_secs(10) {
        match c.unary_echo(req("x", vec![])).await {
            Ok(r) => {
                seen.insert(r.into_inner().server);
            }
            Err(e) => assert_eq!(e.code(), Code::Unavailable, "{e:?}"),
        }
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    let mut s = c
        .server_streaming_echo(EchoRequest {
            count: 100,
            ..req("s", payload(5))
        })
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while let Some(m) = s.next().await {
        assert_eq!(m.unwrap().payload, payload(5));
        n += 1;
    }
    assert_eq!(n, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_checks_count_unavailable_as_a_failure() {
    let pki = Pki::new();
    let good = grpc_echo::Origin::start("good", None).await.unwrap();
    let bad = grpc_echo::Origin::start("bad", None).await.unwrap();
    bad.set_fail_code(14);
    let gw = Gateway::start(&gateway_config(
        "grpc-passive",
        &pki,
        "",
        &upstream(
            "g",
            "http2",
            "http",
            &[good.addr, bad.addr],
            "  [upstreams.health.passive]\n  unhealthy_threshold = 2\n  ejection_ms = 60000\n",
        ),
    ));
    let mut c = h2c_client(&gw).await;
    let mut unavailable = 0;
    for i in 0..20 {
        match c.unary_echo(req(&i.to_string(), vec![])).await {
            Ok(r) => assert_eq!(r.into_inner().server, "good"),
            Err(e) => {
                assert_eq!(e.code(), Code::Unavailable, "{e:?}");
                unavailable += 1;
            }
        }
    }
    // Round robin sends every other call to `bad` until two UNAVAILABLE answers eject it.
    assert_eq!(unavailable, 2, "bad was not ejected after 2 failures");
    assert_eq!(bad.calls(), 2);
    let m = gw.metrics().await;
    let ejections = metric_sum(
        &m,
        "switchyard_backend_ejections_total",
        &[("upstream", "g")],
    );
    assert_eq!(ejections, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_going_away_finishes_the_calls_it_accepted() {
    let pki = Pki::new();
    let a = grpc_echo::Origin::start("a", None).await.unwrap();
    a.set_delay_ms(800);
    let gw = Gateway::start(&gateway_config(
        "grpc-goaway",
        &pki,
        "",
        &upstream("g", "http2", "http", &[a.addr], ""),
    ));
    let mut c = h2c_client(&gw).await;
    // Warm the pooled h2 connection to `a`, then start a slow call on it.
    c.unary_echo(req("warm", vec![])).await.unwrap();
    let mut slow = c.clone();
    let call = tokio::spawn(async move { slow.unary_echo(req("slow", vec![])).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // `a` shuts down gracefully: GOAWAY on its connection, the accepted stream still answered.
    drop(a);
    let r = call
        .await
        .unwrap()
        .expect("the stream the server accepted was not failed");
    assert_eq!(r.into_inner().server, "a");
    // The next call cannot use the drained connection: a new one is refused (a is gone).
    let err = c.unary_echo(req("after", vec![])).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
}
