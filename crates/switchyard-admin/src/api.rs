//! Request routing and the API handlers. Transport-independent: [`AdminApp::handle`] takes an
//! [`AdminRequest`] and returns an [`AdminResponse`] (their types live in `request` and
//! `response`); the Pingora service in `lib.rs` only translates.

use std::sync::Arc;

use serde_json::json;
use switchyard_balance::ServerId;
use switchyard_config::MAX_WEIGHT;
use switchyard_proxy::{Runtime, ServerOverride, Shared};

use crate::auth::Auth;
use crate::guard;
use crate::request::{percent_decode, query_param, AdminRequest};
use crate::response::AdminResponse;
use crate::views::{self, Rates};

/// A run-time change of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Enable,
    Disable,
    Drain,
    Weight(u32),
}

impl Change {
    /// The fleet-wide override this change becomes with `[cluster]`.
    fn as_override(self) -> ServerOverride {
        match self {
            Change::Enable => ServerOverride::Enabled(true),
            Change::Disable => ServerOverride::Enabled(false),
            Change::Drain => ServerOverride::Weight(0),
            Change::Weight(w) => ServerOverride::Weight(w),
        }
    }

    fn describe(self) -> String {
        match self {
            Change::Enable => "enabled".to_string(),
            Change::Disable => "disabled".to_string(),
            Change::Drain => "drained (weight 0)".to_string(),
            Change::Weight(w) => format!("weight set to {w}"),
        }
    }
}

/// The admin application: authentication, routing and handlers over the gateway's [`Shared`]
/// state.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use switchyard_admin::{AdminApp, AdminRequest, Auth};
///
/// let cfg = switchyard_config::parse_str(r#"
/// [[upstreams]]
/// name = "api"
///   [[upstreams.groups]]
///   name = "g"
///   servers = [{ address = "127.0.0.1", port = 9 }]
/// "#).unwrap();
/// let rt = switchyard_proxy::Runtime::build(std::sync::Arc::new(cfg), None).unwrap();
/// let app = AdminApp::new(switchyard_proxy::Shared::new(rt, None), Auth::with_token("t"));
///
/// let denied = app.handle(AdminRequest::new("GET", "/api/upstreams")).await;
/// assert_eq!(denied.status, 401);
/// // A cross-site request is refused even with the token.
/// let req = AdminRequest::new("POST", "/api/reload").bearer(b"Bearer t");
/// let forged = app.handle(req.host(b"127.0.0.1:9000").origin(b"http://evil.example")).await;
/// assert_eq!(forged.status, 403);
/// let req = AdminRequest::new("POST", "/api/upstreams/api/servers/127.0.0.1:9/drain");
/// let drained = app.handle(req.bearer(b"Bearer t")).await;
/// assert_eq!(drained.status, 200);
/// # });
/// ```
#[derive(Debug)]
pub struct AdminApp {
    shared: Arc<Shared>,
    auth: Auth,
    rates: Rates,
}

/// True if server `id` is addressed by the path segment `seg`: its `host:port`, its full identity
/// (`group/host:port`, percent-encoded), or, for a DNS-named server (`name:port#ip`), its
/// `name:port` (which addresses every resolved address).
fn addresses(id: &ServerId, seg: &str) -> bool {
    // `host_port()` drops a DNS-named server's `#ip`; `rest` keeps it.
    let rest = id.as_str().split_once('/').map_or(id.as_str(), |(_, r)| r);
    id.host_port() == seg || rest == seg || id.as_str() == seg
}

impl AdminApp {
    /// The application over `shared`, requiring `auth`.
    ///
    /// See [`AdminApp`] for an example.
    pub fn new(shared: Arc<Shared>, auth: Auth) -> AdminApp {
        AdminApp {
            shared,
            auth,
            rates: Rates::default(),
        }
    }

    /// The gateway state this application serves.
    ///
    /// ```
    /// # let rt = switchyard_proxy::Runtime::build(Default::default(), None).unwrap();
    /// let app = switchyard_admin::AdminApp::new(switchyard_proxy::Shared::new(rt, None), switchyard_admin::Auth::open());
    /// assert_eq!(app.shared().instance_id(), "switchyard");
    /// ```
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Refuses cross-site requests and DNS rebinding (see [`crate::guard`]), before anything
    /// else: `403` for a foreign `Origin`, or, without a token, for a `Host` that is not
    /// loopback; `415` for a state-changing method with a form content type.
    fn guard(&self, req: &AdminRequest<'_>) -> Option<AdminResponse> {
        if let Some(origin) = req.origin {
            if !guard::same_origin(origin, req.host) {
                return Some(AdminResponse::error(
                    403,
                    "cross-origin request refused: Origin does not match Host",
                ));
            }
        }
        if !self.auth.requires_token() && !req.host.is_some_and(guard::is_loopback_host) {
            return Some(AdminResponse::error(
                403,
                "without a token the admin API answers only Host: localhost or a loopback \
                 address (DNS rebinding protection); set the token to reach it by name",
            ));
        }
        let safe = matches!(req.method, "GET" | "HEAD");
        if !safe && req.content_type.is_some_and(guard::is_form_content_type) {
            return Some(AdminResponse::error(
                415,
                "form content types are refused (cross-site request protection); \
                 send no body or application/json",
            ));
        }
        None
    }

    /// Answers one request. See [`AdminApp`] for an example.
    pub async fn handle(&self, req: AdminRequest<'_>) -> AdminResponse {
        if let Some(refusal) = self.guard(&req) {
            return refusal;
        }
        if req.method == "GET" && req.path == "/" {
            return AdminResponse {
                status: 302,
                content_type: "text/plain; charset=utf-8",
                headers: vec![("location", "/status".to_string())],
                body: b"see /status\n".to_vec(),
            };
        }
        if !self.auth.allows(req.authorization) {
            let challenge = if req.path.starts_with("/api") {
                "Bearer realm=\"switchyard admin\""
            } else {
                "Basic realm=\"switchyard admin\", charset=\"UTF-8\""
            };
            return AdminResponse::error(401, "missing or wrong bearer token")
                .header("www-authenticate", challenge.to_string());
        }
        let segs: Vec<String> = req
            .path
            .trim_start_matches('/')
            .split('/')
            .map(percent_decode)
            .collect();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        match (req.method, segs.as_slice()) {
            ("GET" | "HEAD", ["status"]) => {
                let refresh = query_param(req.query, "refresh")
                    .and_then(|v| v.parse::<u32>().ok())
                    .unwrap_or(crate::status::DEFAULT_REFRESH_S);
                AdminResponse::html(crate::status::render(&self.shared, &self.rates, refresh))
            }
            ("GET", ["api", "upstreams"]) => {
                AdminResponse::json(200, &views::upstreams(&self.shared, &self.rates))
            }
            ("GET", ["api", "upstreams", name]) => {
                let rt = self.shared.runtime();
                match rt.upstream(name) {
                    Some(up) => {
                        AdminResponse::json(200, &views::upstream_view(up, &self.rates, None))
                    }
                    None => AdminResponse::error(404, &format!("no upstream named {name}")),
                }
            }
            ("POST", ["api", "upstreams", up, "servers", server, action]) => {
                let change = match *action {
                    "enable" => Change::Enable,
                    "disable" => Change::Disable,
                    "drain" => Change::Drain,
                    "weight" => return method_not_allowed("PUT"),
                    other => {
                        return AdminResponse::error(
                            404,
                            &format!(
                                "unknown action {other}: use enable, disable, drain or PUT weight"
                            ),
                        )
                    }
                };
                self.change(up, server, change).await
            }
            ("PUT", ["api", "upstreams", up, "servers", server, "weight"]) => {
                match parse_weight(req.body) {
                    Ok(w) => self.change(up, server, Change::Weight(w)).await,
                    Err(e) => AdminResponse::error(400, &e),
                }
            }
            ("DELETE", ["api", "upstreams", up, "servers", server, "override"]) => {
                self.clear_override(up, server).await
            }
            (_, ["api", "upstreams", _, "servers", _, "override"]) => method_not_allowed("DELETE"),
            (_, ["api", "upstreams", _, "servers", _, "weight"]) => method_not_allowed("PUT"),
            (_, ["api", "upstreams", _, "servers", _, _]) => method_not_allowed("POST"),
            ("POST", ["api", "reload"]) => {
                let report = self.shared.reload().await;
                let status = if report.applied { 200 } else { 400 };
                AdminResponse::json(status, &report)
            }
            ("GET", ["api", "reload"]) => {
                let last = self.shared.last_reload();
                AdminResponse::json(200, &json!({ "last_reload": last }))
            }
            ("GET", ["api", "config"]) => {
                let rt = self.shared.runtime();
                let mut value = serde_json::to_value(&*rt.config).unwrap_or_default();
                redact(&mut value);
                crate::certificates::annotate_config(&rt, &mut value);
                AdminResponse::json(200, &value)
            }
            ("GET", ["api", "cluster"]) => match self.shared.fleet() {
                Some(fleet) => AdminResponse::json(200, &fleet.view()),
                None => AdminResponse::error(
                    404,
                    "this instance is not part of a fleet (no [cluster] section)",
                ),
            },
            (_, ["api", "cluster"]) => method_not_allowed("GET"),
            (_, ["api", "reload"]) => method_not_allowed("GET, POST"),
            (_, ["api", "config" | "upstreams"] | ["status"]) => method_not_allowed("GET"),
            _ => AdminResponse::error(
                404,
                &format!("no such endpoint: {} {}", req.method, req.path),
            ),
        }
    }

    async fn change(&self, upstream: &str, server: &str, change: Change) -> AdminResponse {
        // With `[cluster]` the change is stored as a fleet-wide override first (every instance,
        // this one included, applies it from the watch); the in-place change below makes it
        // visible here at once.
        if let Some(fleet) = self.shared.fleet() {
            if let Err(missing) = matching_servers(&self.shared.runtime(), upstream, server) {
                return missing;
            }
            if let Err(e) = fleet
                .set_override(upstream, server, change.as_override())
                .await
            {
                return AdminResponse::error(
                    503,
                    &format!("cannot store the change for the fleet: {e}"),
                );
            }
            log::info!(
                "admin: upstream {upstream} server {server} {} for the whole fleet (until \
                 DELETE .../override)",
                change.describe()
            );
        }
        // Serialised with reloads, so a change never lands on a pool a reload is replacing.
        self.shared
            .apply_admin_change(|rt| self.change_in(rt, upstream, server, change))
            .await
    }

    /// Applies `change` to the servers of `upstream` in `rt` (reloads held off by the caller).
    fn change_in(
        &self,
        rt: &Runtime,
        upstream: &str,
        server: &str,
        change: Change,
    ) -> AdminResponse {
        let (up, ids) = match matching_servers(rt, upstream, server) {
            Ok(found) => found,
            Err(missing) => return missing,
        };
        let until = if self.shared.fleet().is_some() {
            "fleet-wide, until the override is cleared"
        } else {
            "until the next reload"
        };
        for id in &ids {
            up.pool.modify(id.as_str(), |spec| match change {
                Change::Enable => spec.enabled = true,
                Change::Disable => spec.enabled = false,
                Change::Drain => spec.weight = 0,
                Change::Weight(w) => spec.weight = w,
            });
            log::info!(
                "admin: upstream {upstream} server {id} {} ({until})",
                change.describe()
            );
        }
        up.health.sync_servers();
        AdminResponse::json(200, &views::upstream_view(up, &self.rates, Some(&ids)))
    }
}

impl AdminApp {
    /// `DELETE /api/upstreams/{upstream}/servers/{host:port}/override`: the fleet-wide override
    /// goes; every instance composes its configuration again without it.
    async fn clear_override(&self, upstream: &str, server: &str) -> AdminResponse {
        let Some(fleet) = self.shared.fleet() else {
            return AdminResponse::error(
                404,
                "no [cluster] section: admin changes are local and last until the next reload",
            );
        };
        match fleet.clear_override(upstream, server).await {
            Ok(true) => {
                log::info!("admin: override of upstream {upstream} server {server} cleared");
                AdminResponse::json(200, &json!({ "cleared": true }))
            }
            Ok(false) => AdminResponse::error(
                404,
                &format!("no override for upstream {upstream} server {server}"),
            ),
            Err(e) => AdminResponse::error(503, &format!("cannot clear the override: {e}")),
        }
    }
}

/// The upstream `upstream` of `rt` and the identities of its servers `server` addresses, or the
/// 404 answer saying which is missing.
fn matching_servers<'a>(
    rt: &'a Runtime,
    upstream: &str,
    server: &str,
) -> Result<
    (
        &'a Arc<switchyard_proxy::runtime::UpstreamRuntime>,
        Vec<ServerId>,
    ),
    AdminResponse,
> {
    let Some(up) = rt.upstream(upstream) else {
        return Err(AdminResponse::error(
            404,
            &format!("no upstream named {upstream}"),
        ));
    };
    let ids: Vec<ServerId> = up
        .pool
        .specs()
        .into_iter()
        .map(|s| s.id)
        .filter(|id| addresses(id, server))
        .collect();
    if ids.is_empty() {
        return Err(AdminResponse::error(
            404,
            &format!("upstream {upstream} has no server {server} (use host:port)"),
        ));
    }
    Ok((up, ids))
}

fn method_not_allowed(allow: &str) -> AdminResponse {
    AdminResponse::error(405, &format!("method not allowed; use {allow}"))
        .header("allow", allow.to_string())
}

/// Parses `{"weight": N}` with `N` in `0..=MAX_WEIGHT`.
fn parse_weight(body: &[u8]) -> Result<u32, String> {
    let usage =
        format!("the body must be {{\"weight\": N}} with N an integer from 0 to {MAX_WEIGHT}");
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("{usage}: {e}"))?;
    let w = value
        .get("weight")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| usage.clone())?;
    match u32::try_from(w) {
        Ok(w) if w <= MAX_WEIGHT => Ok(w),
        _ => Err(format!("{usage}, got {w}")),
    }
}

/// Replaces the value of any key that looks secret-bearing (`password`, `secret`, `token`,
/// `key` contents) with `"<redacted>"`. Keys ending in `_env` hold only the *name* of an
/// environment variable and are kept; TLS `key`/`client_key` hold file paths and are kept.
fn redact(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let lower = k.to_ascii_lowercase();
                let secret = !lower.ends_with("_env")
                    && ["password", "secret", "token"]
                        .iter()
                        .any(|s| lower.contains(s));
                if secret && !v.is_null() {
                    *v = serde_json::Value::String("<redacted>".to_string());
                } else {
                    redact(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights() {
        assert_eq!(parse_weight(br#"{"weight": 0}"#), Ok(0));
        assert_eq!(parse_weight(br#"{"weight": 10000}"#), Ok(10000));
        assert!(parse_weight(br#"{"weight": 10001}"#).is_err());
        assert!(parse_weight(br#"{"weight": -1}"#).is_err());
        assert!(parse_weight(br#"{"weight": 1.5}"#).is_err());
        assert!(parse_weight(br#"{"w": 1}"#).is_err());
        assert!(parse_weight(b"nope").is_err());
    }

    #[test]
    fn matching() {
        let id = ServerId::new("g", "127.0.0.1:80");
        assert!(addresses(&id, "127.0.0.1:80"));
        assert!(addresses(&id, "g/127.0.0.1:80"));
        assert!(!addresses(&id, "127.0.0.1:8"));
        let named = ServerId::new("g", "api.local:80#10.0.0.1");
        assert!(addresses(&named, "api.local:80"));
        assert!(addresses(&named, "api.local:80#10.0.0.1"));
        assert!(!addresses(&named, "api.local:80#10.0.0.2"));
    }

    #[test]
    fn redaction_keeps_env_names() {
        let mut v =
            json!({"admin": {"token_env": "X"}, "a": [{"password": "p", "secret_key": null}]});
        redact(&mut v);
        assert_eq!(v["admin"]["token_env"], "X");
        assert_eq!(v["a"][0]["password"], "<redacted>");
        assert!(v["a"][0]["secret_key"].is_null());
    }
}
