//! OTLP trace export bodies (`ExportTraceServiceRequest`, protobuf) written straight from the
//! SDK's [`SpanData`] in one pass.
//!
//! Why not `opentelemetry-otlp`'s encoder: it first copies every span into the generated
//! `opentelemetry-proto` structs (a `String` per attribute key and value), groups them in hash
//! maps, and prost then measures each nested message again at every level of nesting. At full
//! sampling that was about half of tracing's cost per request (counted with callgrind, see
//! `docs/benchmarks.md`). Here each message is written once, its length put in front of it when
//! it is done; the result is the same protobuf, decoded by the `opentelemetry-proto` types in the
//! tests. Field numbers are those of `opentelemetry/proto/trace/v1/trace.proto`,
//! `common/v1/common.proto` and `resource/v1/resource.proto`.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::{Array, InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::trace::SpanData;
use opentelemetry_sdk::Resource;

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// `span.flags`: the flags byte of the span context, and whether `is_remote` is known (always)
/// and set (`SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK`, `SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK`).
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

/// The body of an `ExportTraceServiceRequest` holding `spans`, all of one resource whose
/// encoded `Resource` message is `resource` ([`resource`]). Consecutive spans of the same
/// instrumentation scope share a `ScopeSpans`.
pub(crate) fn export_request(resource: &[u8], spans: &[SpanData]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + resource.len() + spans.len() * 400);
    if spans.is_empty() {
        return out;
    }
    // ExportTraceServiceRequest.resource_spans = 1
    nested(&mut out, 1, |o| {
        // ResourceSpans.resource = 1
        bytes(o, 1, resource);
        let mut rest = spans;
        while let Some(first) = rest.first() {
            let scope = &first.instrumentation_scope;
            let run = rest
                .iter()
                .position(|s| s.instrumentation_scope != *scope)
                .unwrap_or(rest.len());
            let (these, after) = rest.split_at(run);
            // ResourceSpans.scope_spans = 2
            nested(o, 2, |o| scope_spans(o, scope, these));
            rest = after;
        }
    });
    out
}

/// The `Resource` message of `resource` (its attributes).
pub(crate) fn resource(resource: &Resource) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    for (key, value) in resource.iter() {
        // Resource.attributes = 1
        nested(&mut out, 1, |o| key_value(o, key.as_str(), value));
    }
    out
}

fn scope_spans(out: &mut Vec<u8>, scope: &InstrumentationScope, spans: &[SpanData]) {
    // ScopeSpans.scope = 1
    nested(out, 1, |o| {
        string(o, 1, scope.name());
        if let Some(version) = scope.version() {
            string(o, 2, version);
        }
        attributes(o, 3, scope.attributes());
    });
    for span in spans {
        // ScopeSpans.spans = 2
        nested(out, 2, |o| self::span(o, span));
    }
    if let Some(url) = scope.schema_url() {
        string(out, 3, url);
    }
}

fn span(out: &mut Vec<u8>, s: &SpanData) {
    let cx = &s.span_context;
    bytes(out, 1, &cx.trace_id().to_bytes());
    bytes(out, 2, &cx.span_id().to_bytes());
    let state = cx.trace_state().header();
    string(out, 3, &state);
    if s.parent_span_id != opentelemetry::trace::SpanId::INVALID {
        bytes(out, 4, &s.parent_span_id.to_bytes());
    }
    string(out, 5, &s.name);
    let kind = match s.span_kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    };
    uint(out, 6, kind);
    fixed64(out, 7, nanos(s.start_time));
    fixed64(out, 8, nanos(s.end_time));
    attributes(out, 9, s.attributes.iter());
    uint(out, 10, u64::from(s.dropped_attributes_count));
    for event in s.events.iter() {
        // Span.events = 11: time_unix_nano = 1, name = 2, attributes = 3, dropped = 4
        nested(out, 11, |o| {
            fixed64(o, 1, nanos(event.timestamp));
            string(o, 2, &event.name);
            attributes(o, 3, event.attributes.iter());
            uint(o, 4, u64::from(event.dropped_attributes_count));
        });
    }
    uint(out, 12, u64::from(s.events.dropped_count));
    for link in s.links.iter() {
        // Span.links = 13: trace_id = 1, span_id = 2, trace_state = 3, attributes = 4,
        // dropped = 5, flags = 6
        nested(out, 13, |o| {
            let cx = &link.span_context;
            bytes(o, 1, &cx.trace_id().to_bytes());
            bytes(o, 2, &cx.span_id().to_bytes());
            string(o, 3, &cx.trace_state().header());
            attributes(o, 4, link.attributes.iter());
            uint(o, 5, u64::from(link.dropped_attributes_count));
            fixed32(o, 6, flags(cx.trace_flags().to_u8(), cx.is_remote()));
        });
    }
    uint(out, 14, u64::from(s.links.dropped_count));
    // Span.status = 15: message = 2, code = 3 (0 unset, 1 ok, 2 error)
    nested(out, 15, |o| match &s.status {
        Status::Unset => {}
        Status::Ok => uint(o, 3, 1),
        Status::Error { description } => {
            string(o, 2, description);
            uint(o, 3, 2);
        }
    });
    fixed32(
        out,
        16,
        flags(cx.trace_flags().to_u8(), s.parent_span_is_remote),
    );
}

fn flags(trace_flags: u8, remote: bool) -> u32 {
    u32::from(trace_flags) | HAS_IS_REMOTE | if remote { IS_REMOTE } else { 0 }
}

fn attributes<'a>(out: &mut Vec<u8>, field: u32, attrs: impl Iterator<Item = &'a KeyValue>) {
    for kv in attrs {
        nested(out, field, |o| key_value(o, kv.key.as_str(), &kv.value));
    }
}

/// `KeyValue`: key = 1, value = 2 (`AnyValue`).
fn key_value(out: &mut Vec<u8>, key: &str, value: &Value) {
    string(out, 1, key);
    nested(out, 2, |o| any_value(o, value));
}

/// `AnyValue`, a oneof: written even when it holds a default (`0`, `""`), as its presence says
/// which kind of value it is.
fn any_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::String(s) => {
            tag(out, 1, LEN);
            len_bytes(out, s.as_str().as_bytes());
        }
        Value::Bool(b) => {
            tag(out, 2, VARINT);
            varint(out, u64::from(*b));
        }
        Value::I64(i) => {
            tag(out, 3, VARINT);
            varint(out, *i as u64);
        }
        Value::F64(f) => {
            tag(out, 4, FIXED64);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        // array_value = 5: ArrayValue.values = 1
        Value::Array(array) => nested(out, 5, |o| match array {
            Array::Bool(v) => v
                .iter()
                .for_each(|x| nested(o, 1, |o| any_value(o, &Value::Bool(*x)))),
            Array::I64(v) => v
                .iter()
                .for_each(|x| nested(o, 1, |o| any_value(o, &Value::I64(*x)))),
            Array::F64(v) => v
                .iter()
                .for_each(|x| nested(o, 1, |o| any_value(o, &Value::F64(*x)))),
            Array::String(v) => v.iter().for_each(|x| {
                nested(o, 1, |o| {
                    tag(o, 1, LEN);
                    len_bytes(o, x.as_str().as_bytes());
                })
            }),
            // A kind of array added to the API later: written as its text.
            #[allow(unreachable_patterns)]
            other => nested(o, 1, |o| {
                tag(o, 1, LEN);
                len_bytes(o, other.to_string().as_bytes());
            }),
        }),
        #[allow(unreachable_patterns)]
        other => {
            tag(out, 1, LEN);
            len_bytes(out, other.as_str().as_bytes());
        }
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn tag(out: &mut Vec<u8>, field: u32, wire: u32) {
    varint(out, u64::from(field << 3 | wire));
}

fn len_bytes(out: &mut Vec<u8>, b: &[u8]) {
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A `bytes` field (always written: ids are never empty).
fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    tag(out, field, LEN);
    len_bytes(out, b);
}

/// A `string` field, left out when empty (proto3's default).
fn string(out: &mut Vec<u8>, field: u32, s: &str) {
    if !s.is_empty() {
        bytes(out, field, s.as_bytes());
    }
}

/// A varint field, left out when 0.
fn uint(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        tag(out, field, VARINT);
        varint(out, v);
    }
}

/// A `fixed64` field, left out when 0.
fn fixed64(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        tag(out, field, FIXED64);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// A `fixed32` field, left out when 0.
fn fixed32(out: &mut Vec<u8>, field: u32, v: u32) {
    if v != 0 {
        tag(out, field, FIXED32);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// A message field written by `body`: in place, then its length put in front (one byte is
/// reserved, enough for messages under 128 bytes; longer ones move by the few bytes more).
fn nested(out: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    tag(out, field, LEN);
    let at = out.len();
    out.push(0);
    body(out);
    let len = out.len() - at - 1;
    if len < 0x80 {
        out[at] = len as u8;
    } else {
        let mut prefix = Vec::with_capacity(10);
        varint(&mut prefix, len as u64);
        // Moves the body up by the bytes the length needs beyond the one reserved.
        let extra = prefix.len() - 1;
        let end = out.len();
        out.resize(end + extra, 0);
        out.copy_within(at + 1..end, at + 1 + extra);
        out[at..at + prefix.len()].copy_from_slice(&prefix);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value;
    use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use prost::Message;
    use std::borrow::Cow;
    use std::time::Duration;

    fn span_data(span: u8, parent: Option<u8>, attrs: Vec<KeyValue>, scope: &str) -> SpanData {
        SpanData {
            span_context: SpanContext::new(
                TraceId::from_bytes([7; 16]),
                SpanId::from_bytes([span; 8]),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: parent.map_or(SpanId::INVALID, |p| SpanId::from_bytes([p; 8])),
            parent_span_is_remote: parent == Some(9),
            span_kind: if parent == Some(1) {
                SpanKind::Client
            } else {
                SpanKind::Server
            },
            name: Cow::Owned(format!("span {span}")),
            start_time: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789),
            end_time: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_223_456_789),
            attributes: attrs,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: if span == 2 {
                Status::error("boom")
            } else {
                Status::Unset
            },
            instrumentation_scope: InstrumentationScope::builder(scope.to_string())
                .with_version("1.2")
                .build(),
        }
    }

    /// What we write is what the `opentelemetry-proto` types (prost) read back, field by field,
    /// including a long attribute (a length over one byte) and a oneof holding a default.
    #[test]
    fn decodes_with_the_generated_types() {
        let long = "x".repeat(300);
        let spans = vec![
            span_data(
                1,
                Some(9),
                vec![
                    KeyValue::new("url.path", long.clone()),
                    KeyValue::new("http.response.status_code", 200i64),
                    KeyValue::new("switchyard.retry", 0i64),
                    KeyValue::new("neg", -5i64),
                    KeyValue::new("ok", true),
                    KeyValue::new("ratio", 0.5),
                    KeyValue::new("empty", ""),
                ],
                "switchyard",
            ),
            span_data(2, Some(1), vec![], "switchyard"),
            span_data(3, None, vec![], "other"),
        ];
        let res = Resource::builder_empty()
            .with_service_name("edge")
            .with_attributes([KeyValue::new("service.instance.id", "i-1")])
            .build();
        let body = export_request(&resource(&res), &spans);
        let req =
            ExportTraceServiceRequest::decode(body.as_slice()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(req.resource_spans.len(), 1);
        let rs = &req.resource_spans[0];
        let attrs = &rs
            .resource
            .as_ref()
            .unwrap_or_else(|| panic!("resource"))
            .attributes;
        let service = attrs.iter().find(|kv| kv.key == "service.name");
        let value = service
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.clone());
        assert_eq!(value, Some(any_value::Value::StringValue("edge".into())));
        assert_eq!(rs.scope_spans.len(), 2, "one ScopeSpans per run of a scope");
        let ss = &rs.scope_spans[0];
        let scope = ss.scope.as_ref().unwrap_or_else(|| panic!("scope"));
        assert_eq!(
            (scope.name.as_str(), scope.version.as_str()),
            ("switchyard", "1.2")
        );
        assert_eq!(ss.spans.len(), 2);
        let s = &ss.spans[0];
        assert_eq!(s.trace_id, vec![7; 16]);
        assert_eq!(s.span_id, vec![1; 8]);
        assert_eq!(s.parent_span_id, vec![9; 8]);
        assert_eq!(s.name, "span 1");
        assert_eq!(s.kind, 2);
        assert_eq!(s.start_time_unix_nano, 1_700_000_000_123_456_789);
        assert_eq!(s.end_time_unix_nano, 1_700_000_000_223_456_789);
        assert_eq!(s.flags, 0x301);
        let values: Vec<_> = s
            .attributes
            .iter()
            .map(|kv| {
                (
                    kv.key.as_str(),
                    kv.value.as_ref().and_then(|v| v.value.clone()),
                )
            })
            .collect();
        assert_eq!(
            values,
            vec![
                ("url.path", Some(any_value::Value::StringValue(long))),
                (
                    "http.response.status_code",
                    Some(any_value::Value::IntValue(200))
                ),
                ("switchyard.retry", Some(any_value::Value::IntValue(0))),
                ("neg", Some(any_value::Value::IntValue(-5))),
                ("ok", Some(any_value::Value::BoolValue(true))),
                ("ratio", Some(any_value::Value::DoubleValue(0.5))),
                ("empty", Some(any_value::Value::StringValue(String::new()))),
            ]
        );
        let status = s.status.as_ref().map(|st| st.code);
        assert_eq!(status, Some(StatusCode::Unset as i32));
        let client = &ss.spans[1];
        assert_eq!((client.kind, client.flags), (3, 0x101));
        let status = client.status.as_ref().unwrap_or_else(|| panic!("status"));
        assert_eq!(
            (status.code, status.message.as_str()),
            (StatusCode::Error as i32, "boom")
        );
        let other = &rs.scope_spans[1];
        assert_eq!(other.spans.len(), 1);
        assert!(other.spans[0].parent_span_id.is_empty());
        assert!(export_request(&resource(&res), &[]).is_empty());
    }
}
