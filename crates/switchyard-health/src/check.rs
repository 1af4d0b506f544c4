//! One active check: TCP connect, an HTTP/1.1 request over TCP or TLS (hyper 1 client
//! connection) or a gRPC health call ([`crate::grpc_check`]), bounded as a whole by `timeout_ms`, after a PROXY header when the servers expect
//! one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, HOST, USER_AGENT};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use switchyard_balance::ServerId;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use crate::grpc_check::GrpcCheck;
use crate::observer::CheckResult;
use crate::spec::{ProbeKind, ProbeSpec, ProxyHeader};
use crate::{tls, HealthError};

/// The most body bytes a GET check reads before closing the connection.
const BODY_LIMIT: usize = 64 * 1024;

/// The PROXY header a check connection starts with (empty for [`ProxyHeader::None`]). A check
/// carries no client, so receivers use the connection's own addresses: v1 `PROXY UNKNOWN\r\n`
/// (PROXY protocol spec, 2.1); v2 the signature, `0x20` (version 2, command LOCAL), `0x00`
/// (unspecified family and transport) and a zero-length payload (spec, 2.2). Written by `ppp`;
/// its v2 builder fails only for a payload over 65535 bytes, never for this empty one.
fn proxy_header_bytes(header: ProxyHeader) -> Result<Vec<u8>, HealthError> {
    use ppp::v2::{Addresses, Builder, Command, Protocol, Version};
    match header {
        ProxyHeader::None => Ok(Vec::new()),
        ProxyHeader::V1 => Ok(ppp::v1::Addresses::Unknown.to_string().into_bytes()),
        ProxyHeader::V2 => Builder::with_addresses(
            Version::Two | Command::Local,
            Protocol::Unspecified,
            Addresses::Unspecified,
        )
        .build()
        .map_err(|e| HealthError::ProxyHeader(e.to_string())),
    }
}

/// The prepared check of one upstream: settings parsed once, shared by every server's task.
#[derive(Debug)]
pub(crate) struct Probe {
    /// `None` (and no `grpc`): a TCP check.
    http: Option<HttpCheck>,
    /// A gRPC health check.
    grpc: Option<(GrpcCheck, Option<String>)>,
    /// TLS for the check connection (`HttpCheck::tls` or the gRPC probe's), with its SNI name.
    tls: Option<(Arc<ClientConfig>, Option<String>)>,
    port: u16,
    pub(crate) timeout: Duration,
    pub(crate) interval: Duration,
    /// Sent first on every check connection (empty: none).
    proxy_header: Vec<u8>,
}

/// The HTTP part of a check.
#[derive(Debug)]
struct HttpCheck {
    method: Method,
    uri: Uri,
    path: String,
    host: Option<String>,
    status_codes: Vec<std::ops::RangeInclusive<u16>>,
}

/// Where one server is checked.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    addr: SocketAddr,
    host: String,
    server_name: Result<ServerName<'static>, String>,
}

impl Probe {
    /// Prepares `spec`; fails on a `path` that is not a request target.
    pub(crate) fn new(spec: &ProbeSpec) -> Result<Probe, HealthError> {
        let mut grpc = None;
        let http = match &spec.kind {
            ProbeKind::Tcp => None,
            ProbeKind::Grpc(g) => {
                let check = GrpcCheck {
                    service: g.service.clone(),
                    scheme: if g.tls.is_some() { "https" } else { "http" },
                };
                grpc = Some((check, g.authority.clone()));
                None
            }
            ProbeKind::Http(h) => {
                let path = if h.path.starts_with('/') {
                    h.path.clone()
                } else {
                    format!("/{}", h.path)
                };
                let uri: Uri = path
                    .parse()
                    .map_err(|e| HealthError::Path(format!("`{}`: {e}", h.path)))?;
                Some(HttpCheck {
                    method: h.method.clone(),
                    uri,
                    path,
                    host: h.host.clone(),
                    status_codes: h.status_codes.clone(),
                })
            }
        };
        let tls = match &spec.kind {
            ProbeKind::Tcp => None,
            ProbeKind::Http(h) => h.tls.as_ref(),
            ProbeKind::Grpc(g) => g.tls.as_ref(),
        }
        .map(|t| (Arc::clone(&t.config), t.sni.clone()));
        Ok(Probe {
            http,
            grpc,
            tls,
            port: spec.port,
            timeout: spec.timeout.max(Duration::from_millis(1)),
            interval: spec.interval.max(Duration::from_millis(1)),
            proxy_header: proxy_header_bytes(spec.proxy_header)?,
        })
    }

    /// What an HTTP or gRPC check asks for, for log messages: the request path, or the gRPC
    /// method.
    pub(crate) fn path(&self) -> Option<&str> {
        match (&self.http, &self.grpc) {
            (Some(h), _) => Some(h.path.as_str()),
            (None, Some(_)) => Some(GrpcCheck::METHOD),
            (None, None) => None,
        }
    }

    pub(crate) fn target(&self, id: &ServerId, addr: SocketAddr) -> Target {
        let mut addr = addr;
        if self.port != 0 {
            addr.set_port(self.port);
        }
        let host = self
            .http
            .as_ref()
            .and_then(|h| h.host.clone())
            .or_else(|| self.grpc.as_ref().and_then(|(_, a)| a.clone()))
            .unwrap_or_else(|| id.host_port().to_string());
        let sni = self.tls.as_ref().and_then(|(_, sni)| sni.as_deref());
        Target {
            addr,
            host,
            server_name: tls::server_name(sni, id.host_port()),
        }
    }

    /// Runs one check, never longer than `timeout_ms`.
    pub(crate) async fn check(&self, target: &Target) -> CheckResult {
        match tokio::time::timeout(self.timeout, self.run(target)).await {
            Ok(r) => r,
            Err(_) => CheckResult::Timeout {
                after_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            },
        }
    }

    async fn run(&self, target: &Target) -> CheckResult {
        let mut tcp = match TcpStream::connect(target.addr).await {
            Ok(s) => s,
            Err(e) => return CheckResult::Connect(describe_io(&e)),
        };
        let _ = tcp.set_nodelay(true);
        if !self.proxy_header.is_empty() {
            if let Err(e) = tcp.write_all(&self.proxy_header).await {
                return CheckResult::Connect(format!("sending the PROXY header: {e}"));
            }
        }
        if self.http.is_none() && self.grpc.is_none() {
            return CheckResult::Pass { status: None };
        }
        match &self.tls {
            Some((config, _)) => {
                let name = match &target.server_name {
                    Ok(n) => n.clone(),
                    Err(e) => return CheckResult::Tls(e.clone()),
                };
                match TlsConnector::from(Arc::clone(config))
                    .connect(name, tcp)
                    .await
                {
                    Ok(stream) => self.exchange(stream, target).await,
                    Err(e) => CheckResult::Tls(e.to_string()),
                }
            }
            None => self.exchange(tcp, target).await,
        }
    }

    /// The HTTP or gRPC exchange on an open (and, with TLS, secured) connection.
    async fn exchange<S>(&self, io: S, target: &Target) -> CheckResult
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        match (&self.http, &self.grpc) {
            (Some(http), _) => http.exchange(io, target).await,
            (None, Some((grpc, _))) => grpc.exchange(io, &target.host).await,
            (None, None) => CheckResult::Pass { status: None },
        }
    }
}

impl HttpCheck {
    /// Sends the request on `io` and judges the response.
    async fn exchange<S>(&self, io: S, target: &Target) -> CheckResult
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = match hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(
            TokioIo::new(io),
        )
        .await
        {
            Ok(pair) => pair,
            Err(e) => return CheckResult::Protocol(e.to_string()),
        };
        // Drives the connection; aborted when this check ends (or is cancelled).
        let _conn = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));
        let request = match Request::builder()
            .method(self.method.clone())
            .uri(self.uri.clone())
            .header(HOST, target.host.as_str())
            .header(USER_AGENT, "switchyard-health")
            .header(CONNECTION, "close")
            .body(Empty::<Bytes>::new())
        {
            Ok(r) => r,
            Err(e) => return CheckResult::Protocol(format!("bad request: {e}")),
        };
        let response = match sender.send_request(request).await {
            Ok(r) => r,
            Err(e) => return CheckResult::Protocol(e.to_string()),
        };
        let status = response.status().as_u16();
        if self.method == Method::GET {
            // Read (a bounded amount of) the body so the server sees a clean exchange.
            let _ = Limited::new(response.into_body(), BODY_LIMIT)
                .collect()
                .await;
        }
        if self.status_codes.iter().any(|r| r.contains(&status)) {
            CheckResult::Pass {
                status: Some(status),
            }
        } else {
            CheckResult::Status(status)
        }
    }
}

fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect refused".to_string(),
        std::io::ErrorKind::ConnectionReset => "connection reset".to_string(),
        _ => format!("connect error: {e}"),
    }
}

/// Aborts a spawned task when dropped.
pub(crate) struct AbortOnDrop<T>(pub(crate) JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_headers_are_byte_exact() {
        assert_eq!(proxy_header_bytes(ProxyHeader::None), Ok(Vec::new()));
        assert_eq!(
            proxy_header_bytes(ProxyHeader::V1),
            Ok(b"PROXY UNKNOWN\r\n".to_vec())
        );
        assert_eq!(
            proxy_header_bytes(ProxyHeader::V2),
            Ok(vec![
                0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x20, 0x00,
                0x00, 0x00,
            ])
        );
    }
}
