//! Queued spans as one OTLP `ExportTraceServiceRequest`, written straight from the
//! [`SpanRecord`]s into the export body in protobuf's wire format: each span is sized once (its
//! attributes are flat, so its length is a sum) and then written, and the two enclosing messages
//! (`ResourceSpans`, `ScopeSpans`) are framed around them, their fixed parts (the resource and
//! the scope) encoded once by `prost` from `opentelemetry-proto`'s generated messages when the
//! exporter starts.
//!
//! Why not fill `opentelemetry-proto`'s messages and let `prost` encode them (session 9): prost
//! sizes a nested message again at every level that encloses it, so every attribute value was
//! measured six or seven times per export, and the messages had to be overwritten span by span;
//! that was two thirds of tracing's cost (callgrind, `docs/benchmarks.md`). The bytes written here
//! are the ones prost writes for the same messages (fields in tag order, proto3 defaults left
//! out, oneof values always written): the tests compare them byte for byte with prost's encoding
//! of the equivalent `opentelemetry-proto` request, and decode them with it.

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::encoding::{encode_varint, encoded_len_varint};

use super::span_record::{Attr, SpanBatch, SpanRecord, Value};

/// `SpanFlags`: the trace flags' sampled bit, and whether the parent's remoteness is known /
/// remote (`SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK`, `SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK`).
const FLAG_SAMPLED: u32 = 0x01;
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

/// A field's key byte: its number and wire type (every field written here is numbered below 16).
const fn key(field: u8, wire: u8) -> u8 {
    (field << 3) | wire
}
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;

/// `ExportTraceServiceRequest.resource_spans`, `ResourceSpans.scope_spans`, `ScopeSpans.spans`.
const RESOURCE_SPANS: u8 = key(1, LEN);
const SCOPE_SPANS: u8 = key(2, LEN);
const SPANS: u8 = key(2, LEN);
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

/// The export request's fixed parts, encoded once: one resource (the gateway), one scope
/// (`switchyard`).
#[derive(Debug)]
pub(crate) struct OtlpBatch {
    /// `ResourceSpans.resource` (key, length and message).
    resource: Vec<u8>,
    /// `ScopeSpans.scope` (key, length and message).
    scope: Vec<u8>,
    /// The encoded length of each span of the batch being written.
    span_lens: Vec<usize>,
}

impl OtlpBatch {
    /// An encoder whose resource has these attributes (`service.name`, ...).
    pub(crate) fn new(resource: &[(&'static str, &str)]) -> OtlpBatch {
        let resource = Resource {
            attributes: resource
                .iter()
                .map(|(k, v)| KeyValue {
                    key: (*k).to_string(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue((*v).to_string())),
                    }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let scope = InstrumentationScope {
            name: "switchyard".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        };
        let mut r = Vec::new();
        prost::encoding::message::encode(1, &resource, &mut r);
        let mut s = Vec::new();
        prost::encoding::message::encode(1, &scope, &mut s);
        OtlpBatch {
            resource: r,
            scope: s,
            span_lens: Vec::new(),
        }
    }

    /// Encodes `records` (spans of `batch`) into `out` (cleared first) as one
    /// `ExportTraceServiceRequest`.
    pub(crate) fn encode(&mut self, batch: &SpanBatch, records: &[SpanRecord], out: &mut Vec<u8>) {
        self.span_lens.clear();
        let mut spans = 0;
        for r in records {
            let n = span_len(r, batch);
            self.span_lens.push(n);
            spans += field_len(n);
        }
        let scope_spans = self.scope.len() + spans;
        let resource_spans = self.resource.len() + field_len(scope_spans);
        out.clear();
        out.reserve(field_len(resource_spans));
        out.push(RESOURCE_SPANS);
        varint(resource_spans as u64, out);
        out.extend_from_slice(&self.resource);
        out.push(SCOPE_SPANS);
        varint(scope_spans as u64, out);
        out.extend_from_slice(&self.scope);
        for (r, &n) in records.iter().zip(&self.span_lens) {
            out.push(SPANS);
            varint(n as u64, out);
            write_span(out, r, batch);
        }
    }
}

/// Appends `v` as a varint: the one-byte case (most lengths, kinds and small integers) inline,
/// the rest by prost.
#[inline(always)]
fn varint(v: u64, out: &mut Vec<u8>) {
    if v < 0x80 {
        out.push(v as u8);
    } else {
        encode_varint(v, out);
    }
}

/// A length-delimited field's size: key, length, content.
#[inline]
fn field_len(content: usize) -> usize {
    1 + encoded_len_varint(content as u64) + content
}

fn flags(r: &SpanRecord) -> u32 {
    FLAG_SAMPLED | FLAG_HAS_IS_REMOTE | if r.remote_parent { FLAG_IS_REMOTE } else { 0 }
}

/// The encoded size of a span's message.
fn span_len(r: &SpanRecord, batch: &SpanBatch) -> usize {
    let mut n = field_len(16) + field_len(8);
    if r.parent_id != [0; 8] {
        n += field_len(8);
    }
    let name = batch.str_of(r.name);
    if !name.is_empty() {
        n += field_len(name.len());
    }
    n += 1 + encoded_len_varint(r.kind as u64);
    n += if r.start_unix_nano != 0 { 9 } else { 0 };
    n += if r.end_unix_nano != 0 { 9 } else { 0 };
    for a in r.attrs() {
        n += field_len(key_value_len(a, batch).0);
    }
    if r.failed {
        n += STATUS_ERROR.len();
    }
    n + FLAGS.len() + 4
}

/// The encoded size of an attribute's `KeyValue`, and of its `AnyValue`.
#[inline]
fn key_value_len(a: &Attr, batch: &SpanBatch) -> (usize, usize) {
    let any = match a.value {
        Value::Int(i) => 1 + encoded_len_varint(i as u64),
        v => field_len(batch.str_of(v).len()),
    };
    let kv = if a.key.is_empty() {
        0
    } else {
        field_len(a.key.len())
    } + field_len(any);
    (kv, any)
}

fn write_bytes(out: &mut Vec<u8>, key: u8, b: &[u8]) {
    out.push(key);
    varint(b.len() as u64, out);
    out.extend_from_slice(b);
}

/// Writes a span's message (without its key and length), fields in tag order.
fn write_span(out: &mut Vec<u8>, r: &SpanRecord, batch: &SpanBatch) {
    write_bytes(out, TRACE_ID, &r.trace_id);
    write_bytes(out, SPAN_ID, &r.span_id);
    if r.parent_id != [0; 8] {
        write_bytes(out, PARENT_SPAN_ID, &r.parent_id);
    }
    let name = batch.str_of(r.name);
    if !name.is_empty() {
        write_bytes(out, NAME, name.as_bytes());
    }
    out.push(KIND);
    varint(r.kind as u64, out);
    if r.start_unix_nano != 0 {
        out.push(START);
        out.extend_from_slice(&r.start_unix_nano.to_le_bytes());
    }
    if r.end_unix_nano != 0 {
        out.push(END);
        out.extend_from_slice(&r.end_unix_nano.to_le_bytes());
    }
    for a in r.attrs() {
        let (kv, any) = key_value_len(a, batch);
        out.push(ATTRIBUTES);
        varint(kv as u64, out);
        if !a.key.is_empty() {
            write_bytes(out, KV_KEY, a.key.as_bytes());
        }
        out.push(KV_VALUE);
        varint(any as u64, out);
        match a.value {
            Value::Int(i) => {
                out.push(INT_VALUE);
                varint(i as u64, out);
            }
            v => write_bytes(out, STRING_VALUE, batch.str_of(v).as_bytes()),
        }
    }
    if r.failed {
        out.extend_from_slice(&STATUS_ERROR);
    }
    out.extend_from_slice(&FLAGS);
    out.extend_from_slice(&flags(r).to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::span_record::Kind;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
    use prost::Message;

    const RESOURCE: [(&str, &str); 2] = [("service.name", "gw"), ("service.version", "9")];

    /// The same spans as `opentelemetry-proto` messages, the way session 9 built them, encoded
    /// by prost: the reference the hand-written bytes must equal.
    fn reference(batch: &SpanBatch, records: &[SpanRecord]) -> Vec<u8> {
        let kv = |k: &str, v: any_value::Value| KeyValue {
            key: k.to_string(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        };
        let spans = records
            .iter()
            .map(|r| Span {
                trace_id: r.trace_id.to_vec(),
                span_id: r.span_id.to_vec(),
                parent_span_id: if r.parent_id == [0; 8] {
                    Vec::new()
                } else {
                    r.parent_id.to_vec()
                },
                flags: flags(r),
                name: batch.str_of(r.name).to_string(),
                kind: r.kind as i32,
                start_time_unix_nano: r.start_unix_nano,
                end_time_unix_nano: r.end_unix_nano,
                attributes: r
                    .attrs()
                    .iter()
                    .map(|a| match a.value {
                        Value::Int(i) => kv(a.key, any_value::Value::IntValue(i)),
                        v => kv(a.key, any_value::Value::StringValue(batch.str_of(v).into())),
                    })
                    .collect(),
                status: r.failed.then(|| Status {
                    code: status::StatusCode::Error as i32,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect();
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: RESOURCE
                        .iter()
                        .map(|(k, v)| kv(k, any_value::Value::StringValue(v.to_string())))
                        .collect(),
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "switchyard".to_string(),
                        version: env!("CARGO_PKG_VERSION").to_string(),
                        ..Default::default()
                    }),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        request.encode_to_vec()
    }

    /// A server span with a remote parent and a failed client span (a retry), with strings
    /// long enough for two-byte lengths, non-ASCII text, an empty value, large and negative
    /// integers and a zero start time (left out, as prost leaves it out).
    fn sample() -> SpanBatch {
        let mut batch = SpanBatch::default();
        let name = batch.text("GET /a");
        let mut server = SpanRecord::new([1; 16], [2; 8], Some([9; 8]), Kind::Server, name);
        server.remote_parent = true;
        server.start_unix_nano = 1_765_000_000_123_456_789;
        server.end_unix_nano = 1_765_000_000_223_456_789;
        let path = batch.text(&"/long/path/é".repeat(40));
        server.attr("url.path", path);
        server.attr("http.response.status_code", Value::Int(200));
        let empty = batch.text("");
        server.attr("url.query", empty);
        server.attr("url.scheme", Value::Static("http"));
        let mut client = SpanRecord::new([1; 16], [3; 8], Some([2; 8]), Kind::Client, name);
        client.failed = true;
        client.end_unix_nano = 5;
        client.attr("switchyard.retry", Value::Int(1));
        client.attr("server.port", Value::Int(i64::MAX));
        client.attr("test.negative", Value::Int(-3));
        client.attr("error.type", Value::Static("timeout"));
        let root_name = batch.text("POST");
        let mut root = SpanRecord::new([7; 16], [8; 8], None, Kind::Server, root_name);
        for _ in 0..crate::observe::span_record::MAX_ATTRS {
            let v = batch.text(&"x".repeat(100));
            root.attr("many", v);
        }
        batch.spans = vec![server, client, root];
        batch
    }

    #[test]
    fn bytes_equal_prost_encoding_of_the_same_messages() {
        let batch = sample();
        let mut otlp = OtlpBatch::new(&RESOURCE);
        let mut out = Vec::new();
        for records in [&batch.spans[..], &batch.spans[..1], &batch.spans[1..], &[]] {
            otlp.encode(&batch, records, &mut out);
            assert_eq!(out, reference(&batch, records), "{} span(s)", records.len());
        }
        // Many spans: lengths of three varint bytes around the scope.
        let mut big = sample();
        let spans: Vec<SpanRecord> = (0..200).map(|i| big.spans[i % 3].clone()).collect();
        big.spans = spans;
        otlp.encode(&big, &big.spans, &mut out);
        assert!(out.len() > 1 << 14);
        assert_eq!(out, reference(&big, &big.spans));
    }

    #[test]
    fn decodes_as_sent_field_by_field() {
        let batch = sample();
        let mut otlp = OtlpBatch::new(&RESOURCE);
        let mut out = Vec::new();
        otlp.encode(&batch, &batch.spans, &mut out);
        let req =
            ExportTraceServiceRequest::decode(out.as_slice()).unwrap_or_else(|e| panic!("{e}"));
        let rs = &req.resource_spans[0];
        let attrs = &rs
            .resource
            .as_ref()
            .map(|r| r.attributes.clone())
            .unwrap_or_default();
        assert_eq!(attrs[0].key, "service.name");
        let scope = rs.scope_spans[0].scope.clone().unwrap_or_default();
        assert_eq!(scope.name, "switchyard");
        let spans = &rs.scope_spans[0].spans;
        assert_eq!(spans.len(), 3);
        assert_eq!(spans[0].trace_id, vec![1; 16]);
        assert_eq!(spans[0].span_id, vec![2; 8]);
        assert_eq!(spans[0].parent_span_id, vec![9; 8]);
        assert_eq!(spans[0].name, "GET /a");
        assert_eq!(spans[0].kind, Kind::Server as i32);
        assert_eq!(spans[0].flags, 0x301);
        assert_eq!(spans[0].start_time_unix_nano, 1_765_000_000_123_456_789);
        assert_eq!(spans[0].end_time_unix_nano, 1_765_000_000_223_456_789);
        assert_eq!(spans[0].attributes[0].key, "url.path");
        assert_eq!(
            spans[0].attributes[0].value,
            Some(AnyValue {
                value: Some(any_value::Value::StringValue("/long/path/é".repeat(40)))
            })
        );
        assert_eq!(
            spans[0].attributes[1].value,
            Some(AnyValue {
                value: Some(any_value::Value::IntValue(200))
            })
        );
        assert_eq!(
            spans[0].attributes[2].value,
            Some(AnyValue {
                value: Some(any_value::Value::StringValue(String::new()))
            })
        );
        assert!(spans[0].status.is_none());
        assert_eq!(spans[1].kind, Kind::Client as i32);
        assert_eq!(spans[1].flags, 0x101);
        assert_eq!(spans[1].start_time_unix_nano, 0);
        assert_eq!(spans[1].status.as_ref().map(|s| s.code), Some(2));
        let ints: Vec<_> = spans[1].attributes[..3]
            .iter()
            .map(|a| a.value.clone().and_then(|v| v.value))
            .collect();
        assert_eq!(
            ints,
            [1, i64::MAX, -3].map(|i| Some(any_value::Value::IntValue(i)))
        );
        assert!(spans[2].parent_span_id.is_empty());
        assert_eq!(
            spans[2].attributes.len(),
            crate::observe::span_record::MAX_ATTRS
        );
    }
}
