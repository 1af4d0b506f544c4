//! One TCP connection's access-log line (`protocol = "tcp"` listeners), in JSON or a
//! `combined`-like line.
//!
//! JSON fields: `ts` (when the connection was accepted), `client_ip`, `listener`, `protocol`
//! (`"tcp"`), `upstream`, `server`, `attempts`, `bytes_received` (client to server),
//! `bytes_sent` (server to client), `duration_ms`, `outcome` (the `outcome` label of
//! `switchyard_tcp_connections_total`) and `error` (`null` when the connection closed normally).

use std::io::Write;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use super::clock_text::{write_rfc3339_ms, write_time_local};
use super::line_text::{key, millis_field, num_field, str_field};

/// What the access log records about one TCP connection.
#[derive(Debug, Clone, Default)]
pub struct TcpRecord {
    /// When the connection was accepted.
    pub start: Option<SystemTime>,
    /// The client's address (after PROXY protocol).
    pub client_ip: Option<IpAddr>,
    /// The identity of the server connected to (the last one tried if none answered).
    pub server: Option<String>,
    /// Connect attempts.
    pub attempts: u32,
    /// Bytes from the client to the server.
    pub bytes_received: u64,
    /// Bytes from the server to the client.
    pub bytes_sent: u64,
}

impl TcpRecord {
    /// The JSON line, `\n`-terminated.
    pub fn json(
        &self,
        listener: &str,
        upstream: &str,
        outcome: &str,
        duration: Duration,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(320);
        out.extend_from_slice(b"{\"ts\":\"");
        write_rfc3339_ms(&mut out, self.start.unwrap_or_else(SystemTime::now));
        out.push(b'"');
        let ip = self.client_ip.map(|ip| ip.to_string());
        str_field(&mut out, key!("client_ip"), ip.as_deref());
        str_field(&mut out, key!("listener"), Some(listener));
        str_field(&mut out, key!("protocol"), Some("tcp"));
        str_field(
            &mut out,
            key!("upstream"),
            Some(upstream).filter(|u| !u.is_empty()),
        );
        str_field(&mut out, key!("server"), self.server.as_deref());
        num_field(&mut out, key!("attempts"), Some(u64::from(self.attempts)));
        num_field(&mut out, key!("bytes_received"), Some(self.bytes_received));
        num_field(&mut out, key!("bytes_sent"), Some(self.bytes_sent));
        millis_field(&mut out, key!("duration_ms"), duration);
        str_field(&mut out, key!("outcome"), Some(outcome));
        let error = (outcome != "closed").then_some(outcome);
        str_field(&mut out, key!("error"), error);
        out.extend_from_slice(b"}\n");
        out
    }

    /// A line in the spirit of NGINX's `stream` log:
    /// `$remote_addr [$time_local] TCP <outcome> $bytes_sent $bytes_received $session_time
    /// "<listener>" "<server>"`.
    pub fn combined(&self, listener: &str, outcome: &str, duration: Duration) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        let _ = match self.client_ip {
            Some(ip) => write!(out, "{ip} ["),
            None => write!(out, "- ["),
        };
        write_time_local(&mut out, self.start.unwrap_or_else(SystemTime::now));
        let _ = writeln!(
            out,
            "] TCP {outcome} {} {} {:.3} \"{listener}\" \"{}\"",
            self.bytes_sent,
            self.bytes_received,
            duration.as_secs_f64(),
            self.server.as_deref().unwrap_or("-"),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line() {
        let r = TcpRecord {
            start: Some(SystemTime::UNIX_EPOCH),
            client_ip: Some(IpAddr::from([127, 0, 0, 1])),
            server: Some("g/127.0.0.1:5432".into()),
            attempts: 2,
            bytes_received: 10,
            bytes_sent: 20,
        };
        let v: serde_json::Value =
            serde_json::from_slice(&r.json("db", "pg", "closed", Duration::from_millis(1500)))
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v["ts"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["bytes_received"], 10);
        assert_eq!(v["duration_ms"], 1500.0);
        assert_eq!(v["error"], serde_json::Value::Null);
        let line = String::from_utf8(r.combined("db", "closed", Duration::from_millis(1500)))
            .unwrap_or_default();
        assert_eq!(
            line,
            "127.0.0.1 [01/Jan/1970:00:00:00 +0000] TCP closed 20 10 1.500 \"db\" \"g/127.0.0.1:5432\"\n"
        );
    }
}
