//! Request hygiene, black-box: path normalisation before routing (dot segments, percent-encoded
//! dots and slashes, `//`), the Host header (missing, invalid, HTTP/1.0, trailing dot), `TRACE`,
//! duplicate `Content-Length`, and slow request bodies (`[limits] body_timeout_ms`).
//!
//! Requests are written byte-exact on raw sockets (HTTP clients normalise paths themselves) and
//! the origin is a [`RawOrigin`], which records every byte it receives: each case asserts what
//! the origin got, byte for byte, and what the client got.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::*;

/// Routes: `/napi` (prefix) and `/nu/{id}` → `/napi/{id}` on upstream `u`; `/trace` (GET and
/// TRACE) on `u`; `/ten` with `host_header = "ten.internal"` on `u`; host `public.example` (any
/// path) on upstream `p`. Nothing else: a path that escapes `/napi` finds no route (404).
fn config(prefix: &str, u: &RawOrigin, p: &RawOrigin, limits: &str) -> String {
    format!(
        "{}[limits]\n{limits}\n\n[metrics]\nlisten = \"{}\"\n\n{}\
         [[routes]]\nname = \"napi\"\npath_prefix = \"/napi\"\nupstream = \"u\"\n\n\
         [[routes]]\nname = \"nu\"\npath = \"/nu/{{id}}\"\nbackend_path = \"/napi/{{id}}\"\nupstream = \"u\"\n\n\
         [[routes]]\nname = \"trace\"\npath_prefix = \"/trace\"\nmethods = [\"GET\", \"TRACE\"]\nupstream = \"u\"\n\n\
         [[routes]]\nname = \"ten\"\npath_prefix = \"/ten\"\nhost_header = \"ten.internal\"\nupstream = \"u\"\n\n\
         [[routes]]\nname = \"public\"\nhosts = [\"public.example\"]\nupstream = \"p\"\n\n{}{}",
        server_section(prefix),
        free_addr(),
        listener_section("web", &free_addr()),
        upstream_section_for("u", &[u.addr()]),
        upstream_section_for("p", &[p.addr()]),
    )
}

const WAIT: Duration = Duration::from_secs(5);

/// Sends `request` on a new connection and reads one response.
async fn one(addr: SocketAddr, request: &str) -> RawResponse {
    let method = request.split(' ').next().unwrap_or("GET").to_string();
    let mut c = RawClient::connect(addr).await;
    assert!(
        c.send(request.as_bytes()).await,
        "write failed: {request:?}"
    );
    c.response(&method, WAIT)
        .await
        .unwrap_or_else(|| panic!("no response to {request:?}"))
}

fn get(target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n")
}

/// What a request target should become.
enum Want {
    /// Answered with this status; nothing reaches the origin.
    Refused(u16),
    /// Forwarded with exactly this request target.
    Sent(&'static str),
}

async fn check_targets(addr: SocketAddr, origin: &RawOrigin, cases: &[(&str, Want)]) {
    for (target, want) in cases {
        origin.clear();
        let resp = one(addr, &get(target)).await;
        match want {
            Want::Refused(code) => {
                assert_eq!(resp.status, *code, "{target}: {}", resp.head_text());
                assert_eq!(
                    origin.request_count(),
                    0,
                    "{target} reached the origin as {:?}",
                    origin
                        .requests()
                        .iter()
                        .map(|r| r.target())
                        .collect::<Vec<_>>()
                );
            }
            Want::Sent(sent) => {
                assert_eq!(resp.status, 200, "{target}: {}", resp.head_text());
                let reqs = origin.requests();
                assert_eq!(reqs.len(), 1, "{target}");
                assert_eq!(
                    reqs[0].request_line(),
                    format!("GET {sent} HTTP/1.1"),
                    "{target}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_and_encodings_are_normalised_before_routing() {
    let u = RawOrigin::start("u");
    let p = RawOrigin::start("p");
    let gw = Gateway::start(&config("hyg-path", &u, &p, ""));
    use Want::*;
    let cases = [
        // Escapes from the `/napi` prefix: normalised to `/admin`, which no route serves.
        ("/napi/../admin", Refused(404)),
        ("/napi/%2e%2e/admin", Refused(404)),
        ("/napi/%2E%2E/admin", Refused(404)),
        ("/napi/.%2e/admin", Refused(404)),
        ("/napi/%2e./admin", Refused(404)),
        ("/napi//../admin", Refused(404)),
        ("//napi/../admin", Refused(404)),
        ("/napi/./../admin", Refused(404)),
        // Through a `{param}`: `..` is never a segment, so never a parameter.
        ("/nu/%2e%2e", Refused(404)),
        ("/nu/..", Refused(404)),
        // Encoded slashes and backslashes are refused by default.
        ("/napi/..%2fadmin", Refused(400)),
        ("/napi/..%2Fadmin", Refused(400)),
        ("/napi/..%5cadmin", Refused(400)),
        ("/nu/..%2fadmin", Refused(400)),
        ("/nu/a%2Fb", Refused(400)),
        ("/napi/a\\b", Refused(400)),
        // Above the root.
        ("/..", Refused(400)),
        ("/napi/../../etc/passwd", Refused(400)),
        ("/%2e%2e/napi", Refused(400)),
        // Malformed percent-encodings.
        ("/napi/%zz", Refused(400)),
        ("/napi/%4", Refused(400)),
        ("/napi/100%", Refused(400)),
        // Normalised and forwarded.
        ("/napi/./a//b/../c", Sent("/napi/a/c")),
        ("/napi/%7euser/%41%42%2d%5f%2E", Sent("/napi/~user/AB-_.")),
        ("/napi/%c3%a9%3a", Sent("/napi/%C3%A9%3A")),
        ("/napi/a/.", Sent("/napi/a/")),
        ("/napi/a/b/..", Sent("/napi/a/")),
        ("/napi/nul%00x", Sent("/napi/nul%00x")),
        ("/napi", Sent("/napi")),
        ("/napi/", Sent("/napi/")),
        // The query string is never touched.
        (
            "/napi/q/./x?a=/../%2e%2e//&b=%2f%7e",
            Sent("/napi/q/x?a=/../%2e%2e//&b=%2f%7e"),
        ),
        // `{param}` captures and renders the normalised segment.
        ("/nu/%41b", Sent("/napi/Ab")),
        ("/nu/x/../7", Sent("/napi/7")),
        ("/nu/x//..//8", Sent("/napi/8")),
    ];
    check_targets(gw.addr(), &u, &cases).await;
    // A target that is not UTF-8 (httparse lets bytes >= 0x80 through) is not a URI.
    let mut c = RawClient::connect(gw.addr()).await;
    assert!(
        c.send(b"GET /napi/\xff\xfe HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
    );
    let resp = c.response("GET", WAIT).await.expect("a response");
    assert_eq!(resp.status, 400, "{}", resp.head_text());
    // UTF-8 is kept as sent.
    u.clear();
    let resp = one(gw.addr(), &get("/napi/caf\u{e9}/./x")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(u.requests()[0].target(), "/napi/caf\u{e9}/x");
    assert_eq!(p.request_count(), 0);
    let metrics = gw.metrics().await;
    let bad = metric_sum(
        &metrics,
        "switchyard_rejected_requests_total",
        &[("listener", "web"), ("reason", "bad_path")],
    );
    assert!(bad >= 10.0, "bad_path rejections: {bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_slashes_can_be_kept_but_never_hide_dot_segments() {
    let u = RawOrigin::start("u");
    let p = RawOrigin::start("p");
    let gw = Gateway::start(&config("hyg-keep", &u, &p, "encoded_slashes = \"keep\""));
    use Want::*;
    let cases = [
        ("/napi/a%2fb", Sent("/napi/a%2Fb")),
        ("/napi/a%5cb/c", Sent("/napi/a%5Cb/c")),
        // Kept encoded, an encoded slash is no segment separator: `{id}` is one segment.
        ("/nu/a%2fb", Sent("/napi/a%2Fb")),
        // Dots between encoded slashes would become dot segments once the origin decodes.
        ("/nu/..%2fadmin", Refused(400)),
        ("/napi/..%2Fadmin", Refused(400)),
        ("/napi/%2e%2e%2fadmin", Refused(400)),
        ("/napi/a%2F..", Refused(400)),
        ("/napi/a%5C.%5Cb", Refused(400)),
        // Everything else as without `keep`.
        ("/napi/../admin", Refused(404)),
        ("/..", Refused(400)),
    ];
    check_targets(gw.addr(), &u, &cases).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_paths_are_normalised_too() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let u = RawOrigin::start("u");
    let p = RawOrigin::start("p");
    let gw = Gateway::start(&config("hyg-h2", &u, &p, ""));
    let tcp = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let authority = gw.addr().to_string();
    for (path, want_status, want_target) in [
        ("/napi/%2e%2e/admin", 404, None),
        ("/napi/..%2fadmin", 400, None),
        ("/napi/./a//b/../c?q=/../", 200, Some("/napi/a/c?q=/../")),
        ("/nu/%2E%2E", 404, None),
    ] {
        u.clear();
        let uri: hyper::Uri = format!("http://{authority}{path}").parse().unwrap();
        let req = hyper::Request::get(uri)
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = tokio::time::timeout(WAIT, send.send_request(req))
            .await
            .expect("h2 response in time")
            .expect("h2 response");
        let status = resp.status().as_u16();
        let _ = resp.into_body().collect().await;
        assert_eq!(status, want_status, "h2 {path}");
        match want_target {
            None => assert_eq!(u.request_count(), 0, "h2 {path} reached the origin"),
            Some(t) => {
                let reqs = u.requests();
                assert_eq!(reqs.len(), 1, "h2 {path}");
                assert_eq!(reqs[0].target(), t, "h2 {path}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_is_required_valid_and_matched_without_a_trailing_dot() {
    let u = RawOrigin::start("u");
    let p = RawOrigin::start("p");
    let gw = Gateway::start(&config("hyg-host", &u, &p, ""));
    let addr = gw.addr();
    // HTTP/1.1 without Host, and Host values that are not host[:port].
    for head in [
        "GET /napi/h HTTP/1.1\r\n\r\n",
        "GET /napi/h HTTP/1.1\r\nHost: a b\r\n\r\n",
        "GET /napi/h HTTP/1.1\r\nHost: a/b\r\n\r\n",
        "GET /napi/h HTTP/1.1\r\nHost: a\\b\r\n\r\n",
        "GET /napi/h HTTP/1.1\r\nHost: \r\n\r\n",
        "GET /napi/h HTTP/1.1\r\nHost: a:b:c\r\n\r\n",
        "GET /napi/h HTTP/1.1\r\nHost: a:80x\r\n\r\n",
        "GET /napi/h HTTP/1.1\r\nHost: [::1\r\n\r\n",
        "GET /napi/h HTTP/1.1\r\nHost: [zz::1]:80\r\n\r\n",
        "GET /napi/h HTTP/1.1\r\nHost: a%zz\r\n\r\n",
        "GET /napi/h HTTP/1.1\r\nHost: a?b\r\n\r\n",
        "GET /napi/h HTTP/1.1\r\nHost: a#b\r\n\r\n",
    ] {
        let resp = one(addr, head).await;
        assert_eq!(resp.status, 400, "{head:?}: {}", resp.head_text());
    }
    assert_eq!(
        u.request_count() + p.request_count(),
        0,
        "{:?}",
        u.requests()
    );
    // Valid forms.
    for host in [
        "a",
        "a:8080",
        "127.0.0.1",
        "[::1]:8080",
        "x-y.example",
        "a%41",
    ] {
        let resp = one(
            addr,
            &format!("GET /napi/ok HTTP/1.1\r\nHost: {host}\r\n\r\n"),
        )
        .await;
        assert_eq!(resp.status, 200, "Host: {host}: {}", resp.head_text());
    }
    // A trailing dot names the same host for route matching; it is forwarded as sent.
    for host in ["public.example.", "PUBLIC.example.:8080", "public.example"] {
        p.clear();
        let resp = one(addr, &format!("GET /pub HTTP/1.1\r\nHost: {host}\r\n\r\n")).await;
        assert_eq!(resp.status, 200, "Host: {host}: {}", resp.head_text());
        let reqs = p.requests();
        assert_eq!(reqs.len(), 1, "Host: {host} did not reach the public route");
        assert_eq!(reqs[0].fields("host"), vec![host.to_string()]);
    }
    // Absolute-form keeps working: the target's authority is the host.
    p.clear();
    let resp = one(
        addr,
        "GET http://public.example/a/../abs HTTP/1.1\r\nHost: public.example\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.head_text());
    let reqs = p.requests();
    assert_eq!(reqs.len(), 1);
    assert!(
        reqs[0].target().ends_with("/abs") && !reqs[0].target().contains(".."),
        "absolute-form sent as {}",
        reqs[0].target()
    );
    let resp = one(
        addr,
        "GET http://public.example/x HTTP/1.1\r\nHost: other.example\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 400, "a Host that differs from the target");
    // Without a Host field, the target's authority is the host (RFC 9112 §3.2.2), for routing
    // and upstream.
    p.clear();
    let resp = one(addr, "GET http://public.example/a/./b HTTP/1.1\r\n\r\n").await;
    assert_eq!(resp.status, 200, "{}", resp.head_text());
    let reqs = p.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].target(), "http://public.example/a/b");
    assert_eq!(reqs[0].fields("host"), vec!["public.example".to_string()]);

    let metrics = gw.metrics().await;
    let bad = metric_sum(
        &metrics,
        "switchyard_rejected_requests_total",
        &[("listener", "web"), ("reason", "bad_host")],
    );
    assert!(bad >= 8.0, "bad_host rejections: {bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_without_host_gets_one_upstream() {
    let u = RawOrigin::start("u");
    let p = RawOrigin::start("p");
    let gw = Gateway::start(&config("hyg-http10", &u, &p, ""));
    // The server's host:port.
    let resp = one(gw.addr(), "GET /napi/old HTTP/1.0\r\n\r\n").await;
    assert_eq!(resp.status, 200, "{}", resp.head_text());
    let reqs = u.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].request_line(), "GET /napi/old HTTP/1.1");
    assert_eq!(reqs[0].fields("host"), vec![u.addr().to_string()]);
    assert!(reqs[0].fields("x-forwarded-host").is_empty());
    // The route's host_header.
    u.clear();
    let resp = one(gw.addr(), "GET /ten/old HTTP/1.0\r\n\r\n").await;
    assert_eq!(resp.status, 200, "{}", resp.head_text());
    let reqs = u.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].fields("host"), vec!["ten.internal".to_string()]);
    // HTTP/1.0 with a Host keeps it.
    u.clear();
    let resp = one(
        gw.addr(),
        "GET /napi/old HTTP/1.0\r\nHost: h10.example\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        u.requests()[0].fields("host"),
        vec!["h10.example".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_is_refused_unless_a_route_lists_it() {
    let u = RawOrigin::start("u");
    let p = RawOrigin::start("p");
    let gw = Gateway::start(&config("hyg-trace", &u, &p, ""));
    for target in ["/napi/x", "/nu/1", "/ten"] {
        let resp = one(
            gw.addr(),
            &format!("TRACE {target} HTTP/1.1\r\nHost: a\r\n\r\n"),
        )
        .await;
        assert_eq!(resp.status, 405, "TRACE {target}: {}", resp.head_text());
    }
    let resp = one(
        gw.addr(),
        "TRACE /pub HTTP/1.1\r\nHost: public.example\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 405);
    assert_eq!(u.request_count() + p.request_count(), 0);
    // A route that lists TRACE gets it.
    let resp = one(gw.addr(), "TRACE /trace/x HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(resp.status, 200, "{}", resp.head_text());
    assert_eq!(u.requests()[0].request_line(), "TRACE /trace/x HTTP/1.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_duplicate_content_length_goes_upstream_once() {
    let u = RawOrigin::start("u");
    let p = RawOrigin::start("p");
    let gw = Gateway::start(&config("hyg-dupcl", &u, &p, ""));
    for (case, fields) in [
        ("two fields", "Content-Length: 5\r\nContent-Length: 5\r\n"),
        ("a list", "Content-Length: 5, 5\r\n"),
        (
            "three",
            "content-length: 5\r\nContent-Length: 5\r\nCONTENT-LENGTH: 5\r\n",
        ),
    ] {
        u.clear();
        let mut c = RawClient::connect(gw.addr()).await;
        let req = format!("POST /napi/dup HTTP/1.1\r\nHost: a\r\n{fields}\r\nhello");
        assert!(c.send(req.as_bytes()).await);
        let resp = c.response("POST", WAIT).await.expect("a response");
        assert_eq!(resp.status, 200, "{case}: {}", resp.head_text());
        let reqs = u.requests();
        assert_eq!(reqs.len(), 1, "{case}");
        assert_eq!(
            reqs[0].fields("content-length"),
            vec!["5".to_string()],
            "{case}: {}",
            reqs[0].head_text()
        );
        assert_eq!(&reqs[0].body[..], b"hello", "{case}");
        // The connection stays in step: the next request gets its own answer.
        assert!(c.send(b"GET /napi/next HTTP/1.1\r\nHost: a\r\n\r\n").await);
        let next = c.response("GET", WAIT).await.expect("a second response");
        assert_eq!(next.status, 200, "{case}");
        assert_eq!(
            u.requests().last().map(|r| r.target()),
            Some("/napi/next".to_string())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_body_is_answered_408_and_the_upstream_request_aborted() {
    let u = RawOrigin::start("u");
    let p = RawOrigin::start("p");
    let gw = Gateway::start(&config("hyg-body", &u, &p, "body_timeout_ms = 600"));
    // Two of ten bytes, then nothing.
    let mut c = RawClient::connect(gw.addr()).await;
    let started = Instant::now();
    assert!(
        c.send(b"POST /napi/slow HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nab")
            .await
    );
    let resp = c.response("POST", WAIT).await.expect("a response");
    let after = started.elapsed();
    assert_eq!(resp.status, 408, "{}", resp.head_text());
    assert!(
        after >= Duration::from_millis(500) && after < Duration::from_secs(3),
        "408 after {after:?}, want ~600 ms"
    );
    assert!(
        c.closed_within(Duration::from_secs(2)).await,
        "connection left open after 408"
    );
    // The origin got the head and the two bytes, then the upstream connection ended.
    let ok = eventually(Duration::from_secs(3), || {
        u.requests().first().is_some_and(|r| !r.complete)
    })
    .await;
    assert!(
        ok,
        "the upstream request was not aborted: {:?}",
        u.requests()
    );
    let r = &u.requests()[0];
    assert_eq!(&r.body[..], b"ab");
    assert_eq!(r.target(), "/napi/slow");

    // One byte every 200 ms: each read comes within the limit, so the body is served.
    u.clear();
    let mut c = RawClient::connect(gw.addr()).await;
    assert!(
        c.send(b"POST /napi/trickle HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\n")
            .await
    );
    for b in b"abcdef" {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(c.send(&[*b]).await);
    }
    let resp = c.response("POST", WAIT).await.expect("a response");
    assert_eq!(resp.status, 200, "{}", resp.head_text());
    assert_eq!(&u.requests()[0].body[..], b"abcdef");

    // The origin answers before the body is complete: the response is forwarded, then the
    // stalled connection is closed (no 408 after a response).
    u.clear();
    u.set_reply(|_| RawReply::ok("early").before_body());
    let mut c = RawClient::connect(gw.addr()).await;
    assert!(
        c.send(b"POST /napi/early HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nab")
            .await
    );
    let resp = c.response("POST", WAIT).await.expect("the early response");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body_text(), "early");
    assert!(
        c.closed_within(Duration::from_secs(3)).await,
        "the stalled connection stayed open"
    );
    assert!(
        c.pending().is_empty(),
        "more after the response: {:?}",
        String::from_utf8_lossy(c.pending())
    );

    let metrics = gw.metrics().await;
    let timeouts = metric_sum(
        &metrics,
        "switchyard_rejected_requests_total",
        &[("listener", "web"), ("reason", "body_timeout")],
    );
    assert!(timeouts >= 2.0, "body_timeout rejections: {timeouts}");
}
