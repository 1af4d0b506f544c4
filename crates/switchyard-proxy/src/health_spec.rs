//! An upstream's health settings for `switchyard-health`, built from its configuration.

use std::time::Duration;

use switchyard_config::{
    CheckMethod, CheckProtocol, ListenerConfig, ProxyProtocol, Scheme, UpstreamConfig,
};
use switchyard_health::{
    GrpcProbe, HealthSpec, HttpProbe, PassiveSpec, ProbeKind, ProbeSpec, ProxyHeader, TlsClient,
};

use crate::upstream_tls::UpstreamTlsRuntime;

/// The health settings of `up` (a configuration's `listeners` decide the PROXY header checks
/// send, see [`UpstreamConfig::check_proxy_protocol`]). `tls`: the upstream's loaded TLS
/// material, needed by HTTPS checks (see [`needs_tls`]).
///
/// ```
/// let cfg = switchyard_config::parse_str(r#"
/// [[upstreams]]
/// name = "api"
///   [upstreams.health.active]
///   path = "/ready"
///   status_codes = ["200-299"]
///   [[upstreams.groups]]
///   name = "g"
///   servers = [{ address = "127.0.0.1", port = 8080 }]
/// "#).unwrap();
/// let up = cfg.upstream("api").unwrap();
/// let spec = switchyard_proxy::health_spec::health_spec(up, &cfg.listeners, None);
/// assert!(!spec.initially_healthy());
/// ```
pub fn health_spec(
    up: &UpstreamConfig,
    listeners: &[ListenerConfig],
    tls: Option<&UpstreamTlsRuntime>,
) -> HealthSpec {
    let active = up.health.active.as_ref().map(|a| {
        let http = |tls: Option<TlsClient>| {
            ProbeKind::Http(HttpProbe {
                method: match a.method() {
                    CheckMethod::Get => http::Method::GET,
                    CheckMethod::Head => http::Method::HEAD,
                },
                path: a.path().to_string(),
                host: a.host.clone(),
                status_codes: a.status_codes().iter().map(|r| r.lo..=r.hi).collect(),
                tls,
            })
        };
        let kind = match a.protocol {
            CheckProtocol::Tcp => ProbeKind::Tcp,
            CheckProtocol::Http => http(None),
            CheckProtocol::Https => http(tls.map(|t| TlsClient {
                config: std::sync::Arc::clone(&t.checks),
                sni: t.sni.clone(),
            })),
            // Over the upstream's HTTP/2: h2 with its TLS on `https`, h2c on `http`.
            CheckProtocol::Grpc => ProbeKind::Grpc(GrpcProbe {
                service: a.grpc_service().to_string(),
                authority: a.host.clone(),
                tls: match up.scheme {
                    Scheme::Https => tls.map(|t| TlsClient {
                        config: std::sync::Arc::clone(&t.checks_h2),
                        sni: t.sni.clone(),
                    }),
                    Scheme::Http => None,
                },
            }),
        };
        ProbeSpec {
            kind,
            port: a.port,
            thresholds: switchyard_health::Thresholds::new(
                a.healthy_threshold,
                a.unhealthy_threshold,
            ),
            timeout: Duration::from_millis(a.timeout_ms),
            interval: Duration::from_millis(a.interval_ms),
            proxy_header: match up.check_proxy_protocol(listeners) {
                ProxyProtocol::Off => ProxyHeader::None,
                ProxyProtocol::V1 => ProxyHeader::V1,
                ProxyProtocol::V2 => ProxyHeader::V2,
            },
        }
    });
    let passive = up.health.passive.as_ref().map(|p| PassiveSpec {
        unhealthy_statuses: p.unhealthy_statuses.clone(),
        unhealthy_threshold: p.unhealthy_threshold,
        ejection: Duration::from_millis(p.ejection_ms),
        max_ejection_percent: p.max_ejection_percent,
    });
    HealthSpec { active, passive }
}

/// True if `up`'s TLS material must be loaded: for traffic (`scheme = "https"`, which gRPC
/// checks follow too) or for HTTPS checks.
pub fn needs_tls(up: &UpstreamConfig) -> bool {
    up.scheme == switchyard_config::Scheme::Https
        || up
            .health
            .active
            .as_ref()
            .is_some_and(|a| a.protocol == CheckProtocol::Https)
}
