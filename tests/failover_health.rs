//! Failover with active health checks: three origins, 1,500 sequential GETs; one origin is stopped
//! after 500 requests and restarted after 1,000. No client sees a non-2xx answer (connect
//! failures are retried until the checks take the server out), and the restarted origin gets
//! traffic again before the end.

mod support;

use std::time::{Duration, Instant};

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_and_restarting_an_origin_under_traffic_loses_no_request() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let c3 = Origin::start("c");
    let servers: String = [&a, &b, &c3]
        .iter()
        .map(|o| {
            format!(
                "    [[upstreams.groups.servers]]\n    address = \"127.0.0.1\"\n    port = {}\n",
                o.port()
            )
        })
        .collect();
    let metrics = free_addr();
    let cfg = format!(
        "{}[metrics]\nlisten = \"{metrics}\"\n\n{}[[routes]]\nname = \"r\"\npath_prefix = \"/\"\n\
         upstream = \"u\"\n\n[[upstreams]]\nname = \"u\"\nalgorithm = \"wrr\"\n\
         \x20 [[upstreams.groups]]\n  name = \"g\"\n{servers}\n\
         \x20 [upstreams.health.active]\n  protocol = \"http\"\n  path = \"/health\"\n\
         \x20 interval_ms = 100\n  timeout_ms = 300\n  healthy_threshold = 1\n  unhealthy_threshold = 2\n",
        server_section("failover-health"),
        listener_section("web", &free_addr()),
    );
    let gw = Gateway::start(&cfg);
    let cl = client();
    let traffic = |o: &Origin| {
        o.requests()
            .iter()
            .filter(|r| r.path() != "/health")
            .count()
    };

    let mut bad = Vec::new();
    let mut b_after_restart = 0usize;
    let mut b_at_restart = 0usize;
    let started = Instant::now();
    for i in 0..1_500 {
        if i == 500 {
            b.stop();
        }
        if i == 1_000 {
            b.restart();
            b_at_restart = traffic(&b);
        }
        let t = Instant::now();
        let r = get(&cl, &gw.url(&format!("/f/{i}"))).await;
        if !(200..300).contains(&r.status) {
            bad.push((i, r.status, r.body.clone()));
        }
        if i >= 1_000 && r.origin().as_deref() == Some("b") {
            b_after_restart += 1;
        }
        // At least 3 ms per request: the 500 requests after the restart span ≥ 1.5 s, several
        // check intervals.
        if let Some(rest) = Duration::from_millis(3).checked_sub(t.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
    let took = started.elapsed();
    assert!(
        bad.is_empty(),
        "{} non-2xx answers: {:?}",
        bad.len(),
        &bad[..bad.len().min(10)]
    );
    assert!(
        b_after_restart > 0,
        "the restarted origin got no traffic in the last 500 requests ({took:?})"
    );
    assert_eq!(traffic(&b), b_at_restart + b_after_restart);
    let (na, nc) = (traffic(&a), traffic(&c3));
    assert!(na >= 500 && nc >= 500, "a {na}, c {nc}");
    // The gateway saw b go down and come back.
    let log = gw.log();
    let name = format!("u/g/{}", b.addr());
    assert!(
        log.contains(&format!("{name} unhealthy")),
        "no unhealthy line for b"
    );
    assert!(
        log.contains(&format!("{name} healthy: 1 consecutive passes")),
        "no healthy line for b"
    );
}
