//! An extension with header rules: a sequence number on every request (`X-Request-Id` is built
//! in; see `docs/configuration.md`), a response header naming the
//! route and the server that answered, and no `Server` header leaking from upstreams.
//!
//! ```text
//! cargo run -p switchyard-proxy --example header_rule -- conf/demo.toml
//! curl -i http://127.0.0.1:8080/
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use switchyard_proxy::extension::{Decision, ExtContext, Extension, RequestInfo};

/// The sequence number given to one request, kept in the per-request context.
#[derive(Clone, Copy)]
struct RequestId(u64);

/// Adds `x-request-seq` upstream (unless the client sent one) and `x-served-by` downstream.
struct HeaderRules {
    next_id: AtomicU64,
}

#[async_trait]
impl Extension for HeaderRules {
    fn name(&self) -> &str {
        "header-rules"
    }

    async fn on_request(
        &self,
        _req: &mut RequestHeader,
        _info: &RequestInfo<'_>,
        ctx: &mut ExtContext,
    ) -> Decision {
        ctx.insert(RequestId(self.next_id.fetch_add(1, Ordering::Relaxed)));
        Decision::Continue
    }

    async fn on_upstream_request(
        &self,
        req: &mut RequestHeader,
        _info: &RequestInfo<'_>,
        ctx: &mut ExtContext,
    ) -> pingora::Result<()> {
        if req.headers.get("x-request-seq").is_none() {
            if let Some(RequestId(id)) = ctx.get::<RequestId>() {
                req.insert_header("x-request-seq", format!("sy-{id:016x}"))?;
            }
        }
        Ok(())
    }

    async fn on_response(
        &self,
        resp: &mut ResponseHeader,
        info: &RequestInfo<'_>,
        _ctx: &mut ExtContext,
    ) -> pingora::Result<()> {
        resp.remove_header("server");
        let route = info.route.map_or("-", |r| r.name.as_str());
        let server = info.server.map_or("-", |s| s.as_str());
        resp.insert_header("x-served-by", format!("{route} {server}"))?;
        Ok(())
    }
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: header_rule CONFIG.toml");
        std::process::exit(2);
    };
    let cfg = match switchyard_config::load_file(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let rules = HeaderRules {
        next_id: AtomicU64::new(1),
    };
    match switchyard_proxy::Gateway::builder(cfg)
        .config_path(path)
        .extension(Arc::new(rules))
        .build()
    {
        Ok(gw) => gw.run(),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
