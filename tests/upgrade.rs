//! Connection upgrades (WebSocket): the `101 Switching Protocols` answer reaches the client and
//! bytes then flow both ways through the gateway, including bytes the client sent right behind
//! its upgrade request (which must not be taken for a pipelined HTTP request).

mod support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A gateway config: listener `web`, one route (extra lines `route_extra`) to `origin`.
fn config(prefix: &str, route_extra: &str, origin: &UpgradeOrigin) -> String {
    format!(
        "{}{}[[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"u\"\n{route_extra}\n\n\
         [[upstreams]]\nname = \"u\"\n  [[upstreams.groups]]\n  name = \"g\"\n    \
         [[upstreams.groups.servers]]\n    address = \"127.0.0.1\"\n    port = {}\n",
        server_section(prefix),
        listener_section("web", &free_addr()),
        origin.addr().port()
    )
}

const UPGRADE: &[u8] =
    b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Reads from `s` until `want` has appeared (≤ 5 s); returns everything read.
async fn read_until(s: &mut TcpStream, want: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.windows(want.len()).any(|w| w == want) {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no {:?} within 5 s; got {:?}",
                    String::from_utf8_lossy(want),
                    String::from_utf8_lossy(&out)
                )
            })
            .unwrap();
        assert!(n > 0, "closed; got {:?}", String::from_utf8_lossy(&out));
        out.extend_from_slice(&buf[..n]);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades_carry_bytes_both_ways() {
    let origin = UpgradeOrigin::start().await;
    let gw = Gateway::start(&config("upgrade", "", &origin));

    // The usual order: upgrade, wait for 101, then talk.
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(UPGRADE).await.unwrap();
    let head = read_until(&mut s, b"\r\n\r\n").await;
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    for msg in [&b"hello"[..], b"second message"] {
        s.write_all(msg).await.unwrap();
        read_until(&mut s, &[b"echo:", msg].concat()).await;
    }

    // Bytes sent right behind the upgrade request, before the 101: they belong to the upgraded
    // stream and reach the origin as such.
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(&[UPGRADE, b"early-bytes"].concat())
        .await
        .unwrap();
    let got = read_until(&mut s, b"echo:early-bytes").await;
    assert!(
        got.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    s.write_all(b"later").await.unwrap();
    read_until(&mut s, b"echo:later").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_upgraded_connection_outlives_the_response_timeout() {
    let origin = UpgradeOrigin::start().await;
    let gw = Gateway::start(&config("upgrade-idle", "timeout_ms = 500", &origin));
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(UPGRADE).await.unwrap();
    read_until(&mut s, b"\r\n\r\n").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.write_all(b"after-idle").await.unwrap();
    read_until(&mut s, b"echo:after-idle").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_connection_idle_past_tunnel_timeout_ms_is_closed() {
    let origin = UpgradeOrigin::start().await;
    let gw = Gateway::start(&config(
        "upgrade-tunnel",
        "tunnel_timeout_ms = 700",
        &origin,
    ));
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(UPGRADE).await.unwrap();
    read_until(&mut s, b"\r\n\r\n").await;
    // Traffic keeps it open past the limit…
    for i in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let msg = format!("tick{i}");
        s.write_all(msg.as_bytes()).await.unwrap();
        read_until(&mut s, format!("echo:{msg}").as_bytes()).await;
    }
    // …silence closes it.
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("an idle tunnel must be closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "unexpected data");
    let idle = started.elapsed();
    assert!(
        idle >= Duration::from_millis(500) && idle < Duration::from_secs(5),
        "closed after {idle:?}"
    );
}
