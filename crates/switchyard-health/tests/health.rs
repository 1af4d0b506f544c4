//! Active and passive health checks against real origins on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use switchyard_health::{
    HealthSpec, HttpProbe, PassiveEvent, PassiveSpec, ProbeKind, ProbeSpec, ServerState,
    UpstreamHealth,
};

/// Slack added to every computed bound: the machine is small and shared.
const SLACK: Duration = Duration::from_secs(3);

/// HTTP checks of `/health` every 100 ms, timeout 300 ms, thresholds 2/2.
fn http_probe() -> ProbeSpec {
    ProbeSpec::http(HttpProbe::get("/health"))
        .interval(Duration::from_millis(100))
        .timeout(Duration::from_millis(300))
        .thresholds(2, 2)
}

fn active(probe: ProbeSpec) -> HealthSpec {
    HealthSpec {
        active: Some(probe),
        passive: None,
    }
}

#[tokio::test]
async fn http_503_makes_unhealthy_then_200_makes_healthy() {
    let origin = Origin::start().await;
    let cfg = active(http_probe());
    let pool = pool(&cfg, &[origin.addr]);
    let recorder = Arc::new(Recorder::default());
    let health = UpstreamHealth::with_observer(pool.clone(), &cfg, recorder.clone()).unwrap();
    assert!(!healthy(&pool, origin.addr), "starts out of rotation");
    health.initial_round().await;
    assert!(healthy(&pool, origin.addr));
    health.start().unwrap();

    origin.set_status(503);
    // interval × unhealthy_threshold (+10% jitter) + timeout.
    let bound = Duration::from_millis(110 * 2 + 300) + SLACK;
    let took = wait_for(bound, || !healthy(&pool, origin.addr)).await;
    assert!(took.is_some(), "not unhealthy within {bound:?}");
    assert!(pool.snapshot().candidates().is_empty());
    let view = health.server(&id(origin.addr)).unwrap();
    assert_eq!(view.state, ServerState::Unhealthy);
    let reason = view.reason.unwrap();
    assert!(
        reason.contains("2 consecutive failed checks (last: HTTP 503 from /health)"),
        "{reason}"
    );

    origin.set_status(200);
    let took = wait_for(bound, || healthy(&pool, origin.addr)).await;
    assert!(took.is_some(), "not healthy again within {bound:?}");
    let view = health.server(&id(origin.addr)).unwrap();
    assert_eq!(view.state, ServerState::Healthy);
    assert_eq!(
        view.reason.as_deref(),
        Some("healthy: 2 consecutive passes")
    );
    assert!(view.last_transition.is_some());

    let transitions = recorder.transitions.lock().unwrap().clone();
    let flags: Vec<bool> = transitions.iter().map(|t| t.1).collect();
    assert_eq!(flags, [true, false, true], "{transitions:?}");
    assert!(transitions[0].2.contains("first check passed"));
    let checks = recorder.checks.lock().unwrap().clone();
    assert!(checks.iter().any(|c| c.1 == "status"));
    assert!(checks.iter().any(|c| c.1 == "pass"));
}

#[tokio::test]
async fn head_method_is_sent() {
    let origin = Origin::start().await;
    let cfg = active(ProbeSpec {
        kind: ProbeKind::Http(HttpProbe::get("/health").method(http::Method::HEAD)),
        ..http_probe()
    });
    let pool = pool(&cfg, &[origin.addr]);
    let health = UpstreamHealth::new(pool.clone(), &cfg).unwrap();
    health.initial_round().await;
    assert!(healthy(&pool, origin.addr));
    assert_eq!(origin.methods.lock().unwrap().as_slice(), ["HEAD"]);
}

#[tokio::test]
async fn port_override_probes_another_port() {
    let origin = Origin::start().await;
    // The server's own port has nothing listening; the check port has the origin.
    let server: SocketAddr = format!("127.0.0.1:{}", closed_port()).parse().unwrap();
    let cfg = active(http_probe().port(origin.addr.port()));
    let pool = pool(&cfg, &[server]);
    let health = UpstreamHealth::new(pool.clone(), &cfg).unwrap();
    health.initial_round().await;
    assert!(healthy(&pool, server));
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn tcp_check_detects_a_stopped_origin() {
    let origin = Origin::start().await;
    let cfg = active(ProbeSpec {
        kind: ProbeKind::Tcp,
        ..http_probe()
    });
    let pool = pool(&cfg, &[origin.addr]);
    let health = UpstreamHealth::new(pool.clone(), &cfg).unwrap();
    health.initial_round().await;
    assert!(healthy(&pool, origin.addr));
    assert_eq!(origin.hits(), 0, "a TCP check sends no request");
    health.start().unwrap();
    origin.stop().await;
    let bound = Duration::from_millis(110 * 2 + 300) + SLACK;
    assert!(wait_for(bound, || !healthy(&pool, origin.addr))
        .await
        .is_some());
    let view = health.server(&id(origin.addr)).unwrap();
    assert!(
        view.reason.as_deref().unwrap().contains("connect refused"),
        "{view:?}"
    );
}

#[tokio::test]
async fn status_ranges_accept_and_reject() {
    let not_found = Origin::start().await;
    not_found.set_status(404);
    let redirect = Origin::start().await;
    redirect.set_status(302);
    let ok = Origin::start().await;
    ok.set_status(204);
    let cfg = active(ProbeSpec {
        kind: ProbeKind::Http(HttpProbe::get("/health").status_codes([200..=299, 404..=404])),
        ..http_probe()
    });
    let pool = pool(&cfg, &[not_found.addr, redirect.addr, ok.addr]);
    let health = UpstreamHealth::new(pool.clone(), &cfg).unwrap();
    health.initial_round().await;
    assert!(healthy(&pool, not_found.addr));
    assert!(healthy(&pool, ok.addr));
    assert!(!healthy(&pool, redirect.addr));
    let view = health.server(&id(redirect.addr)).unwrap();
    assert_eq!(
        view.last_check,
        Some(switchyard_health::CheckResult::Status(302))
    );
}

#[tokio::test]
async fn initial_round_marks_dead_unhealthy_and_live_healthy_before_returning() {
    let live = Origin::start().await;
    let dead: SocketAddr = format!("127.0.0.1:{}", closed_port()).parse().unwrap();
    // A long interval: only the initial round can decide.
    let cfg = active(http_probe().interval(Duration::from_secs(60)));
    let pool = pool(&cfg, &[live.addr, dead]);
    let health = UpstreamHealth::new(pool.clone(), &cfg).unwrap();
    let views = health.servers();
    assert!(views.iter().all(|v| v.state == ServerState::Pending));
    assert!(pool.snapshot().candidates().is_empty());
    let start = Instant::now();
    health.initial_round().await;
    assert!(start.elapsed() < Duration::from_millis(300) + SLACK);
    assert!(healthy(&pool, live.addr));
    assert!(!healthy(&pool, dead));
    assert_eq!(
        health.server(&id(dead)).unwrap().state,
        ServerState::Unhealthy
    );
    assert_eq!(pool.snapshot().candidates().len(), 1);
}

#[tokio::test]
async fn initial_round_is_bounded_by_the_timeout() {
    // A listener that accepts but never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let cfg = active(http_probe().interval(Duration::from_secs(60)));
    let pool = pool(&cfg, &[addr]);
    let health = UpstreamHealth::new(pool.clone(), &cfg).unwrap();
    let start = Instant::now();
    health.initial_round().await;
    assert!(start.elapsed() < Duration::from_millis(300) + SLACK);
    assert!(!healthy(&pool, addr));
    assert_eq!(
        health.server(&id(addr)).unwrap().last_check,
        Some(switchyard_health::CheckResult::Timeout { after_ms: 300 })
    );
    drop(silent);
}

#[tokio::test]
async fn removed_server_is_no_longer_probed_and_added_one_waits_for_its_check() {
    let a = Origin::start().await;
    let b = Origin::start().await;
    let cfg = active(http_probe());
    let pool = pool(&cfg, &[a.addr, b.addr]);
    let health = UpstreamHealth::new(pool.clone(), &cfg).unwrap();
    health.initial_round().await;
    health.start().unwrap();
    assert!(wait_for(SLACK, || b.hits() >= 3).await.is_some());

    // Remove b, and change a's weight: a keeps its state.
    let before = health.server(&id(a.addr)).unwrap();
    pool.update(vec![spec(a.addr)]);
    pool.modify(id(a.addr).as_str(), |s| s.weight = 7);
    health.sync_servers();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let b_hits = b.hits();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(b.hits(), b_hits, "b was probed after its removal");
    assert!(health.server(&id(b.addr)).is_none());
    let after = health.server(&id(a.addr)).unwrap();
    assert!(after.healthy);
    assert_eq!(before.last_transition, after.last_transition);
    assert!(a.hits() > 3, "a is still checked");

    // A new identity stays out until its first check passes.
    let c = Origin::start().await;
    pool.update(vec![spec(a.addr), spec(c.addr)]);
    health.sync_servers();
    assert!(
        !healthy(&pool, c.addr),
        "new server routed before any check"
    );
    assert!(wait_for(SLACK, || healthy(&pool, c.addr)).await.is_some());
    assert!(healthy(&pool, a.addr));
}

#[tokio::test]
async fn new_server_failing_its_first_check_stays_out() {
    let a = Origin::start().await;
    let cfg = active(http_probe());
    let pool = pool(&cfg, &[a.addr]);
    let health = UpstreamHealth::new(pool.clone(), &cfg).unwrap();
    health.initial_round().await;
    health.start().unwrap();
    let bad = Origin::start().await;
    bad.set_status(500);
    pool.update(vec![spec(a.addr), spec(bad.addr)]);
    health.sync_servers();
    assert!(wait_for(SLACK, || bad.hits() >= 3).await.is_some());
    assert!(!healthy(&pool, bad.addr));
}

/// Passive checks only: threshold 3, ejection after `ejection_ms`.
fn passive(ejection_ms: u64) -> PassiveSpec {
    PassiveSpec {
        unhealthy_threshold: 3,
        ejection: Duration::from_millis(ejection_ms),
        ..PassiveSpec::default()
    }
}

fn passive_only(p: PassiveSpec) -> HealthSpec {
    HealthSpec {
        active: None,
        passive: Some(p),
    }
}

#[tokio::test]
async fn passive_ejection_and_return_after_ejection_ms() {
    let a: SocketAddr = "127.0.0.1:10001".parse().unwrap();
    let b: SocketAddr = "127.0.0.1:10002".parse().unwrap();
    let cfg = passive_only(passive(300));
    let pool = pool(&cfg, &[a, b]);
    let recorder = Arc::new(Recorder::default());
    let health = UpstreamHealth::with_observer(pool.clone(), &cfg, recorder.clone()).unwrap();
    health.initial_round().await; // no active checks: returns at once
    health.start().unwrap();
    assert!(healthy(&pool, a) && healthy(&pool, b));
    let stats = pool.snapshot().servers()[0].stats.clone();

    // A non-failure resets the count.
    health.report(&stats, PassiveEvent::Status(500));
    health.report(&stats, PassiveEvent::Status(500));
    health.report(&stats, PassiveEvent::Status(404));
    health.report(&stats, PassiveEvent::Status(500));
    health.report(&stats, PassiveEvent::Status(500));
    assert!(healthy(&pool, a));
    assert_eq!(health.server(&id(a)).unwrap().passive_failures, 2);
    let ejected_at = Instant::now();
    health.report(&stats, PassiveEvent::Status(500));
    assert!(!healthy(&pool, a));
    let view = health.server(&id(a)).unwrap();
    assert_eq!(view.state, ServerState::Ejected);
    assert_eq!(
        view.reason.as_deref(),
        Some("ejected: 3 consecutive failures (last: HTTP 500)")
    );
    assert_eq!(recorder.ejections.lock().unwrap().len(), 1);
    assert_eq!(pool.snapshot().candidates().len(), 1);

    let took = wait_for(Duration::from_millis(300) + SLACK, || healthy(&pool, a)).await;
    assert!(took.is_some(), "not returned after ejection_ms");
    assert!(ejected_at.elapsed() >= Duration::from_millis(300));
    assert!(health
        .server(&id(a))
        .unwrap()
        .reason
        .unwrap()
        .starts_with("returned after ejection"));
    let transitions = recorder.transitions.lock().unwrap().clone();
    assert_eq!(
        transitions.iter().map(|t| t.1).collect::<Vec<_>>(),
        [false, true]
    );
}

#[tokio::test]
async fn max_ejection_percent_keeps_one_of_two() {
    let a: SocketAddr = "127.0.0.1:10001".parse().unwrap();
    let b: SocketAddr = "127.0.0.1:10002".parse().unwrap();
    let cfg = passive_only(PassiveSpec {
        max_ejection_percent: 50,
        ..passive(60000)
    });
    let pool = pool(&cfg, &[a, b]);
    let health = UpstreamHealth::new(pool.clone(), &cfg).unwrap();
    let servers: Vec<_> = pool
        .snapshot()
        .servers()
        .iter()
        .map(|s| s.stats.clone())
        .collect();
    for _ in 0..10 {
        for s in &servers {
            health.report(s, PassiveEvent::ConnectError);
        }
    }
    let up = [healthy(&pool, a), healthy(&pool, b)];
    assert_eq!(up.iter().filter(|h| **h).count(), 1, "{up:?}");
    assert_eq!(pool.snapshot().candidates().len(), 1);
}

#[tokio::test]
async fn ejected_server_returns_through_active_checks() {
    let origin = Origin::start().await;
    let cfg = HealthSpec {
        active: Some(http_probe()),
        passive: Some(PassiveSpec {
            unhealthy_threshold: 2,
            ..passive(600_000)
        }),
    };
    let pool = pool(&cfg, &[origin.addr]);
    let health = UpstreamHealth::new(pool.clone(), &cfg).unwrap();
    health.initial_round().await;
    health.start().unwrap();
    let stats = pool.snapshot().servers()[0].stats.clone();
    health.report(&stats, PassiveEvent::Timeout);
    health.report(&stats, PassiveEvent::Timeout);
    assert!(!healthy(&pool, origin.addr));
    assert_eq!(
        health.server(&id(origin.addr)).unwrap().state,
        ServerState::Ejected
    );
    // healthy_threshold (2) passes at 100 ms intervals, far sooner than ejection_ms.
    assert!(wait_for(SLACK, || healthy(&pool, origin.addr))
        .await
        .is_some());
    let reason = health.server(&id(origin.addr)).unwrap().reason.unwrap();
    assert_eq!(reason, "returned after ejection: 2 consecutive passes");
}

#[test]
fn manual_clock_drives_the_return_after_ejection() {
    use switchyard_balance::{Algorithm, Clock, ManualClock, Pool, PoolOptions, StatsStore};
    let a: SocketAddr = "127.0.0.1:10001".parse().unwrap();
    let clock = Arc::new(ManualClock::default());
    let cfg = passive_only(passive(1000));
    let opts = PoolOptions::new(Algorithm::Wrr).clock(clock.clone() as Arc<dyn Clock>);
    let pool = Arc::new(Pool::new(
        "api",
        opts,
        vec![spec(a)],
        Arc::new(StatsStore::default()),
    ));
    // No tokio runtime here: no timer, tick() drives the return.
    let health = UpstreamHealth::new(pool.clone(), &cfg).unwrap();
    for _ in 0..3 {
        health.report_id(&id(a), PassiveEvent::Timeout);
    }
    assert!(!healthy(&pool, a));
    assert_eq!(
        health.server(&id(a)).unwrap().reason.as_deref(),
        Some("ejected: 3 consecutive failures (last: timeout)")
    );
    clock.advance_ms(999);
    health.tick();
    assert!(!healthy(&pool, a));
    assert_eq!(health.server(&id(a)).unwrap().ejected_for_ms, Some(999));
    clock.advance_ms(1);
    health.tick();
    assert!(healthy(&pool, a));
    assert_eq!(health.server(&id(a)).unwrap().state, ServerState::Healthy);
    assert_eq!(
        health.server(&id(a)).unwrap().last_transition_ago_ms,
        Some(0)
    );
}
