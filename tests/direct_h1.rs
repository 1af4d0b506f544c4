//! The direct HTTP/1 path (vendor patch 0050), black-box: a request without a body is proxied
//! without the piped path's task channels. What must hold on it, seen from a raw-socket origin
//! that records every byte and a raw client: both connections are kept alive and reused across
//! requests, every response framing arrives whole, a client that leaves mid-response frees the
//! upstream connection (it is not reused, since the rest of that response is still on it), a
//! client that half-closes mid-response aborts it (the direct path watches the client while it
//! waits on the origin, as the piped path did; without that watch the half-closing test fails,
//! checked), and requests with a body still take the piped path and arrive intact.

mod support;

use std::time::Duration;

use support::*;

const WAIT: Duration = Duration::from_secs(5);

fn config(prefix: &str, origin: &RawOrigin) -> String {
    one_route_config(prefix, origin.addr())
}

fn script(req: &RawRequest) -> RawReply {
    let r = RawReply::bytes;
    match req.target().as_str() {
        "/chunked" => r("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            .later(Duration::from_millis(50), "6\r\n world\r\n0\r\n\r\n"),
        "/close" => r("HTTP/1.1 200 OK\r\n\r\nhello world").closing(),
        "/head" => r("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n"),
        "/304" => r("HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n"),
        // Chunked, so each chunk is forwarded as it comes (a body of known length is buffered).
        "/slow" => r("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            .later(Duration::from_millis(600), "5\r\nworld\r\n0\r\n\r\n"),
        other => RawReply::ok(&format!("ok {other}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodiless_requests_keep_both_connections_alive_across_framings() {
    let origin = RawOrigin::start("o");
    origin.set_reply(script);
    let gw = Gateway::start(&config("direct-h1", &origin));

    let mut client = RawClient::connect(gw.addr()).await;
    // (method, target, status, body) in order on one client connection; `/close` ends the
    // upstream connection, so the requests after it go on a second one.
    let steps = [
        ("GET", "/a", 200, "ok /a"),
        ("GET", "/chunked", 200, "hello world"),
        ("HEAD", "/head", 200, ""),
        ("GET", "/304", 304, ""),
        ("DELETE", "/b", 200, "ok /b"),
        ("GET", "/close", 200, "hello world"),
        ("GET", "/c", 200, "ok /c"),
        ("GET", "/d", 200, "ok /d"),
    ];
    for (method, target, status, body) in steps {
        let head = format!("{method} {target} HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(
            client.send(head.as_bytes()).await,
            "{method} {target}: write"
        );
        let r = client
            .response(method, WAIT)
            .await
            .unwrap_or_else(|| panic!("{method} {target}: no response"));
        assert_eq!(r.status, status, "{method} {target}: {}", r.head_text());
        assert!(r.complete, "{method} {target}: incomplete");
        assert_eq!(r.body_text(), body, "{method} {target}");
        assert!(
            r.fields("connection").iter().all(|v| v != "close"),
            "{method} {target}: the client connection is closed: {}",
            r.head_text()
        );
    }
    assert!(client.pending().is_empty(), "{:?}", client.pending());

    // Upstream: everything up to `/close` on one connection, the rest on a second one.
    let requests = origin.requests();
    let conns: Vec<(String, usize)> = requests.iter().map(|r| (r.target(), r.conn)).collect();
    let want: Vec<(String, usize)> = steps
        .iter()
        .map(|(_, t, _, _)| (t.to_string(), usize::from(matches!(*t, "/c" | "/d"))))
        .collect();
    assert_eq!(conns, want);
    assert_eq!(origin.connections(), 2);
    // What the origin received: the heads only, no framing field, no body, nothing more.
    for r in &requests {
        let head = r.head_text().to_ascii_lowercase();
        assert!(
            !head.contains("content-length") && !head.contains("transfer-encoding"),
            "{head}"
        );
        assert!(
            r.body.is_empty() && r.complete,
            "{}: {:?}",
            r.target(),
            r.body
        );
    }
    let total: usize = requests.iter().map(|r| r.head.len()).sum();
    let received = origin.received(0).len() + origin.received(1).len();
    assert_eq!(
        received, total,
        "bytes beyond the request heads reached the origin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_mid_response_frees_the_upstream_connection() {
    let origin = RawOrigin::start("o");
    origin.set_reply(script);
    let gw = Gateway::start(&config("direct-h1-leave", &origin));

    // The origin sends half of the body, then the rest 600 ms later; the client leaves after
    // the first half.
    let mut client = RawClient::connect(gw.addr()).await;
    assert!(client.send(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n").await);
    let r = client
        .response("GET", Duration::from_millis(300))
        .await
        .expect("the head and the first half");
    assert_eq!(r.status, 200);
    assert!(!r.complete, "{:?}", r.body_text());
    drop(client);

    // The next request must not be sent on the connection that still carries `world`.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let mut client = RawClient::connect(gw.addr()).await;
    assert!(client.send(b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n").await);
    let r = client.response("GET", WAIT).await.expect("a response");
    assert_eq!(r.status, 200, "{}", r.head_text());
    assert_eq!(r.body_text(), "ok /after");
    let conns: Vec<(String, usize)> = origin
        .requests()
        .iter()
        .map(|r| (r.target(), r.conn))
        .collect();
    assert_eq!(
        conns,
        [("/slow".to_string(), 0), ("/after".to_string(), 1)],
        "the upstream connection of an abandoned response was reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_with_a_body_arrive_intact_between_bodiless_ones() {
    let origin = RawOrigin::start("o");
    origin.set_reply(script);
    let gw = Gateway::start(&config("direct-h1-body", &origin));

    let mut client = RawClient::connect(gw.addr()).await;
    let sends: [(&str, &[u8]); 4] = [
        ("GET", b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n"),
        (
            "POST",
            b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world",
        ),
        (
            "POST",
            b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        ),
        ("GET", b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n"),
    ];
    for (method, bytes) in sends {
        assert!(client.send(bytes).await);
        let r = client.response(method, WAIT).await.expect("a response");
        assert_eq!(r.status, 200, "{}", r.head_text());
    }
    let requests = origin.requests();
    assert_eq!(requests.len(), 4);
    assert!(requests.iter().all(|r| r.conn == 0 && r.complete));
    assert_eq!(requests[1].fields("content-length"), ["11"]);
    assert_eq!(requests[1].body, b"hello world");
    assert_eq!(
        requests[2].body,
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        "{}",
        requests[2].head_text()
    );
    assert!(requests[0].body.is_empty() && requests[3].body.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_half_closing_mid_response_aborts_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let origin = RawOrigin::start("o");
    origin.set_reply(script);
    let gw = Gateway::start(&config("direct-h1-fin", &origin));

    // The client reads the head and the first chunk, then sends FIN (keeping its read side
    // open). Pingora aborts a request whose client closed (`abort_on_close`): the gateway must
    // notice while it waits for the origin's second chunk, not forward it.
    let mut c = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    c.write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + WAIT;
    while !String::from_utf8_lossy(&got).contains("hello\r\n") {
        match tokio::time::timeout_at(deadline, c.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            other => panic!(
                "no first chunk: {other:?} {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
    c.shutdown().await.unwrap();
    let closed_at = loop {
        match tokio::time::timeout_at(deadline, c.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            Ok(_) => break tokio::time::Instant::now(),
            Err(_) => panic!("the connection stayed open"),
        }
    };
    let text = String::from_utf8_lossy(&got);
    assert!(!text.contains("world"), "the response went on: {text:?}");
    assert!(
        closed_at < deadline - WAIT + Duration::from_millis(550),
        "closed only after the origin's second chunk"
    );

    // And the upstream connection, which still carries that chunk, is not reused.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut client = RawClient::connect(gw.addr()).await;
    assert!(client.send(b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n").await);
    let r = client.response("GET", WAIT).await.expect("a response");
    assert_eq!(r.body_text(), "ok /after");
    let conns: Vec<usize> = origin.requests().iter().map(|r| r.conn).collect();
    assert_eq!(conns, [0, 1]);
}
