//! Slow start with a hand-driven clock: the share of a server that re-enters service at 0%, 50%
//! and 100% of the window for every weighted algorithm; no ramp at start-up; hashing unaffected.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use switchyard_balance::{
    Algorithm, InFlight, ManualClock, Pool, PoolOptions, ServerSpec, StatsStore, Tried,
};

const WINDOW_MS: u64 = 1_000;
const A: &str = "g/127.0.0.1:8081";
const B: &str = "g/127.0.0.1:8082";

fn specs() -> Vec<ServerSpec> {
    vec![
        ServerSpec::new("g", "127.0.0.1:8081".parse().unwrap(), 1),
        ServerSpec::new("g", "127.0.0.1:8082".parse().unwrap(), 1),
    ]
}

fn pool(algorithm: Algorithm, clock: &Arc<ManualClock>) -> Pool {
    let opts = PoolOptions::new(algorithm)
        .clock(Arc::clone(clock) as _)
        .slow_start_ms(WINDOW_MS);
    Pool::new("api", opts, specs(), Arc::new(StatsStore::default()))
}

/// Share of server B over `n` sequential requests (each ends before the next is claimed).
fn sequential_share(p: &Pool, now: u64, n: usize) -> f64 {
    let snap = p.snapshot();
    let b = (0..n)
        .filter(|_| {
            let (i, _slot) = snap.claim(None, &Tried::default(), now).unwrap();
            snap.servers()[i].spec.id.as_str() == B
        })
        .count();
    b as f64 / n as f64
}

/// Share of server B among `n` requests all held in flight at once.
fn held_share(p: &Pool, now: u64, n: usize) -> f64 {
    let snap = p.snapshot();
    let mut held: Vec<InFlight> = Vec::new();
    let mut b = 0;
    for _ in 0..n {
        let (i, slot) = snap.claim(None, &Tried::default(), now).unwrap();
        b += usize::from(snap.servers()[i].spec.id.as_str() == B);
        held.push(slot);
    }
    b as f64 / n as f64
}

/// Takes B out (admin disable) and back in at the clock's time: its ramp starts then.
fn bounce_b(p: &Pool, clock: &ManualClock) {
    assert!(p.modify(B, |s| s.enabled = false));
    clock.advance_ms(500);
    assert!(p.modify(B, |s| s.enabled = true));
}

/// The share of a server carrying `f` of its weight beside an equal server at full weight.
fn expected(f: f64) -> f64 {
    f / (1.0 + f)
}

fn assert_near(what: &str, got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol,
        "{what}: share {got:.3}, expected {want:.3} ± {tol}"
    );
}

/// The ramp's share at 0%, 50% and 100% of the window: 10%, 55%, 100% of the weight.
const POINTS: [(u64, f64); 3] = [(0, 0.10), (WINDOW_MS / 2, 0.55), (WINDOW_MS, 1.0)];

#[test]
fn wrr_and_random_ramp_a_returning_server() {
    for algorithm in [Algorithm::Wrr, Algorithm::Random] {
        let clock = Arc::new(ManualClock::default());
        clock.advance_ms(10_000);
        let p = pool(algorithm, &clock);
        bounce_b(&p, &clock);
        let start = clock.now_nanos_ms();
        for (at, f) in POINTS {
            let now = (start + at) * 1_000_000;
            let got = sequential_share(&p, now, 20_000);
            assert_near(&format!("{algorithm} at {at} ms"), got, expected(f), 0.02);
        }
    }
}

#[test]
fn least_conn_ramps_in_flight_and_tie_breaks() {
    let clock = Arc::new(ManualClock::default());
    clock.advance_ms(10_000);
    let p = pool(Algorithm::LeastConn, &clock);
    bounce_b(&p, &clock);
    let start = clock.now_nanos_ms();
    for (at, f) in POINTS {
        let now = (start + at) * 1_000_000;
        // Held requests: in-flight counts settle at the ramped weights (deterministic).
        let got = held_share(&p, now, 220);
        assert_near(
            &format!("least_conn held at {at} ms"),
            got,
            expected(f),
            0.01,
        );
        // Sequential requests (every count 0): the weighted tie-break is thinned too.
        let got = sequential_share(&p, now, 20_000);
        assert_near(
            &format!("least_conn ties at {at} ms"),
            got,
            expected(f),
            0.02,
        );
    }
}

#[test]
fn ewma_scales_the_ramping_server_s_load() {
    let clock = Arc::new(ManualClock::default());
    clock.advance_ms(10_000);
    let p = pool(Algorithm::Ewma, &clock);
    // Equal estimates: both answered once in 20 ms, finishing at the same time.
    let snap = p.snapshot();
    let now = clock.now_nanos_ms() * 1_000_000;
    for s in snap.servers() {
        s.stats
            .begin(now - 20_000_000)
            .finish(switchyard_balance::Outcome::Success, now);
    }
    bounce_b(&p, &clock);
    let start = clock.now_nanos_ms();
    for (at, f) in POINTS {
        let now = (start + at) * 1_000_000;
        // Held requests: B is chosen while its cost / share is the lower one.
        let got = held_share(&p, now, 220);
        assert_near(&format!("ewma at {at} ms"), got, expected(f), 0.02);
    }
}

#[test]
fn no_ramp_at_start_up() {
    for algorithm in [
        Algorithm::Wrr,
        Algorithm::Random,
        Algorithm::LeastConn,
        Algorithm::Ewma,
    ] {
        let clock = Arc::new(ManualClock::default());
        clock.advance_ms(10_000);
        // Both servers wait for their first check (as with active health checks), then pass.
        let opts = PoolOptions::new(algorithm)
            .clock(Arc::clone(&clock) as _)
            .slow_start_ms(WINDOW_MS)
            .initially_healthy(false);
        let p = Pool::new("api", opts, specs(), Arc::new(StatsStore::default()));
        for s in p.snapshot().servers() {
            s.stats.set_healthy(true);
        }
        p.refresh();
        let snap = p.snapshot();
        assert!(snap
            .servers()
            .iter()
            .all(|s| !s.stats.service().is_ramping()));
        let now = clock.now_nanos_ms() * 1_000_000;
        assert_near(
            &format!("{algorithm} at start-up"),
            held_share(&p, now, 4_000),
            0.5,
            0.03,
        );
    }
}

#[test]
fn health_recovery_reload_and_dns_additions_ramp_survivors_keep_their_state() {
    let clock = Arc::new(ManualClock::default());
    clock.advance_ms(10_000);
    let p = pool(Algorithm::Wrr, &clock);
    // Health: down, then up again.
    let b = Arc::clone(&p.snapshot().servers()[1].stats);
    b.set_healthy(false);
    p.refresh();
    clock.advance_ms(100);
    b.set_healthy(true);
    p.refresh();
    assert!(b.service().is_ramping());
    let ramp_start = clock.now_nanos_ms();
    // A reload that adds C: C ramps from now, B's ramp keeps its start.
    clock.advance_ms(WINDOW_MS / 2);
    let mut next = specs();
    next.push(ServerSpec::new("g", "127.0.0.1:8083".parse().unwrap(), 1));
    p.update(next);
    let snap = p.snapshot();
    let c = &snap.servers()[2];
    let now = clock.now_nanos_ms() * 1_000_000;
    assert_eq!(c.ramp(now), switchyard_balance::slow_start::RAMP_FLOOR);
    let half = snap.servers()[1].ramp(now);
    let want = switchyard_balance::slow_start::RAMP_ONE * 55 / 100;
    assert!(half.abs_diff(want) <= 1, "B's ramp restarted: {half}");
    assert!(!snap.servers()[0].stats.service().is_ramping());
    // A server removed (DNS answer without it) and added back while its stats are kept ramps.
    clock.advance_ms(WINDOW_MS);
    p.update(specs()[..1].to_vec());
    p.update(specs());
    let now = clock.now_nanos_ms() * 1_000_000;
    assert_eq!(
        p.snapshot().servers()[1].ramp(now),
        switchyard_balance::slow_start::RAMP_FLOOR
    );
    assert!(!p.snapshot().servers()[0].stats.service().is_ramping());
    // After the window, the next build ends every ramp: picks are plain wrr again.
    clock.advance_ms(WINDOW_MS);
    p.refresh();
    assert!(p
        .snapshot()
        .servers()
        .iter()
        .all(|s| !s.stats.service().is_ramping()));
    let _ = ramp_start;
}

#[test]
fn off_by_default() {
    let clock = Arc::new(ManualClock::default());
    clock.advance_ms(10_000);
    let opts = PoolOptions::new(Algorithm::Wrr).clock(Arc::clone(&clock) as _);
    let p = Pool::new("api", opts, specs(), Arc::new(StatsStore::default()));
    bounce_b(&p, &clock);
    assert!(!p.snapshot().servers()[1].stats.service().is_ramping());
    let now = clock.now_nanos_ms() * 1_000_000;
    assert_eq!(sequential_share(&p, now, 1_000), 0.5);
}

#[test]
fn hashing_is_not_ramped() {
    let clock = Arc::new(ManualClock::default());
    clock.advance_ms(10_000);
    let p = pool(Algorithm::ConsistentHash, &clock);
    let keys: Vec<u64> = (0..2_000)
        .map(|i| p.hash_key(format!("user-{i}").as_bytes()))
        .collect();
    let place = |p: &Pool| -> Vec<String> {
        let snap = p.snapshot();
        keys.iter()
            .map(|&k| {
                let now = clock.now_nanos_ms() * 1_000_000;
                let (i, _slot) = snap.claim(Some(k), &Tried::default(), now).unwrap();
                snap.servers()[i].spec.id.to_string()
            })
            .collect()
    };
    let before = place(&p);
    assert!(before.iter().any(|s| s == A) && before.iter().any(|s| s == B));
    bounce_b(&p, &clock);
    assert!(p.snapshot().servers()[1].stats.service().is_ramping());
    assert_eq!(
        place(&p),
        before,
        "a ramping server kept every key of its own"
    );
}

/// Milliseconds on the manual clock.
trait Millis {
    fn now_nanos_ms(&self) -> u64;
}

impl Millis for ManualClock {
    fn now_nanos_ms(&self) -> u64 {
        switchyard_balance::Clock::now_nanos(self) / 1_000_000
    }
}
