//! The extension point: inspect or change requests and responses without forking the service.
//!
//! Implement [`Extension`] and register it when building the gateway
//! ([`crate::Gateway::builder`]). Every hook has a default that does nothing, so an extension
//! implements only what it needs. Hooks run in registration order, on every listener.
//!
//! | hook | when | typical use |
//! |---|---|---|
//! | [`Extension::before_routing`] | after the security group and loop checks, before the route is matched | custom routing by rewriting the path or Host; early answers |
//! | [`Extension::on_request`] | after routing, before a server is picked | authentication, per-route policy |
//! | [`Extension::on_upstream_request`] | before each attempt's request goes to the server | header rules |
//! | [`Extension::on_response`] | before the response goes to the client | header rules, cookies |
//!
//! Per-request state goes into [`ExtContext`] (a typed map shared by every hook of the request).
//!
//! ```
//! use async_trait::async_trait;
//! use pingora::http::RequestHeader;
//! use switchyard_proxy::extension::{Decision, ExtContext, Extension, RequestInfo};
//!
//! /// Answers 401 unless `x-api-key` is `open-sesame`.
//! struct ApiKey;
//!
//! #[async_trait]
//! impl Extension for ApiKey {
//!     fn name(&self) -> &str {
//!         "api-key"
//!     }
//!     async fn on_request(&self, req: &mut RequestHeader, _info: &RequestInfo<'_>, _ctx: &mut ExtContext) -> Decision {
//!         match req.headers.get("x-api-key") {
//!             Some(v) if v == "open-sesame" => Decision::Continue,
//!             _ => Decision::respond(401, "missing or wrong API key\n"),
//!         }
//!     }
//! }
//! ```

use std::net::IpAddr;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use switchyard_balance::ServerId;
use switchyard_config::RouteConfig;

/// Per-request state for extensions: a typed map (`insert::<T>`, `get::<T>`).
pub type ExtContext = http::Extensions;

/// What an extension sees of the request besides its headers.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    /// The listener's name.
    pub listener: &'a str,
    /// The matched route (`None` before routing).
    pub route: Option<&'a RouteConfig>,
    /// The chosen server (set for upstream-request and response hooks when a server answered).
    pub server: Option<&'a ServerId>,
    /// The client's address (the PROXY-protocol source when accepted).
    pub client_ip: Option<IpAddr>,
}

/// What to do with a request after a request hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go on.
    Continue,
    /// Answer the client now; the request goes no further.
    Respond {
        /// Status code.
        status: u16,
        /// Extra response headers.
        headers: Vec<(String, String)>,
        /// Body.
        body: Bytes,
    },
}

impl Decision {
    /// A plain-text answer.
    ///
    /// ```
    /// let d = switchyard_proxy::extension::Decision::respond(403, "no\n");
    /// assert!(matches!(d, switchyard_proxy::extension::Decision::Respond { status: 403, .. }));
    /// ```
    pub fn respond(status: u16, body: &'static str) -> Decision {
        Decision::Respond {
            status,
            headers: vec![(
                "content-type".to_string(),
                "text/plain; charset=utf-8".to_string(),
            )],
            body: Bytes::from_static(body.as_bytes()),
        }
    }
}

/// A request/response hook set registered with the gateway. See the module documentation.
#[async_trait]
pub trait Extension: Send + Sync + 'static {
    /// A short name for logs.
    fn name(&self) -> &str;

    /// Before the route is matched: may rewrite the path or Host (custom routing) or answer.
    async fn before_routing(
        &self,
        req: &mut RequestHeader,
        info: &RequestInfo<'_>,
        ctx: &mut ExtContext,
    ) -> Decision {
        let _ = (req, info, ctx);
        Decision::Continue
    }

    /// After routing, before a server is picked: may change the request or answer (auth).
    async fn on_request(
        &self,
        req: &mut RequestHeader,
        info: &RequestInfo<'_>,
        ctx: &mut ExtContext,
    ) -> Decision {
        let _ = (req, info, ctx);
        Decision::Continue
    }

    /// Before each attempt's request goes to the server (after Switchyard's own header changes).
    async fn on_upstream_request(
        &self,
        req: &mut RequestHeader,
        info: &RequestInfo<'_>,
        ctx: &mut ExtContext,
    ) -> pingora::Result<()> {
        let _ = (req, info, ctx);
        Ok(())
    }

    /// Before the response goes to the client (also for the gateway's own error answers from
    /// upstream failures, not for answers given by a request hook).
    async fn on_response(
        &self,
        resp: &mut ResponseHeader,
        info: &RequestInfo<'_>,
        ctx: &mut ExtContext,
    ) -> pingora::Result<()> {
        let _ = (resp, info, ctx);
        Ok(())
    }
}
