//! Test origins on 127.0.0.1 and helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use switchyard_balance::{Algorithm, Pool, PoolOptions, ServerId, ServerSpec, StatsStore};
use switchyard_health::{CheckResult, HealthObserver, HealthSpec};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// An HTTP origin with a switchable status, counting requests and recording methods.
pub struct Origin {
    pub addr: SocketAddr,
    pub status: Arc<AtomicU16>,
    pub hits: Arc<AtomicUsize>,
    pub methods: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Origin {
    pub async fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let status = Arc::new(AtomicU16::new(200));
        let hits = Arc::new(AtomicUsize::new(0));
        let methods = Arc::new(Mutex::new(Vec::new()));
        let (s, h, m) = (status.clone(), hits.clone(), methods.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (s, h, m) = (s.clone(), h.clone(), m.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (s, h, m) = (s.clone(), h.clone(), m.clone());
                        async move {
                            h.fetch_add(1, Ordering::SeqCst);
                            m.lock().unwrap().push(req.method().to_string());
                            let resp = Response::builder()
                                .status(s.load(Ordering::SeqCst))
                                .body(Full::new(Bytes::from_static(b"ok\n")))
                                .unwrap();
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Origin {
            addr,
            status,
            hits,
            methods,
            task,
        }
    }

    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Drops the listener: new connections are refused.
    pub async fn stop(&self) {
        self.task.abort();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A port on 127.0.0.1 with nothing listening (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

pub fn spec(addr: SocketAddr) -> ServerSpec {
    ServerSpec::new("blue", addr, 1)
}

pub fn id(addr: SocketAddr) -> ServerId {
    ServerId::new("blue", &addr.to_string())
}

/// A pool named `api` built the way the gateway builds it for `checks`.
pub fn pool(checks: &HealthSpec, addrs: &[SocketAddr]) -> Arc<Pool> {
    let opts = PoolOptions::new(Algorithm::Wrr).initially_healthy(checks.initially_healthy());
    Arc::new(Pool::new(
        "api",
        opts,
        addrs.iter().map(|a| spec(*a)).collect(),
        Arc::new(StatsStore::default()),
    ))
}

pub fn healthy(pool: &Pool, addr: SocketAddr) -> bool {
    pool.snapshot()
        .servers()
        .iter()
        .find(|s| s.spec.addr == addr)
        .map(|s| s.stats.is_healthy())
        .unwrap()
}

/// Polls `cond` every 10 ms until it holds or `within` passes; returns the time it took.
pub async fn wait_for(within: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    let rounds = within.as_millis() / 10 + 1;
    for _ in 0..rounds {
        if cond() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond().then(|| start.elapsed())
}

/// Records every observer call.
#[derive(Default)]
pub struct Recorder {
    pub checks: Mutex<Vec<(String, String)>>,
    pub transitions: Mutex<Vec<(String, bool, String)>>,
    pub ejections: Mutex<Vec<String>>,
}

impl HealthObserver for Recorder {
    fn on_check(&self, _upstream: &str, server: &ServerId, result: &CheckResult) {
        self.checks
            .lock()
            .unwrap()
            .push((server.to_string(), result.label().to_string()));
    }
    fn on_transition(&self, _upstream: &str, server: &ServerId, healthy: bool, reason: &str) {
        self.transitions
            .lock()
            .unwrap()
            .push((server.to_string(), healthy, reason.to_string()));
    }
    fn on_ejection(&self, _upstream: &str, server: &ServerId) {
        self.ejections.lock().unwrap().push(server.to_string());
    }
}
