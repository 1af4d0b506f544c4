//! One finished span written by the request thread straight into the export queue's bytes, as
//! the OTLP protobuf `ScopeSpans.spans` field (key, length, `Span` message): no intermediate
//! record, no text copied into an arena to be encoded again later. The exporter's thread only
//! frames the queued spans with the resource and the scope ([`super::otlp_batch`]).
//!
//! The bytes are the ones `prost` writes for the same `opentelemetry-proto` `Span` (fields in tag
//! order, proto3 defaults left out, oneof values always written, minimal varints); the tests of
//! [`super::otlp_batch`] compare them byte for byte with prost's encoding and decode them.
//!
//! The span's length is only known once its attributes are written: two bytes are kept for it
//! (a span of 128 bytes to 16 KiB, nearly all of them), and [`SpanWriter::finish`] writes it
//! there, moving the span by a byte in the rare other cases.

use prost::encoding::{encode_varint, encoded_len_varint};

use super::trace_context::{SpanId, TraceId};

/// `ScopeSpans.spans`: the key every span written here starts with.
pub(crate) const SPANS: u8 = key(2, LEN);

/// A field's key byte: its number and wire type (every field written here is numbered below 16).
const fn key(field: u8, wire: u8) -> u8 {
    (field << 3) | wire
}
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;

/// `Span` fields.
const TRACE_ID: u8 = key(1, LEN);
const SPAN_ID: u8 = key(2, LEN);
const PARENT_SPAN_ID: u8 = key(4, LEN);
const NAME: u8 = key(5, LEN);
const KIND: u8 = key(6, VARINT);
const START: u8 = key(7, FIXED64);
const END: u8 = key(8, FIXED64);
const ATTRIBUTES: u8 = key(9, LEN);
/// `Span.status` holding `Status { code: STATUS_CODE_ERROR (2) }` (field 3, a varint).
const STATUS_ERROR: [u8; 4] = [key(15, LEN), 2, key(3, VARINT), 2];
/// `Span.flags` (field 16, fixed32): its key, `16 << 3 | 5` = 133, takes two varint bytes.
const FLAGS: [u8; 2] = [0x80 | (133 & 0x7f), 133 >> 7];
/// `KeyValue.key`, `KeyValue.value`; `AnyValue.string_value`, `AnyValue.int_value`.
const KV_KEY: u8 = key(1, LEN);
const KV_VALUE: u8 = key(2, LEN);
const STRING_VALUE: u8 = key(1, LEN);
const INT_VALUE: u8 = key(3, VARINT);

/// `SpanFlags`: the trace flags' sampled bit, and whether the parent's remoteness is known /
/// remote (`SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK`, `SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK`).
const FLAG_SAMPLED: u32 = 0x01;
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

/// A span's kind, as OTLP numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `SPAN_KIND_SERVER`: the request as the client sent it.
    Server = 2,
    /// `SPAN_KIND_CLIENT`: one attempt on one server.
    Client = 3,
}

/// What a span starts with: its ids, name, kind and times.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpanHead<'a> {
    pub(crate) trace_id: &'a TraceId,
    pub(crate) span_id: &'a SpanId,
    /// `None`: a root span.
    pub(crate) parent_id: Option<&'a SpanId>,
    /// The name, written as these pieces one after the other (`GET`, ` `, `/items/{id}`).
    pub(crate) name: &'a [&'a str],
    pub(crate) kind: Kind,
    /// Nanoseconds since the Unix epoch (0: left out, as prost leaves a default out).
    pub(crate) start_unix_nano: u64,
    pub(crate) end_unix_nano: u64,
}

/// A span being written at the end of `out`.
#[derive(Debug)]
pub(crate) struct SpanWriter<'o> {
    out: &'o mut Vec<u8>,
    /// Where the span's key byte is.
    at: usize,
}

impl<'o> SpanWriter<'o> {
    /// Starts a span at the end of `out` and writes its head.
    pub(crate) fn begin(out: &'o mut Vec<u8>, head: &SpanHead<'_>) -> SpanWriter<'o> {
        let at = out.len();
        out.extend_from_slice(&[SPANS, 0, 0]);
        out.push(TRACE_ID);
        out.push(16);
        out.extend_from_slice(head.trace_id);
        out.push(SPAN_ID);
        out.push(8);
        out.extend_from_slice(head.span_id);
        if let Some(p) = head.parent_id.filter(|p| **p != [0; 8]) {
            out.push(PARENT_SPAN_ID);
            out.push(8);
            out.extend_from_slice(p);
        }
        let name_len: usize = head.name.iter().map(|p| p.len()).sum();
        if name_len > 0 {
            out.push(NAME);
            varint(name_len as u64, out);
            for p in head.name {
                out.extend_from_slice(p.as_bytes());
            }
        }
        out.push(KIND);
        out.push(head.kind as u8);
        if head.start_unix_nano != 0 {
            out.push(START);
            out.extend_from_slice(&head.start_unix_nano.to_le_bytes());
        }
        if head.end_unix_nano != 0 {
            out.push(END);
            out.extend_from_slice(&head.end_unix_nano.to_le_bytes());
        }
        SpanWriter { out, at }
    }

    /// Adds a string attribute. Inlined, as the other attribute writers: with a literal key,
    /// the key's bytes are copied as a constant-size move.
    #[inline(always)]
    pub(crate) fn str(&mut self, key: &str, value: &str) {
        self.text(key, value.as_bytes());
    }

    /// Adds a string attribute given as its bytes, which must be UTF-8 (an address's text).
    #[inline(always)]
    pub(crate) fn text(&mut self, key: &str, value: &[u8]) {
        let any = field_len(value.len());
        self.kv_head(key, any);
        self.out.push(STRING_VALUE);
        varint(value.len() as u64, self.out);
        self.out.extend_from_slice(value);
    }

    /// Adds an integer attribute.
    #[inline(always)]
    pub(crate) fn int(&mut self, key: &str, value: i64) {
        let any = 1 + encoded_len_varint(value as u64);
        self.kv_head(key, any);
        self.out.push(INT_VALUE);
        varint(value as u64, self.out);
    }

    /// A `KeyValue`'s key, length, `key` field, and its `AnyValue`'s key and length (`any`).
    #[inline(always)]
    fn kv_head(&mut self, key: &str, any: usize) {
        let kv = if key.is_empty() {
            0
        } else {
            field_len(key.len())
        } + field_len(any);
        self.out.push(ATTRIBUTES);
        varint(kv as u64, self.out);
        if !key.is_empty() {
            self.out.push(KV_KEY);
            varint(key.len() as u64, self.out);
            self.out.extend_from_slice(key.as_bytes());
        }
        self.out.push(KV_VALUE);
        varint(any as u64, self.out);
    }

    /// Ends the span: its status (`ERROR` if `failed`, otherwise unset), its flags, and its
    /// length in front of it.
    pub(crate) fn finish(self, failed: bool, remote_parent: bool) {
        let out = self.out;
        if failed {
            out.extend_from_slice(&STATUS_ERROR);
        }
        let flags =
            FLAG_SAMPLED | FLAG_HAS_IS_REMOTE | if remote_parent { FLAG_IS_REMOTE } else { 0 };
        out.extend_from_slice(&FLAGS);
        out.extend_from_slice(&flags.to_le_bytes());
        let len = out.len() - self.at - 3;
        match len {
            0..0x80 => {
                out[self.at + 1] = len as u8;
                out.copy_within(self.at + 3.., self.at + 2);
                out.pop();
            }
            0x80..0x4000 => {
                out[self.at + 1] = 0x80 | (len & 0x7f) as u8;
                out[self.at + 2] = (len >> 7) as u8;
            }
            _ => {
                let mut prefix = Vec::with_capacity(5);
                encode_varint(len as u64, &mut prefix);
                out.splice(self.at + 1..self.at + 3, prefix);
            }
        }
    }
}

/// The end of the span that starts at `at` in `bytes` (a [`SPANS`] key, a length, the span), or
/// `None` if the bytes there are not such a span.
pub(crate) fn span_end(bytes: &[u8], at: usize) -> Option<usize> {
    if bytes.get(at) != Some(&SPANS) {
        return None;
    }
    let mut len = 0u64;
    let mut i = at + 1;
    for shift in (0..35).step_by(7) {
        let b = *bytes.get(i)?;
        i += 1;
        len |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            let end = i.checked_add(usize::try_from(len).ok()?)?;
            return (end <= bytes.len()).then_some(end);
        }
    }
    None
}

/// Appends `v` as a varint: the one-byte case (most lengths, kinds and small integers) inline,
/// the rest by prost.
#[inline(always)]
pub(crate) fn varint(v: u64, out: &mut Vec<u8>) {
    if v < 0x80 {
        out.push(v as u8);
    } else {
        encode_varint(v, out);
    }
}

/// A length-delimited field's size: key, length, content.
#[inline]
pub(crate) fn field_len(content: usize) -> usize {
    1 + encoded_len_varint(content as u64) + content
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head<'a>(name: &'a [&'a str]) -> SpanHead<'a> {
        SpanHead {
            trace_id: &[1; 16],
            span_id: &[2; 8],
            parent_id: None,
            name,
            kind: Kind::Server,
            start_unix_nano: 0,
            end_unix_nano: 0,
        }
    }

    /// Spans of every length class: the length's varint takes one, two or three bytes, and
    /// `span_end` finds where each ends.
    #[test]
    fn lengths_of_one_two_and_three_bytes() {
        let mut out = Vec::new();
        let mut ends = Vec::new();
        for value_len in [0, 200, 20_000] {
            let value = "v".repeat(value_len);
            let mut w = SpanWriter::begin(&mut out, &head(&["n"]));
            w.str("k", &value);
            w.finish(false, false);
            ends.push(out.len());
        }
        let mut at = 0;
        for (i, end) in ends.iter().enumerate() {
            let found = span_end(&out, at).unwrap_or_else(|| panic!("span {i} not found"));
            assert_eq!(found, *end, "span {i}");
            at = found;
        }
        assert_eq!(out[1] as usize, ends[0] - 2, "one-byte length");
        assert_eq!(span_end(&out, out.len()), None);
        assert_eq!(span_end(&out[..ends[1] - 1], ends[0]), None, "cut short");
        assert_eq!(span_end(&[0x0a, 0], 0), None, "not a span");
    }
}
