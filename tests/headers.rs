//! Headers added for origins (`X-Forwarded-*`, `X-Real-IP`, `CDN-Loop`) and keep-alive
//! connections to upstreams.

mod support;

use support::*;

fn config(prefix: &str, instance_id: Option<&str>, a: &Origin) -> String {
    let server = match instance_id {
        Some(id) => {
            format!("[server]\ninstance_id = \"{id}\"\nthreads = 1\ngrace_period_s = 1\n\n")
        }
        None => server_section(prefix),
    };
    format!(
        "{server}{}[[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"u\"\n\n{}",
        listener_section("web", &free_addr()),
        upstream_section("u", &[a]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_reach_the_origin() {
    let a = Origin::start("a");
    let gw = Gateway::start(&config("headers-fwd", None, &a));
    let c = client();

    // The client already went through a proxy: its X-Forwarded-For is appended to.
    let r = send(
        &c,
        "GET",
        &gw.url("/h?q=1"),
        Some("app.example.com"),
        &[("X-Forwarded-For", "198.51.100.7")],
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = a.last_request().unwrap();
    assert_eq!(seen.uri, "/h?q=1");
    assert_eq!(
        seen.header_all("x-forwarded-for").join(", "),
        "198.51.100.7, 127.0.0.1"
    );
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        seen.header("x-forwarded-host").as_deref(),
        Some("app.example.com")
    );
    assert_eq!(seen.header("x-real-ip").as_deref(), Some("127.0.0.1"));
    // The Host sent upstream defaults to the client's.
    assert_eq!(seen.header("host").as_deref(), Some("app.example.com"));

    // Without a client X-Forwarded-For, the gateway starts one.
    let r = send(&c, "GET", &gw.url("/h2"), Some("app.example.com"), &[]).await;
    assert_eq!(r.status, 200);
    let seen = a.last_request().unwrap();
    assert_eq!(seen.header_all("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(seen.header("x-real-ip").as_deref(), Some("127.0.0.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cannot_spoof_real_ip_or_proto() {
    let a = Origin::start("a");
    let gw = Gateway::start(&config("headers-spoof", None, &a));
    let r = send(
        &client(),
        "GET",
        &gw.url("/"),
        Some("app.example.com"),
        &[("X-Real-IP", "203.0.113.9"), ("X-Forwarded-Proto", "https")],
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = a.last_request().unwrap();
    assert_eq!(seen.header_all("x-real-ip"), vec!["127.0.0.1"]);
    assert_eq!(seen.header_all("x-forwarded-proto"), vec!["http"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdn_loop_is_appended_and_loops_are_refused() {
    let a = Origin::start("a");
    let id = unique_id("loop");
    let gw = Gateway::start(&config("headers-loop", Some(&id), &a));
    let c = client();

    let r = send(&c, "GET", &gw.url("/"), None, &[("CDN-Loop", "other-cdn")]).await;
    assert_eq!(r.status, 200);
    let seen = a.last_request().unwrap().header_all("cdn-loop").join(", ");
    assert!(seen.contains("other-cdn"), "CDN-Loop kept: {seen:?}");
    assert!(seen.contains(&id), "CDN-Loop names this instance: {seen:?}");

    // A request that already passed through this instance is refused with 463.
    let before = a.request_count();
    let r = send(
        &c,
        "GET",
        &gw.url("/"),
        None,
        &[("CDN-Loop", &format!("other-cdn, {id}"))],
    )
    .await;
    assert_eq!(r.status, 463, "loop: {:?}", r.body);
    assert_eq!(
        a.request_count(),
        before,
        "a looping request is not forwarded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_kept_alive() {
    let a = Origin::start("a");
    let gw = Gateway::start(&config("headers-keepalive", None, &a));
    let c = client();
    for i in 0..50 {
        let r = get(&c, &gw.url(&format!("/k/{i}"))).await;
        assert_eq!(r.status, 200, "request {i}");
    }
    assert_eq!(a.request_count(), 50);
    let conns = a.connections();
    assert!(
        conns <= 5,
        "50 sequential requests used {conns} upstream connections; keep-alive expected"
    );
}
