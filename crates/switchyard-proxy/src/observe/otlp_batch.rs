//! Queued spans as OTLP `ExportTraceServiceRequest`s: the spans were written as protobuf by the
//! request threads ([`super::span_writer`]); here they are cut into requests of at most a given
//! number of spans ([`chunks`]) and framed by the two enclosing messages (`ResourceSpans`,
//! `ScopeSpans`), whose fixed parts (the resource and the scope) are encoded once by `prost` from
//! `opentelemetry-proto`'s generated messages when the exporter starts.
//!
//! Why not fill `opentelemetry-proto`'s messages and let `prost` encode them (session 9): prost
//! sizes a nested message again at every level that encloses it, so every attribute value was
//! measured six or seven times per export, and the messages had to be overwritten span by span;
//! that was two thirds of tracing's cost (callgrind, `docs/benchmarks.md`). Session 10 wrote the
//! protobuf from fixed-size span records on the exporter's thread; since session 11 the request
//! thread writes it once, and the records (and the copies of their text) are gone. The bytes are
//! the ones prost writes for the same messages: the tests compare them byte for byte with prost's
//! encoding of the equivalent `opentelemetry-proto` request, and decode them with it.

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::span_writer::{field_len, span_end, varint};

/// `ExportTraceServiceRequest.resource_spans`, `ResourceSpans.scope_spans` (both field 1 and 2,
/// length-delimited).
const RESOURCE_SPANS: u8 = (1 << 3) | 2;
const SCOPE_SPANS: u8 = (2 << 3) | 2;

/// The export request's fixed parts, encoded once: one resource (the gateway), one scope
/// (`switchyard`).
#[derive(Debug)]
pub(crate) struct OtlpBatch {
    /// `ResourceSpans.resource` (key, length and message).
    resource: Vec<u8>,
    /// `ScopeSpans.scope` (key, length and message).
    scope: Vec<u8>,
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
        }
    }

    /// Writes into `out` (cleared first) one `ExportTraceServiceRequest` holding `spans`
    /// (encoded spans, one after the other, as [`chunks`] cuts them).
    pub(crate) fn encode(&self, spans: &[u8], out: &mut Vec<u8>) {
        out.clear();
        self.header(spans.len(), out);
        out.extend_from_slice(spans);
    }

    /// The most bytes the framing of a request takes ([`OtlpBatch::frame_in_place`]).
    pub(crate) fn header_room(&self) -> usize {
        // Two keys, two varints of at most 10 bytes.
        2 + 20 + self.resource.len() + self.scope.len()
    }

    /// Writes the framing of a request holding the `spans_len` bytes of spans that start at
    /// `at` in `buf` just before them, and returns where the request starts; `None` if the
    /// framing does not fit before `at`.
    pub(crate) fn frame_in_place(
        &self,
        buf: &mut [u8],
        at: usize,
        spans_len: usize,
    ) -> Option<usize> {
        let mut header = Vec::with_capacity(self.header_room());
        self.header(spans_len, &mut header);
        let start = at.checked_sub(header.len())?;
        buf.get_mut(start..at)?.copy_from_slice(&header);
        Some(start)
    }

    /// The request's bytes before its spans: `ResourceSpans` (key, length, resource) and
    /// `ScopeSpans` (key, length, scope).
    fn header(&self, spans_len: usize, out: &mut Vec<u8>) {
        let scope_spans = self.scope.len() + spans_len;
        let resource_spans = self.resource.len() + field_len(scope_spans);
        out.reserve(field_len(resource_spans) - spans_len);
        out.push(RESOURCE_SPANS);
        varint(resource_spans as u64, out);
        out.extend_from_slice(&self.resource);
        out.push(SCOPE_SPANS);
        varint(scope_spans as u64, out);
        out.extend_from_slice(&self.scope);
    }
}

/// `bytes` (encoded spans) cut into runs of at most `max` whole spans, with how many each holds.
/// Bytes that are not a whole span (a write cut short by a panic) end the runs.
pub(crate) fn chunks(bytes: &[u8], max: usize) -> impl Iterator<Item = (&[u8], usize)> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let start = at;
        let mut n = 0;
        while n < max.max(1) {
            match span_end(bytes, at) {
                Some(end) => {
                    at = end;
                    n += 1;
                }
                None => break,
            }
        }
        (n > 0).then(|| (&bytes[start..at], n))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::span_writer::{Kind, SpanHead, SpanWriter};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
    use prost::Message;

    const RESOURCE: [(&str, &str); 2] = [("service.name", "gw"), ("service.version", "9")];

    #[derive(Clone)]
    enum V {
        S(String),
        I(i64),
    }

    /// A span as the tests describe it.
    #[derive(Clone)]
    struct T {
        trace_id: [u8; 16],
        span_id: [u8; 8],
        parent_id: Option<[u8; 8]>,
        remote: bool,
        name: Vec<String>,
        kind: Kind,
        start: u64,
        end: u64,
        failed: bool,
        attrs: Vec<(&'static str, V)>,
    }

    /// `spans` written by [`SpanWriter`], one after the other.
    fn written(spans: &[T]) -> Vec<u8> {
        let mut out = Vec::new();
        for t in spans {
            let name: Vec<&str> = t.name.iter().map(String::as_str).collect();
            let mut w = SpanWriter::begin(
                &mut out,
                &SpanHead {
                    trace_id: &t.trace_id,
                    span_id: &t.span_id,
                    parent_id: t.parent_id.as_ref(),
                    name: &name,
                    kind: t.kind,
                    start_unix_nano: t.start,
                    end_unix_nano: t.end,
                },
            );
            for (k, v) in &t.attrs {
                match v {
                    V::S(s) => w.str(k, s),
                    V::I(i) => w.int(k, *i),
                }
            }
            w.finish(t.failed, t.remote);
        }
        out
    }

    /// The same spans as `opentelemetry-proto` messages, the way session 9 built them, encoded
    /// by prost: the reference the hand-written bytes must equal.
    fn reference(records: &[T]) -> Vec<u8> {
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
                parent_span_id: r.parent_id.map(|p| p.to_vec()).unwrap_or_default(),
                flags: 0x101 | if r.remote { 0x200 } else { 0 },
                name: r.name.concat(),
                kind: r.kind as i32,
                start_time_unix_nano: r.start,
                end_time_unix_nano: r.end,
                attributes: r
                    .attrs
                    .iter()
                    .map(|(k, v)| match v {
                        V::I(i) => kv(k, any_value::Value::IntValue(*i)),
                        V::S(s) => kv(k, any_value::Value::StringValue(s.clone())),
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
    /// integers and a zero start time (left out, as prost leaves it out); a root span with many
    /// long attributes; a tiny span (a one-byte length).
    fn sample() -> Vec<T> {
        let server = T {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_id: Some([9; 8]),
            remote: true,
            name: vec!["GET".into(), " ".into(), "/a".into()],
            kind: Kind::Server,
            start: 1_765_000_000_123_456_789,
            end: 1_765_000_000_223_456_789,
            failed: false,
            attrs: vec![
                ("url.path", V::S("/long/path/é".repeat(40))),
                ("http.response.status_code", V::I(200)),
                ("url.query", V::S(String::new())),
                ("url.scheme", V::S("http".into())),
                (
                    "user_agent.original",
                    V::S("\"quoted\\\" \u{1} 世界".into()),
                ),
            ],
        };
        let client = T {
            span_id: [3; 8],
            parent_id: Some([2; 8]),
            remote: false,
            name: vec!["GET".into()],
            kind: Kind::Client,
            start: 0,
            end: 5,
            failed: true,
            attrs: vec![
                ("switchyard.retry", V::I(1)),
                ("server.port", V::I(i64::MAX)),
                ("test.negative", V::I(-3)),
                ("error.type", V::S("timeout".into())),
            ],
            ..server.clone()
        };
        let root = T {
            trace_id: [7; 16],
            span_id: [8; 8],
            parent_id: None,
            remote: false,
            name: vec!["POST".into()],
            start: 1,
            end: 2,
            failed: false,
            attrs: (0..16).map(|_| ("many", V::S("x".repeat(100)))).collect(),
            ..server.clone()
        };
        let tiny = T {
            name: Vec::new(),
            attrs: Vec::new(),
            ..root.clone()
        };
        vec![server, client, root, tiny]
    }

    #[test]
    fn bytes_equal_prost_encoding_of_the_same_messages() {
        let spans = sample();
        let otlp = OtlpBatch::new(&RESOURCE);
        let mut out = Vec::new();
        for records in [&spans[..], &spans[..1], &spans[1..], &spans[3..], &[]] {
            otlp.encode(&written(records), &mut out);
            assert_eq!(out, reference(records), "{} span(s)", records.len());
        }
        // Many spans: lengths of three varint bytes around the scope.
        let big: Vec<T> = (0..200).map(|i| spans[i % 4].clone()).collect();
        otlp.encode(&written(&big), &mut out);
        assert!(out.len() > 1 << 14);
        assert_eq!(out, reference(&big));
    }

    /// The framing written in the room before the spans gives the same request as `encode`.
    #[test]
    fn framing_in_place_equals_encoding() {
        let otlp = OtlpBatch::new(&RESOURCE);
        for n in [0, 1, 4, 200] {
            let spans: Vec<T> = (0..n).map(|i| sample()[i % 4].clone()).collect();
            let written = written(&spans);
            let room = otlp.header_room();
            let mut buf = vec![0xee; room];
            buf.extend_from_slice(&written);
            let start = otlp
                .frame_in_place(&mut buf, room, written.len())
                .unwrap_or_else(|| panic!("no room for {n} span(s)"));
            assert_eq!(&buf[start..], reference(&spans).as_slice(), "{n} span(s)");
        }
        let mut small = vec![0; 3];
        assert_eq!(otlp.frame_in_place(&mut small, 3, 0), None);
    }

    #[test]
    fn chunks_are_whole_spans_each_a_valid_request() {
        let spans: Vec<T> = (0..150).map(|i| sample()[i % 4].clone()).collect();
        let bytes = written(&spans);
        let otlp = OtlpBatch::new(&RESOURCE);
        let mut out = Vec::new();
        let mut seen = 0;
        for (chunk, n) in chunks(&bytes, 64) {
            otlp.encode(chunk, &mut out);
            assert_eq!(out, reference(&spans[seen..seen + n]));
            seen += n;
        }
        assert_eq!(seen, 150);
        assert_eq!(
            chunks(&bytes, 64).map(|(_, n)| n).collect::<Vec<_>>(),
            [64, 64, 22]
        );
        // A span cut short (a panic while writing) ends the runs at the last whole span.
        let cut = &bytes[..bytes.len() - 1];
        assert_eq!(chunks(cut, 1000).map(|(_, n)| n).sum::<usize>(), 149);
        assert_eq!(chunks(&[], 10).count(), 0);
    }

    #[test]
    fn decodes_as_sent_field_by_field() {
        let otlp = OtlpBatch::new(&RESOURCE);
        let mut out = Vec::new();
        otlp.encode(&written(&sample()), &mut out);
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
        assert_eq!(spans.len(), 4);
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
        assert_eq!(spans[2].attributes.len(), 16);
        assert!(spans[3].name.is_empty() && spans[3].parent_span_id.is_empty());
    }
}
