//! `demo-origin`: a tiny HTTP origin for demos and benchmarks.
//!
//! ```text
//! demo-origin --listen 127.0.0.1:9001 --name a [--delay-ms 20]
//! ```
//!
//! Every response carries `x-origin: <name>` and the body `hello from <name>\n`. `GET /health`
//! answers 200 `ok` at once. `GET /status/<code>` answers with that status; `GET /delay/<ms>`
//! waits first. `--delay-ms N` makes every other answer wait N ms first (a slow origin, as the
//! overload benchmark scenario needs). A request body is read and dropped before the answer.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

fn usage() -> ! {
    eprintln!("usage: demo-origin --listen ADDR [--name NAME] [--delay-ms N]");
    std::process::exit(2)
}

/// The command line: where to listen, the name, and the delay before every answer but `/health`.
struct Args {
    listen: SocketAddr,
    name: String,
    delay: Duration,
}

fn parse_args() -> Args {
    let mut listen = None;
    let mut name = String::from("origin");
    let mut delay = Duration::ZERO;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().and_then(|v| v.parse().ok()),
            "--name" => name = args.next().unwrap_or_else(|| usage()),
            "--delay-ms" => {
                let ms = args.next().and_then(|v| v.parse::<u64>().ok());
                delay = Duration::from_millis(ms.unwrap_or_else(|| usage()).min(60_000));
            }
            _ => usage(),
        }
    }
    Args {
        listen: listen.unwrap_or_else(|| usage()),
        name,
        delay,
    }
}

async fn handle(
    name: &'static str,
    delay: Duration,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, mut request_body) = req.into_parts();
    // The request body is read (and dropped) before the answer, as a real origin reads it: an
    // answer sent before the body arrived would make hyper close the connection after it, and
    // a proxy reusing that connection would meet the close.
    while let Some(frame) = request_body.frame().await {
        if frame.is_err() {
            break;
        }
    }
    let path = parts.uri.path();
    if !delay.is_zero() && path != "/health" {
        tokio::time::sleep(delay).await;
    }
    let mut status = StatusCode::OK;
    let mut body = format!("hello from {name}\n");
    if path == "/health" {
        body = "ok\n".to_string();
    } else if let Some(code) = path.strip_prefix("/status/") {
        status = code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::BAD_REQUEST);
    } else if let Some(ms) = path.strip_prefix("/delay/") {
        let ms = ms.parse::<u64>().unwrap_or(0).min(60_000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("x-origin", hyper::header::HeaderValue::from_static(name));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    Ok(resp)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let Args {
        listen: addr,
        name,
        delay,
    } = parse_args();
    let name: &'static str = Box::leak(name.into_boxed_str());
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("demo-origin {name}: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("demo-origin {name} listening on {addr}");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(name, delay, req));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
