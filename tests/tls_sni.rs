//! TLS listeners (issue 19), over real sockets with certificates generated per test (rcgen) and
//! real TLS clients (rustls): the certificate chosen by SNI (exact, wildcard, unknown, absent),
//! certificates re-read by `POST /api/reload` and `SIGHUP` while requests keep flowing (a
//! handshake begun before a reload keeps its certificates), client certificates (`required`,
//! `optional`) with `X-Client-Cert-Subject` as the origin receives it, `min_version`, the
//! handshake deadline, bad certificates as config errors with their key path, and
//! `conf/tls-sni.toml`.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Accepts any server certificate: the tests compare the served certificate byte for byte.
#[derive(Debug)]
struct AnyServerCert;

impl rustls::client::danger::ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &ring_provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &ring_provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        ring_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// How a [`probe`] connects.
#[derive(Default, Clone, Copy)]
struct Hello<'a> {
    /// The SNI name (`None`: none is sent, as for an IP address).
    sni: Option<&'a str>,
    /// A client certificate to present.
    client: Option<&'a IssuedCert>,
    /// Offer TLS 1.2 only.
    tls12_only: bool,
}

/// What one connection saw.
#[derive(Debug)]
struct Probe {
    /// The leaf certificate the server presented.
    leaf: Vec<u8>,
    /// The negotiated version.
    version: Option<rustls::ProtocolVersion>,
    /// Everything the server sent after the handshake (the HTTP response).
    response: String,
}

impl Probe {
    fn ok(&self) -> bool {
        self.response.starts_with("HTTP/1.1 200")
    }
}

/// One `GET <path>` (with `extra` header lines) on a new TLS connection to `addr`; an error if
/// the handshake or the exchange fails. Bounded by 5 s per step.
async fn probe(
    addr: SocketAddr,
    hello: Hello<'_>,
    path: &str,
    extra: &str,
) -> Result<Probe, String> {
    let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    probe_on(tcp, hello, path, extra).await
}

/// Like [`probe`], with the TLS handshake on an already open connection.
async fn probe_on(
    tcp: tokio::net::TcpStream,
    hello: Hello<'_>,
    path: &str,
    extra: &str,
) -> Result<Probe, String> {
    let addr = tcp.peer_addr().map_err(|e| format!("peer_addr: {e}"))?;
    let versions: &[&'static rustls::SupportedProtocolVersion] = if hello.tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = rustls::ClientConfig::builder_with_provider(ring_provider())
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCert));
    let mut config = match hello.client {
        Some(c) => builder
            .with_client_auth_cert(vec![c.cert_der.clone()], c.private_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = match hello.sni {
        Some(n) => ServerName::try_from(n.to_string()).unwrap(),
        None => ServerName::IpAddress(addr.ip().into()),
    };
    let step = Duration::from_secs(5);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut tls = tokio::time::timeout(step, connector.connect(name, tcp))
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| format!("handshake: {e}"))?;
    let (leaf, version) = {
        let conn = tls.get_ref().1;
        let leaf = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default();
        (leaf, conn.protocol_version())
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\n{extra}Connection: close\r\n\r\n",
        hello.sni.unwrap_or("127.0.0.1")
    );
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(step, tls.read_to_end(&mut buf))
        .await
        .map_err(|_| "read timed out".to_string())?;
    if let Err(e) = read {
        // A peer that closes without close_notify still delivered its response.
        if buf.is_empty() {
            return Err(format!("read: {e}"));
        }
    }
    Ok(Probe {
        leaf,
        version,
        response: String::from_utf8_lossy(&buf).into_owned(),
    })
}

fn toml_str(p: &Path) -> String {
    toml::Value::String(p.display().to_string()).to_string()
}

/// `{ cert = "...", key = "..." }` for files written by [`IssuedCert::write`].
fn pair(files: &(std::path::PathBuf, std::path::PathBuf)) -> String {
    format!(
        "{{ cert = {}, key = {} }}",
        toml_str(&files.0),
        toml_str(&files.1)
    )
}

/// An `https` listener `name` on `addr` with the `tls` inline table `tls`.
fn https_listener(name: &str, addr: &str, tls: &str) -> String {
    format!("[[listeners]]\nname = \"{name}\"\nprotocol = \"https\"\nlisten = \"{addr}\"\ntls = {tls}\n\n")
}

/// A gateway config: `[metrics]`, `[admin]` (loopback, no token), `extra` (listeners, limits),
/// and one route to the origin at `origin`.
struct Layout {
    server: String,
    metrics: String,
    admin: String,
}

impl Layout {
    fn new(prefix: &str) -> Layout {
        Layout {
            server: server_section(prefix),
            metrics: free_addr(),
            admin: free_addr(),
        }
    }

    fn config(&self, extra: &str, origin: SocketAddr) -> String {
        format!(
            "{}[metrics]\nlisten = \"{}\"\n\n[admin]\nlisten = \"{}\"\n\n{extra}\
             [[routes]]\nname = \"all\"\npath_prefix = \"/\"\nupstream = \"u\"\n\n{}",
            self.server,
            self.metrics,
            self.admin,
            upstream_section_for("u", &[origin]),
        )
    }
}

async fn admin_json(method: reqwest::Method, url: &str) -> (u16, serde_json::Value) {
    let resp = client().request(method, url).send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, v)
}

/// 2030-01-01T00:00:00Z.
const Y2030: i64 = 1_893_456_000;

fn expiring_2030(p: &mut rcgen::CertificateParams) {
    p.not_after = rcgen::date_time_ymd(2030, 1, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_chooses_exact_then_wildcard_then_the_default_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("sni test CA");
    let default = ca.issue(&["localhost"]);
    let wild = ca.issue(&["*.example.test"]);
    let api = ca.issue_with(&["api.example.test"], expiring_2030);
    // Listed after `api`: `api.example.test` stays api's; `dup.example.test` is its own.
    let dup = ca.issue(&["api.example.test", "dup.example.test"]);
    let files = [
        default.write(dir.path(), "default"),
        wild.write(dir.path(), "wild"),
        api.write(dir.path(), "api"),
        dup.write(dir.path(), "dup"),
    ];
    let o = RawOrigin::start("o");
    let layout = Layout::new("tls-sni");
    let tls = format!(
        "{{ cert = {}, key = {}, certificates = [ {}, {}, {} ] }}",
        toml_str(&files[0].0),
        toml_str(&files[0].1),
        pair(&files[1]),
        pair(&files[2]),
        pair(&files[3]),
    );
    let gw =
        Gateway::start(&layout.config(&https_listener("secure", &free_addr(), &tls), o.addr()));
    let addr = gw.listener("secure");

    let cases: [(Option<&str>, &IssuedCert, &str); 8] = [
        (Some("api.example.test"), &api, "exact beats the wildcard"),
        (Some("API.Example.TEST"), &api, "case-insensitive"),
        (Some("www.example.test"), &wild, "wildcard"),
        (
            Some("dup.example.test"),
            &dup,
            "a later certificate's own name",
        ),
        (
            Some("a.b.example.test"),
            &default,
            "a wildcard covers one label",
        ),
        (Some("example.test"), &default, "a wildcard needs a label"),
        (Some("unknown.test"), &default, "unknown name"),
        (None, &default, "no SNI"),
    ];
    for (i, (sni, want, why)) in cases.iter().enumerate() {
        let path = format!("/case/{i}");
        let hello = Hello {
            sni: *sni,
            ..Default::default()
        };
        let p = probe(addr, hello, &path, "").await.unwrap();
        assert!(
            p.leaf == want.cert_der.to_vec(),
            "{sni:?} ({why}): wrong certificate"
        );
        assert!(p.ok(), "{sni:?}: {}", p.response);
        assert!(
            o.requests().iter().any(|r| r.target() == path),
            "{sni:?}: not proxied"
        );
    }

    // The expiry of each served name, for alerting.
    let m = gw.metrics().await;
    let expiry = |name: &str| {
        metric_sum(
            &m,
            "switchyard_tls_certificate_expiry_seconds",
            &[("listener", "secure"), ("name", name)],
        )
    };
    assert_eq!(expiry("api.example.test"), Y2030 as f64);
    assert!(expiry("*.example.test") > Y2030 as f64);
    assert!(expiry("(default)") > 0.0);

    // The admin API and the status page show each certificate's names and expiry.
    let (status, cfg) = admin_json(reqwest::Method::GET, &gw.admin_url("/api/config")).await;
    assert_eq!(status, 200);
    let loaded = &cfg["listeners"][0]["tls"]["loaded_certificates"];
    assert_eq!(loaded.as_array().map(|a| a.len()), Some(4), "{cfg:#}");
    assert_eq!(loaded[0]["default"], true);
    assert_eq!(loaded[2]["names"], serde_json::json!(["api.example.test"]));
    assert_eq!(loaded[2]["not_after"], "2030-01-01T00:00:00Z");
    assert_eq!(loaded[2]["not_after_unix"], Y2030);
    assert_eq!(
        loaded[3]["served_names"],
        serde_json::json!(["dup.example.test"]),
        "{loaded:#}"
    );
    let page = client()
        .get(gw.admin_url("/status"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"certificates\""), "{page}");
    assert!(page.contains("api.example.test</td>"), "{page}");
    assert!(page.contains("2030-01-01 00:00:00 UTC"), "{page}");
}

/// Runs probes with SNI `sni` on new connections until `stop`, at most 1,500 or 40 s; records
/// each outcome and counts them in `done`.
fn request_loop(
    addr: SocketAddr,
    sni: &'static str,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Vec<Result<Vec<u8>, String>>> {
    tokio::spawn(async move {
        let mut out = Vec::new();
        let started = Instant::now();
        while !stop.load(Ordering::SeqCst)
            && out.len() < 1_500
            && started.elapsed() < Duration::from_secs(40)
        {
            let hello = Hello {
                sni: Some(sni),
                ..Default::default()
            };
            let r = match probe(addr, hello, "/loop", "").await {
                Ok(p) if p.ok() => Ok(p.leaf),
                Ok(p) => Err(format!(
                    "status: {}",
                    p.response.lines().next().unwrap_or("")
                )),
                Err(e) => Err(e),
            };
            out.push(r);
            done.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        out
    })
}

/// Waits (≤ 10 s) until the request loop has run `n` more requests.
async fn loop_runs(done: &AtomicUsize, n: usize) {
    let target = done.load(Ordering::SeqCst) + n;
    let started = Instant::now();
    while done.load(Ordering::SeqCst) < target && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        done.load(Ordering::SeqCst) >= target,
        "the request loop stalled"
    );
}

/// Polls (≤ `within`) until a probe with `sni` gets `want`; returns how long it took.
async fn serves_within(
    addr: SocketAddr,
    sni: &str,
    want: &IssuedCert,
    within: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        let hello = Hello {
            sni: Some(sni),
            ..Default::default()
        };
        if let Ok(p) = probe(addr, hello, "/poll", "").await {
            if p.leaf == want.cert_der.to_vec() {
                return Some(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_reloaded_by_the_admin_api_and_sighup_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("reload test CA");
    let default = ca.issue(&["localhost"]).write(dir.path(), "default");
    let api_v1 = ca.issue(&["api.example.test"]);
    let api_files = api_v1.write(dir.path(), "api");
    let o = RawOrigin::start("o");
    let layout = Layout::new("tls-reload");
    let listen = free_addr();
    let config = |entries: &str| {
        layout.config(
            &https_listener(
                "secure",
                &listen,
                &format!(
                    "{{ cert = {}, key = {}, certificates = [ {entries} ] }}",
                    toml_str(&default.0),
                    toml_str(&default.1)
                ),
            ),
            o.addr(),
        )
    };
    let gw = Gateway::start(&config(&pair(&api_files)));
    let pid = gw.pid();
    let addr = gw.listener("secure");
    assert!(
        serves_within(addr, "api.example.test", &api_v1, Duration::from_secs(2))
            .await
            .is_some()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let load = request_loop(
        addr,
        "api.example.test",
        Arc::clone(&stop),
        Arc::clone(&done),
    );
    loop_runs(&done, 5).await;

    // A connection accepted before the reload: its handshake keeps the certificates it started
    // with, even though its ClientHello comes after the reload.
    let pending = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // 1. Rotation: the same files get a new certificate and key; the config text is unchanged.
    let api_v2 = ca.issue(&["api.example.test"]);
    api_v2.write(dir.path(), "api");
    let (status, report) = admin_json(reqwest::Method::POST, &gw.admin_url("/api/reload")).await;
    assert_eq!(status, 200, "{report:#}");
    assert_eq!(report["needs_upgrade"], serde_json::json!([]), "{report:#}");
    let took = serves_within(addr, "api.example.test", &api_v2, Duration::from_secs(1)).await;
    assert!(
        took.is_some(),
        "the rotated certificate is not served within a second"
    );
    let hello = Hello {
        sni: Some("api.example.test"),
        ..Default::default()
    };
    let p = probe_on(pending, hello, "/pending", "").await.unwrap();
    assert!(p.ok(), "{}", p.response);
    assert!(
        p.leaf == api_v1.cert_der.to_vec(),
        "a handshake begun before the reload changed certificates"
    );
    loop_runs(&done, 3).await;

    // 2. A new entry, by SIGHUP.
    let new_cert = ca.issue(&["new.example.test"]);
    let new_files = new_cert.write(dir.path(), "new");
    gw.write_config(&config(&format!(
        "{}, {}",
        pair(&api_files),
        pair(&new_files)
    )));
    gw.signal("HUP");
    let took = serves_within(addr, "new.example.test", &new_cert, Duration::from_secs(5)).await;
    assert!(took.is_some(), "the new entry is not served after SIGHUP");
    loop_runs(&done, 3).await;

    // 3. A bad file (a key that is not the certificate's) keeps the running certificates and is
    // reported with its key path, like any invalid reload.
    let other = ca.issue(&["api.example.test"]);
    std::fs::write(&api_files.1, &other.key_pem).unwrap();
    let (status, report) = admin_json(reqwest::Method::POST, &gw.admin_url("/api/reload")).await;
    assert_eq!(status, 400, "{report:#}");
    let error = report["errors"][0].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains("listeners[0].tls.certificates[0].key"),
        "{report:#}"
    );
    assert!(error.contains("does not match"), "{report:#}");
    loop_runs(&done, 5).await;
    stop.store(true, Ordering::SeqCst);
    let outcomes = load.await.unwrap();

    let failures: Vec<&String> = outcomes.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {failures:?}",
        failures.len(),
        outcomes.len()
    );
    let last = outcomes.last().unwrap().as_ref().unwrap();
    assert!(
        *last == api_v2.cert_der.to_vec(),
        "after the bad reload, v2 is still served"
    );
    assert!(outcomes
        .iter()
        .any(|r| r.as_ref().is_ok_and(|l| *l == api_v1.cert_der.to_vec())));
    assert_eq!(gw.pid(), pid);
    let m = gw.metrics().await;
    assert_eq!(
        metric_sum(
            &m,
            "switchyard_config_reloads_total",
            &[("result", "failure")]
        ),
        1.0
    );
    assert_eq!(
        metric_sum(
            &m,
            "switchyard_config_reloads_total",
            &[("result", "success")]
        ),
        2.0
    );
    assert!(
        metric_sum(
            &m,
            "switchyard_tls_certificate_expiry_seconds",
            &[("listener", "secure"), ("name", "new.example.test")]
        ) > 0.0
    );
}

/// `switchyard_rejected_requests_total{listener, reason="handshake_failed"}`, once it reaches
/// `at_least` (polled ≤ 2 s; counting follows the closed connection asynchronously). The
/// harness's readiness check, a bare TCP connection, counts as one failed handshake.
async fn handshakes_failed(gw: &Gateway, listener: &str, at_least: f64) -> f64 {
    let started = Instant::now();
    loop {
        let n = metric_sum(
            &gw.metrics().await,
            "switchyard_rejected_requests_total",
            &[("listener", listener), ("reason", "handshake_failed")],
        );
        if n >= at_least || started.elapsed() > Duration::from_secs(2) {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The subject the origin should receive for `partner` certificates.
const PARTNER_SUBJECT: &str = "CN=client-1,O=Partner\\, Inc.";

fn partner_dn(p: &mut rcgen::CertificateParams) {
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, "Partner, Inc.");
    dn.push(rcgen::DnType::CommonName, "client-1");
    p.distinguished_name = dn;
}

/// The raw `X-Client-Cert-Subject` fields the origin received with the request for `path`
/// (`None`: the request never arrived).
fn subject_fields(o: &RawOrigin, path: &str) -> Option<Vec<String>> {
    o.requests()
        .iter()
        .find(|r| r.target() == path)
        .map(|r| r.fields("x-client-cert-subject"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_required_and_optional_with_the_subject_sent_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = TestCa::new("server CA");
    let partners = TestCa::new("partners CA");
    let strangers = TestCa::new("strangers CA");
    let good = partners.issue_with(&["client-1"], partner_dn);
    let stranger = strangers.issue_with(&["client-1"], partner_dn);
    let server = server_ca.issue(&["localhost"]).write(dir.path(), "server");
    let ca_path = partners.write(dir.path(), "partners.pem");
    let o = RawOrigin::start("o");
    let layout = Layout::new("tls-mtls");
    let tls = |mode: &str| {
        format!(
            "{{ cert = {}, key = {}, client_ca = {}, client_auth = \"{mode}\" }}",
            toml_str(&server.0),
            toml_str(&server.1),
            toml_str(&ca_path)
        )
    };
    let listeners = format!(
        "{}{}{}",
        https_listener("req", &free_addr(), &tls("required")),
        https_listener("opt", &free_addr(), &tls("optional")),
        listener_section("web", &free_addr()),
    );
    let gw = Gateway::start(&layout.config(&listeners, o.addr()));
    let forged = "X-Client-Cert-Subject: CN=admin\r\n";
    let failed_before = handshakes_failed(&gw, "req", 1.0).await;

    for listener in ["req", "opt"] {
        let addr = gw.listener(listener);
        // A good certificate: the verified subject, once, whatever the client sent.
        let path = format!("/{listener}/good");
        let hello = Hello {
            client: Some(&good),
            ..Default::default()
        };
        let p = probe(addr, hello, &path, forged).await.unwrap();
        assert!(p.ok(), "{listener}: {}", p.response);
        assert_eq!(
            subject_fields(&o, &path),
            Some(vec![PARTNER_SUBJECT.to_string()])
        );

        // A certificate from another CA fails the handshake in both modes.
        let path = format!("/{listener}/stranger");
        let hello = Hello {
            client: Some(&stranger),
            ..Default::default()
        };
        let r = probe(addr, hello, &path, forged).await;
        assert!(
            !r.as_ref().is_ok_and(|p| p.ok()),
            "{listener}: a stranger was served: {r:?}"
        );
        assert_eq!(
            subject_fields(&o, &path),
            None,
            "{listener}: a stranger reached the origin"
        );

        // No certificate: refused by `required`; served without the header by `optional`.
        let path = format!("/{listener}/none");
        let r = probe(addr, Hello::default(), &path, forged).await;
        if listener == "req" {
            assert!(
                !r.as_ref().is_ok_and(|p| p.ok()),
                "required served no certificate: {r:?}"
            );
            assert_eq!(subject_fields(&o, &path), None);
        } else {
            assert!(
                r.as_ref().is_ok_and(|p| p.ok()),
                "optional refused no certificate: {r:?}"
            );
            assert_eq!(
                subject_fields(&o, &path),
                Some(vec![]),
                "the forged header went through"
            );
        }
    }
    // Over HTTP/2 (ALPN h2, as browsers connect) the subject is sent with every request too.
    let identity =
        reqwest::Identity::from_pem(format!("{}{}", good.cert_pem, good.key_pem).as_bytes())
            .unwrap();
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(server_ca.cert_pem().as_bytes()).unwrap(),
        )
        .identity(identity)
        .resolve("localhost", gw.listener("req"))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for i in 0..2 {
        let path = format!("/req/h2/{i}");
        let resp = h2
            .get(format!(
                "https://localhost:{}{path}",
                gw.listener("req").port()
            ))
            .header("x-client-cert-subject", "CN=admin")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        assert_eq!(
            subject_fields(&o, &path),
            Some(vec![PARTNER_SUBJECT.to_string()])
        );
    }
    // A plain listener removes a client-sent copy too.
    let resp = raw_http(
        gw.listener("web"),
        &format!("GET /web/forged HTTP/1.1\r\nHost: x\r\n{forged}Connection: close\r\n\r\n"),
        Duration::from_secs(5),
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert_eq!(subject_fields(&o, "/web/forged"), Some(vec![]));
    // The stranger's and the certificate-less handshake on `req`.
    assert_eq!(
        handshakes_failed(&gw, "req", failed_before + 2.0).await - failed_before,
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_version_13_refuses_a_tls_12_client() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("version test CA");
    let cert = ca.issue(&["localhost"]).write(dir.path(), "server");
    let o = RawOrigin::start("o");
    let layout = Layout::new("tls-version");
    let tls = |extra: &str| {
        format!(
            "{{ cert = {}, key = {}{extra} }}",
            toml_str(&cert.0),
            toml_str(&cert.1)
        )
    };
    let listeners = format!(
        "{}{}",
        https_listener("v13", &free_addr(), &tls(", min_version = \"1.3\"")),
        https_listener("v12", &free_addr(), &tls("")),
    );
    let gw = Gateway::start(&layout.config(&listeners, o.addr()));
    let tls12 = Hello {
        tls12_only: true,
        ..Default::default()
    };
    let failed_before = handshakes_failed(&gw, "v13", 1.0).await;
    let r = probe(gw.listener("v13"), tls12, "/v13/tls12", "").await;
    assert!(
        r.is_err(),
        "a TLS 1.2 client got through min_version 1.3: {r:?}"
    );
    let p = probe(gw.listener("v13"), Hello::default(), "/v13/tls13", "")
        .await
        .unwrap();
    assert!(p.ok(), "{}", p.response);
    assert_eq!(p.version, Some(rustls::ProtocolVersion::TLSv1_3));
    // The default, 1.2, still serves TLS 1.2 clients.
    let p = probe(gw.listener("v12"), tls12, "/v12/tls12", "")
        .await
        .unwrap();
    assert!(p.ok(), "{}", p.response);
    assert_eq!(p.version, Some(rustls::ProtocolVersion::TLSv1_2));
    assert_eq!(
        handshakes_failed(&gw, "v13", failed_before + 1.0).await - failed_before,
        1.0
    );
}

/// Waits (≤ 5 s) for the server to close `stream`; returns how long that took from `since`.
async fn closed_after(stream: &mut tokio::net::TcpStream, since: Instant) -> Duration {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return since.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("still open after 5 s"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_socket_and_a_half_client_hello_are_closed_at_the_head_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("deadline test CA");
    let cert = ca.issue(&["localhost"]).write(dir.path(), "server");
    let o = RawOrigin::start("o");
    let layout = Layout::new("tls-deadline");
    let listeners = format!(
        "[limits]\nheader_timeout_ms = 400\n\n{}",
        https_listener("secure", &free_addr(), &pair(&cert))
    );
    let gw = Gateway::start(&layout.config(&listeners, o.addr()));
    let addr = gw.listener("secure");

    let started = Instant::now();
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut half = tokio::net::TcpStream::connect(addr).await.unwrap();
    // A handshake record announcing 512 bytes, of which the start of a ClientHello arrives.
    let mut hello = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    hello.extend_from_slice(&[7u8; 32]);
    half.write_all(&hello).await.unwrap();
    let silent_after = closed_after(&mut silent, started).await;
    let half_after = closed_after(&mut half, started).await;
    for (what, took) in [("silent", silent_after), ("half ClientHello", half_after)] {
        assert!(
            took >= Duration::from_millis(350),
            "{what}: closed after {took:?}, before the deadline"
        );
        assert!(
            took < Duration::from_millis(2_000),
            "{what}: closed after {took:?}"
        );
    }
    // A complete handshake right after is still served.
    let p = probe(addr, Hello::default(), "/after", "").await.unwrap();
    assert!(p.ok(), "{}", p.response);
    let m = gw.metrics().await;
    assert_eq!(
        metric_sum(
            &m,
            "switchyard_rejected_requests_total",
            &[("listener", "secure"), ("reason", "handshake_timeout")]
        ),
        2.0
    );
}

#[test]
fn bad_certificates_are_config_errors_with_their_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("config test CA");
    let default = ca.issue(&["localhost"]).write(dir.path(), "default");
    let good = ca.issue(&["good.example.test"]);
    let good_files = good.write(dir.path(), "good");
    let other = ca.issue(&["good.example.test"]).write(dir.path(), "other");
    let expired = ca
        .issue_with(&["old.example.test"], |p| {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        })
        .write(dir.path(), "expired");
    let ip_only = ca.issue(&["127.0.0.1"]).write(dir.path(), "ip-only");
    let missing = (dir.path().join("missing.pem"), good_files.1.clone());
    let mismatched = (good_files.0.clone(), other.1.clone());

    let cases = [
        (
            &missing,
            "listeners[0].tls.certificates[0].cert",
            "file not found",
        ),
        (
            &mismatched,
            "listeners[0].tls.certificates[0].key",
            "does not match",
        ),
        (
            &expired,
            "listeners[0].tls.certificates[0].cert",
            "expired at 2021-01-01T00:00:00Z",
        ),
        (
            &ip_only,
            "listeners[0].tls.certificates[0].cert",
            "no usable DNS name",
        ),
    ];
    for (files, key, reason) in cases {
        let text = format!(
            "{}[[listeners]]\nname = \"secure\"\nprotocol = \"https\"\nlisten = \"{}\"\n\
             tls = {{ cert = {}, key = {},\n        certificates = [ {} ] }}\n",
            server_section("tls-check"),
            free_addr(),
            toml_str(&default.0),
            toml_str(&default.1),
            pair(files),
        );
        let path = dir.path().join("gw.toml");
        std::fs::write(&path, &text).unwrap();
        let (code, out, err) = check_file(&path);
        assert_eq!(code, 2, "{key}: {reason}\nstdout: {out}\nstderr: {err}");
        assert!(
            err.contains(key) && err.contains(reason),
            "want {key}: {reason}; got: {err}"
        );
        // `run` refuses to start on the same file, with the same words.
        let (code, _, err) = run_cli(&["run", "-c", path.to_str().unwrap()]);
        assert_ne!(code, 0, "{key}: started");
        assert!(
            err.contains(key) && err.contains(reason),
            "run: want {key}: {reason}; got: {err}"
        );
    }
    // The same file with the good pair checks.
    let text = format!(
        "[[listeners]]\nname = \"secure\"\nprotocol = \"https\"\nlisten = \"{}\"\n\
         tls = {{ cert = {}, key = {}, certificates = [ {} ] }}\n",
        free_addr(),
        toml_str(&default.0),
        toml_str(&default.1),
        pair(&good_files),
    );
    let (code, out, err) = check(&text);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_conf_tls_sni_toml_checks_and_runs() {
    let root = workspace_root();
    let path = root.join("conf/tls-sni.toml");
    let (code, out, err) = check_file(&path);
    assert_eq!(code, 0, "conf/tls-sni.toml:\nstdout: {out}\nstderr: {err}");

    // Loopback ports of this test, file paths resolved like the gateway does (relative to conf/).
    let o = RawOrigin::start("o");
    let conf = root.join("conf");
    let abs = |v: &mut toml::Value| {
        *v = toml::Value::String(conf.join(v.as_str().unwrap()).display().to_string());
    };
    let mut table: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    for l in table["listeners"].as_array_mut().unwrap() {
        l["listen"] = toml::Value::String(free_addr());
        let tls = l["tls"].as_table_mut().unwrap();
        abs(&mut tls["cert"]);
        abs(&mut tls["key"]);
        abs(&mut tls["client_ca"]);
        for c in tls["certificates"].as_array_mut().unwrap() {
            let c = c.as_table_mut().unwrap();
            abs(&mut c["cert"]);
            abs(&mut c["key"]);
        }
    }
    for up in table["upstreams"].as_array_mut().unwrap() {
        for g in up["groups"].as_array_mut().unwrap() {
            for s in g["servers"].as_array_mut().unwrap() {
                s["port"] = toml::Value::Integer(o.port().into());
            }
        }
    }
    table.remove("admin");
    table.remove("metrics");
    let gw = Gateway::start(&toml::to_string(&table).unwrap());
    let addr = gw.listener("secure");

    let der = |file: &str| pem_certificates(&std::fs::read(conf.join(file)).unwrap()).remove(0);
    for (sni, file) in [
        (Some("api.example.com"), "tls/sni-api.pem"),
        (Some("shop.example.com"), "tls/sni-wildcard.pem"),
        (Some("example.com"), "tls/sni-wildcard.pem"),
        (Some("other.example.org"), "tls/sni-default.pem"),
        (None, "tls/sni-default.pem"),
    ] {
        let hello = Hello {
            sni,
            ..Default::default()
        };
        let p = probe(addr, hello, "/", "").await.unwrap();
        assert!(p.leaf == der(file), "{sni:?}: not {file}");
        assert!(p.ok(), "{}", p.response);
    }
    // `client_auth = "optional"` with the example CA: its example client certificate's subject
    // reaches the origin.
    let client = IssuedCert {
        cert_pem: std::fs::read_to_string(conf.join("tls/example-client.pem")).unwrap(),
        key_pem: String::new(),
        cert_der: CertificateDer::from(der("tls/example-client.pem")),
        key_der: key_der(&std::fs::read(conf.join("tls/example-client-key.pem")).unwrap()),
    };
    let hello = Hello {
        sni: Some("api.example.com"),
        client: Some(&client),
        ..Default::default()
    };
    let p = probe(addr, hello, "/with-client-cert", "").await.unwrap();
    assert!(p.ok(), "{}", p.response);
    assert_eq!(
        subject_fields(&o, "/with-client-cert"),
        Some(vec!["CN=switchyard-gateway".to_string()])
    );
}

/// The certificates (DER) of a PEM file.
fn pem_certificates(pem: &[u8]) -> Vec<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .map(|c| c.unwrap().to_vec())
        .collect()
}

/// The PKCS#8 key (DER) of a PEM file.
fn key_der(pem: &[u8]) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(pem)
        .unwrap()
        .secret_pkcs8_der()
        .to_vec()
}
