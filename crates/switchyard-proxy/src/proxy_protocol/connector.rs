//! Sending the header to HTTP upstreams: a Pingora L4 connector that writes it on every new
//! connection, and the peer settings that install it per client connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::connectors::L4Connect;
use pingora::protocols::l4::socket::SocketAddr as PingoraSocketAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result as PResult};
use switchyard_config::ProxyProtocol;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::write::encode;

/// A Pingora L4 connector for HTTP upstreams with `proxy_protocol`: connects (within the
/// connect timeout, which Pingora does not apply to custom connectors) and writes the PROXY
/// header before handing the connection to the HTTP client.
#[derive(Debug, Clone)]
pub struct ProxyHeaderConnector {
    header: Vec<u8>,
    connect_timeout: Duration,
}

impl ProxyHeaderConnector {
    /// A connector that sends `header` first.
    pub fn new(header: Vec<u8>, connect_timeout: Duration) -> Self {
        ProxyHeaderConnector {
            header,
            connect_timeout,
        }
    }
}

#[async_trait]
impl L4Connect for ProxyHeaderConnector {
    async fn connect(&self, addr: &PingoraSocketAddr) -> PResult<L4Stream> {
        let Some(inet) = addr.as_inet() else {
            return Error::e_explain(
                ErrorType::ConnectError,
                "PROXY protocol needs a TCP upstream address",
            );
        };
        let connect = TcpStream::connect(*inet);
        let mut tcp = match tokio::time::timeout(self.connect_timeout, connect).await {
            Err(_) => {
                return Error::e_explain(
                    ErrorType::ConnectTimedout,
                    format!("timeout {:?} connecting to {inet}", self.connect_timeout),
                )
            }
            Ok(Err(e)) => {
                let etype = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                    ErrorType::ConnectRefused
                } else {
                    ErrorType::ConnectError
                };
                return Err(Error::because(etype, format!("connecting to {inet}"), e));
            }
            Ok(Ok(tcp)) => tcp,
        };
        if let Err(e) = tcp.write_all(&self.header).await {
            return Err(Error::because(
                ErrorType::ConnectError,
                format!("writing the PROXY header to {inet}"),
                e,
            ));
        }
        Ok(tcp.into())
    }
}

/// Makes `peer` send a PROXY header of `version` for a client at `client` that connected to
/// `local`. The header's hash becomes the peer's `group_key`, so a pooled keep-alive connection
/// is only reused for the same client connection (its header is already sent). No-op for `off`.
pub fn apply_to_peer(
    peer: &mut HttpPeer,
    version: ProxyProtocol,
    client: Option<SocketAddr>,
    local: Option<SocketAddr>,
    connect_timeout: Duration,
) {
    let (Some(client), Some(local)) = (client, local) else {
        return;
    };
    let Some(header) = encode(version, client, local) else {
        return;
    };
    peer.group_key = switchyard_balance::hash_key(&header);
    peer.options.custom_l4 = Some(Arc::new(ProxyHeaderConnector::new(header, connect_timeout)));
}

/// [`apply_to_peer`] for the client connection of `session`: its peer address (the carried one
/// when the listener accepts the PROXY protocol) and the address it connected to.
pub fn apply_for_session(
    peer: &mut HttpPeer,
    session: &pingora::proxy::Session,
    version: ProxyProtocol,
    connect_timeout: Duration,
) {
    if version == ProxyProtocol::Off {
        return;
    }
    let client = session.client_addr().and_then(|a| a.as_inet()).copied();
    let local = session.server_addr().and_then(|a| a.as_inet()).copied();
    apply_to_peer(peer, version, client, local, connect_timeout);
}
