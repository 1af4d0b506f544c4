//! Hostile HTTP/1 input, black-box: request smuggling attempts (CL+TE, differing Content-Length,
//! bad chunk sizes), malformed heads (obs-fold, NUL, space before the colon), oversized heads,
//! slowloris and too many connections.
//!
//! Every case gets a 4xx (or, for the connection limit, a 503) or a closed connection, and the
//! origin — which records every request it parses — never receives anything ambiguous: no
//! smuggled second request, no request carrying both framings, no body it was not meant to get.
//! Requests are written byte-exact with raw `tokio::net::TcpStream`s.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// The marker path of a smuggled request: the origin must never see it.
const SMUGGLED: &str = "/smuggled";

fn config(prefix: &str, origin: &Origin, limits: &str) -> String {
    format!(
        "{}{limits}\n[metrics]\nlisten = \"{}\"\n\n{}[[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"u\"\n\n{}",
        server_section(prefix),
        free_addr(),
        listener_section("web", &free_addr()),
        upstream_section("u", &[origin]),
    )
}

/// What the gateway did with one connection.
#[derive(Debug)]
struct Outcome {
    /// Every byte the gateway sent back.
    bytes: Vec<u8>,
    /// The gateway closed (FIN or RST) the connection within the wait.
    closed: bool,
    /// When the connection was seen closed, from the first byte written.
    closed_after: Option<Duration>,
}

impl Outcome {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// Status codes of the responses, in order.
    fn statuses(&self) -> Vec<u16> {
        let text = self.text();
        let mut out = Vec::new();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("HTTP/1.") {
            let code = rest.get(i + 9..i + 12).and_then(|c| c.parse().ok());
            if let Some(code) = code {
                out.push(code);
            }
            rest = &rest[i + 7..];
        }
        out
    }

    /// The gateway refused the input: a single 4xx, or nothing at all and a closed connection.
    fn refused(&self) -> bool {
        let statuses = self.statuses();
        match statuses.as_slice() {
            [] => self.closed,
            [code] => (400..500).contains(code),
            _ => false,
        }
    }
}

/// Connects to `addr`, writes `pieces` (pausing `pause` between them; a failed write counts as
/// a closed connection) and reads until the gateway closes or `wait` passes.
async fn exchange(addr: SocketAddr, pieces: &[&[u8]], pause: Duration, wait: Duration) -> Outcome {
    let mut s = timeout(Duration::from_secs(3), TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect");
    let start = Instant::now();
    let deadline = start + wait;
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 && !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        let written = timeout(Duration::from_secs(5), s.write_all(piece)).await;
        if !matches!(written, Ok(Ok(()))) {
            // The gateway stopped reading: collect what it answered before closing.
            let _ = timeout(Duration::from_millis(500), s.read_to_end(&mut bytes)).await;
            return Outcome {
                bytes,
                closed: true,
                closed_after: Some(start.elapsed()),
            };
        }
        // Between pieces, notice an early close without blocking the trickle.
        if pause > Duration::ZERO {
            if let Ok(r) = timeout(Duration::from_millis(1), s.read(&mut buf)).await {
                match r {
                    Ok(0) | Err(_) => {
                        return Outcome {
                            bytes,
                            closed: true,
                            closed_after: Some(start.elapsed()),
                        }
                    }
                    Ok(n) => bytes.extend_from_slice(&buf[..n]),
                }
            }
        }
    }
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Outcome {
                bytes,
                closed: false,
                closed_after: None,
            };
        }
        match timeout(deadline - now, s.read(&mut buf)).await {
            Err(_) => {
                return Outcome {
                    bytes,
                    closed: false,
                    closed_after: None,
                }
            }
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Outcome {
                    bytes,
                    closed: true,
                    closed_after: Some(start.elapsed()),
                }
            }
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
        }
    }
}

async fn send_raw(addr: SocketAddr, request: &[u8]) -> Outcome {
    exchange(addr, &[request], Duration::ZERO, Duration::from_secs(5)).await
}

/// The origin saw no smuggled request, and no request framed two ways.
fn assert_nothing_ambiguous(origin: &Origin, case: &str) {
    for r in origin.requests() {
        assert!(
            !r.uri.contains(SMUGGLED),
            "{case}: a smuggled request reached the origin: {} {}",
            r.method,
            r.uri
        );
        assert!(
            !(r.header("content-length").is_some() && r.header("transfer-encoding").is_some()),
            "{case}: the origin got both Content-Length and Transfer-Encoding: {:?}",
            r.headers
        );
        assert!(
            r.header_all("content-length").len() <= 1,
            "{case}: the origin got several Content-Length: {:?}",
            r.headers
        );
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            !body.contains("GET ") && !body.contains("SMUGGLED"),
            "{case}: the origin got a body with a smuggled payload: {body:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_is_never_smuggled() {
    let origin = Origin::start("o");
    let gw = Gateway::start(&config("hostile-clte", &origin, ""));
    let addr = gw.addr();
    let smuggle = format!("GET {SMUGGLED} HTTP/1.1\r\nHost: a\r\n\r\n");
    let cases: Vec<(&str, String)> = vec![
        // CL.TE: a CL-framed reader would see the rest as a new request.
        (
            "cl.te",
            format!(
                "POST /clte HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggle}"
            ),
        ),
        // TE.CL: a TE-framed front with a CL-framed back end.
        (
            "te.cl",
            format!(
                "POST /tecl HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n8\r\nTECLBODY\r\n0\r\n\r\n{smuggle}"
            ),
        ),
        // TE first, then CL.
        (
            "te-first",
            format!(
                "POST /tefirst HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n{smuggle}"
            ),
        ),
        // Obfuscated Transfer-Encoding values that some parsers do not treat as chunked.
        (
            "te-not-final-chunked",
            format!(
                "POST /te2 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{smuggle}"
            ),
        ),
        (
            "te-xchunked",
            format!(
                "POST /te3 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{smuggle}"
            ),
        ),
        (
            "te-space-before-colon",
            format!(
                "POST /te4 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n{smuggle}"
            ),
        ),
        (
            "te-http10",
            format!(
                "POST /te5 HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggle}"
            ),
        ),
    ];
    for (case, request) in &cases {
        let out = send_raw(addr, request.as_bytes()).await;
        let statuses = out.statuses();
        // At most one answer (the smuggled request is never answered), and the connection is
        // closed: the bytes after an ambiguous body are never read as a request.
        assert!(
            statuses.len() <= 1,
            "{case}: {} responses: {}",
            statuses.len(),
            out.text()
        );
        assert!(
            out.closed,
            "{case}: the connection stayed open: {}",
            out.text()
        );
        if let Some(&code) = statuses.first() {
            assert!(
                code == 200 || (400..500).contains(&code),
                "{case}: status {code}"
            );
        }
        assert_nothing_ambiguous(&origin, case);
    }
    // The chunked reading won: what reached the origin carried the chunked body only.
    for r in origin.requests() {
        match r.uri.as_str() {
            "/clte" | "/tefirst" => assert!(r.body.is_empty(), "{}: {:?}", r.uri, r.body),
            "/tecl" => assert_eq!(&r.body[..], b"TECLBODY"),
            other => {
                panic!("a request with an invalid Transfer-Encoding reached the origin: {other}")
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differing_or_malformed_content_length_is_rejected() {
    let origin = Origin::start("o");
    let gw = Gateway::start(&config("hostile-cl", &origin, ""));
    let addr = gw.addr();
    let cases = [
        (
            "two-headers",
            "POST /cl HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 30\r\n\r\nhello",
        ),
        (
            "comma-list",
            "POST /cl HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 30\r\n\r\nhello",
        ),
        (
            "plus-sign",
            "POST /cl HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
        ),
        (
            "negative",
            "POST /cl HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\nhello",
        ),
        (
            "hex",
            "POST /cl HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello",
        ),
        (
            "overflow",
            "POST /cl HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\nhello",
        ),
    ];
    for (case, request) in cases {
        let body = format!("{request}GET {SMUGGLED} HTTP/1.1\r\nHost: a\r\n\r\n");
        let out = send_raw(addr, body.as_bytes()).await;
        assert!(out.refused(), "{case}: not refused: {}", out.text());
        assert!(out.closed, "{case}: connection left open: {}", out.text());
    }
    assert_eq!(
        origin.request_count(),
        0,
        "rejected requests reached the origin: {:?}",
        origin.requests()
    );
    // Identical duplicates are one length (RFC 9110 §8.6): accepted, and sent upstream once.
    let out = send_raw(
        addr,
        b"POST /same HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .await;
    assert_eq!(out.statuses(), vec![200], "{}", out.text());
    let seen = origin.last_request().expect("the origin got the request");
    assert_eq!(seen.header_all("content-length"), vec!["5"]);
    assert_eq!(&seen.body[..], b"hello");
    assert_nothing_ambiguous(&origin, "identical duplicates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_chunk_sizes_never_reach_the_origin_as_a_body() {
    let origin = Origin::start("o");
    let gw = Gateway::start(&config("hostile-chunk", &origin, ""));
    let addr = gw.addr();
    let cases = [
        ("not-hex", "zz\r\nSMUGGLED\r\n0\r\n\r\n"),
        ("negative", "-8\r\nSMUGGLED\r\n0\r\n\r\n"),
        ("overflow", "10000000000000008\r\nSMUGGLED\r\n0\r\n\r\n"),
        ("space-in-size", "8 8\r\nSMUGGLED\r\n0\r\n\r\n"),
        ("missing-crlf", "8\r\nSMUGGLEDXX0\r\n\r\n"),
    ];
    for (case, body) in cases {
        let request = format!(
            "POST /chunk-{case} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{body}GET {SMUGGLED} HTTP/1.1\r\nHost: a\r\n\r\n"
        );
        let out = send_raw(addr, request.as_bytes()).await;
        let statuses = out.statuses();
        assert!(
            statuses.iter().all(|c| *c != 200) && statuses.len() <= 1,
            "{case}: answered {statuses:?}: {}",
            out.text()
        );
        assert!(
            out.closed,
            "{case}: the connection stayed open: {}",
            out.text()
        );
        assert_nothing_ambiguous(&origin, case);
    }
    // Pingora streams request bodies, so the head may already be upstream when a bad chunk
    // arrives; the upstream request is then aborted: the origin never gets a complete body.
    for r in origin.requests() {
        assert!(r.body.is_empty(), "{}: got body {:?}", r.uri, r.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_heads_are_rejected_before_the_origin() {
    let origin = Origin::start("o");
    let gw = Gateway::start(&config("hostile-heads", &origin, ""));
    let addr = gw.addr();
    let cases: [(&str, &[u8]); 9] = [
        (
            "obs-fold",
            b"GET /fold HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n",
        ),
        (
            "obs-fold-tab",
            b"GET /fold HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n\ttwo\r\n\r\n",
        ),
        (
            "nul-in-value",
            b"GET /nul HTTP/1.1\r\nHost: a\r\nX-Nul: a\0b\r\n\r\n",
        ),
        (
            "nul-in-name",
            b"GET /nul HTTP/1.1\r\nHost: a\r\nX-N\0ul: ab\r\n\r\n",
        ),
        (
            "nul-in-host",
            b"GET /nul HTTP/1.1\r\nHost: a\0.example\r\n\r\n",
        ),
        (
            "space-before-colon",
            b"GET /sp HTTP/1.1\r\nHost: a\r\nX-Sp : b\r\n\r\n",
        ),
        (
            "bare-cr-in-value",
            b"GET /cr HTTP/1.1\r\nHost: a\r\nX-Cr: a\rb\r\n\r\n",
        ),
        (
            "no-colon",
            b"GET /nc HTTP/1.1\r\nHost: a\r\nX-No-Colon\r\n\r\n",
        ),
        (
            "two-hosts",
            b"GET /hosts HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        ),
    ];
    for (case, request) in cases {
        let out = send_raw(addr, request).await;
        assert!(out.refused(), "{case}: not refused: {}", out.text());
    }
    assert_eq!(
        origin.request_count(),
        0,
        "malformed heads reached the origin: {:?}",
        origin.requests()
    );

    // Pingora percent-encodes bytes that are illegal in a request target (NUL, space, DEL)
    // rather than rejecting them: the origin gets an unambiguous, encoded path or nothing.
    let out = send_raw(
        addr,
        b"GET /nul\0target HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        out.statuses() == vec![200] || out.refused(),
        "NUL in the target: {}",
        out.text()
    );
    for r in origin.requests() {
        assert!(
            !r.uri.contains('\0') && !r.uri.contains(' '),
            "raw NUL forwarded: {:?}",
            r.uri
        );
        assert_eq!(r.uri, "/nul%00target");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_lines_and_heads_are_refused() {
    let origin = Origin::start("o");
    let gw = Gateway::start(&config("hostile-size", &origin, ""));
    let addr = gw.addr();
    // Pingora's fixed limits: 256 header fields, 1 MiB (1,048,575 bytes) of request head.
    let many_headers: String = (0..300).map(|i| format!("X-H{i}: v\r\n")).collect();
    let too_many = format!("GET /many HTTP/1.1\r\nHost: a\r\n{many_headers}\r\n");
    let long_line = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(1_100_000));
    let big_header = format!(
        "GET /big HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "b".repeat(1_100_000)
    );
    let many_big: String = (0..200)
        .map(|i| format!("X-B{i}: {}\r\n", "c".repeat(6_000)))
        .collect();
    let big_head = format!("GET /bighead HTTP/1.1\r\nHost: a\r\n{many_big}\r\n");
    for (case, request) in [
        ("too-many-headers", &too_many),
        ("long-request-line", &long_line),
        ("long-header", &big_header),
        ("big-head", &big_head),
    ] {
        let pieces: Vec<&[u8]> = request.as_bytes().chunks(64 * 1024).collect();
        let out = exchange(addr, &pieces, Duration::ZERO, Duration::from_secs(5)).await;
        assert!(
            out.refused(),
            "{case}: not refused: {}",
            out.text().chars().take(300).collect::<String>()
        );
    }
    assert_eq!(
        origin.request_count(),
        0,
        "oversized requests reached the origin: {:?}",
        origin
            .requests()
            .iter()
            .map(|r| r.uri.len())
            .collect::<Vec<_>>()
    );
    // A head under the limits still works (50 fields: the test origin, hyper, allows 100).
    let fine: String = (0..50).map(|i| format!("X-F{i}: v\r\n")).collect();
    let request = format!("GET /fine HTTP/1.1\r\nHost: a\r\nConnection: close\r\n{fine}\r\n");
    let out = send_raw(addr, request.as_bytes()).await;
    assert_eq!(out.statuses(), vec![200], "{}", out.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_closed_after_the_header_timeout() {
    let origin = Origin::start("o");
    let gw = Gateway::start(&config(
        "hostile-slow",
        &origin,
        "[limits]\nheader_timeout_ms = 1000\n",
    ));
    let addr = gw.addr();
    let head = b"GET /slow HTTP/1.1\r\nHost: a\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";

    // One byte every 50 ms: each read is quick, but the head would take ~4.5 s. Pingora's own
    // per-read timeout (60 s) never fires; the header deadline closes it after ~1 s.
    let pieces: Vec<&[u8]> = head.chunks(1).collect();
    let out = exchange(
        addr,
        &pieces,
        Duration::from_millis(50),
        Duration::from_secs(5),
    )
    .await;
    assert!(out.closed, "slowloris connection still open");
    assert!(out.refused(), "slowloris got: {}", out.text());
    let after = out.closed_after.unwrap_or_default();
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_millis(3000),
        "closed after {after:?}, want ~1 s"
    );

    // A connection that sends nothing at all is closed too.
    let out = exchange(addr, &[], Duration::ZERO, Duration::from_secs(4)).await;
    assert!(out.closed && out.bytes.is_empty(), "idle: {}", out.text());
    let after = out.closed_after.unwrap_or_default();
    assert!(
        after < Duration::from_millis(3000),
        "idle closed after {after:?}"
    );

    assert_eq!(
        origin.request_count(),
        0,
        "a partial head reached the origin"
    );

    // A slow head within the limit is served; the keep-alive connection then idles out after
    // another header timeout.
    let pieces: Vec<&[u8]> = head.chunks(20).collect();
    let out = exchange(
        addr,
        &pieces,
        Duration::from_millis(60),
        Duration::from_secs(4),
    )
    .await;
    assert_eq!(out.statuses(), vec![200], "{}", out.text());
    assert!(out.closed, "an idle keep-alive connection stayed open");
    assert_eq!(origin.request_count(), 1);

    let metrics = gw.metrics().await;
    let timeouts = metric_sum(
        &metrics,
        "switchyard_rejected_requests_total",
        &[("listener", "web"), ("reason", "header_timeout")],
    );
    assert!(timeouts >= 2.0, "header_timeout rejections: {timeouts}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_second_head_is_bounded_too() {
    let origin = Origin::start("o");
    let gw = Gateway::start(&config(
        "hostile-slow2",
        &origin,
        "[limits]\nheader_timeout_ms = 1000\n",
    ));
    let first: &[u8] = b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n";
    let second =
        b"GET /second HTTP/1.1\r\nHost: a\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut pieces = vec![first];
    pieces.extend(second.chunks(1));
    let out = exchange(
        gw.addr(),
        &pieces,
        Duration::from_millis(50),
        Duration::from_secs(6),
    )
    .await;
    assert_eq!(out.statuses(), vec![200], "{}", out.text());
    assert!(
        out.closed,
        "the trickled second head kept the connection open"
    );
    let uris: Vec<String> = origin.requests().into_iter().map(|r| r.uri).collect();
    assert_eq!(uris, vec!["/first"]);
}

/// The head deadline is re-armed after every response without re-registering its timer (the
/// timer keeps an older deadline and is moved when it fires early): a keep-alive connection that
/// stays busy for several deadlines is never cut, and is closed about one deadline after it goes
/// idle — not at the first, stale timer expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_keep_alive_outlives_many_deadlines_then_idles_out() {
    let origin = Origin::start("o");
    let gw = Gateway::start(&config(
        "hostile-busy",
        &origin,
        "[limits]\nheader_timeout_ms = 600\n",
    ));
    let mut conn = TcpStream::connect(gw.addr()).await.unwrap();
    let started = Instant::now();
    let mut served = 0;
    // 2.4 s of requests (four deadlines), one every 150 ms, each head sent whole.
    while started.elapsed() < Duration::from_millis(2400) {
        let req = format!("GET /busy/{served} HTTP/1.1\r\nHost: a\r\n\r\n");
        conn.write_all(req.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .expect("a response within 5 s")
            .expect("read");
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(
            text.starts_with("HTTP/1.1 200"),
            "request {served} after {:?}: {text:?}",
            started.elapsed()
        );
        served += 1;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(served >= 10, "only {served} requests in 2.4 s");
    // Now idle: closed after about one deadline (600 ms) from the last response.
    let idle_from = Instant::now();
    let mut buf = [0u8; 64];
    let res = timeout(Duration::from_secs(5), conn.read(&mut buf)).await;
    let idle_for = idle_from.elapsed();
    assert!(
        matches!(res, Ok(Ok(0)) | Ok(Err(_))),
        "the idle connection was not closed: {res:?}"
    );
    assert!(
        idle_for >= Duration::from_millis(300) && idle_for < Duration::from_millis(3000),
        "closed {idle_for:?} after going idle (deadline 600 ms, less the 150 ms pause)"
    );
    assert_eq!(origin.request_count(), served);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_max_connections_are_refused() {
    let origin = Origin::start("o");
    let gw = Gateway::start(&config(
        "hostile-conns",
        &origin,
        "[limits]\nmax_connections = 2\nheader_timeout_ms = 10000\n",
    ));
    let addr = gw.addr();
    let request = b"GET /held HTTP/1.1\r\nHost: a\r\n\r\n";
    // Two keep-alive connections, each served once and held open.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    // Every further connection is refused while both are open.
    for i in 0..3 {
        let out = send_raw(
            addr,
            format!("GET /over{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes(),
        )
        .await;
        let statuses = out.statuses();
        assert!(
            (statuses == vec![503] || statuses.is_empty()) && out.closed,
            "connection {i} over the limit got {statuses:?} (closed: {}): {}",
            out.closed,
            out.text()
        );
    }
    assert_eq!(origin.request_count(), 2, "{:?}", origin.requests());
    // Closing one frees its slot.
    drop(held.pop());
    let served = eventually(Duration::from_secs(5), || {
        let text = raw_http(
            addr,
            "GET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            Duration::from_millis(500),
        );
        text.starts_with("HTTP/1.1 200")
    })
    .await;
    assert!(served, "a slot was not released after a connection closed");

    let metrics = gw.metrics().await;
    let refused = metric_sum(
        &metrics,
        "switchyard_rejected_requests_total",
        &[("listener", "web"), ("reason", "max_connections")],
    );
    assert!(refused >= 3.0, "max_connections rejections: {refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_buffer_bytes_bounds_which_bodies_are_replayed() {
    // `a` resets every connection after reading the request; `b` answers. Round robin sends
    // every other request to `a` first.
    let a = Origin::start("a");
    a.set_mode(OriginMode::Reset);
    let b = Origin::start("b");
    let toml = format!(
        "{}[limits]\nretry_buffer_bytes = 16\n\n{}[[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"u\"\n\n{}",
        server_section("hostile-retrybuf"),
        listener_section("web", &free_addr()),
        upstream_section("u", &[&a, &b]),
    );
    let gw = Gateway::start(&toml);
    let c = client();
    // Small bodies fit the buffer: an idempotent PUT that failed on `a` is replayed on `b`.
    for i in 0..4 {
        let r = c
            .put(gw.url(&format!("/small{i}")))
            .body("0123456789")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "small body {i}");
    }
    // Larger bodies are not kept: a failure after sending is final (502), never replayed.
    let mut statuses = Vec::new();
    for i in 0..4 {
        let r = c
            .put(gw.url(&format!("/large{i}")))
            .body("x".repeat(100))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert!(statuses.contains(&502), "large bodies: {statuses:?}");
    let large_at = |o: &Origin| {
        o.requests()
            .into_iter()
            .filter(|r| r.uri.starts_with("/large"))
            .count()
    };
    assert_eq!(
        large_at(&a) + large_at(&b),
        4,
        "a large body was sent twice: a {:?}, b {:?}",
        a.requests()
            .iter()
            .map(|r| r.uri.clone())
            .collect::<Vec<_>>(),
        b.requests()
            .iter()
            .map(|r| r.uri.clone())
            .collect::<Vec<_>>()
    );
}
