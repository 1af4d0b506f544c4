//! Finished spans as the request thread queues them: fixed-size records whose strings live in
//! one text arena shared by the whole batch, so that queueing a span allocates nothing once the
//! batch's buffers have grown (they are reused batch after batch, see [`super::span_queue`]).
//! The exporter's thread turns them into OTLP messages ([`super::otlp_batch`]).

use super::trace_context::{SpanId, TraceId};

/// The most attributes a span carries (the server span has 14 at most).
pub(crate) const MAX_ATTRS: usize = 16;

/// A span's kind, as OTLP numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `SPAN_KIND_SERVER`: the request as the client sent it.
    Server = 2,
    /// `SPAN_KIND_CLIENT`: one attempt on one server.
    Client = 3,
}

/// An attribute's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Value {
    /// A string in the batch's text arena (byte range).
    Text(u32, u32),
    /// A string known at compile time.
    Static(&'static str),
    /// An integer.
    Int(i64),
}

/// One attribute: an OpenTelemetry semantic-convention key and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Attr {
    pub(crate) key: &'static str,
    pub(crate) value: Value,
}

/// One finished span.
#[derive(Debug, Clone)]
pub(crate) struct SpanRecord {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    /// All zero: a root span.
    pub(crate) parent_id: SpanId,
    /// The parent is in another process (an incoming `traceparent`).
    pub(crate) remote_parent: bool,
    pub(crate) kind: Kind,
    pub(crate) name: Value,
    pub(crate) start_unix_nano: u64,
    pub(crate) end_unix_nano: u64,
    /// Status `ERROR` (otherwise unset).
    pub(crate) failed: bool,
    attrs: [Attr; MAX_ATTRS],
    n_attrs: u8,
}

impl SpanRecord {
    /// A span without attributes.
    pub(crate) fn new(
        trace_id: TraceId,
        span_id: SpanId,
        parent: Option<SpanId>,
        kind: Kind,
        name: Value,
    ) -> SpanRecord {
        SpanRecord {
            trace_id,
            span_id,
            parent_id: parent.unwrap_or([0; 8]),
            remote_parent: false,
            kind,
            name,
            start_unix_nano: 0,
            end_unix_nano: 0,
            failed: false,
            attrs: [Attr {
                key: "",
                value: Value::Int(0),
            }; MAX_ATTRS],
            n_attrs: 0,
        }
    }

    /// Adds an attribute (beyond [`MAX_ATTRS`], it is left out).
    #[inline]
    pub(crate) fn attr(&mut self, key: &'static str, value: Value) {
        if let Some(slot) = self.attrs.get_mut(usize::from(self.n_attrs)) {
            *slot = Attr { key, value };
            self.n_attrs += 1;
        }
    }

    /// The attributes, in the order they were added.
    pub(crate) fn attrs(&self) -> &[Attr] {
        &self.attrs[..usize::from(self.n_attrs)]
    }
}

/// Spans queued since the last export, and the text their [`Value::Text`] values point into.
#[derive(Debug, Default)]
pub(crate) struct SpanBatch {
    pub(crate) spans: Vec<SpanRecord>,
    pub(crate) text: String,
    /// Where an address is written before it is copied into `text`.
    scratch: Vec<u8>,
}

impl SpanBatch {
    /// A batch with room for `spans` spans (and their text) before it grows.
    pub(crate) fn with_capacity(spans: usize) -> SpanBatch {
        SpanBatch {
            spans: Vec::with_capacity(spans),
            text: String::with_capacity(spans * 64),
            scratch: Vec::with_capacity(40),
        }
    }

    /// Copies `s` into the text arena.
    #[inline]
    pub(crate) fn text(&mut self, s: &str) -> Value {
        let start = self.text.len();
        self.text.push_str(s);
        Value::Text(offset(start), offset(self.text.len()))
    }

    /// Writes an address's text into the arena.
    pub(crate) fn ip(&mut self, ip: std::net::IpAddr) -> Value {
        self.scratch.clear();
        super::line_text::push_ip(&mut self.scratch, ip);
        let start = self.text.len();
        // An address's text is ASCII.
        self.text
            .push_str(std::str::from_utf8(&self.scratch).unwrap_or(""));
        Value::Text(offset(start), offset(self.text.len()))
    }

    /// Copies the pieces, one after the other, into the text arena as one string.
    pub(crate) fn joined(&mut self, pieces: &[&str]) -> Value {
        let start = self.text.len();
        for p in pieces {
            self.text.push_str(p);
        }
        Value::Text(offset(start), offset(self.text.len()))
    }

    /// The string a [`Value::Text`] or [`Value::Static`] stands for (empty for an integer).
    pub(crate) fn str_of(&self, value: Value) -> &str {
        match value {
            Value::Text(a, b) => self.text.get(a as usize..b as usize).unwrap_or(""),
            Value::Static(s) => s,
            Value::Int(_) => "",
        }
    }

    /// Empties the batch, keeping its buffers.
    pub(crate) fn clear(&mut self) {
        self.spans.clear();
        self.text.clear();
    }
}

/// A text offset (a batch's text stays far below 4 GiB: the queue holds a bounded number of
/// spans of bounded attributes).
fn offset(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_and_text_arena() {
        let mut batch = SpanBatch::default();
        let name = batch.joined(&["GET", " ", "/items/{id}"]);
        let mut span = SpanRecord::new([1; 16], [2; 8], None, Kind::Server, name);
        let path = batch.text("/items/7");
        span.attr("url.path", path);
        span.attr("http.response.status_code", Value::Int(200));
        for _ in 0..MAX_ATTRS {
            span.attr("extra", Value::Static("x"));
        }
        assert_eq!(span.attrs().len(), MAX_ATTRS);
        assert_eq!(batch.str_of(span.name), "GET /items/{id}");
        assert_eq!(batch.str_of(span.attrs()[0].value), "/items/7");
        assert_eq!(span.attrs()[1].value, Value::Int(200));
        assert_eq!(span.parent_id, [0; 8]);
        let ip = batch.ip(std::net::IpAddr::from([10, 0, 0, 1]));
        assert_eq!(batch.str_of(ip), "10.0.0.1");
    }
}
