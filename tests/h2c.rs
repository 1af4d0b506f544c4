//! HTTP/2 with prior knowledge (h2c) on plain `http` listeners, beside HTTP/1 on the same port:
//! told apart by the first bytes without holding short HTTP/1 requests back, the preface under the
//! head deadline, and idle HTTP/2 connections closed after `header_timeout_ms`.

mod support;

use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
const EMPTY_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

fn config(prefix: &str, origin: &Origin, limits: &str) -> String {
    format!(
        "{}{limits}\n{}[[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"u\"\n\n{}",
        server_section(prefix),
        listener_section("web", &free_addr()),
        upstream_section("u", &[origin]),
    )
}

/// Reads until the gateway closes the connection (or `limit` passes); returns the bytes read
/// and how long it took.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, Option<Duration>) {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return (out, None),
            Ok(Ok(0)) | Ok(Err(_)) => return (out, Some(start.elapsed())),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_listener_serves_h2c_and_http1_side_by_side() {
    let origin = Origin::start("o");
    let gw = Gateway::start(&config("h2c-both", &origin, ""));
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for i in 0..3 {
        let r = h2
            .get(gw.url(&format!("/h2/{i}")))
            .header("x-probe", "two")
            .send()
            .await
            .unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.status().as_u16(), 200);
        assert!(r.text().await.unwrap().contains('o'));
    }
    let r = get(&client(), &gw.url("/h1")).await;
    assert_eq!(r.status, 200);
    // The origin got every request over HTTP/1.1 with the forwarding headers.
    let reqs = origin.requests();
    let h2_reqs: Vec<_> = reqs
        .iter()
        .filter(|r| r.path().starts_with("/h2/"))
        .collect();
    assert_eq!(h2_reqs.len(), 3, "{reqs:?}");
    for r in h2_reqs {
        assert_eq!(r.header("x-probe").as_deref(), Some("two"));
        assert_eq!(r.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    }
    assert!(reqs.iter().any(|r| r.path() == "/h1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_http1_request_is_not_held_back_by_the_preface_check() {
    // 18 bytes, shorter than the 24-byte preface: a check that waits for 24 bytes would hold it
    // until the head deadline (10 s here).
    let origin = Origin::start("o");
    let gw = Gateway::start(&config("h2c-short", &origin, ""));
    let start = Instant::now();
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let (out, closed) = read_until_closed(&mut s, Duration::from_secs(8)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1."), "{text}");
    assert!(text.contains(" 200 "), "{text}");
    assert!(
        closed.is_some(),
        "HTTP/1.0 without keep-alive must be closed"
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "answered after {:?}",
        start.elapsed()
    );
    // A method that shares the preface's first letter goes to HTTP/1 too.
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(b"PUT /p HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (out, _) = read_until_closed(&mut s, Duration::from_secs(8)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_trickled_h2c_connections_are_closed_after_the_head_deadline() {
    let origin = Origin::start("o");
    let gw = Gateway::start(&config(
        "h2c-idle",
        &origin,
        "[limits]\nheader_timeout_ms = 1000\n",
    ));
    // A complete preface and SETTINGS, then nothing: HTTP/2 with no stream in flight is idle,
    // and closed after header_timeout_ms (the server's own SETTINGS come first).
    let mut idle = TcpStream::connect(gw.addr()).await.unwrap();
    idle.write_all(PREFACE).await.unwrap();
    idle.write_all(EMPTY_SETTINGS).await.unwrap();
    // Half of a preface, then nothing: held by the head deadline like a slow HTTP/1 head.
    let mut trickled = TcpStream::connect(gw.addr()).await.unwrap();
    trickled.write_all(&PREFACE[..12]).await.unwrap();
    let ((got, idle_closed), (_, trickled_closed)) = tokio::join!(
        read_until_closed(&mut idle, Duration::from_secs(10)),
        read_until_closed(&mut trickled, Duration::from_secs(10)),
    );
    // The server spoke HTTP/2: its first frame is a SETTINGS frame (type 4 on stream 0).
    assert!(
        got.len() >= 9 && got[3] == 4,
        "not an HTTP/2 server answer: {got:?}"
    );
    let idle_closed = idle_closed.expect("an idle h2c connection was never closed");
    assert!(
        idle_closed >= Duration::from_millis(800),
        "closed too early: {idle_closed:?}"
    );
    let trickled_closed = trickled_closed.expect("a trickled preface was never closed");
    assert!(
        trickled_closed >= Duration::from_millis(800),
        "closed too early: {trickled_closed:?}"
    );
    assert_eq!(origin.request_count(), 0);
}
