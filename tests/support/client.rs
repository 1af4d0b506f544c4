//! Client helpers: free ports, HTTP clients, raw requests, bounded waits.

use super::*;

/// A free TCP port on 127.0.0.1 (bound, read and released), never the same one twice in a test
/// process; another process may still take it in between (a tiny race is accepted).
pub fn free_port() -> u16 {
    // The kernel may give the same ephemeral port to two binds in a row once the first socket is
    // closed; a test that asks for two ports (a listener and [metrics]) must get two.
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    for _ in 0..1000 {
        let port = StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut seen = HANDED_OUT.lock().unwrap();
        if !seen.contains(&port) {
            seen.push(port);
            return port;
        }
    }
    panic!("no unused loopback port after 1000 tries");
}

/// `127.0.0.1:<free_port()>` as a string, for `listen = "..."`.
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// An HTTP client that ignores proxy settings, with short timeouts, HTTP/1.1 and keep-alive.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

/// A client that opens a new connection per request (the gateway closes the client connection
/// after an error response), HTTP/1.1, with the same timeouts as [`client`].
pub fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .pool_max_idle_per_host(0)
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

/// A response read completely.
#[derive(Debug, Clone)]
pub struct Resp {
    /// The status code.
    pub status: u16,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body as text (lossy).
    pub body: String,
}

impl Resp {
    /// The `x-origin` header: which [`Origin`] answered, if any.
    pub fn origin(&self) -> Option<String> {
        self.header("x-origin")
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }
}

/// Sends `method url` with an optional Host header and extra headers; reads the whole answer.
pub async fn send(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    host: Option<&str>,
    headers: &[(&str, &str)],
) -> Resp {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = client.request(method, url);
    if let Some(h) = host {
        req = req.header(reqwest::header::HOST, h);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("request to {url} failed: {e:?}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await.unwrap_or_default();
    Resp {
        status,
        headers,
        body,
    }
}

/// `GET url`.
pub async fn get(client: &reqwest::Client, url: &str) -> Resp {
    send(client, "GET", url, None, &[]).await
}

/// `GET url` with `Host: host`.
pub async fn get_with_host(client: &reqwest::Client, url: &str, host: &str) -> Resp {
    send(client, "GET", url, Some(host), &[]).await
}

/// Writes `request` verbatim to `addr` and returns everything read until the peer closes or
/// `timeout` passes (send `Connection: close` to get a prompt answer).
pub fn raw_http(addr: SocketAddr, request: &str, timeout: Duration) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Polls `f` every 20 ms until it returns true or `timeout` passes; returns the last result.
pub async fn eventually<F: FnMut() -> bool>(timeout: Duration, mut f: F) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
