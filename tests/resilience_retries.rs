//! Retries on response statuses (`retry_on_statuses`), the per-upstream retry budget
//! (`retry_budget_percent`, `retry_budget_min`), the backoff between tries (`retry_backoff_ms`)
//! and the whole request's deadline (`deadline_ms`).

mod support;

use std::time::{Duration, Instant};

use support::*;

fn servers(origins: &[&Origin]) -> String {
    origins
        .iter()
        .map(|o| {
            format!(
                "    [[upstreams.groups.servers]]\n    address = \"127.0.0.1\"\n    port = {}\n",
                o.port()
            )
        })
        .collect()
}

/// A gateway with `[metrics]` and one route per `(path prefix, route keys, upstream keys)`, each
/// to its own upstream over `origins`.
fn start(prefix: &str, routes: &[(&str, &str, &str)], origins: &[&Origin]) -> Gateway {
    let mut toml = format!(
        "{}[metrics]\nlisten = \"{}\"\n\n{}",
        server_section(prefix),
        free_addr(),
        listener_section("web", &free_addr()),
    );
    for (i, (path, route_keys, upstream_keys)) in routes.iter().enumerate() {
        toml.push_str(&format!(
            "[[routes]]\nname = \"r{i}\"\npath_prefix = \"{path}\"\nupstream = \"u{i}\"\n{route_keys}\n\n\
             [[upstreams]]\nname = \"u{i}\"\n{upstream_keys}\n  [[upstreams.groups]]\n  name = \"g\"\n{}\n",
            servers(origins)
        ));
    }
    Gateway::start(&toml)
}

fn counts(origins: &[&Origin]) -> Vec<usize> {
    origins.iter().map(|o| o.request_count()).collect()
}

fn clear(origins: &[&Origin]) {
    for o in origins {
        o.clear();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_is_retried_for_get_on_every_other_server_once_and_never_for_post() {
    let (a, b, c) = (Origin::start("a"), Origin::start("b"), Origin::start("c"));
    let all = [&a, &b, &c];
    for o in all {
        o.set_status(503);
    }
    let gw = start(
        "status-retry",
        &[("/", "retry_on_statuses = [503]\nretries = 2", "")],
        &all,
    );
    let cl = fresh_client();
    let r = get(&cl, &gw.url("/x")).await;
    assert_eq!(
        r.status, 503,
        "the last response is returned when tries run out"
    );
    assert!(
        r.origin().is_some(),
        "it is the server's answer, not the gateway's"
    );
    assert_eq!(counts(&all), [1, 1, 1], "three tries, never a server twice");
    let last = all
        .iter()
        .max_by_key(|o| o.last_request().map(|q| q.at))
        .unwrap();
    assert_eq!(
        r.origin().as_deref(),
        Some(last.name()),
        "the last try's answer"
    );

    clear(&all);
    let r = send(&cl, "POST", &gw.url("/x"), None, &[]).await;
    assert_eq!(r.status, 503);
    assert_eq!(counts(&all).iter().sum::<usize>(), 1, "POST is not retried");

    // One healthy server: a GET that meets a 503 first gets the 200.
    b.set_status(200);
    clear(&all);
    for i in 0..6 {
        let r = get(&cl, &gw.url(&format!("/ok/{i}"))).await;
        assert_eq!(r.status, 200, "{i}");
        assert_eq!(r.origin().as_deref(), Some("b"));
    }
    assert!(
        a.request_count() + c.request_count() >= 2,
        "503s were met and retried"
    );
    let retried = metric_sum(
        &gw.metrics().await,
        "switchyard_retries_total",
        &[("route", "r0")],
    );
    assert!(retried >= 4.0, "retries are counted: {retried}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_of_zero_disables_retries_while_the_defaults_retry() {
    let (a, b) = (Origin::start("a"), Origin::start("b"));
    let all = [&a, &b];
    for o in all {
        o.set_status(503);
    }
    let gw = start(
        "budget",
        &[
            (
                "/nobudget",
                "retry_on_statuses = [503]",
                "retry_budget_percent = 0\nretry_budget_min = 0",
            ),
            ("/default", "retry_on_statuses = [503]", ""),
        ],
        &all,
    );
    let cl = fresh_client();
    for i in 0..4 {
        assert_eq!(
            get(&cl, &gw.url(&format!("/nobudget/{i}"))).await.status,
            503
        );
    }
    assert_eq!(counts(&all).iter().sum::<usize>(), 4, "one try each");
    let samples = gw.metrics().await;
    assert_eq!(
        metric_sum(
            &samples,
            "switchyard_retry_budget_exhausted_total",
            &[("upstream", "u0")]
        ),
        4.0,
        "each denied retry is counted"
    );
    clear(&all);
    for i in 0..4 {
        assert_eq!(
            get(&cl, &gw.url(&format!("/default/{i}"))).await.status,
            503
        );
    }
    assert_eq!(
        counts(&all),
        [4, 4],
        "two tries each (retries = -1 allows one)"
    );
    assert_eq!(
        metric_sum(
            &gw.metrics().await,
            "switchyard_retry_budget_exhausted_total",
            &[("upstream", "u1")]
        ),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_between_tries_is_visible_in_the_timing() {
    let (a, b, c) = (Origin::start("a"), Origin::start("b"), Origin::start("c"));
    let all = [&a, &b, &c];
    for o in all {
        o.set_status(503);
    }
    let gw = start(
        "backoff",
        &[
            (
                "/slow",
                "retry_on_statuses = [503]\nretries = 2",
                "retry_backoff_ms = 200",
            ),
            ("/fast", "retry_on_statuses = [503]\nretries = 2", ""),
        ],
        &all,
    );
    let cl = fresh_client();
    let t = Instant::now();
    assert_eq!(get(&cl, &gw.url("/fast")).await.status, 503);
    let fast = t.elapsed();
    clear(&all);
    let t = Instant::now();
    assert_eq!(get(&cl, &gw.url("/slow")).await.status, 503);
    let slow = t.elapsed();
    assert_eq!(counts(&all), [1, 1, 1]);
    // Waits of 100..200 ms then 200..400 ms (equal jitter): at least 300 ms in all.
    assert!(fast < Duration::from_millis(250), "no backoff: {fast:?}");
    assert!(
        slow >= Duration::from_millis(300) && slow < Duration::from_millis(1500),
        "backed off twice: {slow:?}"
    );
    let times: Vec<Instant> = {
        let mut t: Vec<Instant> = all
            .iter()
            .filter_map(|o| o.last_request())
            .map(|r| r.at)
            .collect();
        t.sort();
        t
    };
    assert!(
        times[1] - times[0] >= Duration::from_millis(95),
        "{times:?}"
    );
    assert!(
        times[2] - times[1] >= Duration::from_millis(195),
        "{times:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_bounds_every_try_together() {
    let (a, b, c) = (Origin::start("a"), Origin::start("b"), Origin::start("c"));
    let all = [&a, &b, &c];
    for o in all {
        o.set_delay(Duration::from_millis(3000));
    }
    let gw = start(
        "deadline",
        &[
            (
                "/d",
                "timeout_ms = 600\nretries = 2\ndeadline_ms = 1000",
                "",
            ),
            ("/n", "timeout_ms = 600\nretries = 2", ""),
        ],
        &all,
    );
    let cl = fresh_client();
    let t = Instant::now();
    let r = get(&cl, &gw.url("/d")).await;
    let took = t.elapsed();
    assert_eq!(r.status, 504);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(1500),
        "the whole request took the deadline, not three tries: {took:?}"
    );
    assert_eq!(
        counts(&all).iter().sum::<usize>(),
        2,
        "the second try was cut short"
    );
    // Without a deadline, three tries of 600 ms each.
    let t = Instant::now();
    assert_eq!(get(&cl, &gw.url("/n")).await.status, 504);
    assert!(
        t.elapsed() >= Duration::from_millis(1700),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_retry_that_is_not_taken_leaves_the_wrr_order_alone() {
    // `a` answers 503, which the route lists but may not retry (`retries = 0`): deciding so
    // must not advance the smooth WRR rotation, so the three servers still take turns.
    let (a, b, c) = (Origin::start("a"), Origin::start("b"), Origin::start("c"));
    let all = [&a, &b, &c];
    a.set_status(503);
    let gw = start(
        "status-no-retry",
        &[(
            "/",
            "retry_on_statuses = [503]\nretries = 0",
            "algorithm = \"wrr\"",
        )],
        &all,
    );
    let cl = fresh_client();
    let mut statuses = Vec::new();
    for i in 0..30 {
        statuses.push(get(&cl, &gw.url(&format!("/n/{i}"))).await.status);
    }
    assert_eq!(counts(&all), [10, 10, 10], "each server in turn");
    assert_eq!(statuses.iter().filter(|&&s| s == 503).count(), 10);
}
