//! One HTTP request's access-log line, in JSON or NGINX's `combined` format.
//!
//! JSON fields (`docs/configuration.md` lists them): `ts`, `request_id`, `client_ip`,
//! `listener`, `method`, `host`, `path`, `query`, `protocol`, `status`, `bytes_sent`,
//! `body_bytes_sent`, `duration_ms`, `route`, `upstream`, `server`, `upstream_status`,
//! `attempts`, `user_agent`, `referer`, `trace_id`, `error`, and `grpc_status` for gRPC calls.
//! Absent values are `null`.

use std::io::Write;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::OffsetDateTime;

/// RFC 3339, UTC, milliseconds.
const RFC3339_MS: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
/// NGINX's `$time_local` (in UTC).
const TIME_LOCAL: &[BorrowedFormatItem<'static>] =
    format_description!("[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000");

/// What the access log records about one HTTP request.
#[derive(Debug, Clone)]
pub struct HttpRecord<'a> {
    /// When the request arrived.
    pub start: SystemTime,
    /// The request id (`X-Request-Id`).
    pub request_id: Option<&'a [u8]>,
    /// The client's address (after PROXY protocol).
    pub client_ip: Option<IpAddr>,
    /// The listener's name.
    pub listener: &'a str,
    /// The method.
    pub method: &'a str,
    /// The host, without port (empty if none).
    pub host: &'a str,
    /// The path (normalised).
    pub path: &'a str,
    /// The query string, without `?`.
    pub query: Option<&'a str>,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2.0`.
    pub protocol: &'a str,
    /// The status sent to the client (0 if none was).
    pub status: u16,
    /// The whole response: head and body (NGINX `$bytes_sent`).
    pub bytes_sent: u64,
    /// The response body (NGINX `$body_bytes_sent`).
    pub body_bytes_sent: u64,
    /// From the request's arrival to the end of the response.
    pub duration: Duration,
    /// The matched route.
    pub route: Option<&'a str>,
    /// The route's upstream.
    pub upstream: Option<&'a str>,
    /// The identity (`group/host:port`) of the last server tried.
    pub server: Option<&'a str>,
    /// The status the last server answered with.
    pub upstream_status: Option<u16>,
    /// Attempts sent to servers (0 for refused requests).
    pub attempts: u32,
    /// The `User-Agent` header.
    pub user_agent: Option<&'a [u8]>,
    /// The `Referer` header.
    pub referer: Option<&'a [u8]>,
    /// The trace id, 32 hex digits.
    pub trace_id: &'a [u8; 32],
    /// The gRPC status a gRPC call ended with.
    pub grpc: Option<Option<u8>>,
    /// Why the proxy refused or failed the request (`no_route`, `acl`, `all_down`, ...).
    pub error: Option<&'a str>,
}

impl HttpRecord<'_> {
    /// The JSON line, `\n`-terminated.
    pub fn json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(b"{\"ts\":\"");
        write_ts(&mut out, self.start);
        out.push(b'"');
        bytes_field(&mut out, "request_id", self.request_id);
        let _ = match self.client_ip {
            Some(ip) => write!(out, ",\"client_ip\":\"{ip}\""),
            None => write!(out, ",\"client_ip\":null"),
        };
        str_field(&mut out, "listener", Some(self.listener));
        str_field(&mut out, "method", Some(self.method));
        str_field(&mut out, "host", Some(self.host).filter(|h| !h.is_empty()));
        str_field(&mut out, "path", Some(self.path));
        str_field(&mut out, "query", self.query);
        str_field(&mut out, "protocol", Some(self.protocol));
        let _ = write!(
            out,
            ",\"status\":{},\"bytes_sent\":{},\"body_bytes_sent\":{},\"duration_ms\":{:.3}",
            self.status,
            self.bytes_sent,
            self.body_bytes_sent,
            self.duration.as_secs_f64() * 1000.0
        );
        str_field(&mut out, "route", self.route);
        str_field(&mut out, "upstream", self.upstream);
        str_field(&mut out, "server", self.server);
        num_field(
            &mut out,
            "upstream_status",
            self.upstream_status.map(u64::from),
        );
        num_field(&mut out, "attempts", Some(u64::from(self.attempts)));
        bytes_field(&mut out, "user_agent", self.user_agent);
        bytes_field(&mut out, "referer", self.referer);
        bytes_field(&mut out, "trace_id", Some(self.trace_id));
        if let Some(grpc) = self.grpc {
            num_field(&mut out, "grpc_status", grpc.map(u64::from));
        }
        str_field(&mut out, "error", self.error);
        out.extend_from_slice(b"}\n");
        out
    }

    /// The NGINX `combined` line, `\n`-terminated:
    /// `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
    /// "$http_referer" "$http_user_agent"`, with NGINX's escaping (`"`, `\` and bytes outside
    /// printable ASCII as `\xHH`).
    pub fn combined(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        let _ = match self.client_ip {
            Some(ip) => write!(out, "{ip} - - ["),
            None => write!(out, "- - - ["),
        };
        write_time_local(&mut out, self.start);
        out.extend_from_slice(b"] \"");
        escape(&mut out, self.method.as_bytes());
        out.push(b' ');
        escape(&mut out, self.path.as_bytes());
        if let Some(q) = self.query {
            out.push(b'?');
            escape(&mut out, q.as_bytes());
        }
        out.push(b' ');
        out.extend_from_slice(self.protocol.as_bytes());
        let _ = write!(out, "\" {} {} \"", self.status, self.body_bytes_sent);
        escape(&mut out, self.referer.unwrap_or(b"-"));
        out.extend_from_slice(b"\" \"");
        escape(&mut out, self.user_agent.unwrap_or(b"-"));
        out.extend_from_slice(b"\"\n");
        out
    }
}

/// `,"key":"value"` (JSON-escaped) or `,"key":null`.
pub(crate) fn str_field(out: &mut Vec<u8>, key: &str, value: Option<&str>) {
    let _ = write!(out, ",\"{key}\":");
    match value {
        Some(v) => {
            let _ = serde_json::to_writer(&mut *out, v);
        }
        None => out.extend_from_slice(b"null"),
    }
}

/// [`str_field`] for header bytes (invalid UTF-8 replaced).
pub(crate) fn bytes_field(out: &mut Vec<u8>, key: &str, value: Option<&[u8]>) {
    match value {
        Some(v) => str_field(out, key, Some(&String::from_utf8_lossy(v))),
        None => str_field(out, key, None),
    }
}

/// `,"key":n` or `,"key":null`.
pub(crate) fn num_field(out: &mut Vec<u8>, key: &str, value: Option<u64>) {
    let _ = match value {
        Some(v) => write!(out, ",\"{key}\":{v}"),
        None => write!(out, ",\"{key}\":null"),
    };
}

/// NGINX's default log escaping.
fn escape(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b);
        }
    }
}

/// RFC 3339 with milliseconds, UTC.
pub(crate) fn write_ts(out: &mut Vec<u8>, t: SystemTime) {
    let _ = OffsetDateTime::from(t).format_into(out, RFC3339_MS);
}

/// NGINX's `$time_local`, in UTC.
pub(crate) fn write_time_local(out: &mut Vec<u8>, t: SystemTime) {
    let _ = OffsetDateTime::from(t).format_into(out, TIME_LOCAL);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(trace: &[u8; 32]) -> HttpRecord<'_> {
        HttpRecord {
            start: SystemTime::UNIX_EPOCH + Duration::from_millis(1_765_000_000_123),
            request_id: Some(b"abc"),
            client_ip: Some(IpAddr::from([127, 0, 0, 1])),
            listener: "web",
            method: "GET",
            host: "example.com",
            path: "/a\"b",
            query: Some("x=1"),
            protocol: "HTTP/1.1",
            status: 200,
            bytes_sent: 120,
            body_bytes_sent: 20,
            duration: Duration::from_micros(12_345),
            route: Some("r"),
            upstream: Some("u"),
            server: Some("g/127.0.0.1:80"),
            upstream_status: Some(200),
            attempts: 1,
            user_agent: Some(b"curl/8"),
            referer: None,
            trace_id: trace,
            grpc: None,
            error: None,
        }
    }

    #[test]
    fn json_and_combined_lines() {
        let trace = [b'a'; 32];
        let r = record(&trace);
        let line = r.json();
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v["ts"], "2025-12-06T05:46:40.123Z");
        assert_eq!(v["path"], "/a\"b");
        assert_eq!(v["duration_ms"], 12.345);
        assert_eq!(v["referer"], serde_json::Value::Null);
        assert!(v.get("grpc_status").is_none());
        let combined = String::from_utf8(r.combined()).unwrap_or_default();
        assert_eq!(
            combined,
            "127.0.0.1 - - [06/Dec/2025:05:46:40 +0000] \"GET /a\\x22b?x=1 HTTP/1.1\" 200 20 \"-\" \"curl/8\"\n"
        );
        let grpc = HttpRecord {
            grpc: Some(Some(14)),
            ..record(&trace)
        };
        let v: serde_json::Value =
            serde_json::from_slice(&grpc.json()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v["grpc_status"], 14);
    }
}
