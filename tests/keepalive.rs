//! Client keep-alive: many requests (with and without bodies) on one connection whatever
//! `[limits] read_buffer_bytes` is, and idle keep-alive connections closed at once when a
//! graceful shutdown starts, while a request in flight still completes.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(prefix: &str, origin: &Origin, extra: &str) -> String {
    config_with_server(&server_section(prefix), origin, extra)
}

fn config_with_server(server: &str, origin: &Origin, extra: &str) -> String {
    format!(
        "{server}{extra}\n{}[[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"u\"\n\n{}",
        listener_section("web", &free_addr()),
        upstream_section("u", &[origin]),
    )
}

/// The `content-length` of a response head (panics without one).
fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .expect("content-length")
}

/// Reads one HTTP/1.1 response with a `content-length` from `conn`; returns (status, body).
async fn read_response(conn: &mut TcpStream) -> (u16, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut chunk))
            .await
            .expect("response within 10 s")
            .expect("read");
        assert!(
            n > 0,
            "connection closed mid-response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status: u16 = head[9..12].parse().expect("status");
    let len = content_length(&head);
    while buf.len() < head_end + len {
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut chunk))
            .await
            .expect("body within 10 s")
            .expect("read");
        assert!(n > 0, "connection closed mid-body");
        buf.extend_from_slice(&chunk[..n]);
    }
    (status, buf[head_end..head_end + len].to_vec())
}

/// Reads `n` HTTP/1.1 responses (each with a `content-length`) that may arrive in any pieces,
/// several in one read; returns their statuses.
async fn read_responses(conn: &mut TcpStream, n: usize) -> Vec<u16> {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut statuses = Vec::new();
    while statuses.len() < n {
        // A whole response at the front of `buf`: take it off.
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i + 4]).to_string();
            let len = content_length(&head);
            if buf.len() >= i + 4 + len {
                statuses.push(head[9..12].parse().expect("status"));
                buf.drain(..i + 4 + len);
                continue;
            }
        }
        let got = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("response {} not within 10 s", statuses.len()))
            .expect("read");
        assert!(
            got > 0,
            "connection closed after {} responses: {:?}",
            statuses.len(),
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..got]);
    }
    statuses
}

/// True if the peer closes `conn` within `wait` (EOF or reset).
async fn closed_within(conn: &mut TcpStream, wait: Duration) -> bool {
    let mut b = [0u8; 64];
    matches!(
        tokio::time::timeout(wait, conn.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

async fn requests_on_one_connection(addr: SocketAddr, origin: &Origin, label: &str) {
    origin.clear();
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    // A body larger than any read buffer, with bytes that differ by position.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    for round in 0..6 {
        if round % 2 == 0 {
            let req = format!("GET /get/{round} HTTP/1.1\r\nHost: a\r\n\r\n");
            conn.write_all(req.as_bytes()).await.expect("write");
        } else {
            let head = format!(
                "POST /post/{round} HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
                big.len()
            );
            conn.write_all(head.as_bytes()).await.expect("write head");
            // The body in pieces, so reads see partial bodies.
            for piece in big.chunks(70_001) {
                conn.write_all(piece).await.expect("write body");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let (status, _) = read_response(&mut conn).await;
        assert_eq!(status, 200, "{label}: round {round}");
        // Idle a little between requests: the next request is waited for outside the request.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let seen = origin.requests();
    assert_eq!(seen.len(), 6, "{label}: origin saw {} requests", seen.len());
    for (round, r) in seen.iter().enumerate() {
        if round % 2 == 0 {
            assert_eq!(r.uri, format!("/get/{round}"), "{label}");
            assert!(r.body.is_empty(), "{label}: GET with a body");
        } else {
            assert_eq!(r.uri, format!("/post/{round}"), "{label}");
            assert!(
                r.body.as_ref() == big.as_slice(),
                "{label}: body altered ({} bytes)",
                r.body.len()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_and_bodies_work_with_any_read_buffer() {
    let origin = Origin::start("o");
    for (label, limits) in [
        ("default", ""),
        ("unbuffered", "[limits]\nread_buffer_bytes = 0\n"),
        ("16 bytes", "[limits]\nread_buffer_bytes = 16\n"),
        ("1 MiB", "[limits]\nread_buffer_bytes = 1048576\n"),
    ] {
        let gw = Gateway::start(&config("keepalive-buf", &origin, limits));
        requests_on_one_connection(gw.addr(), &origin, label).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_closes_idle_keep_alive_connections_at_once() {
    let origin = Origin::start("o");
    // A grace period well beyond the idle connection's expected close.
    let server = format!(
        "[server]\ninstance_id = \"{}\"\nthreads = 1\ngrace_period_s = 6\n\n",
        unique_id("keepalive-stop")
    );
    let mut gw = Gateway::start(&config_with_server(
        &server,
        &origin,
        "[limits]\nheader_timeout_ms = 60000\n",
    ));
    let addr = gw.addr();

    // An idle keep-alive connection: served once, then quiet.
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET /once HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("write");
    assert_eq!(read_response(&mut idle).await.0, 200);

    // A request in flight when the shutdown starts (the origin answers after 1.5 s).
    origin.set_delay(Duration::from_millis(1500));
    let mut busy = TcpStream::connect(addr).await.expect("connect");
    busy.write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("write");
    assert!(
        eventually(Duration::from_secs(5), || origin.request_count() == 2).await,
        "the slow request never reached the origin"
    );

    let start = Instant::now();
    gw.signal("TERM");
    assert!(
        closed_within(&mut idle, Duration::from_secs(2)).await,
        "the idle keep-alive connection stayed open after SIGTERM"
    );
    let idle_closed = start.elapsed();
    let (status, _) = read_response(&mut busy).await;
    assert_eq!(status, 200, "the in-flight request was cut");
    assert!(
        idle_closed < Duration::from_secs(2),
        "idle connection closed after {idle_closed:?}"
    );
    assert!(gw.wait_exit(Duration::from_secs(40)).is_some(), "no exit");
}

/// HTTP/1.1 pipelining (requests sent before the previous response was read) is served as NGINX
/// and HAProxy serve it (RFC 9112 §9.3.2): every request answered, in order, one at a time, and
/// the connection stays open — whether the batch arrives in one piece or split, with or without
/// request bodies, whatever the read buffer size (`docs/configuration.md`, "How hostile HTTP/1
/// input is handled").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let origin = Origin::start("o");
    for (label, limits) in [
        ("default", ""),
        ("unbuffered", "[limits]\nread_buffer_bytes = 0\n"),
        ("16 bytes", "[limits]\nread_buffer_bytes = 16\n"),
    ] {
        origin.clear();
        let gw = Gateway::start(&config("keepalive-pipe", &origin, limits));
        let mut conn = TcpStream::connect(gw.addr()).await.expect("connect");
        // Three GETs and a POST with a body in one write, then two more GETs in a second write
        // sent before any response was read.
        let mut batch: String = (0..3)
            .map(|i| format!("GET /pipe/{i} HTTP/1.1\r\nHost: a\r\n\r\n"))
            .collect();
        batch.push_str("POST /pipe/3 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello");
        conn.write_all(batch.as_bytes()).await.expect("write");
        conn.write_all(
            b"GET /pipe/4 HTTP/1.1\r\nHost: a\r\n\r\nGET /pipe/5 HTTP/1.1\r\nHost: a\r\n\r\n",
        )
        .await
        .expect("write");
        // The answers may arrive together: read them as one stream.
        let statuses = read_responses(&mut conn, 6).await;
        assert_eq!(statuses, [200; 6], "{label}");
        let uris: Vec<String> = origin.requests().into_iter().map(|r| r.uri).collect();
        let want: Vec<String> = (0..6).map(|i| format!("/pipe/{i}")).collect();
        assert_eq!(
            uris, want,
            "{label}: origin saw the requests out of order or not all"
        );
        let post = origin
            .requests()
            .into_iter()
            .find(|r| r.uri == "/pipe/3")
            .expect("the POST");
        assert_eq!(&post.body[..], b"hello", "{label}");
        // The connection is still open and keeps working.
        conn.write_all(b"GET /pipe/after HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .expect("write");
        assert_eq!(
            read_response(&mut conn).await.0,
            200,
            "{label}: after the batch"
        );
    }
}
