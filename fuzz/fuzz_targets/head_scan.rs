//! The HTTP/1 head scanner of the connection layer (`listener::head_scan::HeadScan`): never
//! panics, and finds the same head end and body framing however the bytes are split into reads.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use switchyard_proxy::listener::head_scan::HeadScan;

#[derive(Debug, Arbitrary)]
struct Input {
    bytes: Vec<u8>,
    /// Where the bytes are split into reads (taken modulo the length).
    cuts: Vec<u16>,
}

/// The head end (an index into all the bytes) and the framing, feeding `pieces` in turn.
fn scan<'a>(pieces: impl Iterator<Item = &'a [u8]>) -> (Option<usize>, HeadScan) {
    let mut s = HeadScan::default();
    let mut offset = 0;
    for piece in pieces {
        if let Some(i) = s.feed(piece) {
            return (Some(offset + i), s);
        }
        offset += piece.len();
    }
    (None, s)
}

fuzz_target!(|input: Input| {
    let bytes = &input.bytes;
    let (whole_end, whole) = scan(std::iter::once(bytes.as_slice()));

    let mut cuts: Vec<usize> = input
        .cuts
        .iter()
        .map(|&c| usize::from(c) % (bytes.len() + 1))
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut pieces = Vec::new();
    let mut start = 0;
    for c in cuts {
        pieces.push(&bytes[start..c]);
        start = c;
    }
    pieces.push(&bytes[start..]);
    let (split_end, split) = scan(pieces.into_iter());

    assert_eq!(whole_end, split_end, "the split into reads changed the head end");
    if let Some(end) = whole_end {
        assert_eq!(whole.framing(), split.framing(), "framing depends on the split");
        // A head ends at a line feed, after something other than line ends.
        assert_eq!(bytes[end], b'\n');
        assert!(bytes[..end].iter().any(|&b| b != b'\r' && b != b'\n'));
    }
});
