//! Failover: connect failures are retried on another server, a backend that dies mid-run is
//! routed around, exhausted retries answer 502 and a slow backend 504.

mod support;

use std::time::{Duration, Instant};

use support::*;

/// A route `r` (with extra TOML lines `route_extra`) to upstream `u` over `servers`
/// (`(address, port)`), all in one group `g`.
fn config(prefix: &str, route_extra: &str, servers: &[(String, u16)]) -> String {
    let mut s = format!(
        "{}{}[[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"u\"\n{route_extra}\n\n\
         [[upstreams]]\nname = \"u\"\n  [[upstreams.groups]]\n  name = \"g\"\n",
        server_section(prefix),
        listener_section("web", &free_addr()),
    );
    for (addr, port) in servers {
        s.push_str(&format!(
            "    [[upstreams.groups.servers]]\n    address = \"{addr}\"\n    port = {port}\n"
        ));
    }
    s
}

fn origin_server(o: &Origin) -> (String, u16) {
    (o.addr().ip().to_string(), o.port())
}

fn closed_server() -> (String, u16) {
    ("127.0.0.1".to_string(), free_port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_is_retried_on_another_server() {
    let a = Origin::start("a");
    let gw = Gateway::start(&config(
        "failover-closed",
        "",
        &[closed_server(), origin_server(&a)],
    ));
    let c = client();
    for i in 0..30 {
        let r = get(&c, &gw.url(&format!("/f/{i}"))).await;
        assert_eq!(r.status, 200, "GET {i}: {:?}", r.body);
        assert_eq!(r.origin().as_deref(), Some("a"));
    }
    assert_eq!(a.request_count(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_is_retried_for_post_too() {
    let a = Origin::start("a");
    // Nothing was sent on a refused connection, so even POST may be retried.
    let gw = Gateway::start(&config(
        "failover-post",
        "retries = 1",
        &[closed_server(), origin_server(&a)],
    ));
    let c = client();
    for i in 0..10 {
        let r = c
            .post(gw.url(&format!("/p/{i}")))
            .body(format!("body {i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "POST {i}");
    }
    assert_eq!(a.request_count(), 10);
    let last = a.last_request().unwrap();
    assert_eq!(last.method, "POST");
    assert_eq!(&last.body[..], b"body 9");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stopped_mid_run_is_routed_around() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let gw = Gateway::start(&config(
        "failover-stop",
        "",
        &[origin_server(&a), origin_server(&b)],
    ));
    let c = client();
    for i in 0..50 {
        if i == 10 {
            // b dies: its listener and the gateway's pooled connections to it close.
            b.stop();
        }
        let r = get(&c, &gw.url(&format!("/s/{i}"))).await;
        assert_eq!(r.status, 200, "GET {i}: {:?}", r.body);
    }
    assert!(b.request_count() >= 1, "b served before it stopped");
    assert!(b.request_count() <= 10);
    assert_eq!(a.request_count() + b.request_count(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_answer_502() {
    let gw = Gateway::start(&config(
        "failover-502",
        "",
        &[closed_server(), closed_server()],
    ));
    let r = get(&client(), &gw.url("/")).await;
    assert_eq!(r.status, 502, "every server refuses: {:?}", r.body);
    assert!(!r.body.trim().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_timeout_answers_504() {
    let a = Origin::start("a");
    a.set_delay(Duration::from_secs(3));
    let gw = Gateway::start(&config(
        "failover-504",
        "timeout_ms = 300",
        &[origin_server(&a)],
    ));
    let started = Instant::now();
    let r = get(&client(), &gw.url("/slow")).await;
    assert_eq!(r.status, 504, "{:?}", r.body);
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "timed out after {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_early_is_not_blamed_on_the_server() {
    use tokio::io::AsyncWriteExt;
    // One slow server, ejected by passive checks after a single failure: a client that gives up
    // waiting must neither eject it nor count as a server error, and the gateway logs the
    // client's departure at info, not Pingora's "Fail to proxy" error.
    let o = Origin::start("slow");
    o.set_delay(Duration::from_millis(1500));
    let toml = format!(
        "{}[metrics]\nlisten = \"{}\"\n\n{}[[routes]]\nname = \"r\"\npath_prefix = \"/\"\n\
         upstream = \"u\"\n\n{}  [upstreams.health.passive]\n  unhealthy_threshold = 1\n  \
         ejection_ms = 60000\n",
        server_section("client-leaves"),
        free_addr(),
        listener_section("web", &free_addr()),
        upstream_section("u", &[&o]),
    );
    let gw = Gateway::start(&toml);
    for i in 0..2 {
        let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
        s.write_all(format!("GET /leave{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(s);
    }
    assert!(
        gw.wait_for_log(
            "client closed the connection before the response was complete: GET /leave",
            Duration::from_secs(10)
        ),
        "{}",
        gw.log()
    );
    assert!(!gw.log().contains("Fail to proxy"), "{}", gw.log());
    // Still in service: the next request is answered by the slow server, not a 503.
    o.set_delay(Duration::ZERO);
    let r = get(&client(), &gw.url("/after")).await;
    assert_eq!(r.status, 200, "{}", gw.log());
    let metrics = gw.metrics().await;
    for outcome in ["error", "timeout", "connect_error"] {
        let n = metric_sum(
            &metrics,
            "switchyard_upstream_requests_total",
            &[("upstream", "u"), ("outcome", outcome)],
        );
        assert_eq!(n, 0.0, "outcome {outcome} counted for a client that left");
    }
    assert_eq!(
        metric_sum(&metrics, "switchyard_backend_ejections_total", &[]),
        0.0
    );
}
