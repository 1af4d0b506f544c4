//! The demo origin keeps a connection open after a request whose body arrives after its head.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Origin(Child);

impl Drop for Origin {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_origin() -> (Origin, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"));
    let child = Command::new(env!("CARGO_BIN_EXE_demo-origin"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--name", "t"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("demo-origin did not start: {e}"));
    let origin = Origin(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "demo-origin did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    (origin, port)
}

/// Reads one response (this origin's are small and sized) and returns its head and body.
fn read_response(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = stream
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("read failed: {e}"));
        assert!(
            n > 0,
            "connection closed; got {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

#[test]
fn a_body_sent_after_the_head_is_read_and_the_connection_stays_open() {
    let (_origin, port) = start_origin();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("{e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap_or_else(|e| panic!("{e}"));
    stream
        .write_all(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n")
        .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_millis(100));
    stream.write_all(b"hello").unwrap_or_else(|e| panic!("{e}"));
    let first = read_response(&mut stream);
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let second = read_response(&mut stream);
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    assert!(second.ends_with("hello from t\n"), "{second}");
}
