//! `[routes.rate_limit]`: a token bucket per client IP or per header value; over the limit a
//! request gets 429 + `Retry-After`, is counted in `switchyard_rate_limited_total{route}`, and
//! never reaches the origin.

mod support;

use std::net::IpAddr;

use support::*;

fn start(prefix: &str, limit: &str, o: &Origin) -> Gateway {
    Gateway::start(&format!(
        "{}[metrics]\nlisten = \"{}\"\n\n{}\
         [[routes]]\nname = \"limited\"\npath_prefix = \"/\"\nupstream = \"u\"\n\
           [routes.rate_limit]\n  {limit}\n\n{}",
        server_section(prefix),
        free_addr(),
        listener_section("web", &free_addr()),
        upstream_section("u", &[o]),
    ))
}

fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Sends GET `/<tag>/<i>` for i in 0..n with `headers`; returns the statuses and checks every
/// 429's `Retry-After`.
async fn send_n(
    c: &reqwest::Client,
    gw: &Gateway,
    tag: &str,
    n: usize,
    headers: &[(&str, &str)],
) -> Vec<u16> {
    let mut out = Vec::new();
    for i in 0..n {
        let r = send(c, "GET", &gw.url(&format!("/{tag}/{i}")), None, headers).await;
        if r.status == 429 {
            let ra: u64 = r
                .header("retry-after")
                .expect("429 carries Retry-After")
                .parse()
                .unwrap();
            assert!(
                (1..=5).contains(&ra),
                "whole seconds to the next token: {ra}"
            );
        }
        out.push(r.status);
    }
    out
}

async fn limited(gw: &Gateway) -> f64 {
    metric_sum(
        &gw.metrics().await,
        "switchyard_rate_limited_total",
        &[("route", "limited")],
    )
}

fn seen(o: &Origin, tag: &str) -> Vec<String> {
    o.requests()
        .into_iter()
        .map(|r| r.uri)
        .filter(|u| u.starts_with(&format!("/{tag}/")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_ip_has_its_own_bucket() {
    let o = Origin::start("o");
    let gw = start(
        "rl-ip",
        "requests_per_s = 0.2\n  burst = 3\n  key = \"source_ip\"",
        &o,
    );
    let first = send_n(&client_from("127.0.0.1"), &gw, "one", 6, &[]).await;
    assert_eq!(first, [200, 200, 200, 429, 429, 429]);
    // Another client address is not limited by the first one's bucket.
    let other = send_n(&client_from("127.0.0.2"), &gw, "two", 4, &[]).await;
    assert_eq!(other, [200, 200, 200, 429]);
    assert_eq!(limited(&gw).await, 4.0, "every 429 is counted");
    assert_eq!(seen(&o, "one"), ["/one/0", "/one/1", "/one/2"]);
    assert_eq!(seen(&o, "two"), ["/two/0", "/two/1", "/two/2"]);
    // The readiness probe aside, the origin saw only the allowed requests.
    assert_eq!(o.requests().iter().filter(|r| r.uri != "/").count(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_key_limits_each_value_and_requests_without_it_share_a_bucket() {
    let o = Origin::start("o");
    let gw = start(
        "rl-header",
        "requests_per_s = 0.2\n  burst = 2\n  key = \"header:X-Api-Key\"",
        &o,
    );
    let c = client();
    let alice = send_n(&c, &gw, "alice", 3, &[("x-api-key", "alice")]).await;
    let bob = send_n(&c, &gw, "bob", 3, &[("x-api-key", "bob")]).await;
    let anon = send_n(&c, &gw, "anon", 3, &[]).await;
    assert_eq!(alice, [200, 200, 429]);
    assert_eq!(bob, [200, 200, 429], "another key, another bucket");
    assert_eq!(anon, [200, 200, 429], "no header: one shared bucket");
    assert_eq!(limited(&gw).await, 3.0);
    for tag in ["alice", "bob", "anon"] {
        assert_eq!(
            seen(&o, tag).len(),
            2,
            "{tag}: limited requests never reached the origin"
        );
    }
}
