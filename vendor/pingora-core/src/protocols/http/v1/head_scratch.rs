//! A buffer per thread that a head is serialised into before it is written.
//!
//! Writing a head copies it into the stream (its write buffer or the socket), after which the
//! serialised bytes are garbage; 0.9.1 allocated a new buffer for every head. The writer takes
//! this thread's buffer ([`take`]) and gives it back once the write is done ([`give_back`]),
//! so a busy thread serialises heads without allocating. A write that waits keeps the buffer
//! until it is done; another head serialised meanwhile on the thread gets a buffer of its own,
//! as before. A buffer that grew past [`KEPT_CAPACITY`] (an unusually large head) is not kept.

use bytes::BytesMut;
use std::cell::Cell;

/// The largest buffer kept for the next head.
pub const KEPT_CAPACITY: usize = 16 * 1024;

thread_local! {
    static SCRATCH: Cell<Option<BytesMut>> = const { Cell::new(None) };
}

/// An empty buffer with room for at least `capacity` bytes: this thread's, if it is free.
pub fn take(capacity: usize) -> BytesMut {
    match SCRATCH.try_with(Cell::take).ok().flatten() {
        Some(mut buf) => {
            buf.reserve(capacity);
            buf
        }
        None => BytesMut::with_capacity(capacity),
    }
}

/// Returns a buffer from [`take`] once its bytes are written.
pub fn give_back(mut buf: BytesMut) {
    if buf.capacity() > KEPT_CAPACITY {
        return;
    }
    buf.clear();
    let _ = SCRATCH.try_with(|s| s.set(Some(buf)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_given_back_is_taken_again_empty() {
        let mut buf = take(64);
        buf.extend_from_slice(b"HTTP/1.1 200 OK\r\n\r\n");
        let ptr = buf.as_ptr();
        give_back(buf);
        let again = take(64);
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), ptr);
        assert!(again.capacity() >= 64);
    }

    #[test]
    fn a_buffer_in_use_is_not_handed_out_twice() {
        let mut first = take(64);
        first.extend_from_slice(b"first");
        // Taken again while the first is still being written: another buffer.
        let second = take(64);
        assert_ne!(first.as_ptr(), second.as_ptr());
        assert_eq!(&first[..], b"first");
        give_back(second);
        give_back(first);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn writing_a_request_head_gives_its_buffer_back() {
        use crate::protocols::http::v1::client::{tests_response_room::allocations, HttpSession};
        use pingora_http::RequestHeader;
        let mock = tokio_test::io::Builder::new()
            .write(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n")
            .build();
        let mut session = HttpSession::new(Box::new(mock));
        let mut req = RequestHeader::build("GET", b"/a", None).unwrap();
        req.append_header("Host", "h").unwrap();
        let _ = take(0);
        let written = session.write_request_header(Box::new(req)).await.unwrap();
        assert_eq!(written, b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n".len());
        let before = allocations();
        let buf = take(64);
        assert_eq!(
            allocations() - before,
            0,
            "the written head's buffer was not given back"
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn a_large_buffer_is_not_kept() {
        let big = take(KEPT_CAPACITY + 1);
        let ptr = big.as_ptr();
        give_back(big);
        let next = take(64);
        assert_ne!(next.as_ptr(), ptr);
        assert!(next.capacity() < KEPT_CAPACITY);
    }
}
