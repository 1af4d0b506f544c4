//! HTTPS and two-way TLS checks against TLS origins on 127.0.0.1 with rcgen certificates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use switchyard_health::{CheckResult, UpstreamHealth};

fn https_cfg(tls: &str) -> String {
    format!(
        r#"
name = "api"
scheme = "https"
tls = {{ {tls} }}
[health.active]
protocol = "https"
path = "/health"
interval_ms = 60000
timeout_ms = 1000
"#
    )
}

async fn check_once(cfg_text: &str, origin: &Origin) -> (bool, Option<CheckResult>) {
    let cfg = upstream(cfg_text);
    let pool = pool(&cfg, &[origin.addr]);
    let health = UpstreamHealth::new(pool.clone(), &cfg).unwrap();
    health.initial_round().await;
    let view = health.server(&id(origin.addr)).unwrap();
    (healthy(&pool, origin.addr), view.last_check)
}

#[tokio::test]
async fn https_self_signed_origin() {
    let pki = Pki::new();
    let origin = Origin::start_tls(pki.server_config(false)).await;
    let ca = pki.server_cert_pem.display();

    let (ok, r) = check_once(&https_cfg("verify = false"), &origin).await;
    assert!(ok, "verify=false: {r:?}");

    let (ok, r) = check_once(
        &https_cfg(&format!(
            "verify = true, ca = \"{ca}\", sni = \"health.test\""
        )),
        &origin,
    )
    .await;
    assert!(ok, "verify=true with ca and sni: {r:?}");

    let (ok, r) = check_once(&https_cfg("verify = true, sni = \"health.test\""), &origin).await;
    assert!(!ok, "verify=true without the ca must fail");
    assert!(matches!(r, Some(CheckResult::Tls(_))), "{r:?}");

    // The right CA but the default SNI (127.0.0.1) does not match the certificate.
    let (ok, r) = check_once(
        &https_cfg(&format!("verify = true, ca = \"{ca}\"")),
        &origin,
    )
    .await;
    assert!(!ok, "wrong name must fail: {r:?}");
    assert_eq!(origin.hits(), 2);
}

#[tokio::test]
async fn two_way_tls_origin_requires_the_client_certificate() {
    let pki = Pki::new();
    let origin = Origin::start_tls(pki.server_config(true)).await;
    let ca = pki.server_cert_pem.display();
    let cert = pki.client_cert_pem.display();
    let key = pki.client_key_pem.display();

    let (ok, r) = check_once(
        &https_cfg(&format!(
            "verify = true, ca = \"{ca}\", sni = \"health.test\", client_cert = \"{cert}\", client_key = \"{key}\""
        )),
        &origin,
    )
    .await;
    assert!(ok, "with the client certificate: {r:?}");

    let (ok, r) = check_once(
        &https_cfg(&format!(
            "verify = true, ca = \"{ca}\", sni = \"health.test\""
        )),
        &origin,
    )
    .await;
    assert!(!ok, "without a client certificate must fail: {r:?}");
    assert_eq!(origin.hits(), 1);
}
