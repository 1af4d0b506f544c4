//! An extension that requires an API key on routes whose name starts with `private`.
//!
//! ```text
//! API_KEYS=key-1,key-2 cargo run -p switchyard-proxy --example api_key_auth -- conf/demo.toml
//! curl -H 'x-api-key: key-1' http://127.0.0.1:8080/
//! ```
//!
//! Keys come from the `API_KEYS` environment variable (comma-separated). A request without a
//! valid key gets 401 before any server is picked; the key header is removed before the request
//! goes upstream.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::http::RequestHeader;
use switchyard_proxy::extension::{Decision, ExtContext, Extension, RequestInfo};

/// Checks `x-api-key` against a fixed set.
struct ApiKeyAuth {
    keys: Vec<String>,
}

#[async_trait]
impl Extension for ApiKeyAuth {
    fn name(&self) -> &str {
        "api-key-auth"
    }

    async fn on_request(
        &self,
        req: &mut RequestHeader,
        info: &RequestInfo<'_>,
        _ctx: &mut ExtContext,
    ) -> Decision {
        let protected = info.route.is_some_and(|r| r.name.starts_with("private"));
        if !protected {
            return Decision::Continue;
        }
        let ok = req
            .headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|k| self.keys.iter().any(|x| x == k));
        if ok {
            req.remove_header("x-api-key");
            Decision::Continue
        } else {
            Decision::respond(401, "401 Unauthorized: missing or unknown API key\n")
        }
    }
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: api_key_auth CONFIG.toml");
        std::process::exit(2);
    };
    let cfg = match switchyard_config::load_file(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let keys = std::env::var("API_KEYS")
        .unwrap_or_default()
        .split(',')
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect();
    match switchyard_proxy::Gateway::builder(cfg)
        .config_path(path)
        .extension(Arc::new(ApiKeyAuth { keys }))
        .build()
    {
        Ok(gw) => gw.run(),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
