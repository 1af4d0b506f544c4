//! `bare-pingora`: the smallest useful Pingora 0.9 load balancer, used by `make bench` as a row
//! beside Switchyard, NGINX and HAProxy. It separates Pingora's own per-request cost from
//! Switchyard's: same Pingora version, same release profile, same `ServerConf` levers, but no
//! routing, no metrics, no health checks, no forwarding headers.
//!
//! ```text
//! bare-pingora --listen 127.0.0.1:18080 --upstream 127.0.0.1:18001 --upstream 127.0.0.1:18002
//! bare-pingora --listen 127.0.0.1:18443 --tls-cert cert.pem --tls-key key.pem \
//!              --upstream 127.0.0.1:18001 --upstream 127.0.0.1:18002
//! ```
//!
//! Behaviour: one proxy service with `threads` worker threads (default 1) and
//! `work_stealing = false` (Switchyard's default), round robin over the upstreams
//! (`pingora-load-balancing`'s `RoundRobin`, no health checks: every upstream is always used), plain
//! HTTP/1.1 keep-alive to the upstreams. With `--tls-cert` and `--tls-key` the listener terminates
//! TLS (rustls, Pingora's intermediate settings, HTTP/1.1 only). SIGINT exits at once; SIGTERM
//! waits `--grace-s` seconds (default 1).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use async_trait::async_trait;
use clap::Parser;
use pingora::lb::selection::RoundRobin;
use pingora::lb::LoadBalancer;
use pingora::listeners::tls::TlsSettings;
use pingora::prelude::HttpPeer;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::{Error, ErrorType, Result};

/// mimalloc as the global allocator (feature `mimalloc`, off by default), as Switchyard's default
/// build has it: a build with it separates Switchyard's own cost from the allocators'.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "bare-pingora",
    about = "A minimal Pingora round-robin load balancer (benchmark baseline)"
)]
struct Cli {
    /// Address to listen on, e.g. 127.0.0.1:18080.
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// An upstream server (IP:port); repeat for more. Chosen in round robin.
    #[arg(long = "upstream", value_name = "ADDR", required = true)]
    upstreams: Vec<SocketAddr>,
    /// PEM certificate chain: terminate TLS on the listener (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Worker threads of the proxy service.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Let idle worker threads steal tasks (Pingora's default is true; Switchyard's is false).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    work_stealing: bool,
    /// Graceful-shutdown period on SIGTERM, in seconds.
    #[arg(long, default_value_t = 1)]
    grace_s: u64,
}

/// The proxy: round robin over a static set, no per-request state.
struct Bare {
    lb: Arc<LoadBalancer<RoundRobin>>,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        // Round robin ignores the key; one iteration is enough without health checks.
        let Some(backend) = self.lb.select(b"", 1) else {
            return Err(Error::explain(
                ErrorType::HTTPStatus(503),
                "no upstream available",
            ));
        };
        Ok(Box::new(HttpPeer::new(backend.addr, false, String::new())))
    }
}

/// Checks that a TLS file can be read, so a typo is reported before Pingora starts.
fn readable(path: &PathBuf, what: &str) -> std::result::Result<String, String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => path
            .to_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("{what} {}: path is not UTF-8", path.display())),
        Ok(_) => Err(format!("{what} {}: not a file", path.display())),
        Err(e) => Err(format!("{what} {}: {e}", path.display())),
    }
}

fn run(cli: Cli) -> std::result::Result<(), String> {
    let lb = LoadBalancer::<RoundRobin>::try_from_iter(cli.upstreams.iter().copied())
        .map_err(|e| format!("upstreams: {e}"))?;
    let conf = ServerConf {
        threads: cli.threads.max(1),
        work_stealing: cli.work_stealing,
        grace_period_seconds: Some(cli.grace_s),
        graceful_shutdown_timeout_seconds: Some(cli.grace_s.max(1)),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut svc = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        Bare { lb: Arc::new(lb) },
        "bare-pingora",
    );
    let listen = cli.listen.to_string();
    match (&cli.tls_cert, &cli.tls_key) {
        (Some(cert), Some(key)) => {
            let cert = readable(cert, "--tls-cert")?;
            let key = readable(key, "--tls-key")?;
            let settings = TlsSettings::intermediate(&cert, &key)
                .map_err(|e| format!("TLS settings from {cert} and {key}: {e}"))?;
            svc.add_tls_with_settings(&listen, None, settings);
        }
        _ => svc.add_tcp(&listen),
    }
    server.add_service(svc);
    server.run_forever()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bare-pingora: {e}");
            ExitCode::from(2)
        }
    }
}
