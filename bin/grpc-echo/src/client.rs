//! Clients for the echo and health services over h2c or h2 with TLS.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

use crate::pb::echo_client::EchoClient;

/// An h2c channel (HTTP/2 with prior knowledge, no TLS) to `addr`.
pub async fn h2c_channel(addr: SocketAddr) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await
}

/// An h2 channel over TLS to `addr`, checking the certificate for `server_name`; `cfg` should
/// offer ALPN `h2`.
pub async fn tls_channel(
    addr: SocketAddr,
    server_name: &str,
    cfg: Arc<rustls::ClientConfig>,
) -> Result<Channel, tonic::transport::Error> {
    let name = ServerName::try_from(server_name.to_string())
        .unwrap_or_else(|_| ServerName::IpAddress(addr.ip().into()));
    let connector = TlsConnector::from(cfg);
    Endpoint::from_shared(format!("http://{server_name}:{}", addr.port()))?
        .connect_with_connector(tower::service_fn(move |_| {
            let connector = connector.clone();
            let name = name.clone();
            async move {
                let tcp = TcpStream::connect(addr).await?;
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await
}

/// An echo client over h2c.
pub async fn h2c(addr: SocketAddr) -> Result<EchoClient<Channel>, tonic::transport::Error> {
    Ok(EchoClient::new(h2c_channel(addr).await?))
}

/// An echo client over h2 with TLS.
pub async fn tls(
    addr: SocketAddr,
    server_name: &str,
    cfg: Arc<rustls::ClientConfig>,
) -> Result<EchoClient<Channel>, tonic::transport::Error> {
    Ok(EchoClient::new(tls_channel(addr, server_name, cfg).await?))
}
