//! Short header values made per request (the request id, the client's address, `traceparent`)
//! cut from a per-thread slab, so that making one allocates nothing most of the time.
//!
//! A [`Bytes`] cut from a shared [`BytesMut`] only counts a reference to the slab's storage:
//! the slab is allocated once per [`SLAB_BYTES`] of values (about ten requests' worth), and a
//! value's clones (the request id goes upstream and into the response) share it too. A slab
//! is freed when its last value is dropped, so a value kept for a long time (the id of a
//! WebSocket or a gRPC stream) keeps at most one slab, [`SLAB_BYTES`], alive; an idle
//! connection keeps none (it holds no request).

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};
use http::HeaderValue;
use pingora::{Error, ErrorType, Result};

/// The size of one slab.
pub const SLAB_BYTES: usize = 1024;
/// A value longer than this gets an allocation of its own, so that one long value does not
/// waste most of a slab.
pub const LONGEST_CUT: usize = SLAB_BYTES / 8;

thread_local! {
    static SLAB: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// `bytes` as a header value, cut from this thread's slab; an error (`InvalidHTTPHeader`,
/// naming `what`) if they are not a valid value.
///
/// ```
/// use switchyard_proxy::value_slab::header_value;
/// let id = header_value(b"4bf92f3577b34da6a3ce929d0e0e4736", "request id").unwrap();
/// assert_eq!(id, "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert!(header_value(b"a\nb", "request id").is_err());
/// ```
pub fn header_value(bytes: &[u8], what: &'static str) -> Result<HeaderValue> {
    HeaderValue::from_maybe_shared(cut(bytes))
        .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, what, e))
}

/// A copy of `bytes` that shares this thread's slab (or, over [`LONGEST_CUT`] bytes, an
/// allocation of its own).
pub fn cut(bytes: &[u8]) -> Bytes {
    if bytes.len() > LONGEST_CUT {
        return Bytes::copy_from_slice(bytes);
    }
    let cut_from = |slab: &RefCell<BytesMut>| {
        let mut slab = slab.borrow_mut();
        if slab.capacity() - slab.len() < bytes.len() {
            *slab = BytesMut::with_capacity(SLAB_BYTES);
        }
        slab.extend_from_slice(bytes);
        slab.split_to(bytes.len()).freeze()
    };
    // Only while the thread is being torn down is its slab gone: copy then.
    SLAB.try_with(cut_from)
        .unwrap_or_else(|_| Bytes::copy_from_slice(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_what_they_were_made_of() {
        let mut made = Vec::new();
        // Several slabs' worth, of lengths 0 to LONGEST_CUT + 1.
        for i in 0..(4 * SLAB_BYTES / 16) {
            let len = i % (LONGEST_CUT + 2);
            let text: Vec<u8> = (0..len).map(|j| b'a' + ((i + j) % 26) as u8).collect();
            let v = header_value(&text, "test").unwrap();
            made.push((text, v));
        }
        for (text, v) in &made {
            assert_eq!(v.as_bytes(), &text[..]);
        }
    }

    #[test]
    fn values_share_a_slab_and_their_clones_share_it_too() {
        // Start a fresh slab so that both values fit in it.
        SLAB.with(|s| *s.borrow_mut() = BytesMut::new());
        let a = cut(b"0123456789abcdef");
        let b = cut(b"fedcba9876543210");
        // Side by side in one buffer.
        assert_eq!(b.as_ptr(), a.as_ptr().wrapping_add(a.len()));
        let c = a.clone();
        assert_eq!(c.as_ptr(), a.as_ptr());
        drop(a);
        assert_eq!(&c[..], b"0123456789abcdef");
    }

    #[test]
    fn a_long_value_has_its_own_allocation() {
        let long = vec![b'x'; LONGEST_CUT + 1];
        SLAB.with(|s| *s.borrow_mut() = BytesMut::new());
        let before = cut(b"a");
        let v = cut(&long);
        let after = cut(b"b");
        assert_eq!(&v[..], &long[..]);
        // The slab was not used for it.
        assert_eq!(after.as_ptr(), before.as_ptr().wrapping_add(1));
    }

    #[test]
    fn an_invalid_value_is_refused_with_its_name() {
        let e = header_value(b"a\r\nb", "client address").unwrap_err();
        assert!(e.to_string().contains("client address"), "{e}");
    }
}
