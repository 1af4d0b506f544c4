//! Per-server concurrency limits and the upstream queue (`max_in_flight_per_server`, server
//! `max_in_flight`, `queue_size`, `queue_timeout_ms`): origins count how many requests they
//! answer at once, and the gateway must never let that exceed the limit; what does not fit is
//! queued (served in waves) or refused with 503 + `Retry-After`, counted by reason.

mod support;

use std::time::{Duration, Instant};

use support::*;

fn server(o: &Origin, extra: &str) -> String {
    format!(
        "    [[upstreams.groups.servers]]\n    address = \"127.0.0.1\"\n    port = {}\n    {extra}\n",
        o.port()
    )
}

/// A gateway with `[metrics]`, `[admin]` and one route to upstream `u` with `upstream_keys` and
/// `servers` in group `g`.
fn start(prefix: &str, upstream_keys: &str, servers: &str) -> Gateway {
    Gateway::start(&format!(
        "{}[metrics]\nlisten = \"{}\"\n\n[admin]\nlisten = \"{}\"\n\
         token_env = \"SWITCHYARD_TEST_UNSET_TOKEN_VARIABLE\"\n\n{}\
         [[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"u\"\nretries = 0\n\n\
         [[upstreams]]\nname = \"u\"\n{upstream_keys}\n  [[upstreams.groups]]\n  name = \"g\"\n{servers}",
        server_section(prefix),
        free_addr(),
        free_addr(),
        listener_section("web", &free_addr()),
    ))
}

/// Sends `n` GETs at once, each on its own connection; returns (status, Retry-After, origin,
/// time to the answer) in completion order.
async fn burst(gw: &Gateway, n: usize) -> Vec<(u16, Option<String>, Option<String>, Duration)> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let url = gw.url(&format!("/req/{i}"));
        tasks.push(tokio::spawn(async move {
            let c = fresh_client();
            let t = Instant::now();
            let r = get(&c, &url).await;
            (r.status, r.header("retry-after"), r.origin(), t.elapsed())
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

async fn rejected(gw: &Gateway, reason: &str) -> f64 {
    metric_sum(
        &gw.metrics().await,
        "switchyard_queue_rejected_total",
        &[("upstream", "u"), ("reason", reason)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_limit_of_two_is_never_exceeded_and_the_excess_gets_503_at_once() {
    let o = Origin::start("limited");
    o.set_delay(Duration::from_millis(400));
    let gw = start("limit", "max_in_flight_per_server = 2", &server(&o, ""));
    let mut ok = 0;
    let mut refused = 0;
    for _round in 0..2 {
        for (status, retry_after, _, took) in burst(&gw, 6).await {
            match status {
                200 => ok += 1,
                503 => {
                    refused += 1;
                    assert_eq!(retry_after.as_deref(), Some("1"), "503 carries Retry-After");
                    assert!(
                        took < Duration::from_millis(300),
                        "refused at once, not after the origin's delay: {took:?}"
                    );
                }
                other => panic!("unexpected status {other}"),
            }
        }
    }
    assert_eq!(
        o.peak_concurrency(),
        2,
        "the origin saw at most (and reached) 2 at once"
    );
    assert_eq!(ok, 4, "two per round");
    assert_eq!(refused, 8);
    assert_eq!(
        o.request_count(),
        4,
        "refused requests never reached the origin"
    );
    assert_eq!(rejected(&gw, "full").await, 8.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_queue_of_ten_serves_every_request_in_waves() {
    let o = Origin::start("queued");
    o.set_delay(Duration::from_millis(200));
    let gw = start(
        "queue",
        "max_in_flight_per_server = 2\nqueue_size = 10\nqueue_timeout_ms = 5000",
        &server(&o, ""),
    );
    let t = Instant::now();
    let answers = burst(&gw, 12).await;
    let took = t.elapsed();
    assert!(
        answers.iter().all(|a| a.0 == 200),
        "every request was served: {answers:?}"
    );
    assert_eq!(o.peak_concurrency(), 2);
    // 12 requests, 2 at a time, 200 ms each: six waves.
    assert!(
        took >= Duration::from_millis(1100),
        "served in waves of two: {took:?}"
    );
    let samples = gw.metrics().await;
    let waited = metric_sum(
        &samples,
        "switchyard_queue_wait_seconds_count",
        &[("upstream", "u")],
    );
    assert!(waited >= 10.0, "ten requests waited in the queue: {waited}");
    assert_eq!(rejected(&gw, "full").await, 0.0);
    assert_eq!(rejected(&gw, "timeout").await, 0.0);
    assert_eq!(
        metric_sum(&samples, "switchyard_queue_length", &[("upstream", "u")]),
        0.0
    );

    // While requests wait, the status page shows the queue.
    o.set_delay(Duration::from_millis(1500));
    let bg = {
        let url = gw.url("/slow");
        (0..5)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { get(&fresh_client(), &url).await.status })
            })
            .collect::<Vec<_>>()
    };
    let c = client();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        seen = get(&c, &gw.admin_url("/status")).await.body;
        if seen.contains("data-queue-waiting=\"3\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        seen.contains("data-queue-waiting=\"3\"") && seen.contains("2 / 2"),
        "the status page shows 3 waiting and 2 of 2 in flight: {seen}"
    );
    for t in bg {
        assert_eq!(t.await.unwrap(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_that_waits_queue_timeout_ms_gets_503() {
    let o = Origin::start("slow");
    o.set_delay(Duration::from_millis(1500));
    let gw = start(
        "qtimeout",
        "max_in_flight_per_server = 1\nqueue_size = 5\nqueue_timeout_ms = 300",
        &server(&o, ""),
    );
    let mut answers = burst(&gw, 3).await;
    answers.sort_by_key(|a| a.0);
    assert_eq!(answers[0].0, 200, "{answers:?}");
    for (status, retry_after, _, took) in &answers[1..] {
        assert_eq!(*status, 503);
        assert_eq!(retry_after.as_deref(), Some("1"));
        assert!(
            *took >= Duration::from_millis(280) && *took < Duration::from_millis(1200),
            "refused after queue_timeout_ms, before the slot freed: {took:?}"
        );
    }
    assert_eq!(rejected(&gw, "timeout").await, 2.0);
    assert_eq!(o.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_limit_replaces_the_upstream_one_and_standby_takes_the_overflow() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let s = Origin::start("standby");
    for o in [&a, &b, &s] {
        o.set_delay(Duration::from_millis(400));
    }
    let gw = start(
        "override",
        "max_in_flight_per_server = 1",
        &format!(
            "{}{}{}",
            server(&a, ""),
            server(&b, "max_in_flight = 3"),
            server(&s, "standby = true\n    max_in_flight = 2"),
        ),
    );
    let answers = burst(&gw, 8).await;
    let by = |name: &str| {
        answers
            .iter()
            .filter(|x| x.0 == 200 && x.2.as_deref() == Some(name))
            .count()
    };
    assert_eq!((by("a"), by("b"), by("standby")), (1, 3, 2), "{answers:?}");
    assert_eq!(answers.iter().filter(|x| x.0 == 503).count(), 2);
    assert_eq!(a.peak_concurrency(), 1);
    assert_eq!(b.peak_concurrency(), 3);
    assert_eq!(s.peak_concurrency(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consistent_hash_key_whose_server_is_full_goes_elsewhere_then_comes_back() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let gw = start(
        "hashfull",
        "algorithm = \"consistent_hash\"\nhash_on = \"header:X-User\"\nmax_in_flight_per_server = 1",
        &format!("{}{}", server(&a, ""), server(&b, "")),
    );
    let c = fresh_client();
    let home = send(&c, "GET", &gw.url("/"), None, &[("x-user", "u1")])
        .await
        .origin()
        .unwrap();
    let home_origin = if home == "a" { &a } else { &b };
    home_origin.set_delay(Duration::from_millis(600));
    let hold = {
        let url = gw.url("/hold");
        tokio::spawn(async move {
            send(&fresh_client(), "GET", &url, None, &[("x-user", "u1")])
                .await
                .origin()
        })
    };
    assert!(
        eventually(Duration::from_secs(2), || home_origin.active_requests()
            == 1)
        .await
    );
    let other = send(&c, "GET", &gw.url("/"), None, &[("x-user", "u1")]).await;
    assert_eq!(other.status, 200);
    assert_ne!(other.origin().unwrap(), home, "the full server was skipped");
    assert_eq!(hold.await.unwrap().unwrap(), home);
    home_origin.set_delay(Duration::ZERO);
    let back = send(&c, "GET", &gw.url("/"), None, &[("x-user", "u1")]).await;
    assert_eq!(
        back.origin().unwrap(),
        home,
        "the key returns to its server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusals_are_all_counted_but_logged_once_per_interval() {
    let o = Origin::start("flooded");
    o.set_delay(Duration::from_millis(500));
    let gw = start(
        "refusal-log",
        "max_in_flight_per_server = 1\nqueue_size = 1\nqueue_timeout_ms = 5000",
        &server(&o, ""),
    );
    let answers = burst(&gw, 20).await;
    let refused = answers.iter().filter(|a| a.0 == 503).count();
    assert!(refused >= 15, "most of the burst was refused: {answers:?}");
    assert_eq!(
        rejected(&gw, "full").await,
        refused as f64,
        "every one counted"
    );
    let log = gw.log();
    let lines = log.lines().filter(|l| l.contains("queue full")).count();
    assert_eq!(
        lines, 1,
        "the first refusal is logged, the others only counted:\n{log}"
    );
    // The next line, after the interval, carries the count of those left out (not waited
    // for here: ten seconds).
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_enabled_while_requests_wait_serves_them_at_once() {
    // `a` is busy for 1.5 s with the only slot; `b` is disabled. A request queued behind it
    // must go to `b` as soon as the admin API enables it, not when `a`'s slot frees.
    let (a, b) = (Origin::start("busy"), Origin::start("back"));
    a.set_delay(Duration::from_millis(1500));
    let gw = start(
        "enable-wakes",
        "max_in_flight_per_server = 1\nqueue_size = 5\nqueue_timeout_ms = 5000",
        &format!("{}{}", server(&a, ""), server(&b, "")),
    );
    let admin = |verb: &str| {
        gw.admin_url(&format!(
            "/api/upstreams/u/servers/127.0.0.1:{}/{verb}",
            b.port()
        ))
    };
    let c = fresh_client();
    assert_eq!(
        send(&c, "POST", &admin("disable"), None, &[]).await.status,
        200
    );
    let first = {
        let url = gw.url("/first");
        tokio::spawn(async move { get(&fresh_client(), &url).await.status })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let queued = {
        let url = gw.url("/queued");
        tokio::spawn(async move {
            let t = Instant::now();
            let r = get(&fresh_client(), &url).await;
            (r.status, r.origin(), t.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        send(&c, "POST", &admin("enable"), None, &[]).await.status,
        200
    );
    let (status, origin, took) = queued.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        origin.as_deref(),
        Some("back"),
        "served by the enabled server"
    );
    assert!(
        took < Duration::from_millis(1000),
        "woken when the server was enabled, not when the busy slot freed: {took:?}"
    );
    assert_eq!(first.await.unwrap(), 200);
}
