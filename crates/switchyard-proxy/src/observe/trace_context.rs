//! W3C Trace Context (`traceparent`, `tracestate`): an incoming trace is continued, otherwise
//! one is started; every upstream attempt is sent a `traceparent` naming a new span of
//! Switchyard's as its parent.
//!
//! `traceparent` is `00-<trace id: 32 hex>-<parent span id: 16 hex>-<flags: 2 hex>`; bit 0 of the
//! flags is *sampled*. An invalid header (wrong length or characters, version `ff`, an all-zero
//! id) is ignored and a new trace started, as the specification asks. `tracestate` is passed on
//! unchanged (Switchyard adds no entry of its own).

use http::HeaderValue;
use rand::RngCore;

use super::request_id::hex_into;

/// The `traceparent` header.
pub const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
/// [`TRACEPARENT`]'s text. Switchyard's own inserts use
/// [`crate::added_headers::TRACEPARENT`].
pub const TRACEPARENT_STR: &str = "traceparent";

/// A trace id (16 bytes).
pub type TraceId = [u8; 16];
/// A span id (8 bytes).
pub type SpanId = [u8; 8];

/// A parsed, valid `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace.
    pub trace_id: TraceId,
    /// The caller's span.
    pub parent_id: SpanId,
    /// The caller's sampled flag.
    pub sampled: bool,
}

impl TraceParent {
    /// Parses a `traceparent` value; `None` if it is not valid.
    ///
    /// ```
    /// use switchyard_proxy::observe::trace_context::TraceParent;
    /// let tp = TraceParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    /// assert!(tp.sampled);
    /// assert_eq!(tp.parent_id, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
    /// assert!(TraceParent::parse(b"00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
    /// ```
    pub fn parse(value: &[u8]) -> Option<TraceParent> {
        // version "-" trace-id "-" parent-id "-" flags, then (future versions only) "-" more.
        if value.len() < 55 {
            return None;
        }
        let version = hex_byte(&value[0..2])?;
        if version == 0xff || (version == 0 && value.len() != 55) {
            return None;
        }
        if value.len() > 55 && value[55] != b'-' {
            return None;
        }
        if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let mut trace_id = [0u8; 16];
        hex_decode(&value[3..35], &mut trace_id)?;
        let mut parent_id = [0u8; 8];
        hex_decode(&value[36..52], &mut parent_id)?;
        let flags = hex_byte(&value[53..55])?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            parent_id,
            sampled: flags & 1 == 1,
        })
    }
}

/// `00-<trace_id>-<span_id>-<flags>` as a header value.
///
/// ```
/// use switchyard_proxy::observe::trace_context::traceparent;
/// let v = traceparent(&[0xab; 16], &[0x01; 8], true);
/// assert_eq!(v, "00-abababababababababababababababab-0101010101010101-01");
/// ```
pub fn traceparent(trace_id: &TraceId, span_id: &SpanId, sampled: bool) -> HeaderValue {
    let mut buf = *b"00-00000000000000000000000000000000-0000000000000000-00";
    hex_into(trace_id, &mut buf[3..35]);
    hex_into(span_id, &mut buf[36..52]);
    if sampled {
        buf[54] = b'1';
    }
    // Only ASCII digits, letters and dashes: always a valid header value.
    crate::value_slab::header_value(&buf, "invalid traceparent")
        .unwrap_or_else(|_| HeaderValue::from_static("00"))
}

/// A new, non-zero span id.
pub fn new_span_id() -> SpanId {
    let mut id = [0; 8];
    while id == [0; 8] {
        rand::rng().fill_bytes(&mut id);
    }
    id
}

/// A new, non-zero trace id.
pub fn new_trace_id() -> TraceId {
    let mut id = [0; 16];
    while id == [0; 16] {
        rand::rng().fill_bytes(&mut id);
    }
    id
}

/// The trace a request belongs to and Switchyard's server span in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace: the caller's, or a new one.
    pub trace_id: TraceId,
    /// The caller's span, if the request came with a valid `traceparent`.
    pub parent_id: Option<SpanId>,
    /// Switchyard's server span for this request.
    pub span_id: SpanId,
    /// Whether the trace is sampled: the caller's flag, or the decision taken for a new trace.
    pub sampled: bool,
}

impl TraceContext {
    /// Continues the trace of an incoming `traceparent` (if valid), else starts one whose
    /// sampled flag is `sample_new(trace_id)`. `random` supplies the new ids: the server span's
    /// (first 8 bytes) and a new trace's (last 16).
    pub fn of_request(
        incoming: Option<&HeaderValue>,
        sample_new: impl FnOnce(&TraceId) -> bool,
        random: &[u8; 24],
    ) -> TraceContext {
        let mut span_id = [0; 8];
        span_id.copy_from_slice(&random[..8]);
        if span_id == [0; 8] {
            span_id = new_span_id();
        }
        match incoming.and_then(|v| TraceParent::parse(v.as_bytes())) {
            Some(tp) => TraceContext {
                trace_id: tp.trace_id,
                parent_id: Some(tp.parent_id),
                span_id,
                sampled: tp.sampled,
            },
            None => {
                let mut trace_id = [0; 16];
                trace_id.copy_from_slice(&random[8..]);
                if trace_id == [0; 16] {
                    trace_id = new_trace_id();
                }
                TraceContext {
                    sampled: sample_new(&trace_id),
                    trace_id,
                    parent_id: None,
                    span_id,
                }
            }
        }
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> [u8; 32] {
        let mut buf = [0u8; 32];
        hex_into(&self.trace_id, &mut buf);
        buf
    }
}

fn hex_val(c: u8) -> Option<u8> {
    // The specification allows lowercase hex only.
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn hex_byte(two: &[u8]) -> Option<u8> {
    Some(hex_val(two[0])? << 4 | hex_val(two[1])?)
}

fn hex_decode(hex: &[u8], out: &mut [u8]) -> Option<()> {
    for (i, o) in out.iter_mut().enumerate() {
        *o = hex_byte(&hex[2 * i..2 * i + 2])?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_rejects_per_the_specification() {
        let tp = TraceParent::parse(VALID).unwrap_or_else(|| panic!("valid"));
        assert_eq!(tp.trace_id[0], 0x4b);
        let unsampled = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert_eq!(
            TraceParent::parse(unsampled).map(|t| t.sampled),
            Some(false)
        );
        for bad in [
            &b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"[..],
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            b"",
        ] {
            assert_eq!(
                TraceParent::parse(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // A later version may append fields.
        let future = b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra";
        assert!(TraceParent::parse(future).is_some());
    }

    #[test]
    fn continues_or_starts_a_trace() {
        let incoming =
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let random = |b: u8| {
            let mut r = [b; 24];
            r[0] = 1;
            r
        };
        let cx = TraceContext::of_request(Some(&incoming), |_| false, &random(7));
        assert!(cx.sampled);
        assert_eq!(&cx.trace_id_hex(), b"4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(cx.parent_id, Some(cx.span_id));
        assert_eq!(cx.span_id, [1, 7, 7, 7, 7, 7, 7, 7]);
        let started = TraceContext::of_request(None, |_| true, &random(9));
        assert!(started.sampled && started.parent_id.is_none());
        assert_eq!(started.trace_id, [9; 16]);
        let bad = HeaderValue::from_static("garbage");
        assert!(!TraceContext::of_request(Some(&bad), |_| false, &random(3)).sampled);
        // All-zero draws are never used as ids.
        let zero = TraceContext::of_request(None, |_| true, &[0; 24]);
        assert!(zero.trace_id != [0; 16] && zero.span_id != [0; 8]);
    }
}
