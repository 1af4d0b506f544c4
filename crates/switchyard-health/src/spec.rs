//! What to check and how to judge: the health layer's own settings, built by whoever embeds it
//! (the gateway builds them from its TOML; a library user from anything).
//!
//! ```
//! use std::time::Duration;
//! use switchyard_health::{HealthSpec, HttpProbe, PassiveSpec, ProbeSpec};
//!
//! let spec = HealthSpec {
//!     active: Some(
//!         ProbeSpec::http(HttpProbe::get("/health").status_codes([200..=299]))
//!             .interval(Duration::from_secs(2))
//!             .thresholds(2, 3),
//!     ),
//!     passive: Some(PassiveSpec::default()),
//! };
//! assert!(!spec.initially_healthy()); // with active checks, servers wait for their first pass
//! ```

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;

use crate::machine::Thresholds;

/// The health settings of one upstream.
#[derive(Debug, Clone, Default)]
pub struct HealthSpec {
    /// Active checks; `None`: servers are healthy unless passive checks eject them.
    pub active: Option<ProbeSpec>,
    /// Passive outlier detection; `None`: proxied responses never eject a server.
    pub passive: Option<PassiveSpec>,
}

impl HealthSpec {
    /// The health a server seen for the first time starts with: `false` with active checks (out
    /// of rotation until a check passes), `true` otherwise. Pass it to
    /// `PoolOptions::initially_healthy`.
    ///
    /// ```
    /// use switchyard_health::{HealthSpec, ProbeSpec};
    /// assert!(HealthSpec::default().initially_healthy());
    /// let checked = HealthSpec { active: Some(ProbeSpec::tcp()), passive: None };
    /// assert!(!checked.initially_healthy());
    /// ```
    pub fn initially_healthy(&self) -> bool {
        self.active.is_none()
    }
}

/// One upstream's active check.
#[derive(Debug, Clone)]
pub struct ProbeSpec {
    /// What a check does once connected.
    pub kind: ProbeKind,
    /// The port checked; `0`: the server's own.
    pub port: u16,
    /// Consecutive results that change a server's state.
    pub thresholds: Thresholds,
    /// A whole check (connect, TLS, request, response) must end within this.
    pub timeout: Duration,
    /// Time between two checks of a server (±10% jitter).
    pub interval: Duration,
    /// Sent first on every check connection.
    pub proxy_header: ProxyHeader,
}

impl ProbeSpec {
    /// A TCP connect check, with the defaults of [`ProbeSpec::http`].
    pub fn tcp() -> Self {
        Self::of(ProbeKind::Tcp)
    }

    /// An HTTP(S) check: thresholds 3/3, timeout 5 s, interval 3 s, no PROXY header.
    ///
    /// ```
    /// use switchyard_health::{HttpProbe, ProbeSpec};
    /// let p = ProbeSpec::http(HttpProbe::get("/health"));
    /// assert_eq!((p.thresholds.healthy, p.thresholds.unhealthy), (3, 3));
    /// ```
    pub fn http(probe: HttpProbe) -> Self {
        Self::of(ProbeKind::Http(probe))
    }

    /// A gRPC health check, with the defaults of [`ProbeSpec::http`].
    pub fn grpc(probe: GrpcProbe) -> Self {
        Self::of(ProbeKind::Grpc(probe))
    }

    fn of(kind: ProbeKind) -> Self {
        ProbeSpec {
            kind,
            port: 0,
            thresholds: Thresholds::new(3, 3),
            timeout: Duration::from_secs(5),
            interval: Duration::from_secs(3),
            proxy_header: ProxyHeader::None,
        }
    }

    /// Sets the port checked (`0`: the server's own).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
    /// Sets the healthy and unhealthy thresholds (zeros become one).
    pub fn thresholds(mut self, healthy: u32, unhealthy: u32) -> Self {
        self.thresholds = Thresholds::new(healthy, unhealthy);
        self
    }
    /// Sets the timeout of one check.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// Sets the interval between checks.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }
    /// Sets the PROXY header sent first.
    pub fn proxy_header(mut self, header: ProxyHeader) -> Self {
        self.proxy_header = header;
        self
    }
}

/// What a check does once connected.
#[derive(Debug, Clone)]
pub enum ProbeKind {
    /// Nothing: a successful connect passes.
    Tcp,
    /// An HTTP/1.1 request, over TLS when [`HttpProbe::tls`] is set.
    Http(HttpProbe),
    /// A `grpc.health.v1.Health/Check` call over HTTP/2 (h2c, or h2 over TLS when
    /// [`GrpcProbe::tls`] is set).
    Grpc(GrpcProbe),
}

/// A gRPC health check: `grpc.health.v1.Health/Check` for [`GrpcProbe::service`]; `SERVING`
/// passes, any other answer or a gRPC error fails.
///
/// ```
/// use switchyard_health::{GrpcProbe, ProbeSpec};
/// let p = ProbeSpec::grpc(GrpcProbe::service("echo.Echo"));
/// assert!(matches!(p.kind, switchyard_health::ProbeKind::Grpc(ref g) if g.service == "echo.Echo"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct GrpcProbe {
    /// The service name sent in the request (`""`: the server as a whole).
    pub service: String,
    /// The `:authority`; `None`: the server's `host:port`.
    pub authority: Option<String>,
    /// TLS (h2 negotiated by ALPN; the configuration must offer `h2`); `None`: h2c.
    pub tls: Option<TlsClient>,
}

impl GrpcProbe {
    /// A check of `service` (`""`: the whole server) over h2c.
    pub fn service(service: &str) -> Self {
        GrpcProbe {
            service: service.to_string(),
            ..GrpcProbe::default()
        }
    }
    /// Sets the `:authority`.
    pub fn authority(mut self, authority: &str) -> Self {
        self.authority = Some(authority.to_string());
        self
    }
    /// Checks over TLS.
    pub fn tls(mut self, tls: TlsClient) -> Self {
        self.tls = Some(tls);
        self
    }
}

/// An HTTP(S) check request and the statuses that pass it.
#[derive(Debug, Clone)]
pub struct HttpProbe {
    /// `GET` (the body is read, up to 64 KiB) or `HEAD`.
    pub method: http::Method,
    /// The request target (a leading `/` is added when missing).
    pub path: String,
    /// The `Host` header; `None`: the server's `host:port`.
    pub host: Option<String>,
    /// Statuses that pass.
    pub status_codes: Vec<RangeInclusive<u16>>,
    /// TLS (HTTPS checks); `None`: plain HTTP.
    pub tls: Option<TlsClient>,
}

impl HttpProbe {
    /// A `GET` of `path` that passes on 200.
    pub fn get(path: &str) -> Self {
        HttpProbe {
            method: http::Method::GET,
            path: path.to_string(),
            host: None,
            status_codes: vec![200..=200],
            tls: None,
        }
    }
    /// Sets the method.
    pub fn method(mut self, method: http::Method) -> Self {
        self.method = method;
        self
    }
    /// Sets the `Host` header.
    pub fn host(mut self, host: &str) -> Self {
        self.host = Some(host.to_string());
        self
    }
    /// Sets the statuses that pass.
    pub fn status_codes(mut self, ranges: impl IntoIterator<Item = RangeInclusive<u16>>) -> Self {
        self.status_codes = ranges.into_iter().collect();
        self
    }
    /// Checks over TLS.
    pub fn tls(mut self, tls: TlsClient) -> Self {
        self.tls = Some(tls);
        self
    }
}

/// The TLS client side of HTTPS checks: a rustls configuration built once per upstream (by the
/// gateway, from the same files and trust rules as its traffic) and the name to send in SNI.
#[derive(Debug, Clone)]
pub struct TlsClient {
    /// The rustls client configuration (roots or no verification, client certificate, ALPN).
    pub config: Arc<ClientConfig>,
    /// The SNI name (and the name verified); `None`: the host part of the server's address.
    pub sni: Option<String>,
}

/// The PROXY protocol header a check connection starts with. A check carries no client, so it is
/// the specification's form for a connection the proxy opened itself: v1 `PROXY UNKNOWN`, v2
/// `LOCAL`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProxyHeader {
    /// None.
    #[default]
    None,
    /// `PROXY UNKNOWN\r\n`.
    V1,
    /// The version 2 signature with command `LOCAL`.
    V2,
}

/// Passive outlier detection of one upstream.
#[derive(Debug, Clone)]
pub struct PassiveSpec {
    /// Response statuses that count as failures.
    pub unhealthy_statuses: Vec<u16>,
    /// Consecutive failures that eject a server (zero becomes one).
    pub unhealthy_threshold: u32,
    /// Without active checks, an ejected server returns after this.
    pub ejection: Duration,
    /// Never eject more than this share (percent) of the upstream's servers.
    pub max_ejection_percent: u32,
}

impl Default for PassiveSpec {
    /// Statuses 500, 502, 503, 504; threshold 3; ejection 30 s; at most 50% ejected.
    fn default() -> Self {
        PassiveSpec {
            unhealthy_statuses: vec![500, 502, 503, 504],
            unhealthy_threshold: 3,
            ejection: Duration::from_secs(30),
            max_ejection_percent: 50,
        }
    }
}
