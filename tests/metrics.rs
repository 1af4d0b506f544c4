//! Prometheus metrics on `[metrics].listen`: request counters by route, upstream and code, the
//! duration histogram, and per-server upstream request counters.

mod support;

use std::time::{Duration, Instant};

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_counters_histogram_and_upstream_counters() {
    const N: usize = 7;
    let a = Origin::start("a");
    let cfg = format!(
        "{}[metrics]\nlisten = \"{}\"\n\n{}\
         [[routes]]\nname = \"r\"\nhosts = [\"metrics.test\"]\npath_prefix = \"/r\"\nupstream = \"u\"\n\n{}",
        server_section("metrics"),
        free_addr(),
        listener_section("web", &free_addr()),
        upstream_section("u", &[&a]),
    );
    let gw = Gateway::start(&cfg);
    let c = client();
    for i in 0..N {
        let r = get_with_host(&c, &gw.url(&format!("/r/{i}")), "metrics.test").await;
        assert_eq!(r.status, 200);
    }
    let miss = get_with_host(&c, &gw.url("/nothing"), "metrics.test").await;
    assert_eq!(miss.status, 404);

    // Counters are updated when a request is logged, which may be just after the answer.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (text, samples) = loop {
        let text = gw.metrics_text().await;
        let samples = parse_metrics(&text);
        let done = metric_sum(
            &samples,
            "switchyard_requests_total",
            &[("route", "r"), ("upstream", "u"), ("code", "200")],
        ) >= N as f64
            && metric_sum(&samples, "switchyard_requests_total", &[("code", "404")]) >= 1.0;
        if done || Instant::now() > deadline {
            break (text, samples);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let ok = metric_find(
        &samples,
        "switchyard_requests_total",
        &[("route", "r"), ("upstream", "u"), ("code", "200")],
    );
    assert_eq!(ok.len(), 1, "one series for r/u/200:\n{text}");
    assert_eq!(ok[0].value, N as f64, "requests_total r/u/200:\n{text}");
    assert!(
        metric_sum(&samples, "switchyard_requests_total", &[("code", "404")]) >= 1.0,
        "the 404 is counted:\n{text}"
    );

    assert_eq!(
        metric_sum(
            &samples,
            "switchyard_request_duration_seconds_count",
            &[("route", "r")]
        ),
        N as f64,
        "duration histogram count:\n{text}"
    );
    let inf = metric_find(
        &samples,
        "switchyard_request_duration_seconds_bucket",
        &[("route", "r"), ("le", "+Inf")],
    );
    assert_eq!(inf.len(), 1, "+Inf bucket for r:\n{text}");
    assert_eq!(inf[0].value, N as f64);
    assert!(
        metric_sum(
            &samples,
            "switchyard_request_duration_seconds_sum",
            &[("route", "r")]
        ) > 0.0
    );

    assert_eq!(
        metric_sum(
            &samples,
            "switchyard_upstream_requests_total",
            &[("upstream", "u")]
        ),
        N as f64,
        "upstream_requests_total for u:\n{text}"
    );
    let identity = format!("g/127.0.0.1:{}", a.port());
    assert_eq!(
        metric_sum(
            &samples,
            "switchyard_upstream_requests_total",
            &[("upstream", "u"), ("server", &identity)]
        ),
        N as f64,
        "server label is the identity {identity}:\n{text}"
    );
    for s in metric_find(&samples, "switchyard_upstream_requests_total", &[]) {
        assert!(s.labels.contains_key("outcome"), "outcome label: {s:?}");
    }
}

/// Per-server gauges are refreshed from the live state at every scrape: in-flight counts while a
/// slow request is open, and health.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_and_health_gauges_follow_live_state() {
    let a = Origin::start("a");
    a.set_delay(Duration::from_millis(1500));
    let cfg = format!(
        "{}[metrics]\nlisten = \"{}\"\n\n{}\
         [[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"u\"\n\n{}",
        server_section("gauges"),
        free_addr(),
        listener_section("web", &free_addr()),
        upstream_section("u", &[&a]),
    );
    let gw = Gateway::start(&cfg);
    let server = format!("g/127.0.0.1:{}", a.port());
    let url = gw.url("/slow");
    let slow = tokio::spawn(async move { client().get(url).send().await.map(|r| r.status()) });

    let mut seen_in_flight = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let samples = gw.metrics().await;
        let v = metric_sum(
            &samples,
            "switchyard_backend_in_flight",
            &[("upstream", "u"), ("server", &server)],
        );
        if v >= 1.0 {
            seen_in_flight = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen_in_flight, "the slow request never showed as in flight");
    assert_eq!(slow.await.unwrap().unwrap(), 200);

    // The request's in-flight guard ends in Pingora's logging phase, which runs after the
    // response reached the client: the gauge is back to 0 shortly after, and stays there.
    let mut in_flight = f64::NAN;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        in_flight = metric_sum(
            &gw.metrics().await,
            "switchyard_backend_in_flight",
            &[("upstream", "u"), ("server", &server)],
        );
        if in_flight == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(in_flight, 0.0, "in-flight back to 0 once the request ended");
    let samples = gw.metrics().await;
    assert_eq!(
        metric_sum(
            &samples,
            "switchyard_backend_healthy",
            &[("upstream", "u"), ("server", &server)]
        ),
        1.0
    );
}
