//! One HTTP request's access-log line, in JSON or NGINX's `combined` format.
//!
//! JSON fields (`docs/configuration.md` lists them): `ts`, `request_id`, `client_ip`,
//! `listener`, `method`, `host`, `path`, `query`, `protocol`, `status`, `bytes_sent`,
//! `body_bytes_sent`, `duration_ms`, `route`, `upstream`, `server`, `upstream_status`,
//! `attempts`, `user_agent`, `referer`, `trace_id`, `error`, and `grpc_status` for gRPC calls.
//! Absent values are `null`.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use super::clock_text::{write_rfc3339_ms, write_time_local};
use super::line_text::{
    bytes_field, key, millis_field, nginx_escaped, num_field, push_ip, push_u64, str_field,
};

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
    /// The host, without port (empty if none): the header's bytes (not UTF-8: logged with
    /// U+FFFD in their place).
    pub host: &'a [u8],
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
        let mut out = Vec::with_capacity(LINE_CAPACITY);
        self.write_json(&mut out);
        out
    }

    /// Appends the JSON line, `\n`-terminated, to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"ts\":\"");
        write_rfc3339_ms(out, self.start);
        out.push(b'"');
        bytes_field(out, key!("request_id"), self.request_id);
        match self.client_ip {
            Some(ip) => {
                out.extend_from_slice(b",\"client_ip\":\"");
                push_ip(out, ip);
                out.push(b'"');
            }
            None => out.extend_from_slice(b",\"client_ip\":null"),
        }
        str_field(out, key!("listener"), Some(self.listener));
        str_field(
            out,
            key!("method"),
            Some(self.method).filter(|m| !m.is_empty()),
        );
        bytes_field(out, key!("host"), Some(self.host).filter(|h| !h.is_empty()));
        str_field(out, key!("path"), Some(self.path).filter(|p| !p.is_empty()));
        str_field(out, key!("query"), self.query);
        str_field(
            out,
            key!("protocol"),
            Some(self.protocol).filter(|p| !p.is_empty()),
        );
        num_field(out, key!("status"), Some(u64::from(self.status)));
        num_field(out, key!("bytes_sent"), Some(self.bytes_sent));
        num_field(out, key!("body_bytes_sent"), Some(self.body_bytes_sent));
        millis_field(out, key!("duration_ms"), self.duration);
        str_field(out, key!("route"), self.route);
        str_field(out, key!("upstream"), self.upstream);
        str_field(out, key!("server"), self.server);
        num_field(
            out,
            key!("upstream_status"),
            self.upstream_status.map(u64::from),
        );
        num_field(out, key!("attempts"), Some(u64::from(self.attempts)));
        bytes_field(out, key!("user_agent"), self.user_agent);
        bytes_field(out, key!("referer"), self.referer);
        // 32 hex digits: nothing to escape, a copy of constant length.
        out.extend_from_slice(key!("trace_id").as_bytes());
        out.push(b'"');
        out.extend_from_slice(self.trace_id);
        out.push(b'"');
        if let Some(grpc) = self.grpc {
            num_field(out, key!("grpc_status"), grpc.map(u64::from));
        }
        str_field(out, key!("error"), self.error);
        out.extend_from_slice(b"}\n");
    }

    /// The NGINX `combined` line, `\n`-terminated:
    /// `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
    /// "$http_referer" "$http_user_agent"`, with NGINX's escaping (`"`, `\` and bytes outside
    /// printable ASCII as `\xHH`).
    pub fn combined(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(LINE_CAPACITY);
        self.write_combined(&mut out);
        out
    }

    /// Appends the `combined` line, `\n`-terminated, to `out`.
    pub fn write_combined(&self, out: &mut Vec<u8>) {
        match self.client_ip {
            Some(ip) => push_ip(out, ip),
            None => out.push(b'-'),
        }
        out.extend_from_slice(b" - - [");
        write_time_local(out, self.start);
        out.extend_from_slice(b"] \"");
        if self.method.is_empty() {
            // No request line could be read (a malformed request): NGINX's `"-"`.
            out.push(b'-');
        } else {
            nginx_escaped(out, self.method.as_bytes());
            out.push(b' ');
            nginx_escaped(out, self.path.as_bytes());
            if let Some(q) = self.query {
                out.push(b'?');
                nginx_escaped(out, q.as_bytes());
            }
            out.push(b' ');
            out.extend_from_slice(self.protocol.as_bytes());
        }
        out.extend_from_slice(b"\" ");
        push_u64(out, u64::from(self.status));
        out.push(b' ');
        push_u64(out, self.body_bytes_sent);
        out.extend_from_slice(b" \"");
        nginx_escaped(out, self.referer.unwrap_or(b"-"));
        out.extend_from_slice(b"\" \"");
        nginx_escaped(out, self.user_agent.unwrap_or(b"-"));
        out.extend_from_slice(b"\"\n");
    }
}

/// A line's starting capacity: most lines fit.
const LINE_CAPACITY: usize = 512;

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
            host: b"example.com",
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

    #[test]
    fn a_request_with_no_readable_head_has_no_request_line() {
        let trace = [b'0'; 32];
        let r = HttpRecord {
            method: "",
            host: b"",
            path: "",
            query: None,
            protocol: "",
            status: 400,
            body_bytes_sent: 0,
            route: None,
            upstream: None,
            server: None,
            upstream_status: None,
            attempts: 0,
            user_agent: None,
            error: Some("bad_request"),
            ..record(&trace)
        };
        let v: serde_json::Value =
            serde_json::from_slice(&r.json()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v["method"], serde_json::Value::Null);
        assert_eq!(v["path"], serde_json::Value::Null);
        assert_eq!(v["protocol"], serde_json::Value::Null);
        assert_eq!(v["error"], "bad_request");
        let combined = String::from_utf8(r.combined()).unwrap_or_default();
        assert_eq!(
            combined,
            "127.0.0.1 - - [06/Dec/2025:05:46:40 +0000] \"-\" 400 0 \"-\" \"-\"\n"
        );
    }
}
