//! PROXY protocol v1/v2: reading a header from an untrusted stream and parsing it.
//!
//! Properties checked on every input:
//! - nothing panics (`read_header_untimed`, `parse_v1`, `parse_v2`);
//! - the reader consumes **only** the header (never a payload byte after it), at most the
//!   documented size limits, and what it consumed parses to the same result on its own;
//! - the addresses of an accepted header survive an encode → parse round trip (v1 and v2).
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use switchyard_proxy::proxy_protocol::{
    encode_v1, encode_v2, parse_v1, parse_v2, read_header_untimed, same_family, Carried,
    HeaderError, V1_MAX_LEN, V2_MAX_PAYLOAD,
};

/// Drives a future over an in-memory reader (`&[u8]` is always ready, so a few polls finish it).
fn block_on<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1_000 {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return Some(out);
        }
    }
    None
}

fn check_round_trip(carried: &Carried) {
    if let Some((src, dst)) = carried.addrs {
        let want = Some(same_family(src, dst));
        let v1 = parse_v1(&encode_v1(src, dst)).map(|c| c.addrs);
        assert_eq!(v1.ok(), Some(want), "v1 round trip of {src} -> {dst}");
        // ppp builds a v2 header for any two addresses (it fails only past 65535 bytes).
        let bytes = encode_v2(src, dst);
        assert!(bytes.is_some(), "no v2 header for {src} -> {dst}");
        let v2 = parse_v2(&bytes.unwrap_or_default()).map(|c| c.addrs);
        assert_eq!(v2.ok(), Some(want), "v2 round trip of {src} -> {dst}");
    }
}

fuzz_target!(|data: &[u8]| {
    // Direct parsers on arbitrary bytes.
    if let Ok(c) = parse_v1(data) {
        assert_eq!(c.version, 1);
        check_round_trip(&c);
    }
    if let Ok(c) = parse_v2(data) {
        assert_eq!(c.version, 2);
        check_round_trip(&c);
    }

    // The stream reader: exactly the header is consumed.
    let mut reader: &[u8] = data;
    let Some(result) = block_on(read_header_untimed(&mut reader)) else {
        panic!("reading from a slice did not finish");
    };
    let consumed = data.len() - reader.len();
    match result {
        Ok(carried) => {
            let header = &data[..consumed];
            let again = match carried.version {
                1 => {
                    assert!(consumed <= V1_MAX_LEN, "v1 header of {consumed} bytes");
                    assert!(header.ends_with(b"\r\n"));
                    parse_v1(header)
                }
                2 => {
                    assert!(
                        consumed <= 16 + V2_MAX_PAYLOAD,
                        "v2 header of {consumed} bytes"
                    );
                    parse_v2(header)
                }
                v => panic!("version {v}"),
            };
            assert_eq!(
                again.ok(),
                Some(carried),
                "consumed bytes parse differently"
            );
            check_round_trip(&carried);
        }
        Err(HeaderError::Timeout) => panic!("no timer is involved"),
        Err(_) => {
            // Rejected: never read further than the largest header could be.
            assert!(
                consumed <= 16 + V2_MAX_PAYLOAD,
                "read {consumed} bytes before rejecting"
            );
        }
    }
});
