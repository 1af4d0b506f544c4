//! Self-tests of the harness in `tests/support`: they need no gateway.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::*;

fn keepalive_get(s: &mut TcpStream, path: &str) -> String {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    // The origin's answers are tiny: read until the body (the origin's name) has arrived.
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "origin closed the connection");
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap();
            if body.len() >= len {
                return text.into_owned();
            }
        }
    }
    panic!("no complete answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_answers_and_records_requests() {
    let a = Origin::start("a");
    let c = client();
    let r = send(
        &c,
        "POST",
        &a.url("/p/q?x=1&y=2"),
        Some("example.test"),
        &[("x-test", "one"), ("x-multi", "1")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.origin().as_deref(), Some("a"));
    assert_eq!(r.body, "a");

    let c2 = client();
    let resp = c2
        .put(a.url("/body"))
        .body("hello body")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    let reqs = a.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(a.request_count(), 2);
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].uri, "/p/q?x=1&y=2");
    assert_eq!(reqs[0].path(), "/p/q");
    assert_eq!(reqs[0].header("x-test").as_deref(), Some("one"));
    assert_eq!(reqs[0].header("host").as_deref(), Some("example.test"));
    assert_eq!(reqs[0].peer.ip().to_string(), "127.0.0.1");
    assert_eq!(reqs[1].method, "PUT");
    assert_eq!(&reqs[1].body[..], b"hello body");
    assert_eq!(a.last_request().unwrap().method, "PUT");

    a.clear();
    assert_eq!(a.request_count(), 0);
    assert_eq!(a.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_status_and_delay_are_settable() {
    let a = Origin::start("slow");
    a.set_status(503);
    a.set_delay(Duration::from_millis(300));
    let started = Instant::now();
    let r = get(&client(), &a.url("/")).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body, "slow");
    assert!(started.elapsed() >= Duration::from_millis(300));

    a.set_status(200);
    a.set_delay(Duration::ZERO);
    let started = Instant::now();
    assert_eq!(get(&client(), &a.url("/")).await.status, 200);
    assert!(started.elapsed() < Duration::from_millis(300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_counts_connections() {
    let a = Origin::start("a");
    let c = client();
    for _ in 0..10 {
        assert_eq!(get(&c, &a.url("/")).await.status, 200);
    }
    assert_eq!(a.request_count(), 10);
    // Keep-alive: the client reuses its connection. Under load its pool may not have taken the
    // connection back before the next request starts, so allow one extra, never one per request.
    let kept = a.connections();
    assert!(
        (1..=2).contains(&kept),
        "10 requests over {kept} connections"
    );
    assert_eq!(get(&client(), &a.url("/")).await.status, 200);
    assert_eq!(
        a.connections(),
        kept + 1,
        "a new client opens a new connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_stop_closes_listener_and_connections_and_restart_rebinds() {
    let a = Origin::start("a");
    let addr = a.addr();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let answer = keepalive_get(&mut s, "/one");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(a.is_running());

    a.stop();
    assert!(!a.is_running());
    // The open keep-alive connection is closed (EOF or reset), not left hanging.
    let mut buf = [0u8; 16];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("unexpected {n} bytes after stop"),
        Err(e) => assert!(
            e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::TimedOut,
            "connection still open after stop: {e}"
        ),
    }
    // New connections are refused.
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
    assert!(client().get(a.url("/")).send().await.is_err());

    a.restart();
    assert!(a.is_running());
    assert_eq!(a.addr(), addr);
    let r = get(&client(), &a.url("/two")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "a");
    assert_eq!(a.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_reset_mode_resets_without_answering() {
    let a = Origin::start("a");
    a.set_mode(OriginMode::Reset);
    let mut s = TcpStream::connect(a.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc")
        .unwrap();
    let mut buf = [0u8; 64];
    let err = s
        .read(&mut buf)
        .expect_err("expected a reset, got data or EOF");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    assert!(
        eventually(Duration::from_secs(2), || a.request_count() == 1).await,
        "the request was recorded"
    );
    assert_eq!(&a.requests()[0].body[..], b"abc");
    assert!(client().get(a.url("/")).send().await.is_err());

    a.set_mode(OriginMode::Normal);
    assert_eq!(get(&client(), &a.url("/")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_close_and_hang_modes() {
    let a = Origin::start("a");
    a.set_mode(OriginMode::Close);
    let answer = raw_http(
        a.addr(),
        "GET / HTTP/1.1\r\nHost: t\r\n\r\n",
        Duration::from_secs(3),
    );
    assert_eq!(answer, "", "closed without an answer");

    a.set_mode(OriginMode::Hang);
    let c = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = c.get(a.url("/")).send().await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(a.request_count(), 2);
    // Stopping an origin with a hanging request does not block.
    let started = Instant::now();
    a.stop();
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_binds_other_loopback_addresses() {
    let addr: SocketAddr = "127.0.0.2:0".parse().unwrap();
    let b = Origin::start_on("b", addr);
    assert_eq!(b.addr().ip().to_string(), "127.0.0.2");
    assert_ne!(b.port(), 0);
    let r = get(&client(), &b.url("/")).await;
    assert_eq!(r.origin().as_deref(), Some("b"));
    assert_eq!(b.name(), "b");
}

#[test]
fn origin_works_without_a_runtime_and_drops_cleanly() {
    let a = Origin::start("plain");
    let answer = raw_http(
        a.addr(),
        "GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        Duration::from_secs(3),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("x-origin: plain"));
    assert!(answer.ends_with("plain"));
    drop(a);
}

#[test]
fn free_port_is_bindable() {
    let p = free_port();
    assert_ne!(p, 0);
    std::net::TcpListener::bind(("127.0.0.1", p)).unwrap();
    assert!(free_addr().starts_with("127.0.0.1:"));
    assert_ne!(unique_id("x"), unique_id("x"));
    assert!(server_section("t").contains("threads = 1"));
}

#[test]
fn metrics_parser_handles_labels_in_any_order() {
    let text = r#"
# HELP switchyard_requests_total Requests.
# TYPE switchyard_requests_total counter
switchyard_requests_total{route="r",upstream="u",code="200"} 7
switchyard_requests_total{code="404",upstream="",route=""} 2
switchyard_request_duration_seconds_bucket{route="r",le="+Inf"} 7
switchyard_request_duration_seconds_count{route="r"} 7
weird{a="x\"y\\z",b="n\nl"} 1.5e0 1700000000
plain 3
"#;
    let s = parse_metrics(text);
    assert_eq!(s.len(), 6);
    assert_eq!(
        metric_sum(
            &s,
            "switchyard_requests_total",
            &[("upstream", "u"), ("code", "200"), ("route", "r")]
        ),
        7.0
    );
    assert_eq!(metric_sum(&s, "switchyard_requests_total", &[]), 9.0);
    assert_eq!(
        metric_find(&s, "switchyard_request_duration_seconds_bucket", &[])[0].labels["le"],
        "+Inf"
    );
    let w = &metric_find(&s, "weird", &[])[0];
    assert_eq!(w.labels["a"], "x\"y\\z");
    assert_eq!(w.labels["b"], "n\nl");
    assert_eq!(w.value, 1.5);
    assert_eq!(metric_sum(&s, "plain", &[]), 3.0);
}

#[test]
fn switchyard_binary_is_found() {
    let bin = switchyard_bin();
    assert!(bin.exists(), "{}", bin.display());
}
