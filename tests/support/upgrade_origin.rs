//! A WebSocket-style upgrade origin (raw bytes, no HTTP library).

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A raw origin on 127.0.0.1: answers an `Upgrade: websocket` request with `101`, then echoes
/// every byte it gets back prefixed with `echo:` (bytes that came with the request first).
pub struct UpgradeOrigin {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl UpgradeOrigin {
    /// Starts on a free loopback port (inside the caller's tokio runtime).
    pub async fn start() -> UpgradeOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut buf = [0u8; 4096];
                    let head_end = loop {
                        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
                    if !head.contains("upgrade: websocket") {
                        let _ = s
                            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                            .await;
                        return;
                    }
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                              Connection: Upgrade\r\n\r\n",
                        )
                        .await;
                    let early = got[head_end..].to_vec();
                    if !early.is_empty() {
                        let _ = s.write_all(&[b"echo:", &early[..]].concat()).await;
                    }
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if s.write_all(&[b"echo:", &buf[..n]].concat()).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        UpgradeOrigin { addr, task }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for UpgradeOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}
