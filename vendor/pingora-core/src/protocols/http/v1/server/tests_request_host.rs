//! The request head's `Host` fields are found while the parse appends them (`HostFields`), and
//! `validate_request` checks the authority with them instead of looking `Host` up twice; once the
//! head may have changed (`req_header_mut`) it looks them up again.

use super::*;
use crate::protocols::http::authority::validate_request_authority;
use tokio_test::io::Builder;

fn session(input: &[u8]) -> HttpSession {
    HttpSession::new(Box::new(Builder::new().read(input).build()))
}

/// The head of `input` as the parser builds it, without any validation.
fn parsed_head(input: &[u8]) -> RequestHeader {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut req = httparse::Request::new(&mut headers);
    assert!(req.parse(input).unwrap().is_complete());
    let mut head =
        RequestHeader::build(req.method.unwrap(), req.path.unwrap().as_bytes(), None).unwrap();
    head.set_version(match req.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    });
    for h in req.headers.iter() {
        head.append_header(h.name.to_string(), HeaderValue::from_bytes(h.value).unwrap())
            .unwrap();
    }
    head
}

#[tokio::test]
async fn authority_checked_with_the_host_fields_found_while_parsing_as_before() {
    let cases: [&[u8]; 16] = [
        b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHOST: a.example\r\nX: y\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nhost: a.example\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: u@a.example\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
        b"GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n",
        b"GET http://a.example/ HTTP/1.1\r\nHost: b.example\r\n\r\n",
        b"GET http://a.example/ HTTP/1.1\r\n\r\n",
        b"GET http://u@a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n",
        b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
        b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example\r\n\r\n",
        b"CONNECT a.example:443 HTTP/1.1\r\nHost: b.example\r\n\r\n",
        b"CONNECT a.example:443 HTTP/1.1\r\n\r\n",
        b"CONNECT http://a.example/ HTTP/1.1\r\nHost: b.example\r\n\r\n",
    ];
    for input in cases {
        let text = String::from_utf8_lossy(input);
        let expected = validate_request_authority(&parsed_head(input));
        let mut http = session(input);
        match (http.read_request().await, expected) {
            (Ok(_), Ok(())) => {
                assert!(http.request_host.is_some(), "{text}");
                http.validate_request().unwrap();
            }
            (Err(e), Err(expected)) => {
                assert_eq!(e.etype(), expected.etype(), "{text}");
                assert_eq!(e.context, expected.context, "{text}");
            }
            (got, expected) => panic!("{text}: {got:?}, expected {expected:?}"),
        }
    }
}

#[tokio::test]
async fn a_hook_changing_host_is_followed() {
    let input = b"GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n";
    let mut http = session(input);
    http.read_request().await.unwrap();
    http.req_header_mut()
        .insert_header(header::HOST, "b.example")
        .unwrap();
    let e = http.validate_request().unwrap_err();
    assert_eq!(
        e.context.as_ref().map(|c| c.as_str()),
        Some("Host header differs from request-target authority")
    );

    let mut http = session(input);
    http.read_request().await.unwrap();
    http.req_header_mut()
        .append_header(header::HOST, "a.example")
        .unwrap();
    let e = http.validate_request().unwrap_err();
    assert_eq!(
        e.context.as_ref().map(|c| c.as_str()),
        Some("multiple Host header fields")
    );
}

#[tokio::test]
async fn after_the_buffer_is_cleared_host_is_looked_up() {
    // A second read that finds the connection closed clears the buffer the first head's `Host`
    // value was found in; the head itself is still there.
    let input = b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n";
    let mut http = session(input);
    http.read_request().await.unwrap();
    assert!(http.read_request().await.unwrap().is_none());
    assert!(http.request_host.is_none());
    http.validate_request().unwrap();
    assert_eq!(http.req_header().headers.get(header::HOST).unwrap(), "a.example");
}
