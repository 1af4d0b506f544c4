//! Listener security groups (`allow` / `deny`, deny wins) with clients bound to different
//! loopback addresses: a refused client gets 403 and nothing reaches the origin.

mod support;

use std::net::IpAddr;
use std::time::Duration;

use support::*;

/// A client whose connections come from `ip` (any 127.0.0.0/8 address works on loopback).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

/// Listeners `guarded` (with the `acl` lines) and `open`, one route to `o` on both.
fn config(prefix: &str, acl: &str, o: &Origin) -> String {
    format!(
        "{}[metrics]\nlisten = \"{}\"\n\n\
         [[listeners]]\nname = \"guarded\"\nprotocol = \"http\"\nlisten = \"{}\"\n{acl}\n\n{}\
         [[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"u\"\n\n{}",
        server_section(prefix),
        free_addr(),
        free_addr(),
        listener_section("open", &free_addr()),
        upstream_section("u", &[o]),
    )
}

async fn status_from(ip: &str, url: &str) -> u16 {
    get(&client_from(ip), url).await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_address_gets_403_while_its_neighbour_passes() {
    let o = Origin::start("o");
    let gw = Gateway::start(&config("acl-deny", "deny = [\"127.0.0.3/32\"]", &o));
    let guarded = |p: &str| gw.listener_url("guarded", p);

    let r = get(&client_from("127.0.0.3"), &guarded("/x")).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(o.request_count(), 0, "a refused request reaches nothing");

    let r = get(&client_from("127.0.0.2"), &guarded("/y")).await;
    assert_eq!(r.status, 200);
    let seen = o.last_request().unwrap();
    assert_eq!(seen.uri, "/y");
    assert_eq!(seen.header("x-real-ip").as_deref(), Some("127.0.0.2"));

    // Every request of the denied client is refused, also on a kept-alive connection.
    let denied = client_from("127.0.0.3");
    for i in 0..5 {
        assert_eq!(get(&denied, &guarded(&format!("/k/{i}"))).await.status, 403);
    }
    // ... and POSTs too.
    let resp = denied.post(guarded("/p")).body("x").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(o.request_count(), 1);

    // The ACL belongs to its listener: the other one serves the same client.
    assert_eq!(
        status_from("127.0.0.3", &gw.listener_url("open", "/z")).await,
        200
    );
    assert_eq!(o.request_count(), 2);

    let rejected = metric_sum(
        &gw.metrics().await,
        "switchyard_rejected_requests_total",
        &[("listener", "guarded"), ("reason", "acl")],
    );
    assert_eq!(rejected, 7.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allow_list_admits_only_its_blocks() {
    let o = Origin::start("o");
    let gw = Gateway::start(&config(
        "acl-allow",
        "allow = [\"127.0.0.2/32\", \"127.0.1.0/24\"]",
        &o,
    ));
    let url = gw.listener_url("guarded", "/");
    assert_eq!(status_from("127.0.0.2", &url).await, 200);
    assert_eq!(status_from("127.0.1.77", &url).await, 200);
    assert_eq!(status_from("127.0.0.1", &url).await, 403);
    assert_eq!(status_from("127.0.0.3", &url).await, 403);
    assert_eq!(status_from("127.0.2.1", &url).await, 403);
    assert_eq!(o.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_wins_over_allow() {
    let o = Origin::start("o");
    let gw = Gateway::start(&config(
        "acl-both",
        "allow = [\"127.0.0.0/8\"]\ndeny = [\"127.0.0.3\", \"127.0.5.0/24\"]",
        &o,
    ));
    let url = gw.listener_url("guarded", "/");
    assert_eq!(status_from("127.0.0.2", &url).await, 200);
    assert_eq!(
        status_from("127.0.0.3", &url).await,
        403,
        "bare address = /32"
    );
    assert_eq!(status_from("127.0.5.9", &url).await, 403);
    assert_eq!(status_from("127.0.6.9", &url).await, 200);
    assert_eq!(o.request_count(), 2);
}
