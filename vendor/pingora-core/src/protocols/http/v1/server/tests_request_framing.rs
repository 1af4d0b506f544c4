//! The request head's framing fields are found while the parse appends them (`FramingFacts`),
//! not looked up in the header map by `validate_request`, `is_chunked_encoding` and
//! `get_content_length`; once the head may have changed (`req_header_mut`) they are looked up
//! again, so a hook that changes the framing fields changes how the body is read, as before.

use super::*;
use http::header::TRANSFER_ENCODING;
use tokio_test::io::Builder;

fn session(input: &[u8]) -> HttpSession {
    HttpSession::new(Box::new(Builder::new().read(input).build()))
}

async fn body_of(http: &mut HttpSession) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(chunk) = http.read_body_bytes().await.unwrap() {
        body.extend_from_slice(&chunk);
    }
    assert!(http.is_body_done());
    body
}

#[tokio::test]
async fn framing_found_while_parsing_equals_the_lookup() {
    let cases: [(&[u8], &[u8]); 9] = [
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b""),
        (b"GET / HTTP/1.0\r\n\r\n", b""),
        (b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", b"abc"),
        (b"POST / HTTP/1.0\r\ncontent-LENGTH: 3\r\n\r\nabc", b"abc"),
        (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3, 3\r\n\r\nabc", b"abc"),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", b"abc"),
        (b"POST / HTTP/1.1\r\nTRANSFER-encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", b"abc"),
        // Both: `Content-Length` removed (even a conflicting one), chunked.
        (b"POST / HTTP/1.1\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", b"abc"),
        (b"POST / HTTP/1.1\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n3\r\nabc\r\n0\r\n\r\n", b"abc"),
    ];
    for (input, body) in cases {
        let text = String::from_utf8_lossy(input);
        let mut http = session(input);
        http.read_request()
            .await
            .unwrap_or_else(|e| panic!("{text}: {e}"));
        let found = http.request_framing.expect("found while parsing");
        assert_eq!(found, FramingFacts::of(&http.req_header().headers), "{text}");
        assert_eq!(
            http.is_chunked_encoding(),
            is_chunked_encoding_from_headers(&http.req_header().headers)
        );
        assert_eq!(
            http.get_content_length().unwrap(),
            content_length_for_framing(&http.req_header().headers).unwrap()
        );
        assert_eq!(body_of(&mut http).await, body, "{text}");
    }
}

#[tokio::test]
async fn invalid_framing_is_rejected_exactly_as_before() {
    let cases: [(&[u8], &str); 8] = [
        (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", "invalid Content-Length header"),
        (b"POST / HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\n", "invalid Content-Length header"),
        (b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n", "invalid Content-Length header"),
        (b"POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: x\r\n\r\n", "invalid Content-Length header"),
        (b"POST / HTTP/1.0\r\nContent-Length: 99999999999999999999999\r\n\r\n", "invalid Content-Length header"),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.0 requests cannot include Transfer-Encoding header"),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\nContent-Length: 3\r\n\r\n", "non-chunked final Transfer-Encoding"),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", "non-chunked final Transfer-Encoding"),
    ];
    for (input, context) in cases {
        let text = String::from_utf8_lossy(input);
        let e = session(input).read_request().await.expect_err(&text);
        assert_eq!(e.etype(), &InvalidHTTPHeader, "{text}");
        assert_eq!(e.context.as_ref().map(|c| c.as_str()), Some(context), "{text}");
    }
}

#[tokio::test]
async fn a_hook_replacing_content_length_with_chunked_is_followed() {
    let input = b"POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    let mut http = session(input);
    http.read_request().await.unwrap();
    assert_eq!(http.get_content_length().unwrap(), Some(12));
    let head = http.req_header_mut();
    head.remove_header(&CONTENT_LENGTH);
    head.insert_header(TRANSFER_ENCODING, "chunked").unwrap();
    assert!(http.is_chunked_encoding());
    assert_eq!(http.get_content_length().unwrap(), None);
    http.validate_request().unwrap();
    assert_eq!(body_of(&mut http).await, b"abc");
}

#[tokio::test]
async fn a_hook_removing_the_framing_fields_leaves_an_empty_body() {
    let input = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    let mut http = session(input);
    http.read_request().await.unwrap();
    http.req_header_mut().remove_header(&TRANSFER_ENCODING);
    assert!(!http.is_chunked_encoding());
    assert!(http.is_body_done(), "no framing field: an empty body");
}

#[tokio::test]
async fn a_hook_adding_a_conflicting_content_length_fails_validation() {
    let input = b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
    let mut http = session(input);
    http.read_request().await.unwrap();
    http.req_header_mut()
        .append_header(CONTENT_LENGTH, "4")
        .unwrap();
    let e = http.validate_request().unwrap_err();
    assert_eq!(
        e.context.as_ref().map(|c| c.as_str()),
        Some("invalid Content-Length header")
    );
}
