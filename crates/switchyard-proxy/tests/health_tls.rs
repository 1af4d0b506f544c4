//! HTTPS and two-way TLS health checks, from an upstream's `tls` table to a handshake with a TLS
//! origin on 127.0.0.1 (rcgen certificates): the files are loaded once by the gateway
//! (`UpstreamTlsRuntime::load`) and checks trust exactly what traffic trusts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use switchyard_balance::{Algorithm, Pool, PoolOptions, ServerId, ServerSpec, StatsStore};
use switchyard_health::{CheckResult, UpstreamHealth};
use switchyard_proxy::health_spec::health_spec;
use switchyard_proxy::upstream_tls::UpstreamTlsRuntime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Certificates written to a temporary directory.
struct Pki {
    _dir: tempfile::TempDir,
    /// The origin's self-signed certificate for `health.test`.
    server_cert: CertificateDer<'static>,
    server_key: PrivateKeyDer<'static>,
    server_cert_pem: PathBuf,
    /// A self-signed client certificate, trusted by the two-way TLS origin.
    client_cert: CertificateDer<'static>,
    client_cert_pem: PathBuf,
    client_key_pem: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let server = rcgen::generate_simple_self_signed(vec!["health.test".to_string()]).unwrap();
        let client = rcgen::generate_simple_self_signed(vec!["client.test".to_string()]).unwrap();
        let write = |name: &str, text: String| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        Pki {
            server_cert: server.cert.der().clone(),
            server_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                server.signing_key.serialize_der(),
            )),
            server_cert_pem: write("server.pem", server.cert.pem()),
            client_cert: client.cert.der().clone(),
            client_cert_pem: write("client.pem", client.cert.pem()),
            client_key_pem: write("client.key", client.signing_key.serialize_pem()),
            _dir: dir,
        }
    }

    /// The origin's TLS settings; with `require_client_cert`, only the test client certificate
    /// is accepted.
    fn server_config(&self, require_client_cert: bool) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if require_client_cert {
            let mut roots = RootCertStore::empty();
            roots.add(self.client_cert.clone()).unwrap();
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        Arc::new(
            builder
                .with_single_cert(vec![self.server_cert.clone()], self.server_key.clone_key())
                .unwrap(),
        )
    }
}

/// A TLS origin answering every request `200 ok`; counts the requests it answered.
struct TlsOrigin {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl TlsOrigin {
    async fn start(config: Arc<ServerConfig>) -> TlsOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, counter) = (acceptor.clone(), Arc::clone(&counter));
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let answer =
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
                    let _ = tls.write_all(answer).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        TlsOrigin { addr, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// One round of HTTPS checks of `origin` with `tls = { <tls> }`: the server's verdict and the
/// check's result.
async fn check_once(tls: &str, origin: &TlsOrigin) -> (bool, Option<CheckResult>) {
    let cfg = switchyard_config::parse_str(&format!(
        r#"
[[upstreams]]
name = "api"
scheme = "https"
tls = {{ {tls} }}
  [upstreams.health.active]
  protocol = "https"
  path = "/health"
  interval_ms = 60000
  timeout_ms = 1000
  [[upstreams.groups]]
  name = "g"
  servers = [{{ address = "127.0.0.1", port = {} }}]
"#,
        origin.addr.port()
    ))
    .unwrap();
    let up = cfg.upstream("api").unwrap();
    let loaded = UpstreamTlsRuntime::load(up.tls.as_ref()).unwrap();
    let checks = health_spec(up, &cfg.listeners, Some(&loaded));
    let opts = PoolOptions::new(Algorithm::Wrr).initially_healthy(checks.initially_healthy());
    let spec = ServerSpec::new("g", origin.addr, 1);
    let pool = Arc::new(Pool::new(
        "api",
        opts,
        vec![spec],
        Arc::new(StatsStore::default()),
    ));
    let health = UpstreamHealth::new(Arc::clone(&pool), &checks).unwrap();
    health.initial_round().await;
    let view = health
        .server(&ServerId::new("g", &origin.addr.to_string()))
        .unwrap();
    (
        pool.snapshot().servers()[0].stats.is_healthy(),
        view.last_check,
    )
}

#[tokio::test]
async fn https_self_signed_origin() {
    let pki = Pki::new();
    let origin = TlsOrigin::start(pki.server_config(false)).await;
    let ca = pki.server_cert_pem.display();

    let (ok, r) = check_once("verify = false", &origin).await;
    assert!(ok, "verify=false: {r:?}");

    let (ok, r) = check_once(
        &format!("verify = true, ca = \"{ca}\", sni = \"health.test\""),
        &origin,
    )
    .await;
    assert!(ok, "verify=true with ca and sni: {r:?}");

    // Without `ca`, traffic trusts the platform's roots only: so do checks.
    let (ok, r) = check_once("verify = true, sni = \"health.test\"", &origin).await;
    assert!(!ok, "verify=true without the ca must fail");
    assert!(matches!(r, Some(CheckResult::Tls(_))), "{r:?}");

    // The right CA but the default SNI (127.0.0.1) does not match the certificate.
    let (ok, r) = check_once(&format!("verify = true, ca = \"{ca}\""), &origin).await;
    assert!(!ok, "wrong name must fail: {r:?}");
    assert_eq!(origin.hits(), 2);
}

#[tokio::test]
async fn two_way_tls_origin_requires_the_client_certificate() {
    let pki = Pki::new();
    let origin = TlsOrigin::start(pki.server_config(true)).await;
    let ca = pki.server_cert_pem.display();
    let cert = pki.client_cert_pem.display();
    let key = pki.client_key_pem.display();

    let (ok, r) = check_once(
        &format!(
            "verify = true, ca = \"{ca}\", sni = \"health.test\", \
             client_cert = \"{cert}\", client_key = \"{key}\""
        ),
        &origin,
    )
    .await;
    assert!(ok, "with the client certificate: {r:?}");

    let (ok, r) = check_once(
        &format!("verify = true, ca = \"{ca}\", sni = \"health.test\""),
        &origin,
    )
    .await;
    assert!(!ok, "without a client certificate must fail: {r:?}");
    assert_eq!(origin.hits(), 1);
}
