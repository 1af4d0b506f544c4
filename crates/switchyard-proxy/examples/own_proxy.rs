//! Using `switchyard-balance` in your own Pingora proxy, without the rest of Switchyard.
//!
//! ```text
//! cargo run -p switchyard-proxy --example own_proxy -- 127.0.0.1:8080 127.0.0.1:9001 127.0.0.1:9002
//! ```
//!
//! The proxy keeps a [`Pool`] with the least-connections selector. Each request takes an
//! [`InFlight`] guard when its server is picked (so concurrent picks see it), and finishes it with
//! the outcome and latency when the request ends; a connect failure is retried on a server the
//! request has not tried yet.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::prelude::{HttpPeer, Opt};
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::Server;
use pingora::{Error, ErrorType, Result};
use switchyard_balance::{
    Algorithm, InFlight, Outcome, Pool, PoolOptions, ServerSpec, StatsStore, Tried,
};

struct LeastConnProxy {
    pool: Arc<Pool>,
}

#[derive(Default)]
struct Ctx {
    tried: Tried,
    inflight: Option<InFlight>,
}

#[async_trait]
impl ProxyHttp for LeastConnProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::default()
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let snap = self.pool.snapshot();
        let server = snap
            .pick(None, &ctx.tried)
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(503), "no server left"))?;
        ctx.tried.insert(&server.stats);
        // Replacing a previous attempt's guard releases its in-flight count.
        ctx.inflight = Some(server.stats.begin(snap.now_nanos()));
        Ok(Box::new(HttpPeer::new(
            server.spec.addr,
            false,
            String::new(),
        )))
    }

    fn fail_to_connect(
        &self,
        _s: &mut Session,
        _p: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(g) = ctx.inflight.take() {
            g.finish(Outcome::Failure, self.pool.now_nanos());
        }
        e.set_retry(true);
        e
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        if let Some(g) = ctx.inflight.take() {
            let status = session.response_written().map_or(0, |r| r.status.as_u16());
            let outcome = if e.is_some() || status >= 500 {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            g.finish(outcome, self.pool.now_nanos());
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed: Option<Vec<SocketAddr>> = args.iter().map(|a| a.parse().ok()).collect();
    let Some((listen, upstreams)) = parsed.as_deref().and_then(|a| a.split_first()) else {
        eprintln!("usage: own_proxy LISTEN UPSTREAM [UPSTREAM...]");
        std::process::exit(2);
    };
    let specs = upstreams
        .iter()
        .map(|a| ServerSpec::new("main", *a, 1))
        .collect();
    let pool = Arc::new(Pool::new(
        "main",
        PoolOptions::new(Algorithm::LeastConn),
        specs,
        Arc::new(StatsStore::default()),
    ));
    let mut server = Server::new_with_opt_and_conf(Opt::default(), Default::default());
    server.bootstrap();
    let mut svc =
        pingora::proxy::http_proxy_service(&server.configuration, LeastConnProxy { pool });
    svc.add_tcp(&listen.to_string());
    server.add_service(svc);
    server.run_forever();
}
