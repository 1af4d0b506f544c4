//! Process lifecycle: SIGTERM drains in-flight requests and exits within `grace_period_s`;
//! SIGINT exits at once.

mod support;

use std::time::{Duration, Instant};

use support::*;

fn config(origin: &Origin, grace_s: u64) -> String {
    format!(
        "[server]\ninstance_id = \"{}\"\nthreads = 1\ngrace_period_s = {grace_s}\n\n{}\
         [[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"u\"\n\n{}",
        unique_id("life"),
        listener_section("web", &free_addr()),
        upstream_section("u", &[origin]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_and_exits_within_the_grace_period() {
    let origin = Origin::start("a");
    origin.set_delay(Duration::from_millis(700));
    let mut gw = Gateway::start(&config(&origin, 2));
    let url = gw.url("/slow");
    let in_flight = tokio::spawn(async move { client().get(url).send().await.map(|r| r.status()) });
    // Let the request reach the origin before the signal.
    let arrived = eventually(Duration::from_secs(5), || origin.request_count() == 1).await;
    assert!(arrived, "the slow request never reached the origin");

    let t0 = Instant::now();
    gw.signal("TERM");
    let status = in_flight
        .await
        .unwrap()
        .expect("in-flight request failed during shutdown");
    assert_eq!(status, 200, "a request in flight at SIGTERM completes");
    let code = gw.wait_exit(Duration::from_secs(15));
    let took = t0.elapsed();
    assert!(code.is_some(), "still running 15 s after SIGTERM");
    // grace_period_s = 2, plus Pingora's final shutdown timeout (also bounded by the config).
    assert!(
        took <= Duration::from_secs(2 + 2 + 2),
        "SIGTERM took {took:?} with grace_period_s = 2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_exits_promptly() {
    let origin = Origin::start("a");
    let mut gw = Gateway::start(&config(&origin, 30));
    let r = get(&client(), &gw.url("/")).await;
    assert_eq!(r.status, 200);
    let t0 = Instant::now();
    gw.signal("INT");
    let code = gw.wait_exit(Duration::from_secs(10));
    assert!(code.is_some(), "still running 10 s after SIGINT");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "SIGINT must not wait for the 30 s grace period (took {:?})",
        t0.elapsed()
    );
}
