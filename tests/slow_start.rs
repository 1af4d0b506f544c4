//! Slow start (`slow_start_ms`): a server brought back into service (admin enable, health
//! recovery) under a steady request loop gets a small share at first and its even share after
//! the window; the origins count what reaches them.
//!
//! The early bound: at 10%..23.5% of its weight over the first 15% of the window, the server's
//! expected share is 9%..19% (about 14% on average, measured 10%..17%), so the check is "below
//! half the even share" there, and "below 30%" over the first half of the window (24%
//! expected), with margin for the randomness of the thinning. The window is long enough for a
//! debug build on a busy machine to serve a few dozen requests in its first 15%; the reading
//! after the window lasts until it has 100 requests.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

const WINDOW: Duration = Duration::from_millis(3_000);
/// The early reading: the first 15% of the window.
const EARLY: Duration = Duration::from_millis(450);

fn gateway(prefix: &str, a: &Origin, b: &Origin, health: &str) -> Gateway {
    Gateway::start(&format!(
        "{}[admin]\nlisten = \"{}\"\n\n{}\
         [[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"u\"\n\n\
         [[upstreams]]\nname = \"u\"\nalgorithm = \"wrr\"\nslow_start_ms = {}\n{health}\n\
           [[upstreams.groups]]\n  name = \"g\"\n  servers = [{{ address = \"127.0.0.1\", port = {} }}, \
         {{ address = \"127.0.0.1\", port = {} }}]\n",
        server_section(prefix),
        free_addr(),
        listener_section("web", &free_addr()),
        WINDOW.as_millis(),
        a.port(),
        b.port(),
    ))
}

/// Load requests each origin received so far: (a, b).
fn counts(a: &Origin, b: &Origin) -> (usize, usize) {
    let load = |o: &Origin| {
        o.requests()
            .iter()
            .filter(|r| r.path().starts_with("/load/"))
            .count()
    };
    (load(a), load(b))
}

/// B's share of the requests the two origins saw between two readings.
fn share(from: (usize, usize), to: (usize, usize)) -> (f64, usize) {
    let (da, db) = (to.0 - from.0, to.1 - from.1);
    let n = da + db;
    (db as f64 / n.max(1) as f64, n)
}

/// Keeps `loops` sequential request loops running against the gateway until stopped (each
/// bounded to `max` requests); returns their handles.
fn steady_load(
    gw: &Gateway,
    loops: usize,
    max: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<usize>> {
    (0..loops)
        .map(|l| {
            let (url, stop) = (gw.url(&format!("/load/{l}")), Arc::clone(stop));
            tokio::spawn(async move {
                let c = client();
                let mut ok = 0;
                for _ in 0..max {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if get(&c, &url).await.status == 200 {
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect()
}

/// Readings of the origins' counts at the start of the ramp, after `early`, after half the
/// window, a little past the end of the window and once 100 more requests were served there
/// (at least 0.6 s later, at most 5 s); `back` is when B was brought back.
async fn ramp_readings(
    a: &Origin,
    b: &Origin,
    early: Duration,
    back: Instant,
) -> [(usize, usize); 5] {
    let start = counts(a, b);
    tokio::time::sleep_until((back + early).into()).await;
    let early_reading = counts(a, b);
    tokio::time::sleep_until((back + WINDOW / 2).into()).await;
    let second = counts(a, b);
    // A little past the window: picks made from then on see the full weight.
    tokio::time::sleep_until((back + WINDOW + Duration::from_millis(100)).into()).await;
    let after = counts(a, b);
    let (min_end, max_end) = (
        Instant::now() + Duration::from_millis(600),
        Instant::now() + Duration::from_secs(5),
    );
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = counts(a, b);
        let served = now.0 + now.1 - after.0 - after.1;
        if (Instant::now() >= min_end && served >= 100) || Instant::now() >= max_end {
            return [start, early_reading, second, after, now];
        }
    }
}

fn check_ramp(what: &str, r: [(usize, usize); 5]) {
    let (early, n_early) = share(r[0], r[1]);
    let (first_second, n_second) = share(r[0], r[2]);
    let (after, n_after) = share(r[3], r[4]);
    eprintln!(
        "{what}: B's share {early:.3} in the first {EARLY:?} ({n_early} requests), \
         {first_second:.3} in the first half of the window ({n_second}), {after:.3} after the \
         window ({n_after})"
    );
    assert!(n_early >= 50 && n_after >= 100, "{what}: too few requests");
    // At 10%..23.5% of its weight over the first 15% of the window, B's share is 9%..19% (14% on
    // average); without slow start it would be 50% at once.
    assert!(early < 0.25, "{what}: early share {early:.3}");
    // 10%..55% of its weight over the first half: 24% on average.
    assert!(
        first_second < 0.30,
        "{what}: first-second share {first_second:.3}"
    );
    assert!(
        (0.40..=0.60).contains(&after),
        "{what}: share after the window {after:.3}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_re_enabled_server_ramps_up_over_the_window() {
    let (a, b) = (Origin::start("a"), Origin::start("b"));
    let gw = gateway("slow-admin", &a, &b, "");
    let admin = |verb: &str| {
        gw.admin_url(&format!(
            "/api/upstreams/u/servers/127.0.0.1:{}/{verb}",
            b.port()
        ))
    };
    let c = client();
    assert_eq!(
        send(&c, "POST", &admin("disable"), None, &[]).await.status,
        200
    );

    let stop = Arc::new(AtomicBool::new(false));
    let load = steady_load(&gw, 4, 20_000, &stop);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = counts(&a, &b);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(share(before, counts(&a, &b)).0, 0.0, "B is disabled");

    let back = Instant::now();
    assert_eq!(
        send(&c, "POST", &admin("enable"), None, &[]).await.status,
        200
    );
    let readings = ramp_readings(&a, &b, EARLY, back).await;
    stop.store(true, Ordering::Relaxed);
    for l in load {
        assert!(l.await.unwrap() > 0);
    }
    check_ramp("admin enable", readings);
}

/// Polls every 5 ms until `f` holds (bounded by `timeout`); returns when it did.
async fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> Instant {
    let end = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < end, "condition not reached in {timeout:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Instant::now()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_back_from_failing_health_checks_ramps_up() {
    let (a, b) = (Origin::start("a"), Origin::start("b"));
    let health = "  [upstreams.health.active]\n  protocol = \"http\"\n  path = \"/health\"\n  \
                  interval_ms = 50\n  timeout_ms = 300\n  healthy_threshold = 1\n  \
                  unhealthy_threshold = 1\n";
    let gw = gateway("slow-health", &a, &b, health);
    let stop = Arc::new(AtomicBool::new(false));
    let load = steady_load(&gw, 4, 20_000, &stop);
    // B serves its share, then fails its checks (and requests) and goes out of service.
    wait_until(Duration::from_secs(5), || counts(&a, &b).1 > 20).await;
    b.set_status(503);
    let mut last = (counts(&a, &b).1, Instant::now());
    wait_until(Duration::from_secs(5), || {
        let now = counts(&a, &b).1;
        if now != last.0 {
            last = (now, Instant::now());
        }
        last.1.elapsed() > Duration::from_millis(300)
    })
    .await;
    // B answers again: its next check brings it back; its first request marks the ramp's start.
    let out = counts(&a, &b).1;
    b.set_status(200);
    let back = wait_until(Duration::from_secs(5), || counts(&a, &b).1 > out).await;
    let readings = ramp_readings(&a, &b, EARLY, back).await;
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    check_ramp("health recovery", readings);
}
