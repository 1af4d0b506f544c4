//! The read that ends a request body framed by `Content-Length` hands its buffer over instead of
//! copying it out (`BodyReader::take_final_body`): for a body that came with the head, a slice of
//! the head's buffer. The bytes handed out, the body reader's end state and the bytes read past
//! the body (the start of a pipelined request) must be what the copy gave.

use super::super::body::ParseState;
use super::super::client::tests_response_room::allocations;
use super::*;
use tokio_test::io::Builder;

/// The body chunks of the request read from `reads`, the body state after them and the
/// overread.
async fn read_body(reads: &[&[u8]]) -> (Vec<Vec<u8>>, ParseState, Option<Vec<u8>>) {
    let mut mock = Builder::new();
    for r in reads {
        mock.read(r);
    }
    let mut session = HttpSession::new(Box::new(mock.build()));
    session.read_request().await.unwrap();
    let mut chunks = Vec::new();
    while let Some(chunk) = session.read_body_bytes().await.unwrap() {
        chunks.push(chunk.to_vec());
    }
    let state = session.body_reader.body_state.clone();
    let overread = session.body_reader.get_body_overread().map(<[u8]>::to_vec);
    (chunks, state, overread)
}

#[tokio::test]
async fn every_body_reads_as_it_did() {
    type Case<'a> = (&'a [&'a [u8]], &'a [&'a [u8]], usize, Option<&'a [u8]>);
    let cases: &[Case] = &[
        // Whole with the head.
        (&[b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"], &[b"abc"], 3, None),
        // With the head, and the start of the next request after it.
        (
            &[b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /"],
            &[b"abc"],
            3,
            Some(b"GET /"),
        ),
        // Part with the head, the rest in later reads.
        (
            &[b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\nab", b"cd", b"ef"],
            &[b"ab", b"cd", b"ef"],
            6,
            None,
        ),
        // Nothing with the head.
        (
            &[b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\n", b"wxyz"],
            &[b"wxyz"],
            4,
            None,
        ),
        // Chunked: read as before (its buffer is not handed over).
        (
            &[b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"],
            &[b"abc"],
            3,
            None,
        ),
    ];
    for (reads, chunks, len, overread) in cases {
        let (got, state, got_overread) = read_body(reads).await;
        let want: Vec<Vec<u8>> = chunks.iter().map(|c| c.to_vec()).collect();
        assert_eq!(got, want, "{:?}", reads.concat().escape_ascii().to_string());
        assert_eq!(state, ParseState::Complete(*len));
        assert_eq!(got_overread.as_deref(), *overread);
    }
}

#[tokio::test]
async fn a_body_read_with_its_head_is_handed_over_without_a_copy() {
    let input = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
    let mut session = HttpSession::new(Box::new(Builder::new().read(input).build()));
    session.read_request().await.unwrap();
    let head_end = session.get_headers_raw_bytes();
    let before = allocations();
    let body = session.read_body_bytes().await.unwrap().unwrap();
    let made = allocations() - before;
    assert_eq!(&body[..], b"hello");
    // The body's bytes follow the head's in the buffer the head was read into.
    assert_eq!(
        body.as_ptr(),
        head_end.as_ptr().wrapping_add(head_end.len())
    );
    assert_eq!(made, 0, "reading the body allocated");
    assert!(session.is_body_done());
    assert_eq!(session.read_body_bytes().await.unwrap(), None);
}

#[tokio::test]
async fn the_retry_buffer_still_gets_the_body() {
    let input = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
    let mut session = HttpSession::new(Box::new(Builder::new().read(input).build()));
    session.read_request().await.unwrap();
    session.enable_retry_buffering();
    let body = session.read_body_bytes().await.unwrap().unwrap();
    assert_eq!(&body[..], b"hello");
    assert_eq!(session.get_retry_buffer().as_deref(), Some(&b"hello"[..]));
}
