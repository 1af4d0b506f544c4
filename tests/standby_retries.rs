//! Retries fall through tiers (issue 14, item 2): once every primary server of a request was
//! tried, a retry goes to a standby server (NGINX's `backup`, APISIX's priorities), and only
//! then does the request fail; never to a server already tried.

mod support;

use support::*;

/// Listener `web`, route `r` (extra lines `route_extra`) to upstream `u`: `primaries` then one
/// standby server, all in group `g`.
fn config(route_extra: &str, primaries: &[(String, u16)], standby: &Origin) -> String {
    let mut s = format!(
        "{}[metrics]\nlisten = \"{}\"\n\n{}[[routes]]\nname = \"r\"\npath_prefix = \"/\"\n\
         upstream = \"u\"\n{route_extra}\n\n\
         [[upstreams]]\nname = \"u\"\n  [[upstreams.groups]]\n  name = \"g\"\n",
        server_section("standby-retry"),
        free_addr(),
        listener_section("web", &free_addr()),
    );
    for (addr, port) in primaries {
        s.push_str(&format!(
            "    [[upstreams.groups.servers]]\n    address = \"{addr}\"\n    port = {port}\n"
        ));
    }
    s.push_str(&format!(
        "    [[upstreams.groups.servers]]\n    address = \"127.0.0.1\"\n    port = {}\n    \
         standby = true\n",
        standby.port()
    ));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_primaries_fall_through_to_the_standby_server() {
    let standby = Origin::start("standby");
    let closed = || ("127.0.0.1".to_string(), free_port());
    let gw = Gateway::start(&config("", &[closed(), closed()], &standby));
    let c = fresh_client();
    for i in 0..6 {
        let r = get(&c, &gw.url(&format!("/x{i}"))).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
        assert_eq!(r.origin().as_deref(), Some("standby"), "request {i}");
    }
    assert_eq!(standby.request_count(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resetting_primaries_fall_through_to_the_standby_server_within_retries() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    a.set_mode(OriginMode::Reset);
    b.set_mode(OriginMode::Reset);
    let standby = Origin::start("standby");
    let srv = |o: &Origin| (o.addr().ip().to_string(), o.port());
    let gw = Gateway::start(&config("retries = 2", &[srv(&a), srv(&b)], &standby));
    let c = fresh_client();
    let r = get(&c, &gw.url("/once")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.origin().as_deref(), Some("standby"));
    // Each server saw the request once: the primaries in turn, then the standby.
    assert_eq!((a.request_count(), b.request_count()), (1, 1));
    assert_eq!(standby.request_count(), 1);

    // `retries = 1` allows one retry: the second primary, and no further.
    let gw = Gateway::start(&config("retries = 1", &[srv(&a), srv(&b)], &standby));
    let r = get(&c, &gw.url("/twice")).await;
    assert_eq!(r.status, 502, "{}", r.body);
    assert_eq!(standby.request_count(), 1);
}
