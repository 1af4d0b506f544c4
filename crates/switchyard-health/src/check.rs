//! One active check: TCP connect, or an HTTP/1.1 request over TCP or TLS (hyper 1 client
//! connection), bounded as a whole by `timeout_ms`, after a PROXY header when the servers expect
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
use switchyard_config::{
    ActiveHealthConfig, CheckMethod, CheckProtocol, ProxyProtocol, StatusRange, UpstreamConfig,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use crate::observer::CheckResult;
use crate::{tls, HealthError};

/// The most body bytes a GET check reads before closing the connection.
const BODY_LIMIT: usize = 64 * 1024;

/// The version 1 header of a connection the proxy opened for itself (a health check), which
/// carries no client: receivers use the connection's own addresses (PROXY protocol spec, 2.1).
pub(crate) const PROXY_V1_UNKNOWN: &[u8] = b"PROXY UNKNOWN\r\n";

/// The version 2 header of the same: signature, `0x20` (version 2, command LOCAL), `0x00`
/// (unspecified family and transport) and a zero-length payload (spec, 2.2).
pub(crate) const PROXY_V2_LOCAL: &[u8] = &[
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x20, 0x00, 0x00, 0x00,
];

/// The prepared check of one upstream: settings parsed once, shared by every server's task.
#[derive(Debug)]
pub(crate) struct Probe {
    protocol: CheckProtocol,
    method: Method,
    uri: Uri,
    path: String,
    port: u16,
    host: Option<String>,
    status_codes: Vec<StatusRange>,
    pub(crate) timeout: Duration,
    pub(crate) interval: Duration,
    tls: Option<(Arc<ClientConfig>, Option<String>)>,
    /// Sent first on every check connection (empty: none).
    proxy_header: &'static [u8],
}

/// Where one server is checked.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    addr: SocketAddr,
    host: String,
    server_name: Result<ServerName<'static>, String>,
}

impl Probe {
    /// `proxy`: the PROXY header version every check sends first.
    pub(crate) fn new(
        active: &ActiveHealthConfig,
        upstream: &UpstreamConfig,
        proxy: ProxyProtocol,
    ) -> Result<Probe, HealthError> {
        let path = if active.path.starts_with('/') {
            active.path.clone()
        } else {
            format!("/{}", active.path)
        };
        let uri: Uri = path
            .parse()
            .map_err(|e| HealthError::Path(format!("`{}`: {e}", active.path)))?;
        let tls = match active.protocol {
            CheckProtocol::Https => Some((
                tls::client_config(upstream.tls.as_ref())?,
                upstream.tls.as_ref().and_then(|t| t.sni.clone()),
            )),
            _ => None,
        };
        Ok(Probe {
            protocol: active.protocol,
            method: match active.method {
                CheckMethod::Get => Method::GET,
                CheckMethod::Head => Method::HEAD,
            },
            uri,
            path,
            port: active.port,
            host: active.host.clone(),
            status_codes: active.status_codes.clone(),
            timeout: Duration::from_millis(active.timeout_ms.max(1)),
            interval: Duration::from_millis(active.interval_ms.max(1)),
            tls,
            proxy_header: match proxy {
                ProxyProtocol::Off => &[],
                ProxyProtocol::V1 => PROXY_V1_UNKNOWN,
                ProxyProtocol::V2 => PROXY_V2_LOCAL,
            },
        })
    }

    /// The request path, for log messages.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    pub(crate) fn target(&self, id: &ServerId, addr: SocketAddr) -> Target {
        let mut addr = addr;
        if self.port != 0 {
            addr.set_port(self.port);
        }
        let host = self
            .host
            .clone()
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
            if let Err(e) = tcp.write_all(self.proxy_header).await {
                return CheckResult::Connect(format!("sending the PROXY header: {e}"));
            }
        }
        match (&self.protocol, &self.tls) {
            (CheckProtocol::Tcp, _) => CheckResult::Pass { status: None },
            (CheckProtocol::Https, Some((config, _))) => {
                let name = match &target.server_name {
                    Ok(n) => n.clone(),
                    Err(e) => return CheckResult::Tls(e.clone()),
                };
                match TlsConnector::from(Arc::clone(config))
                    .connect(name, tcp)
                    .await
                {
                    Ok(stream) => self.http(stream, target).await,
                    Err(e) => CheckResult::Tls(e.to_string()),
                }
            }
            _ => self.http(tcp, target).await,
        }
    }

    async fn http<S>(&self, io: S, target: &Target) -> CheckResult
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
        if self.status_codes.iter().any(|r| r.contains(status)) {
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
