//! The response head's framing and keep-alive facts are found while the parse appends its fields
//! (`append_response_fields`), not looked up in the header map afterwards: they must equal what
//! the lookups (`ResponseHeadFacts::of`, `validate_content_length`) answer for the head as parsed.

use super::*;
use pingora_http::ResponseHeader;
use tokio_test::io::Builder;

fn session(head: &[u8], allow_invalid_content_length: bool) -> HttpSession {
    let mut session = HttpSession::new(Box::new(Builder::new().read(head).build()));
    session.set_allow_h1_response_invalid_content_length(allow_invalid_content_length);
    session
}

/// Heads whose framing is valid: (head, framing `Content-Length`, chunked, keep-alive timeout).
const VALID: &[(&[u8], Option<usize>, bool, Option<u64>)] = &[
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", Some(5), false, None),
    (b"HTTP/1.1 200 OK\r\ncOnTeNt-LeNgTh: 7\r\n\r\n", Some(7), false, None),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", Some(5), false, None),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n", Some(5), false, None),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", None, true, None),
    (b"HTTP/1.1 200 OK\r\nTRANSFER-ENCODING: gzip, Chunked\r\n\r\n", None, true, None),
    // The last field's last coding decides.
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", None, false, None),
    // Both: `Content-Length` removed, even an invalid or conflicting one.
    (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n", None, true, None),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: x\r\nContent-Length: 3\r\n\r\n", None, true, None),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 4\r\n\r\n", None, false, None),
    (b"HTTP/1.1 204 No Content\r\n\r\n", None, false, None),
    (b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", None, false, None),
    // Keep-alive: the first `Connection` field; `timeout=` of the first `Keep-Alive` field,
    // read only when keep-alive is nominated.
    (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5, max=9\r\nContent-Length: 0\r\n\r\n", Some(0), false, Some(5)),
    (b"HTTP/1.0 200 OK\r\nkeep-alive: timeout=3\r\nKeep-Alive: timeout=4\r\nCONNECTION: Keep-Alive\r\nConnection: close\r\n\r\n", None, false, Some(3)),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n", None, false, None),
    (b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: 1\r\n\r\n", Some(1), false, None),
    (b"HTTP/1.1 200 OK\r\nConnection: upgrade, close\r\nContent-Length: 1\r\n\r\n", Some(1), false, None),
    (b"HTTP/1.0 200 OK\r\nConnection : keep-alive\r\nKeep-Alive: timeout=x\r\n\r\n", None, false, None),
    // Obs-fold in a framing field: the value with its fold, as the map holds it.
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip,\r\n chunked\r\n\r\n", None, true, None),
];

/// Heads whose `Content-Length` framing is invalid: rejected unless a single invalid token is
/// tolerated (then close-delimited).
const INVALID: &[(&[u8], bool)] = &[
    (b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n", true),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", true),
    (b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n", true),
    (b"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n", true),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n", true),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", false),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n", false),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length: x\r\n\r\n", false),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 5,\r\n\r\n", false),
    // Obs-fold: httparse makes the fold spaces, one token "5   5".
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n 5\r\n\r\n", true),
];

/// The handed-over head and the facts the session computed while parsing it.
async fn read(head: &[u8], allow: bool) -> (HttpSession, Result<Box<ResponseHeader>>) {
    let mut session = session(head, allow);
    let header = session.read_resp_header_parts().await;
    (session, header)
}

#[tokio::test]
async fn facts_found_while_parsing_equal_the_lookups() {
    for &(head, content_length, chunked, keepalive_timeout) in VALID {
        let text = String::from_utf8_lossy(head);
        let (session, header) = read(head, false).await;
        let header = header.unwrap_or_else(|e| panic!("{text}: {e}"));
        let facts = session.response_facts.expect("facts");
        // What the lookups in the head as parsed answer.
        assert_eq!(facts, ResponseHeadFacts::of(&header), "{text}");
        assert!(validate_content_length(&header.headers).is_ok(), "{text}");
        // And what they answer is what this head means.
        assert_eq!(facts.content_length, content_length, "{text}");
        assert_eq!(facts.chunked, chunked, "{text}");
        assert_eq!(facts.keepalive_timeout, keepalive_timeout, "{text}");
        assert_eq!(session.get_content_length(), content_length, "{text}");
        assert_eq!(session.is_chunked_encoding(), chunked, "{text}");
    }
}

#[tokio::test]
async fn invalid_content_length_is_rejected_exactly_as_before() {
    for &(head, single_token) in INVALID {
        let text = String::from_utf8_lossy(head);
        let expected = {
            // The error the lookup gives for the same fields.
            let mut parsed = ResponseHeader::build(200, None).unwrap();
            let mut headers = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut []);
            assert!(matches!(
                parse_resp_buffer(&mut resp, head, &mut headers),
                HeaderParseState::Complete(_)
            ));
            for h in resp.headers.iter() {
                parsed
                    .append_header(
                        h.name.to_string(),
                        pingora_http::header_value_from_raw(Bytes::copy_from_slice(h.value)),
                    )
                    .unwrap();
            }
            validate_content_length(&parsed.headers).unwrap_err()
        };

        let (_, strict) = read(head, false).await;
        let e = strict.expect_err(&text);
        assert_eq!(e.etype(), expected.etype(), "{text}");
        assert_eq!(e.context, expected.context, "{text}");

        let (tolerant, header) = read(head, true).await;
        if single_token {
            let header = header.unwrap_or_else(|e| panic!("{text}: {e}"));
            let facts = tolerant.response_facts.expect("facts");
            assert_eq!(facts, ResponseHeadFacts::of(&header), "{text}");
            assert_eq!(tolerant.get_content_length(), None, "{text}");
            assert!(tolerant.close_delimited_resp, "{text}: close-delimited");
        } else {
            let e = header.expect_err(&text);
            assert_eq!(e.context, expected.context, "{text}");
        }
    }
}

#[tokio::test]
async fn the_facts_are_of_the_last_head_read() {
    // A 1xx then the final head: each head's own fields.
    let input = b"HTTP/1.1 103 Early Hints\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\n\
                  HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    let mut http = session(input, false);
    let early = http.read_resp_header_parts().await.unwrap();
    assert_eq!(early.status, 103);
    assert_eq!(http.response_facts.unwrap().content_length, Some(3));
    let last = http.read_resp_header_parts().await.unwrap();
    let facts = http.response_facts.unwrap();
    assert_eq!(facts, ResponseHeadFacts::of(&last));
    assert!(facts.chunked);
    assert_eq!(facts.content_length, None);
    assert_eq!(facts.connection_keepalive, Some(false));
}

#[tokio::test]
async fn changing_the_handed_over_head_does_not_change_how_the_body_is_read() {
    // The session frames the body by the head as read: a caller (a proxy's response filter)
    // changing the head it was handed changes what is written downstream, not what is read.
    let input = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
    let mut http = session(input, false);
    let mut head = http.read_resp_header_parts().await.unwrap();
    head.remove_header(&header::CONTENT_LENGTH);
    head.insert_header(header::TRANSFER_ENCODING, "chunked")
        .unwrap();
    http.init_body_reader();
    assert_eq!(http.get_content_length(), Some(3));
    assert!(!http.is_chunked_encoding());
    let body = http.read_body_bytes().await.unwrap();
    assert_eq!(body.as_deref(), Some(&b"abc"[..]));
    assert!(http.is_body_done());
}
