//! `hash_ring = "ketama"` through the gateway (issue #14, item 7a): keys go to the server NGINX's
//! `hash $key consistent` picks for the same servers and weights. The reference is Cloudflare's
//! NGINX-compatible `pingora-ketama` (checked against NGINX's own log in
//! `crates/switchyard-balance/tests/ketama.rs`); servers are `127.0.0.1:<port>`, named alike by
//! both.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use pingora_ketama::{Bucket, Continuum};
use support::*;

/// Listener `web`, route `/` to upstream `u` (`upstream_keys`) over `servers` with weights.
fn config(prefix: &str, upstream_keys: &str, servers: &[(&Origin, u32)]) -> String {
    let mut s = format!(
        "{}{}[[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"u\"\n\n\
         [[upstreams]]\nname = \"u\"\n{upstream_keys}\n  [[upstreams.groups]]\n  name = \"g\"\n",
        server_section(prefix),
        listener_section("web", &free_addr()),
    );
    for (o, w) in servers {
        s.push_str(&format!(
            "    [[upstreams.groups.servers]]\n    address = \"{}\"\n    port = {}\n    weight = {w}\n",
            o.addr().ip(),
            o.port()
        ));
    }
    s
}

/// NGINX's ring over `servers`.
fn nginx_ring(servers: &[(&Origin, u32)]) -> Continuum {
    let buckets: Vec<Bucket> = servers
        .iter()
        .map(|(o, w)| Bucket::new(o.addr(), *w))
        .collect();
    Continuum::new(&buckets)
}

/// The origin among `servers` at `addr`.
fn name_at(servers: &[(&Origin, u32)], addr: SocketAddr) -> String {
    servers
        .iter()
        .find(|(o, _)| o.addr() == addr)
        .map(|(o, _)| o.name().to_string())
        .unwrap()
}

/// Asks for 60 users (`?u=user-<i>`); returns how many went where NGINX would send them.
async fn users_placed_like_nginx(gw: &Gateway, servers: &[(&Origin, u32)]) -> usize {
    let ring = nginx_ring(servers);
    let c = client();
    let mut same = 0;
    for i in 0..60 {
        let user = format!("user-{i}");
        let r = get(&c, &gw.url(&format!("/cart?u={user}"))).await;
        assert_eq!(r.status, 200);
        let want = name_at(servers, ring.node(user.as_bytes()).unwrap());
        if r.origin().as_deref() == Some(want.as_str()) {
            same += 1;
        }
    }
    same
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_go_where_nginx_sends_them() {
    let (a, b, c) = (Origin::start("a"), Origin::start("b"), Origin::start("c"));
    let servers = [(&a, 1), (&b, 2), (&c, 3)];
    let gw = Gateway::start(&config(
        "ketama-query",
        "algorithm = \"consistent_hash\"\nhash_on = \"query:u\"\nhash_ring = \"ketama\"",
        &servers,
    ));
    assert_eq!(users_placed_like_nginx(&gw, &servers).await, 60);
    assert!(
        [&a, &b, &c].iter().all(|o| o.request_count() > 0),
        "60 users all on a few servers: the test proves little"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_ip_hash_hashes_the_client_address_text_like_remote_addr() {
    let (a, b, c) = (Origin::start("a"), Origin::start("b"), Origin::start("c"));
    let servers = [(&a, 1), (&b, 1), (&c, 1)];
    let gw = Gateway::start(&config(
        "ketama-ip",
        "algorithm = \"source_ip_hash\"\nhash_ring = \"ketama\"",
        &servers,
    ));
    let ring = nginx_ring(&servers);
    for last in 2..=21u8 {
        let ip = IpAddr::from([127, 0, 0, last]);
        let c = reqwest::Client::builder()
            .no_proxy()
            .local_address(ip)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let r = get(&c, &gw.url("/")).await;
        // NGINX: hash $remote_addr consistent.
        let want = name_at(&servers, ring.node(ip.to_string().as_bytes()).unwrap());
        assert_eq!(r.origin().as_deref(), Some(want.as_str()), "client {ip}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_changes_the_ring_moves_keys_to_the_nginx_places() {
    let (a, b, c) = (Origin::start("a"), Origin::start("b"), Origin::start("c"));
    let servers = [(&a, 1), (&b, 1), (&c, 1)];
    let maglev = config(
        "ketama-reload",
        "algorithm = \"consistent_hash\"\nhash_on = \"query:u\"",
        &servers,
    );
    let gw = Gateway::start(&maglev);
    let before = users_placed_like_nginx(&gw, &servers).await;
    assert!(
        before < 60,
        "Maglev placed all 60 users like NGINX: pick other keys"
    );
    gw.write_config(&maglev.replace(
        "hash_on = \"query:u\"",
        "hash_on = \"query:u\"\nhash_ring = \"ketama\"",
    ));
    gw.signal("HUP");
    let mut after = 0;
    for _ in 0..50 {
        after = users_placed_like_nginx(&gw, &servers).await;
        if after == 60 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(after, 60, "after the reload, keys follow the Ketama ring");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_ring_on_a_non_hashing_algorithm_is_an_error_with_its_line() {
    let a = Origin::start("a");
    let text = config(
        "ketama-bad",
        "algorithm = \"wrr\"\nhash_ring = \"ketama\"",
        &[(&a, 1)],
    );
    let line = text
        .lines()
        .position(|l| l.starts_with("hash_ring"))
        .unwrap()
        + 1;
    let (code, _, err) = check(&text);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("upstreams[0].hash_ring (line {line}")),
        "{err}"
    );
}
