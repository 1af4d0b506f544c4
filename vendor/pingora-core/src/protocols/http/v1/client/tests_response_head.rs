//! The client session keeps no copy of the response head it hands over
//! (`read_resp_header_parts`): it reads status, version, framing and keep-alive from
//! `ResponseHeadFacts`, and `resp_header()` rebuilds the head from its raw bytes when asked.

use super::*;
use crate::protocols::http::v1::body::ParseState;
use pingora_http::ResponseHeader;
use tokio_test::io::Builder;

/// Status line, fields (names, case and order of the wire form) and reason of two heads.
fn assert_same_head(kept: &ResponseHeader, handed: &ResponseHeader) {
    assert_eq!(kept.status, handed.status);
    assert_eq!(kept.version, handed.version);
    assert_eq!(kept.get_reason_phrase(), handed.get_reason_phrase());
    assert_eq!(kept.headers, handed.headers);
    let (mut kept_wire, mut handed_wire) = (Vec::new(), Vec::new());
    kept.header_to_h1_wire(&mut kept_wire);
    handed.header_to_h1_wire(&mut handed_wire);
    assert_eq!(
        String::from_utf8_lossy(&kept_wire),
        String::from_utf8_lossy(&handed_wire)
    );
}

fn session(mock: tokio_test::io::Mock) -> HttpSession {
    HttpSession::new(Box::new(mock))
}

async fn write_request(session: &mut HttpSession, fields: &[(&str, &str)]) {
    let mut req = RequestHeader::build("GET", b"/", None).unwrap();
    for (name, value) in fields {
        req.append_header(name.to_string(), *value).unwrap();
    }
    session.write_request_header(Box::new(req)).await.unwrap();
}

fn header_of(task: HttpTask) -> (Box<ResponseHeader>, bool) {
    match task {
        HttpTask::Header(header, end) => (header, end),
        other => panic!("expected a header task, got {other:?}"),
    }
}

#[tokio::test]
async fn resp_header_after_the_handover_equals_the_parsed_head() {
    let heads: [&[u8]; 6] = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 404 Nope Not Here\r\nServer: x\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nX-MiXeD-CaSe: a\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\n\
          X-Empty:\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nServer : pingora\r\n Foo: Bar\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n  b\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\nX-Utf8: \xc3\xa9t\xc3\xa9\r\n\r\n",
    ];
    for head in heads {
        // The head as `read_response` keeps it, for reference.
        let mut reference = session(Builder::new().read(head).build());
        reference.read_response().await.unwrap();
        let parsed = reference.resp_header().unwrap();

        let mut handing = session(Builder::new().read(head).build());
        let handed = handing.read_resp_header_parts().await.unwrap();
        assert_same_head(&handed, parsed);
        assert!(handing.response_header.get().is_none(), "no copy kept");
        let kept = handing.resp_header().unwrap();
        assert_same_head(kept, &handed);
        assert_eq!(handing.get_status(), Some(handed.status));
        assert_eq!(
            handing.get_header("content-length"),
            handed.headers.get("content-length")
        );
        assert_eq!(
            handing.get_header_bytes("X-MiXeD-CaSe"),
            handed
                .headers
                .get("x-mixed-case")
                .map_or(&b""[..], |v| v.as_bytes())
        );
        assert_eq!(
            handing.get_headers_raw_bytes(),
            reference.get_headers_raw_bytes()
        );
    }
}

#[tokio::test]
async fn the_proxy_path_does_not_rebuild_the_head() {
    // What a proxy does with an upstream session: the response tasks to the end of the body,
    // then the keep-alive decision and the reuse. None of it needs the whole head.
    let input = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=9\r\n\
                  Content-Length: 4\r\n\r\nbody";
    let mut http = session(
        Builder::new()
            .write(b"GET / HTTP/1.1\r\n\r\n")
            .read(input)
            .build(),
    );
    write_request(&mut http, &[]).await;
    let (header, end) = header_of(http.read_response_task().await.unwrap());
    assert_eq!((header.status.as_u16(), end), (200, false));
    match http.read_response_task().await.unwrap() {
        HttpTask::Body(Some(body), true) => assert_eq!(&body[..], b"body"),
        other => panic!("expected the body, got {other:?}"),
    }
    assert!(matches!(
        http.read_response_task().await.unwrap(),
        HttpTask::Done
    ));
    http.respect_keepalive();
    assert_eq!(
        http.keepalive_timeout,
        KeepaliveStatus::Timeout(Duration::from_secs(9))
    );
    assert!(http.response_header.get().is_none(), "head rebuilt");
    assert!(http.reuse().await.is_some());
}

#[tokio::test]
async fn informational_then_final_response() {
    // The 1xx arrives alone, so the final head's read starts from an empty buffer: the 1xx head
    // (handed over) is rebuilt before its bytes go.
    let mut http = session(
        Builder::new()
            .write(b"GET / HTTP/1.1\r\n\r\n")
            .read(b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n")
            .read(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Final: 1\r\n\r\nok")
            .build(),
    );
    write_request(&mut http, &[]).await;
    let (early, end) = header_of(http.read_response_task().await.unwrap());
    assert_eq!((early.status.as_u16(), end), (103, false));
    assert_eq!(http.get_status().map(|s| s.as_u16()), Some(103));
    assert!(http.should_read_resp_header());
    assert_same_head(http.resp_header().unwrap(), &early);

    let (last, end) = header_of(http.read_response_task().await.unwrap());
    assert_eq!((last.status.as_u16(), end), (200, false));
    assert_eq!(http.get_status().map(|s| s.as_u16()), Some(200));
    assert!(!http.should_read_resp_header());
    assert_eq!(http.get_header("link"), None);
    assert_same_head(http.resp_header().unwrap(), &last);
    match http.read_response_task().await.unwrap() {
        HttpTask::Body(Some(body), true) => assert_eq!(&body[..], b"ok"),
        other => panic!("expected the body, got {other:?}"),
    }
    http.respect_keepalive();
    assert!(http.will_keepalive());
}

#[tokio::test]
async fn informational_head_still_answers_when_the_next_read_fails() {
    // As with the copy the session used to keep: until a next head is read, `resp_header()` is
    // the 1xx, also after the next read failed.
    let mut http = session(
        Builder::new()
            .write(b"GET / HTTP/1.1\r\n\r\n")
            .read(b"HTTP/1.1 100 Continue\r\nX-Info: 1\r\n\r\n")
            .build(),
    );
    write_request(&mut http, &[]).await;
    let (info, _) = header_of(http.read_response_task().await.unwrap());
    assert!(http.read_response_task().await.is_err()); // the server closed
    assert_eq!(http.get_status().map(|s| s.as_u16()), Some(100));
    assert_same_head(http.resp_header().unwrap(), &info);
    assert_eq!(http.get_header_bytes("x-info"), b"1");
}

#[tokio::test]
async fn informational_and_final_response_in_one_read() {
    let mut http = session(
        Builder::new()
            .write(b"GET / HTTP/1.1\r\n\r\n")
            .read(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx")
            .build(),
    );
    write_request(&mut http, &[]).await;
    let (info, _) = header_of(http.read_response_task().await.unwrap());
    assert_eq!(info.status.as_u16(), 100);
    let (last, _) = header_of(http.read_response_task().await.unwrap());
    assert_eq!(last.status.as_u16(), 200);
    assert_same_head(http.resp_header().unwrap(), &last);
    match http.read_response_task().await.unwrap() {
        HttpTask::Body(Some(body), true) => assert_eq!(&body[..], b"x"),
        other => panic!("expected the body, got {other:?}"),
    }
}

#[tokio::test]
async fn switching_protocols_upgrades_and_is_not_kept_alive() {
    let wire = b"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    let mut http = session(
        Builder::new()
            .write(wire)
            .read(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nframes")
            .build(),
    );
    write_request(
        &mut http,
        &[("Connection", "Upgrade"), ("Upgrade", "websocket")],
    )
    .await;
    let (head, end) = header_of(http.read_response_task().await.unwrap());
    assert_eq!((head.status.as_u16(), end), (101, false));
    assert!(http.was_upgraded());
    assert!(!http.should_read_resp_header());
    match http.read_response_task().await.unwrap() {
        HttpTask::UpgradedBody(Some(body), false) => assert_eq!(&body[..], b"frames"),
        other => panic!("expected upgraded bytes, got {other:?}"),
    }
    http.respect_keepalive();
    assert!(!http.will_keepalive());
    assert_same_head(http.resp_header().unwrap(), &head);
}

#[tokio::test]
async fn switching_protocols_without_an_upgrade_request_is_not_an_upgrade() {
    let mut http = session(
        Builder::new()
            .write(b"GET / HTTP/1.1\r\n\r\n")
            .read(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
            .build(),
    );
    write_request(&mut http, &[]).await;
    let (head, _) = header_of(http.read_response_task().await.unwrap());
    assert_eq!(head.status.as_u16(), 101);
    assert!(!http.was_upgraded());
    http.respect_keepalive();
    assert!(!http.will_keepalive());
}

/// The keep-alive decision for `response` (read through `read_resp_header_parts`, body
/// drained) after a plain `GET`.
async fn keepalive_after(response: &[u8]) -> KeepaliveStatus {
    let mut http = session(
        Builder::new()
            .write(b"GET / HTTP/1.1\r\n\r\n")
            .read(response)
            .build(),
    );
    write_request(&mut http, &[]).await;
    http.read_resp_header_parts().await.unwrap();
    while !http.is_body_done() {
        http.read_body_ref().await.unwrap();
    }
    http.respect_keepalive();
    assert!(http.response_header.get().is_none(), "head rebuilt");
    http.keepalive_timeout
}

#[tokio::test]
async fn http10_keepalive_only_when_nominated() {
    let cases: [(&[u8], KeepaliveStatus); 4] = [
        (
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
            KeepaliveStatus::Infinite,
        ),
        (
            b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
            KeepaliveStatus::Off,
        ),
        (
            b"HTTP/1.0 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
            KeepaliveStatus::Off,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            KeepaliveStatus::Infinite,
        ),
    ];
    for (response, expected) in cases {
        assert_eq!(
            keepalive_after(response).await,
            expected,
            "{}",
            String::from_utf8_lossy(response)
        );
    }
}

#[tokio::test]
async fn keepalive_timeout_parameter() {
    let cases: [(&[u8], KeepaliveStatus); 4] = [
        (
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=7, max=100\r\n\
              Content-Length: 0\r\n\r\n",
            KeepaliveStatus::Timeout(Duration::from_secs(7)),
        ),
        (
            b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nKeep-Alive: max=5, timeout = 3\r\n\
              Content-Length: 0\r\n\r\n",
            KeepaliveStatus::Timeout(Duration::from_secs(3)),
        ),
        // Keep-Alive without Connection: keep-alive is not read (as before).
        (
            b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=7\r\nContent-Length: 0\r\n\r\n",
            KeepaliveStatus::Infinite,
        ),
        (
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=x\r\n\
              Content-Length: 0\r\n\r\n",
            KeepaliveStatus::Infinite,
        ),
    ];
    for (response, expected) in cases {
        assert_eq!(
            keepalive_after(response).await,
            expected,
            "{}",
            String::from_utf8_lossy(response)
        );
    }
}

#[tokio::test]
async fn content_length_beside_transfer_encoding_is_removed_in_both_heads() {
    let input = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n\
                  3\r\nabc\r\n0\r\n\r\n";
    let mut http = session(
        Builder::new()
            .write(b"GET / HTTP/1.1\r\n\r\n")
            .read(input)
            .build(),
    );
    write_request(&mut http, &[]).await;
    let (head, _) = header_of(http.read_response_task().await.unwrap());
    assert!(!head.headers.contains_key(header::CONTENT_LENGTH));
    assert!(http.is_chunked_encoding());
    assert_eq!(http.get_content_length(), None);
    let mut body = Vec::new();
    while let HttpTask::Body(Some(chunk), _) = http.read_response_task().await.unwrap() {
        body.extend_from_slice(&chunk);
    }
    assert_eq!(body, b"abc");
    assert_eq!(http.body_reader.body_state, ParseState::Complete(3));
    http.respect_keepalive();
    assert!(http.will_keepalive());
    // The rebuilt head had the same post-processing.
    assert_eq!(http.get_header(header::CONTENT_LENGTH), None);
    assert_same_head(http.resp_header().unwrap(), &head);
}

#[tokio::test]
async fn http10_transfer_encoding_is_not_kept_alive() {
    assert_eq!(
        keepalive_after(
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n\
              0\r\n\r\n"
        )
        .await,
        KeepaliveStatus::Off
    );
}

#[tokio::test]
async fn no_head_read_yet() {
    let http = session(Builder::new().build());
    assert!(http.resp_header().is_none());
    assert!(http.get_status().is_none());
    assert!(http.get_header("server").is_none());
    assert_eq!(http.get_header_bytes("server"), b"");
    assert!(http.should_read_resp_header());
}
