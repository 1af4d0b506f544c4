//! `grpc-echo serve ADDR [LABEL]`: an echo + health gRPC origin on ADDR (h2c).
//! `grpc-echo load ADDR CONCURRENCY SECONDS`: unary calls over one h2c connection per worker for
//! SECONDS (at most 600), then prints `calls=N errors=N seconds=S calls_per_s=R`.
//!
//! Only loopback addresses are accepted: this is a test and benchmark tool.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use grpc_echo::pb::EchoRequest;

fn usage() -> ExitCode {
    eprintln!("usage: grpc-echo serve ADDR [LABEL] | grpc-echo load ADDR CONCURRENCY SECONDS");
    ExitCode::from(2)
}

fn loopback(arg: Option<&String>) -> Option<SocketAddr> {
    let addr: SocketAddr = arg?.parse().ok()?;
    addr.ip().is_loopback().then_some(addr)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("serve") => {
            let Some(addr) = loopback(args.get(2)) else {
                return usage();
            };
            let label = args.get(3).cloned().unwrap_or_else(|| addr.to_string());
            let listener = match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("grpc-echo: cannot listen on {addr}: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let _origin = match grpc_echo::Origin::serve(listener, &label, None).await {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("grpc-echo: {e}");
                    return ExitCode::FAILURE;
                }
            };
            eprintln!("grpc-echo: serving {label} on {addr} (h2c)");
            let _ = tokio::signal::ctrl_c().await;
            ExitCode::SUCCESS
        }
        Some("load") => {
            let (Some(addr), Some(conc), Some(secs)) = (
                loopback(args.get(2)),
                args.get(3).and_then(|a| a.parse::<usize>().ok()),
                args.get(4).and_then(|a| a.parse::<u64>().ok()),
            ) else {
                return usage();
            };
            load(addr, conc.clamp(1, 256), secs.clamp(1, 600)).await
        }
        _ => usage(),
    }
}

async fn load(addr: SocketAddr, concurrency: usize, seconds: u64) -> ExitCode {
    let calls = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (calls, errors) = (calls.clone(), errors.clone());
        workers.push(tokio::spawn(async move {
            let Ok(mut client) = grpc_echo::client::h2c(addr).await else {
                errors.fetch_add(1, Ordering::Relaxed);
                return;
            };
            while Instant::now() < until {
                let request = EchoRequest {
                    message: "load".into(),
                    payload: vec![7; 64],
                    count: 0,
                };
                match client.unary_echo(request).await {
                    Ok(_) => calls.fetch_add(1, Ordering::Relaxed),
                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let secs = started.elapsed().as_secs_f64();
    let n = calls.load(Ordering::Relaxed);
    println!(
        "calls={n} errors={} seconds={secs:.2} calls_per_s={:.0}",
        errors.load(Ordering::Relaxed),
        n as f64 / secs
    );
    ExitCode::SUCCESS
}
