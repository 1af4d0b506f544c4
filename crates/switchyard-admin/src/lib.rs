//! Switchyard's admin listener: a JSON API over the running gateway and an HTML status page.
//!
//! | Method | Path | Does |
//! |---|---|---|
//! | `GET` | `/status` | the HTML status page (`?refresh=N`, 0 = off) |
//! | `GET` | `/api/upstreams` | every upstream and server with health, weight, in-flight, EWMA, counters |
//! | `GET` | `/api/upstreams/{upstream}` | one upstream |
//! | `POST` | `/api/upstreams/{upstream}/servers/{host:port}/enable` | receive traffic again |
//! | `POST` | `/api/upstreams/{upstream}/servers/{host:port}/disable` | receive nothing |
//! | `POST` | `/api/upstreams/{upstream}/servers/{host:port}/drain` | weight 0: no new requests, still checked |
//! | `PUT` | `/api/upstreams/{upstream}/servers/{host:port}/weight` | body `{"weight": N}`, `0..=10000` |
//! | `POST` | `/api/reload` | re-read the config file (200 applied, 400 rejected with errors) |
//! | `GET` | `/api/reload` | the last reload's report |
//! | `GET` | `/api/config` | the running configuration as JSON (with each `https` listener's `tls.loaded_certificates`: names, expiry) |
//!
//! Every endpoint needs `Authorization: Bearer <token>` when the environment variable named by
//! `[admin].token_env` is set (Basic credentials with the token as password work too, for
//! browsers). Without a token the listener only starts on a loopback address, and then needs no
//! credentials. Run-time changes last until the next reload. JSON shapes: `docs/operations.md`.
//!
//! Cross-site requests and DNS rebinding are refused before authentication ([`guard`]): `403`
//! for an `Origin` that is not the request's `Host`, and, without a token, for a `Host` that is
//! not `localhost` or a loopback address; `415` for a form content type on a state-changing
//! method.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cfg = switchyard_config::load_file("conf/demo.toml")?;
//! let admin_cfg = cfg.admin.clone().unwrap_or_else(|| toml::from_str("").unwrap());
//! let mut gw = switchyard_proxy::Gateway::build(cfg, None)?;
//! gw.server.add_service(switchyard_admin::service(&admin_cfg, std::sync::Arc::clone(&gw.shared))?);
//! gw.run();
//! # }
//! ```

mod api;
mod auth;
mod certificates;
mod cluster_section;
pub mod guard;
mod request;
mod response;
pub mod status;
pub mod views;

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::{HttpServer, ServeHttp};
use pingora::protocols::http::ServerSession;
use pingora::services::listening::Service;
use switchyard_config::AdminConfig;
use switchyard_proxy::Shared;

pub use api::AdminApp;
pub use auth::Auth;
pub use request::{AdminRequest, MAX_BODY};
pub use response::AdminResponse;

/// Why the admin listener cannot start.
///
/// ```
/// let err = switchyard_admin::AdminError::NoToken {
///     listen: "0.0.0.0:9000".parse().unwrap(),
///     token_env: "SWITCHYARD_ADMIN_TOKEN".to_string(),
/// };
/// assert!(err.to_string().contains("SWITCHYARD_ADMIN_TOKEN"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// No token is configured and the listener is not on a loopback address.
    #[error(
        "admin.listen = \"{listen}\" is not a loopback address and no token is configured: \
         set the environment variable {token_env} (admin.token_env) or listen on 127.0.0.1 / ::1"
    )]
    NoToken {
        /// `[admin].listen`.
        listen: SocketAddr,
        /// `[admin].token_env`.
        token_env: String,
    },
}

/// True for 127.0.0.0/8, ::1 and IPv4-mapped loopback addresses.
///
/// ```
/// assert!(switchyard_admin::is_loopback(&"127.0.0.2:9000".parse().unwrap()));
/// assert!(switchyard_admin::is_loopback(&"[::1]:9000".parse().unwrap()));
/// assert!(!switchyard_admin::is_loopback(&"0.0.0.0:9000".parse().unwrap()));
/// ```
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

/// Checks that an admin listener on `listen` with `auth` may start.
///
/// ```
/// use switchyard_admin::{check_exposure, Auth};
/// assert!(check_exposure(&"127.0.0.1:9000".parse().unwrap(), &Auth::open(), "T").is_ok());
/// assert!(check_exposure(&"0.0.0.0:9000".parse().unwrap(), &Auth::open(), "T").is_err());
/// assert!(check_exposure(&"0.0.0.0:9000".parse().unwrap(), &Auth::with_token("x"), "T").is_ok());
/// ```
pub fn check_exposure(listen: &SocketAddr, auth: &Auth, token_env: &str) -> Result<(), AdminError> {
    if auth.requires_token() || is_loopback(listen) {
        Ok(())
    } else {
        Err(AdminError::NoToken {
            listen: *listen,
            token_env: token_env.to_string(),
        })
    }
}

/// The Pingora adapter of an [`AdminApp`].
#[derive(Debug)]
pub struct AdminHttp(pub AdminApp);

async fn read_body(session: &mut ServerSession) -> Result<Vec<u8>, AdminResponse> {
    let mut body = Vec::new();
    // Bounded: at most MAX_BODY bytes are kept, and the loop ends at the end of the body or on
    // the first error (Pingora's read timeouts bound the time).
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(AdminResponse::error(
                        413,
                        &format!("request body over {MAX_BODY} bytes"),
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => {
                return Err(AdminResponse::error(
                    400,
                    &format!("cannot read the body: {e}"),
                ))
            }
        }
    }
}

fn to_http(resp: AdminResponse, head: bool) -> Response<Vec<u8>> {
    let len = resp.body.len();
    let mut out = Response::new(if head { Vec::new() } else { resp.body });
    *out.status_mut() =
        http::StatusCode::from_u16(resp.status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = out.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(resp.content_type),
    );
    headers.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    for (name, value) in resp.headers {
        if let Ok(v) = http::HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
    out
}

#[async_trait]
impl ServeHttp for AdminHttp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let body = match read_body(session).await {
            Ok(b) => b,
            Err(resp) => {
                session.set_keepalive(None);
                return to_http(resp, false);
            }
        };
        let head = session.req_header();
        let method = head.method.as_str().to_string();
        let path = head.uri.path().to_string();
        let query = head.uri.query().map(str::to_string);
        let field =
            |name: http::header::HeaderName| head.headers.get(name).map(|v| v.as_bytes().to_vec());
        let authorization = field(http::header::AUTHORIZATION);
        let host = field(http::header::HOST)
            .or_else(|| head.uri.authority().map(|a| a.as_str().as_bytes().to_vec()));
        // Several Origin fields cannot name one origin: treated as foreign.
        let origin = match head.headers.get_all(http::header::ORIGIN).iter().count() {
            0 => None,
            1 => field(http::header::ORIGIN),
            _ => Some(b"null".to_vec()),
        };
        let content_type = field(http::header::CONTENT_TYPE);
        let req = AdminRequest {
            method: &method,
            path: &path,
            query: query.as_deref(),
            authorization: authorization.as_deref(),
            host: host.as_deref(),
            origin: origin.as_deref(),
            content_type: content_type.as_deref(),
            body: &body,
        };
        let resp = self.0.handle(req).await;
        if resp.status >= 400 {
            log::info!("admin: {method} {path} -> {}", resp.status);
        }
        to_http(resp, method == "HEAD")
    }
}

/// The admin service listening on `cfg.listen`, with the token from `cfg.token_env`.
///
/// Fails with [`AdminError::NoToken`] when no token is set and the address is not loopback.
///
/// ```
/// let cfg: switchyard_config::AdminConfig = toml::from_str("listen = \"127.0.0.1:0\"").unwrap();
/// let rt = switchyard_proxy::Runtime::build(Default::default(), None).unwrap();
/// let svc = switchyard_admin::service(&cfg, switchyard_proxy::Shared::new(rt, None));
/// assert!(svc.is_ok());
/// ```
pub fn service(
    cfg: &AdminConfig,
    shared: Arc<Shared>,
) -> Result<Service<HttpServer<AdminHttp>>, AdminError> {
    let auth = Auth::from_env(&cfg.token_env);
    check_exposure(&cfg.listen, &auth, &cfg.token_env)?;
    if !auth.requires_token() {
        log::warn!(
            "admin API on {} needs no credentials: {} is not set (allowed on loopback only)",
            cfg.listen,
            cfg.token_env
        );
    }
    let mut svc = Service::new(
        "switchyard admin".to_string(),
        HttpServer::new_app(AdminHttp(AdminApp::new(shared, auth))),
    );
    svc.add_tcp(&cfg.listen.to_string());
    Ok(svc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_token_message() {
        let err = AdminError::NoToken {
            listen: "0.0.0.0:9000".parse().unwrap(),
            token_env: "SWITCHYARD_ADMIN_TOKEN".to_string(),
        };
        assert_eq!(
            err.to_string(),
            "admin.listen = \"0.0.0.0:9000\" is not a loopback address and no token is \
             configured: set the environment variable SWITCHYARD_ADMIN_TOKEN (admin.token_env) or \
             listen on 127.0.0.1 / ::1"
        );
    }
}
