//! TLS over real sockets, with certificates generated per test (rcgen): an HTTPS listener (HTTP/2
//! via ALPN, HTTP/1.1), upstream HTTPS with verification, SNI and a private CA, two-way TLS that
//! fails without the client certificate, and `conf/https.toml` started with its example PEM files.

mod support;

use std::path::Path;
use std::time::Duration;

use support::*;

/// A client trusting only `ca_pem` (not the web roots), HTTP/2 allowed via ALPN.
fn https_client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

/// Like [`https_client`], HTTP/1.1 only.
fn https_client_h1(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

fn toml_str(p: &Path) -> String {
    toml::Value::String(p.display().to_string()).to_string()
}

/// A gateway with an `https` listener `secure` serving `cert`/`key`, to `origin`, with extra
/// upstream lines (e.g. a sticky table).
fn https_listener_config(prefix: &str, cert: &Path, key: &Path, upstream: &str) -> String {
    format!(
        "{}[[listeners]]\nname = \"secure\"\nprotocol = \"https\"\nlisten = \"{}\"\n\
         tls = {{ cert = {}, key = {} }}\n\n\
         [[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"u\"\n\n{upstream}",
        server_section(prefix),
        free_addr(),
        toml_str(cert),
        toml_str(key),
    )
}

/// An upstream `u` with `scheme = "https"`, `tls = { <tls> }` over `servers`.
fn tls_upstream_config(prefix: &str, tls: &str, servers: &[&TlsOrigin]) -> String {
    let mut s = format!(
        "{}{}[[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"u\"\n\n\
         [[upstreams]]\nname = \"u\"\nscheme = \"https\"\ntls = {{ {tls} }}\n\
         \x20 [[upstreams.groups]]\n  name = \"g\"\n",
        server_section(prefix),
        listener_section("web", &free_addr()),
    );
    for o in servers {
        s.push_str(&format!(
            "    [[upstreams.groups.servers]]\n    address = \"127.0.0.1\"\n    port = {}\n",
            o.port()
        ));
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_listener_serves_http2_and_http1_with_a_generated_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("listener test CA");
    let (cert, key) = ca
        .issue(&["localhost", "127.0.0.1"])
        .write(dir.path(), "listener");
    let o = Origin::start("o");
    let gw = Gateway::start(&https_listener_config(
        "tls-listener",
        &cert,
        &key,
        &upstream_section("u", &[&o]),
    ));
    let url = format!("https://{}/secure/path?q=1", gw.addr());

    let resp = https_client(ca.cert_pem()).get(&url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2, "h2 via ALPN");
    assert_eq!(resp.text().await.unwrap(), "o");
    let seen = o.last_request().unwrap();
    assert_eq!(seen.uri, "/secure/path?q=1");
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("https"));

    // Several concurrent requests on one HTTP/2 connection.
    let c = https_client(ca.cert_pem());
    let mut tasks = Vec::new();
    for i in 0..8 {
        let c = c.clone();
        let url = format!("https://{}/m/{i}", gw.addr());
        tasks.push(tokio::spawn(async move {
            let r = c.get(&url).send().await.unwrap();
            (r.status().as_u16(), r.version())
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), (200, reqwest::Version::HTTP_2));
    }

    // HTTP/1.1 over TLS, with a POST body.
    let resp = https_client_h1(ca.cert_pem())
        .post(&url)
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    assert_eq!(&o.last_request().unwrap().body[..], b"payload");

    // The certificate really is the generated one: a client that does not trust its CA refuses.
    let other = TestCa::new("unrelated CA");
    let before = o.request_count();
    let err = https_client(other.cert_pem()).get(&url).send().await;
    assert!(err.is_err(), "a client not trusting the CA must fail");
    // Plain HTTP on the TLS port is not served.
    let plain = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(format!("http://{}/", gw.addr()))
        .send()
        .await;
    assert!(
        plain.map(|r| r.status().as_u16() != 200).unwrap_or(true),
        "plain HTTP answered 200 on an https listener"
    );
    assert_eq!(o.request_count(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_cookies_on_an_https_listener_are_secure() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("sticky test CA");
    let (cert, key) = ca.issue(&["127.0.0.1"]).write(dir.path(), "listener");
    let (a, b) = (Origin::start("a"), Origin::start("b"));
    let upstream = upstream_section("u", &[&a, &b]).replacen(
        "name = \"u\"\n",
        "name = \"u\"\n  [upstreams.sticky]\n  ttl_s = 60\n",
        1,
    );
    let gw = Gateway::start(&https_listener_config("tls-sticky", &cert, &key, &upstream));
    let resp = https_client(ca.cert_pem())
        .get(format!("https://{}/", gw.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let cookie = resp
        .headers()
        .get("set-cookie")
        .expect("a sticky cookie")
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.starts_with("SWITCHYARD_STICKY="), "{cookie}");
    for attr in [
        "; Path=/",
        "; HttpOnly",
        "; SameSite=Lax",
        "; Max-Age=60",
        "; Secure",
    ] {
        assert!(cookie.contains(attr), "{attr} missing in {cookie}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_https_is_verified_against_the_ca_and_the_sni_name() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("upstream test CA");
    let ca_path = ca.write(dir.path(), "ca.pem");
    let other_ca_path = TestCa::new("other CA").write(dir.path(), "other-ca.pem");
    let o = TlsOrigin::start("tls-o", &ca.issue(&["app.internal", "127.0.0.1"]), None);
    let c = client();

    // verify + sni + ca: served, with the configured SNI, over kept-alive connections.
    let gw = Gateway::start(&tls_upstream_config(
        "tls-up-ok",
        &format!(
            "verify = true, sni = \"app.internal\", ca = {}",
            toml_str(&ca_path)
        ),
        &[&o],
    ));
    for i in 0..10 {
        let r = get_with_host(&c, &gw.url(&format!("/t/{i}?x=1")), "public.example").await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.origin().as_deref(), Some("tls-o"));
    }
    let seen = o.last_request().unwrap();
    assert_eq!(seen.uri, "/t/9?x=1");
    assert_eq!(seen.header("host").as_deref(), Some("public.example"));
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("http"));
    assert!(!o.snis().is_empty());
    assert!(
        o.snis()
            .iter()
            .all(|s| s.as_deref() == Some("app.internal")),
        "{:?}",
        o.snis()
    );
    assert!(
        o.handshakes_ok() <= 3,
        "keep-alive: {} handshakes",
        o.handshakes_ok()
    );
    drop(gw);

    // Without sni, the server address is the name verified (the certificate has 127.0.0.1).
    let gw = Gateway::start(&tls_upstream_config(
        "tls-up-ip",
        &format!("ca = {}", toml_str(&ca_path)),
        &[&o],
    ));
    assert_eq!(get(&c, &gw.url("/ip")).await.status, 200);
    drop(gw);

    let before = o.request_count();
    // A name the certificate does not have: refused.
    let gw = Gateway::start(&tls_upstream_config(
        "tls-up-badname",
        &format!("sni = \"db.internal\", ca = {}", toml_str(&ca_path)),
        &[&o],
    ));
    let r = get(&c, &gw.url("/badname")).await;
    assert_eq!(
        r.status, 502,
        "wrong SNI name must fail verification: {:?}",
        r.body
    );
    drop(gw);
    // A CA that did not sign the certificate: refused.
    let gw = Gateway::start(&tls_upstream_config(
        "tls-up-badca",
        &format!("sni = \"app.internal\", ca = {}", toml_str(&other_ca_path)),
        &[&o],
    ));
    let r = get(&c, &gw.url("/badca")).await;
    assert_eq!(
        r.status, 502,
        "untrusted CA must fail verification: {:?}",
        r.body
    );
    drop(gw);
    // No ca at all (web roots only): refused.
    let gw = Gateway::start(&tls_upstream_config(
        "tls-up-noca",
        "sni = \"app.internal\"",
        &[&o],
    ));
    assert_eq!(get(&c, &gw.url("/noca")).await.status, 502);
    drop(gw);
    assert_eq!(
        o.request_count(),
        before,
        "no request over an unverified connection"
    );

    // verify = false accepts the unknown CA and the wrong name (a lab setting).
    let gw = Gateway::start(&tls_upstream_config(
        "tls-up-noverify",
        &format!(
            "verify = false, sni = \"db.internal\", ca = {}",
            toml_str(&other_ca_path)
        ),
        &[&o],
    ));
    assert_eq!(get(&c, &gw.url("/noverify")).await.status, 200);
    assert_eq!(o.last_request().unwrap().uri, "/noverify");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_way_tls_works_with_the_client_certificate_and_fails_without() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = TestCa::new("server CA");
    let client_ca = TestCa::new("client CA");
    let ca_path = server_ca.write(dir.path(), "server-ca.pem");
    let (client_cert, client_key) = client_ca
        .issue(&["gateway.internal"])
        .write(dir.path(), "client");
    let (rogue_cert, rogue_key) = TestCa::new("rogue CA")
        .issue(&["gateway.internal"])
        .write(dir.path(), "rogue");
    let o = TlsOrigin::start(
        "mtls-o",
        &server_ca.issue(&["app.internal"]),
        Some(&client_ca),
    );
    let c = client();
    let base = format!("sni = \"app.internal\", ca = {}", toml_str(&ca_path));

    let gw = Gateway::start(&tls_upstream_config(
        "mtls-ok",
        &format!(
            "{base}, client_cert = {}, client_key = {}",
            toml_str(&client_cert),
            toml_str(&client_key)
        ),
        &[&o],
    ));
    for i in 0..5 {
        let r = get(&c, &gw.url(&format!("/m/{i}"))).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.origin().as_deref(), Some("mtls-o"));
    }
    let resp = c.post(gw.url("/m/post")).body("data").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(&o.last_request().unwrap().body[..], b"data");
    assert!(
        o.client_certs().iter().all(|c| *c),
        "{:?}",
        o.client_certs()
    );
    assert_eq!(o.request_count(), 6);
    drop(gw);

    // Without a client certificate the origin refuses the handshake: 502, nothing served.
    let gw = Gateway::start(&tls_upstream_config("mtls-none", &base, &[&o]));
    let failed_before = o.handshakes_failed();
    let r = get(&c, &gw.url("/m/none")).await;
    assert_eq!(r.status, 502, "{:?}", r.body);
    assert_eq!(o.request_count(), 6);
    assert!(
        eventually(Duration::from_secs(3), || o.handshakes_failed()
            > failed_before)
        .await,
        "the origin saw a failed handshake"
    );
    drop(gw);

    // A certificate from a CA the origin does not trust: same.
    let gw = Gateway::start(&tls_upstream_config(
        "mtls-rogue",
        &format!(
            "{base}, client_cert = {}, client_key = {}",
            toml_str(&rogue_cert),
            toml_str(&rogue_key)
        ),
        &[&o],
    ));
    let r = get(&c, &gw.url("/m/rogue")).await;
    assert_eq!(r.status, 502, "{:?}", r.body);
    assert_eq!(o.request_count(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_conf_https_toml_checks_and_runs() {
    let root = workspace_root();
    let path = root.join("conf/https.toml");
    let (code, out, err) = check_file(&path);
    assert_eq!(code, 0, "conf/https.toml:\nstdout: {out}\nstderr: {err}");

    // Origins with their own PKI: the example's upstream `ca` and client certificate are swapped
    // for the test's (the example CA's key is not published); the listener keeps the example's
    // certificate and key, resolved like the gateway does (relative to conf/).
    let dir = tempfile::tempdir().unwrap();
    let server_ca = TestCa::new("example test server CA");
    let client_ca = TestCa::new("example test client CA");
    let ca_path = server_ca.write(dir.path(), "ca.pem");
    let (cc, ck) = client_ca.issue(&["tls-gw-1"]).write(dir.path(), "client");
    let o1 = TlsOrigin::start(
        "app-1",
        &server_ca.issue(&["app.internal"]),
        Some(&client_ca),
    );
    let o2 = TlsOrigin::start(
        "app-2",
        &server_ca.issue(&["app.internal"]),
        Some(&client_ca),
    );

    let mut table: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    for l in table["listeners"].as_array_mut().unwrap() {
        l["listen"] = toml::Value::String(free_addr());
        let tls = l["tls"].as_table_mut().unwrap();
        for k in ["cert", "key"] {
            let rel = tls[k].as_str().unwrap().to_string();
            tls[k] = toml::Value::String(root.join("conf").join(rel).display().to_string());
        }
    }
    let origins = [&o1, &o2];
    let mut next = origins.iter();
    for up in table["upstreams"].as_array_mut().unwrap() {
        let tls = up["tls"].as_table_mut().unwrap();
        tls["ca"] = toml::Value::String(ca_path.display().to_string());
        tls["client_cert"] = toml::Value::String(cc.display().to_string());
        tls["client_key"] = toml::Value::String(ck.display().to_string());
        for g in up["groups"].as_array_mut().unwrap() {
            for s in g["servers"].as_array_mut().unwrap() {
                s["port"] = toml::Value::Integer(next.next().unwrap().port().into());
            }
        }
    }
    assert!(next.next().is_none());
    let gw = Gateway::start(&toml::to_string(&table).unwrap());

    let example_ca = std::fs::read_to_string(root.join("conf/tls/example-ca.pem")).unwrap();
    let c = https_client(&example_ca);
    for i in 0..6 {
        let resp = c
            .get(format!("https://{}/orders/{i}", gw.addr()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    }
    // The example certificate is also valid for the name localhost.
    let resp = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(example_ca.as_bytes()).unwrap())
        .resolve("localhost", gw.addr())
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
        .get(format!("https://localhost:{}/", gw.addr().port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    assert_eq!(o1.request_count() + o2.request_count(), 7);
    assert!(o1.request_count() > 0 && o2.request_count() > 0);
    for o in origins {
        assert!(o
            .snis()
            .iter()
            .all(|s| s.as_deref() == Some("app.internal")));
        assert!(o.client_certs().iter().all(|c| *c));
        let seen = o.last_request().unwrap();
        assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("https"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_over_tls_are_answered_in_order() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("pipelining CA");
    let (cert, key) = ca.issue(&["localhost"]).write(dir.path(), "pipe");
    let o = Origin::start("o");
    let gw = Gateway::start(&https_listener_config(
        "tls-pipe",
        &cert,
        &key,
        &upstream_section("u", &[&o]),
    ));
    // An HTTP/1.1-only TLS client (no ALPN h2), trusting only the test CA.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(ring_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let batch: String = (0..3)
        .map(|i| format!("GET /tls-pipe/{i} HTTP/1.1\r\nHost: localhost\r\n\r\n"))
        .collect();
    tls.write_all(batch.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    // Read until three complete responses ("o" bodies) arrived.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.windows(15).filter(|w| w == b"HTTP/1.1 200 OK").count() < 3 || !got.ends_with(b"o") {
        let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf))
            .await
            .expect("answers within 10 s")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let uris: Vec<String> = o.requests().into_iter().map(|r| r.uri).collect();
    assert_eq!(uris, ["/tls-pipe/0", "/tls-pipe/1", "/tls-pipe/2"]);
}
