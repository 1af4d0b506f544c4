//! A sized response body that arrived whole with its head is handed out as a slice of the head's
//! buffer: no body buffer and no copy. Everything a caller can see must be what the buffered
//! read (`BodyReader::init_content_length`'s first read) answers: the body, its end, the bytes
//! read past it (which keep the connection from being reused), and the count received.

use super::tests_response_room::allocations;
use super::*;
use tokio_test::io::Builder;

/// What the body reads of one response answer: the chunks, the body reader's state and
/// overread, the bytes received, and whether the stream could go back to the pool.
#[derive(Debug, PartialEq)]
struct Read {
    chunks: Vec<Vec<u8>>,
    state: ParseState,
    overread: Option<Vec<u8>>,
    received: usize,
    reusable: bool,
}

async fn read_all(reads: &[&[u8]]) -> Read {
    let mut mock = Builder::new();
    for r in reads {
        mock.read(r);
    }
    let mut session = HttpSession::new(Box::new(mock.build()));
    session.read_response().await.unwrap();
    session.is_body_done();
    session.respect_keepalive();
    let mut chunks = Vec::new();
    while !session.is_body_done() {
        match session.read_body_bytes().await.unwrap() {
            Some(b) => chunks.push(b.to_vec()),
            None => break,
        }
    }
    // A read after the end answers nothing, as the buffered path does.
    assert_eq!(session.read_body_bytes().await.unwrap(), None);
    let state = session.body_reader.body_state.clone();
    let overread = session.body_reader.get_body_overread().map(<[u8]>::to_vec);
    let received = session.body_bytes_received();
    Read {
        chunks,
        state,
        overread,
        received,
        reusable: session.reuse().await.is_some(),
    }
}

/// The same response read through `BodyReader::init_content_length` (0.9.1's path), for the
/// expected answers.
async fn read_all_buffered(reads: &[&[u8]]) -> Read {
    let mut mock = Builder::new();
    for r in reads {
        mock.read(r);
    }
    let mut session = HttpSession::new(Box::new(mock.build()));
    session.read_response().await.unwrap();
    // Start the body reader the old way before the session decides.
    let preread = session
        .preread_body
        .as_ref()
        .unwrap()
        .get(&session.buf)
        .to_vec();
    let cl = session.get_content_length().unwrap();
    session.body_reader.init_content_length(cl, &preread);
    session.respect_keepalive();
    let mut chunks = Vec::new();
    while !session.is_body_done() {
        match session.read_body_bytes().await.unwrap() {
            Some(b) => chunks.push(b.to_vec()),
            None => break,
        }
    }
    assert_eq!(session.read_body_bytes().await.unwrap(), None);
    let state = session.body_reader.body_state.clone();
    let overread = session.body_reader.get_body_overread().map(<[u8]>::to_vec);
    let received = session.body_bytes_received();
    Read {
        chunks,
        state,
        overread,
        received,
        reusable: session.reuse().await.is_some(),
    }
}

#[tokio::test]
async fn a_body_read_with_its_head_reads_as_the_buffered_path_reads_it() {
    let cases: &[&[&[u8]]] = &[
        // Whole with the head.
        &[b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"],
        &[b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"],
        // More than the body: kept as overread, and the connection is not reused.
        &[b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef"],
        // Part of it with the head, the rest in later reads (not whole: buffered as before).
        &[b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabc", b"def"],
        &[b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n", b"abcd"],
        // HTTP/1.0 with keep-alive.
        &[b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"],
        // Connection: close.
        &[b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"],
    ];
    for reads in cases {
        let zero_copy = read_all(reads).await;
        let buffered = read_all_buffered(reads).await;
        assert_eq!(
            zero_copy,
            buffered,
            "{:?}",
            reads.concat().escape_ascii().to_string()
        );
    }
    let read = read_all(&[b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef"]).await;
    assert_eq!(read.chunks, vec![b"abc".to_vec()]);
    assert_eq!(read.overread.as_deref(), Some(&b"def"[..]));
    assert!(!read.reusable);
    // Split: the last read ends the body and hands its buffer over (`take_final_body`).
    let read = read_all(&[b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabc", b"def"]).await;
    assert_eq!(read.chunks, vec![b"abc".to_vec(), b"def".to_vec()]);
    assert_eq!(read.received, 6);
    assert!(read.reusable);
    let read = read_all(&[b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"]).await;
    assert_eq!(read.state, ParseState::Complete(5));
    assert_eq!(read.received, 5);
    assert!(read.reusable);
}

#[tokio::test]
async fn a_body_read_with_its_head_is_a_slice_of_the_head_buffer() {
    let input = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Origin: a\r\n\r\nhello";
    let mut session = HttpSession::new(Box::new(Builder::new().read(input).build()));
    let header = session.read_resp_header_parts().await.unwrap();
    assert!(!session.is_body_done());
    let head = session.get_headers_raw_bytes();
    let before = allocations();
    let body = session.read_body_bytes().await.unwrap().unwrap();
    let made = allocations() - before;
    assert_eq!(&body[..], b"hello");
    // The body's bytes follow the head's in the one buffer the head was read into.
    assert_eq!(body.as_ptr(), head.as_ptr().wrapping_add(head.len()));
    assert_eq!(made, 0, "handing out the body allocated");
    assert!(session.is_body_done());
    drop(header);
}

#[tokio::test]
async fn the_body_of_a_head_request_or_a_204_is_still_empty() {
    // A `Content-Length` on a 204 or a response to `HEAD` frames no body: the bytes after the
    // head are overread, not a body to hand out.
    let mut session = HttpSession::new(Box::new(
        Builder::new()
            .read(b"HTTP/1.1 204 No Content\r\nContent-Length: 2\r\n\r\nok")
            .build(),
    ));
    session.read_response().await.unwrap();
    assert!(session.is_body_done());
    assert_eq!(session.read_body_bytes().await.unwrap(), None);
    assert!(session.body_reader.has_bytes_overread());
}
