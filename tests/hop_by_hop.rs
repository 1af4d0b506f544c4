//! Hop-by-hop request fields, black-box: what reaches the origin, byte for byte. The standard
//! fields (RFC 9110 §7.6.1: `Connection`, `Keep-Alive`, `Proxy-Connection`, `Proxy-Authenticate`,
//! `Proxy-Authorization`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`, `HTTP2-Settings`) and
//! every field the client's `Connection` names are not forwarded; the others are, in the client's
//! spelling; a request without any of them is forwarded whole. Pingora strips them (vendor patch
//! 0003 finds them in one scan of the field names).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;

const WAIT: Duration = Duration::from_secs(5);

fn config(origin: &RawOrigin) -> String {
    format!(
        "{}{}[[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"u\"\n\n{}",
        server_section("hop-by-hop"),
        listener_section("web", &free_addr()),
        upstream_section_for("u", &[origin.addr()]),
    )
}

/// Sends `head` on a fresh connection and returns the head the origin received for it.
async fn forwarded_head(gw: SocketAddr, origin: &RawOrigin, head: &str) -> String {
    origin.clear();
    let mut client = RawClient::connect(gw).await;
    assert!(client.send(head.as_bytes()).await, "sending {head:?}");
    let r = client.response("GET", WAIT).await.expect("a response");
    assert_eq!(r.status, 200, "{}", r.head_text());
    assert_eq!(r.body_text(), "fine");
    let requests = origin.requests();
    assert_eq!(requests.len(), 1, "one request reaches the origin");
    requests[0].head_text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_fields_never_reach_the_origin() {
    let origin = RawOrigin::start("o");
    origin.set_reply(|_| RawReply::ok("fine"));
    let gw = Gateway::start(&config(&origin));

    let head = forwarded_head(
        gw.addr(),
        &origin,
        "GET /all HTTP/1.1\r\nHost: a\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n\
         Proxy-Authenticate: Basic\r\nProxy-Authorization: Basic c2VjcmV0\r\nTE: trailers\r\n\
         te: gzip\r\nTrailer: X-Checksum\r\nConnection: keep-alive, X-Private-Hop\r\n\
         X-Private-Hop: secret\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nUpgrade: h2c\r\n\
         X-Kept: Kept-Value\r\n\r\n",
    )
    .await;
    let lower = head.to_ascii_lowercase();
    for name in [
        "keep-alive:",
        "proxy-connection:",
        "proxy-authenticate:",
        "proxy-authorization:",
        "\nte:",
        "trailer:",
        "x-private-hop:",
        "http2-settings:",
        "upgrade:",
        "transfer-encoding:",
    ] {
        assert!(!lower.contains(name), "{name} reached the origin:\n{head}");
    }
    // No client `Connection` value is forwarded (only the proxy's own framing may be).
    assert!(
        !lower.contains("x-private-hop") && !lower.contains("connection: keep-alive, "),
        "{head}"
    );
    // The other fields are forwarded as the client spelled them.
    assert!(head.contains("X-Kept: Kept-Value\r\n"), "{head}");
    assert!(head.starts_with("GET /all HTTP/1.1\r\n"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_hop_by_hop_fields_is_forwarded_whole() {
    let origin = RawOrigin::start("o");
    origin.set_reply(|_| RawReply::ok("fine"));
    let gw = Gateway::start(&config(&origin));

    let head = forwarded_head(
        gw.addr(),
        &origin,
        "GET /plain HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nX-One: 1\r\nx-two: 2\r\nX-Two: 3\r\n\r\n",
    )
    .await;
    for field in [
        "Accept: */*\r\n",
        "X-One: 1\r\n",
        "x-two: 2\r\n",
        "X-Two: 3\r\n",
    ] {
        assert!(head.contains(field), "{field:?} missing:\n{head}");
    }
    let two = header_values(head.as_bytes(), "x-two");
    assert_eq!(two, ["2", "3"], "both values, in order:\n{head}");
}
