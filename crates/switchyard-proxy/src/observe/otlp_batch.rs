//! Queued spans as one OTLP `ExportTraceServiceRequest` (the `opentelemetry-proto` crate's
//! generated messages), encoded by `prost`. The request and every span, attribute and string in
//! it are kept from one export to the next and overwritten in place, so that a steady flow of
//! spans is converted without allocating (the SDK's exporter builds new messages, with a new
//! `String` per attribute key and value, for every span).

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

use super::span_record::{SpanBatch, SpanRecord, Value};

/// `SpanFlags`: the trace flags' sampled bit, and whether the parent's remoteness is known /
/// remote (`SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK`, `SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK`).
const FLAG_SAMPLED: u32 = 0x01;
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

/// The reused export request: one resource (the gateway), one scope (`switchyard`).
#[derive(Debug)]
pub(crate) struct OtlpBatch {
    request: ExportTraceServiceRequest,
    /// Spans of a larger earlier batch, kept for reuse.
    spare: Vec<Span>,
}

impl OtlpBatch {
    /// An empty request whose resource has these attributes (`service.name`, ...).
    pub(crate) fn new(resource: &[(&'static str, &str)]) -> OtlpBatch {
        let attributes = resource
            .iter()
            .map(|(k, v)| KeyValue {
                key: (*k).to_string(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue((*v).to_string())),
                }),
                ..Default::default()
            })
            .collect();
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes,
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "switchyard".to_string(),
                        version: env!("CARGO_PKG_VERSION").to_string(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        OtlpBatch {
            request,
            spare: Vec::new(),
        }
    }

    /// Encodes `records` (spans of `batch`) into `out` (cleared first).
    pub(crate) fn encode(&mut self, batch: &SpanBatch, records: &[SpanRecord], out: &mut Vec<u8>) {
        let spans = spans_of(&mut self.request);
        while spans.len() > records.len() {
            if let Some(s) = spans.pop() {
                self.spare.push(s);
            }
        }
        for (i, r) in records.iter().enumerate() {
            if i == spans.len() {
                spans.push(self.spare.pop().unwrap_or_default());
            }
            if let Some(span) = spans.get_mut(i) {
                fill_span(span, r, batch);
            }
        }
        // `out` is reused from one export to the next: it rarely grows, and encoding into a
        // `Vec` cannot fail (`encode` sizes the message once, then writes it).
        out.clear();
        let _ = self.request.encode(out);
    }
}

/// The spans of the request's one resource and scope.
fn spans_of(request: &mut ExportTraceServiceRequest) -> &mut Vec<Span> {
    if request.resource_spans.is_empty() {
        request.resource_spans.push(ResourceSpans::default());
    }
    let rs = &mut request.resource_spans[0];
    if rs.scope_spans.is_empty() {
        rs.scope_spans.push(ScopeSpans::default());
    }
    &mut rs.scope_spans[0].spans
}

/// Overwrites `span` with `r`, reusing its strings and attributes.
fn fill_span(span: &mut Span, r: &SpanRecord, batch: &SpanBatch) {
    set_bytes(&mut span.trace_id, &r.trace_id);
    set_bytes(&mut span.span_id, &r.span_id);
    if r.parent_id == [0; 8] {
        span.parent_span_id.clear();
    } else {
        set_bytes(&mut span.parent_span_id, &r.parent_id);
    }
    span.trace_state.clear();
    span.flags =
        FLAG_SAMPLED | FLAG_HAS_IS_REMOTE | if r.remote_parent { FLAG_IS_REMOTE } else { 0 };
    set_str(&mut span.name, batch.str_of(r.name));
    span.kind = r.kind as i32;
    span.start_time_unix_nano = r.start_unix_nano;
    span.end_time_unix_nano = r.end_unix_nano;
    let attrs = r.attrs();
    span.attributes.truncate(attrs.len());
    for (i, a) in attrs.iter().enumerate() {
        if i == span.attributes.len() {
            span.attributes.push(KeyValue::default());
        }
        if let Some(kv) = span.attributes.get_mut(i) {
            set_str(&mut kv.key, a.key);
            set_value(kv, a.value, batch);
        }
    }
    span.dropped_attributes_count = 0;
    span.events.clear();
    span.links.clear();
    span.status = r.failed.then(|| Status {
        code: status::StatusCode::Error as i32,
        ..Default::default()
    });
}

fn set_value(kv: &mut KeyValue, value: Value, batch: &SpanBatch) {
    let slot = &mut kv.value.get_or_insert_with(AnyValue::default).value;
    match value {
        Value::Int(n) => *slot = Some(any_value::Value::IntValue(n)),
        Value::Text(..) | Value::Static(_) => {
            let s = batch.str_of(value);
            match slot {
                Some(any_value::Value::StringValue(old)) => set_str(old, s),
                _ => *slot = Some(any_value::Value::StringValue(s.to_string())),
            }
        }
    }
}

fn set_str(dst: &mut String, s: &str) {
    if dst != s {
        dst.clear();
        dst.push_str(s);
    }
}

fn set_bytes(dst: &mut Vec<u8>, b: &[u8]) {
    dst.clear();
    dst.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::span_record::Kind;

    #[test]
    fn spans_decode_as_sent_and_are_reused() {
        let mut batch = SpanBatch::default();
        let name = batch.text("GET /a");
        let mut server = SpanRecord::new([1; 16], [2; 8], Some([9; 8]), Kind::Server, name);
        server.remote_parent = true;
        server.start_unix_nano = 10;
        server.end_unix_nano = 20;
        let path = batch.text("/a");
        server.attr("url.path", path);
        server.attr("http.response.status_code", Value::Int(200));
        let mut client = SpanRecord::new([1; 16], [3; 8], Some([2; 8]), Kind::Client, name);
        client.failed = true;
        client.attr("error.type", Value::Static("timeout"));
        batch.spans = vec![server, client];
        let mut otlp = OtlpBatch::new(&[("service.name", "gw")]);
        let mut out = Vec::new();
        for _ in 0..2 {
            otlp.encode(&batch, &batch.spans, &mut out);
            let req =
                ExportTraceServiceRequest::decode(out.as_slice()).unwrap_or_else(|e| panic!("{e}"));
            let spans = &req.resource_spans[0].scope_spans[0].spans;
            assert_eq!(spans.len(), 2);
            assert_eq!(spans[0].name, "GET /a");
            assert_eq!(spans[0].parent_span_id, vec![9; 8]);
            assert_eq!(spans[0].flags, 0x301);
            assert_eq!(spans[0].attributes[0].key, "url.path");
            assert_eq!(
                spans[0].attributes[1].value,
                Some(AnyValue {
                    value: Some(any_value::Value::IntValue(200))
                })
            );
            assert!(spans[0].status.is_none());
            assert_eq!(spans[1].kind, Kind::Client as i32);
            assert_eq!(spans[1].status.as_ref().map(|s| s.code), Some(2));
            assert_eq!(spans[1].attributes.len(), 1);
        }
        // A smaller batch after a larger one.
        let first = batch.spans[..1].to_vec();
        otlp.encode(&batch, &first, &mut out);
        let req =
            ExportTraceServiceRequest::decode(out.as_slice()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(req.resource_spans[0].scope_spans[0].spans.len(), 1);
    }
}
