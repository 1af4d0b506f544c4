//! Malformed responses from an origin, black-box: a scripted [`RawOrigin`] answers with
//! ambiguous framing (`Content-Length` with `Transfer-Encoding`, two lengths, bad chunks), a body
//! where none may be (`204`, `304`, after `HEAD`) or bytes after the end of a response. Each case
//! checks what the client got, that a second request on the same client connection gets its own,
//! correct answer (or that the connection was closed), and that the upstream connection that
//! carried extra bytes was not used again.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;

const WAIT: Duration = Duration::from_secs(5);

fn config(prefix: &str, origin: &RawOrigin) -> String {
    one_route_config(prefix, origin.addr())
}

/// The scripted answers, by request target.
fn script(req: &RawRequest) -> RawReply {
    let r = RawReply::bytes;
    match req.target().as_str() {
        "/cl-te" => r("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        "/cl-te-desync" => r("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsmuggle"),
        "/two-cl" => r("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        "/cl-list" => r("HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!"),
        "/dup-cl" => r("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
        "/bad-chunk" => r("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
        "/bad-chunk-later" => r("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            .later(Duration::from_millis(100), "5\r\nworldXX0\r\n\r\n"),
        "/short-body" => r("HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nonly this").closing(),
        "/204-body" => r("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello"),
        "/204-late" => r("HTTP/1.1 204 No Content\r\n\r\n").later(Duration::from_millis(50), "hello"),
        "/304-body" => r("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\nhello"),
        "/head" => r("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
        "/extra" => r("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsmuggle"),
        _ => RawReply::ok("fine"),
    }
}

/// What the client must get for a malformed response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// `502` (with `Connection: close`), then the connection closes.
    BadGateway,
    /// `502` if nothing was sent yet, else a response cut short and the connection closed.
    BadGatewayOrCut,
    /// This status without a body; the connection stays usable.
    NoBody(u16),
    /// `200` with exactly `hello`; the connection stays usable.
    Hello,
}

struct Case {
    method: &'static str,
    target: &'static str,
    want: Want,
    /// The upstream connection had bytes beyond the response: it must not carry `/after`.
    dirty_upstream: bool,
}

const fn case(method: &'static str, target: &'static str, want: Want, dirty: bool) -> Case {
    Case {
        method,
        target,
        want,
        dirty_upstream: dirty,
    }
}

async fn run_case(addr: SocketAddr, origin: &RawOrigin, c: &Case) {
    origin.clear();
    let label = format!("{} {}", c.method, c.target);
    let mut client = RawClient::connect(addr).await;
    let req = format!("{} {} HTTP/1.1\r\nHost: a\r\n\r\n", c.method, c.target);
    assert!(client.send(req.as_bytes()).await, "{label}: write");
    let first = client.response(c.method, WAIT).await;
    match c.want {
        Want::BadGateway => {
            let r = first.unwrap_or_else(|| panic!("{label}: no response"));
            assert_eq!(r.status, 502, "{label}: {}", r.head_text());
            assert_eq!(r.fields("connection"), vec!["close".to_string()], "{label}");
        }
        Want::BadGatewayOrCut => match first {
            Some(r) if r.status == 502 => {
                assert_eq!(r.fields("connection"), vec!["close".to_string()], "{label}")
            }
            Some(r) => assert!(
                !r.complete,
                "{label}: a complete response was forwarded: {} {:?}",
                r.head_text(),
                r.body_text()
            ),
            None => {}
        },
        Want::NoBody(status) => {
            let r = first.unwrap_or_else(|| panic!("{label}: no response"));
            assert_eq!(r.status, status, "{label}: {}", r.head_text());
            assert!(r.body.is_empty(), "{label}: body {:?}", r.body_text());
            if status == 204 {
                assert!(
                    r.fields("content-length").is_empty()
                        && r.fields("transfer-encoding").is_empty(),
                    "{label}: framing fields on a 204: {}",
                    r.head_text()
                );
            }
        }
        Want::Hello => {
            let r = first.unwrap_or_else(|| panic!("{label}: no response"));
            assert_eq!(r.status, 200, "{label}: {}", r.head_text());
            assert_eq!(r.body_text(), "hello", "{label}");
            assert!(r.complete, "{label}");
            let lengths = r.fields("content-length");
            assert!(lengths.len() <= 1, "{label}: {}", r.head_text());
            assert!(
                lengths.is_empty() || r.fields("transfer-encoding").is_empty(),
                "{label}: both framings sent: {}",
                r.head_text()
            );
        }
    }
    // Let late bytes from the origin arrive before the next request.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The second request on the same connection: its own answer, or a closed connection.
    let sent = client.send(b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let second = if sent {
        client.response("GET", WAIT).await
    } else {
        None
    };
    match (c.want, second) {
        (Want::NoBody(_) | Want::Hello, Some(r)) => {
            assert_eq!(r.status, 200, "{label}: second response {}", r.head_text());
            assert_eq!(r.body_text(), "fine", "{label}: second response");
            assert!(
                client.pending().is_empty(),
                "{label}: more bytes after the second response: {:?}",
                String::from_utf8_lossy(client.pending())
            );
        }
        (Want::NoBody(_) | Want::Hello, None) => {
            panic!("{label}: the connection was lost after a response that could be repaired")
        }
        (_, Some(r)) => panic!(
            "{label}: a response on a connection that should be closed: {} {:?}",
            r.head_text(),
            r.body_text()
        ),
        (_, None) => assert!(
            client.closed || client.closed_within(Duration::from_secs(2)).await,
            "{label}: the connection neither answered nor closed"
        ),
    }
    // The upstream side: `/after` (sent on a new client connection if needed) never rides a
    // connection that had bytes left over.
    let mut fresh = RawClient::connect(addr).await;
    assert!(fresh.send(b"GET /after2 HTTP/1.1\r\nHost: a\r\n\r\n").await);
    let r = fresh
        .response("GET", WAIT)
        .await
        .expect("a fresh connection works");
    assert_eq!(r.status, 200, "{label}: after");
    assert_eq!(r.body_text(), "fine", "{label}: after");
    let reqs = origin.requests();
    let bad = reqs
        .iter()
        .find(|r| r.target() == c.target)
        .unwrap_or_else(|| panic!("{label} never reached the origin"));
    for later in reqs.iter().filter(|r| r.target().starts_with("/after")) {
        if c.dirty_upstream {
            assert_ne!(
                later.conn,
                bad.conn,
                "{label}: {} reused the upstream connection that had extra bytes",
                later.target()
            );
        }
        assert_eq!(
            later.request_line(),
            format!("GET {} HTTP/1.1", later.target())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_responses_never_desynchronise_either_connection() {
    let origin = RawOrigin::start("o");
    origin.set_reply(script);
    let gw = Gateway::start(&config("framing", &origin));
    let cases = [
        case("GET", "/two-cl", Want::BadGateway, true),
        case("GET", "/cl-list", Want::BadGateway, true),
        case("GET", "/cl-te-desync", Want::BadGatewayOrCut, true),
        case("GET", "/bad-chunk", Want::BadGatewayOrCut, true),
        case("GET", "/bad-chunk-later", Want::BadGatewayOrCut, true),
        case("GET", "/short-body", Want::BadGatewayOrCut, true),
        case("GET", "/dup-cl", Want::Hello, false),
        case("GET", "/204-body", Want::NoBody(204), true),
        case("GET", "/204-late", Want::NoBody(204), true),
        case("GET", "/304-body", Want::NoBody(304), true),
        case("HEAD", "/head", Want::NoBody(200), true),
        case("GET", "/extra", Want::Hello, true),
    ];
    for c in &cases {
        run_case(gw.addr(), &origin, c).await;
    }
}

/// `Content-Length` beside `Transfer-Encoding: chunked`, with a body that is valid chunked:
/// Pingora removes the length before any hook sees the head (RFC 9112 §6.3 allows an intermediary
/// to forward such a message that way), so Switchyard cannot answer 502 from its side; what is
/// guaranteed is that the client gets one framing and stays in step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_beside_chunked_reaches_the_client_with_one_framing() {
    let origin = RawOrigin::start("o");
    origin.set_reply(script);
    let gw = Gateway::start(&config("framing-clte", &origin));
    let mut client = RawClient::connect(gw.addr()).await;
    assert!(client.send(b"GET /cl-te HTTP/1.1\r\nHost: a\r\n\r\n").await);
    let r = client.response("GET", WAIT).await.expect("a response");
    if r.status != 502 {
        assert_eq!(r.status, 200, "{}", r.head_text());
        assert!(r.fields("content-length").is_empty(), "{}", r.head_text());
        assert_eq!(r.body_text(), "hello");
        assert!(client.send(b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n").await);
        let next = client
            .response("GET", WAIT)
            .await
            .expect("a second response");
        assert_eq!(next.body_text(), "fine");
    }
}
