//! Reused upstream keep-alive connections that the origin closed (issue 14, item 1).
//!
//! An origin that closes idle keep-alive connections as the next request arrives (Node.js's 5 s
//! keep-alive timeout does exactly this) made every second request fail with 502. A failure on
//! a *reused* connection before any response byte is retried once on a fresh connection to the
//! same server, whatever `retries` says: for idempotent requests, and for others only when the
//! request head could not be written. The origin here is a raw socket loop, so what it was sent
//! is seen byte for byte.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;

/// How the origin drops a kept-alive connection when the second request arrives on it.
#[derive(Debug, Clone, Copy)]
enum Drop {
    /// Reads the request, then closes (FIN): the gateway reads end-of-stream.
    AfterReading,
    /// Closes without reading (the unread request makes the kernel send RST).
    Unread,
}

/// What the origin saw: the request line of every request it answered and of every request it
/// dropped, in order.
#[derive(Debug, Default)]
struct Seen {
    answered: Vec<String>,
    dropped: Vec<String>,
}

/// An HTTP/1.1 origin (raw sockets) that answers the first request of each connection with
/// keep-alive and drops the connection when a second request arrives on it.
struct ClosingOrigin {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

impl ClosingOrigin {
    fn start(drop: Drop) -> ClosingOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let seen2 = Arc::clone(&seen);
        std::thread::spawn(move || {
            // Bounded: at most 500 connections, then the thread ends (the test is over long
            // before).
            for conn in listener.incoming().take(500) {
                let Ok(conn) = conn else { continue };
                let seen = Arc::clone(&seen2);
                std::thread::spawn(move || serve(conn, drop, &seen));
            }
        });
        ClosingOrigin { addr, seen }
    }

    fn answered(&self) -> Vec<String> {
        self.seen.lock().unwrap().answered.clone()
    }

    fn dropped(&self) -> Vec<String> {
        self.seen.lock().unwrap().dropped.clone()
    }
}

/// Reads one request head and its `Content-Length` body; returns the head, or `None` at the end
/// of the stream.
fn read_request(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).to_string();
            let body_len = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + body_len {
                match conn.read(&mut chunk) {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            buf.drain(..end + 4 + body_len);
            return Some(head);
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn request_line(head: &str) -> String {
    head.lines().next().unwrap_or_default().to_string()
}

fn serve(mut conn: TcpStream, drop: Drop, seen: &Mutex<Seen>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let Some(head) = read_request(&mut conn, &mut buf) else {
        return;
    };
    seen.lock().unwrap().answered.push(request_line(&head));
    let body = "ok";
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n{body}",
        body.len()
    );
    if conn.write_all(answer.as_bytes()).is_err() {
        return;
    }
    match drop {
        Drop::AfterReading => {
            if let Some(head) = read_request(&mut conn, &mut buf) {
                seen.lock().unwrap().dropped.push(request_line(&head));
            }
        }
        Drop::Unread => {
            // Wait for the next request's first bytes, then close with them unread.
            let mut one = [0u8; 1];
            if let Ok(n) = conn.peek(&mut one) {
                if n > 0 {
                    seen.lock().unwrap().dropped.push("(unread)".to_string());
                }
            }
        }
    }
}

fn config(origin: &ClosingOrigin, retries: i32) -> String {
    format!(
        "{}[metrics]\nlisten = \"{}\"\n\n{}[[routes]]\nname = \"r\"\npath_prefix = \"/\"\n\
         upstream = \"u\"\nretries = {retries}\n\n\
         [[upstreams]]\nname = \"u\"\n  [[upstreams.groups]]\n  name = \"g\"\n\
         \x20   [[upstreams.groups.servers]]\n    address = \"127.0.0.1\"\n    port = {}\n",
        server_section("stale"),
        free_addr(),
        listener_section("web", &free_addr()),
        origin.addr.port(),
    )
}

/// Sends `n` requests one after another on one client connection; returns their statuses.
async fn statuses(gw: &Gateway, method: reqwest::Method, n: usize) -> Vec<u16> {
    let c = client();
    let mut out = Vec::new();
    for i in 0..n {
        let r = c
            .request(method.clone(), gw.url(&format!("/r{i}")))
            .body(if method == reqwest::Method::POST {
                "payload"
            } else {
                ""
            })
            .send()
            .await;
        out.push(r.map(|r| r.status().as_u16()).unwrap_or(0));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_on_a_connection_the_origin_closed_is_retried_on_a_fresh_one() {
    for (drop, retries) in [
        (Drop::AfterReading, 0),
        (Drop::Unread, 0),
        (Drop::AfterReading, -1),
    ] {
        let origin = ClosingOrigin::start(drop);
        let gw = Gateway::start(&config(&origin, retries));
        let got = statuses(&gw, reqwest::Method::GET, 20).await;
        assert!(
            got.iter().all(|&s| s == 200),
            "{drop:?}, retries = {retries}: {got:?}"
        );
        // Every second request met a stale connection and was sent again on a fresh one.
        let answered = origin.answered();
        assert_eq!(answered.len(), 20, "{drop:?}: {answered:?}");
        for i in 0..20 {
            assert!(
                answered.contains(&format!("GET /r{i} HTTP/1.1")),
                "{drop:?}: /r{i} never answered: {answered:?}"
            );
        }
        let dropped = origin.dropped().len();
        assert!(dropped >= 9, "{drop:?}: only {dropped} stale connections");
        // Counted, and not as a failure of the server.
        let outcome = gw.upstream_outcomes("u", 20.0).await;
        assert_eq!(outcome("stale_connection"), dropped as f64, "{drop:?}");
        assert_eq!(outcome("error"), 0.0, "{drop:?}");
        assert_eq!(outcome("success"), 20.0, "{drop:?}");
    }
}

/// A POST whose head was written before the origin dropped the connection may have been
/// applied: it is not sent again (the client gets 502), as NGINX does without
/// `non_idempotent`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_written_to_a_connection_the_origin_closed_is_not_sent_again() {
    let origin = ClosingOrigin::start(Drop::AfterReading);
    let gw = Gateway::start(&config(&origin, 0));
    let got = statuses(&gw, reqwest::Method::POST, 2).await;
    assert_eq!(got, [200, 502]);
    assert_eq!(origin.answered(), ["POST /r0 HTTP/1.1"]);
    assert_eq!(origin.dropped(), ["POST /r1 HTTP/1.1"]);
}
