//! least_conn and ewma react to load.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use switchyard_balance::{Algorithm, Clock, InFlight, Outcome};

#[test]
fn least_conn_avoids_the_busy_server() {
    let p = pool(Algorithm::LeastConn, &[1, 1]);
    let snap = p.snapshot();
    let _busy: Vec<InFlight> = (0..10).map(|_| snap.servers()[0].stats.begin(0)).collect();
    // B takes the next picks until it holds as many as A.
    let mut held = Vec::new();
    for _ in 0..10 {
        let i = pick(&snap, None).unwrap();
        assert_eq!(i, 1);
        held.push(snap.servers()[i].stats.begin(0));
    }
    // Now they tie at 10: the next two picks split.
    let a = pick(&snap, None).unwrap();
    held.push(snap.servers()[a].stats.begin(0));
    let b = pick(&snap, None).unwrap();
    assert_ne!(a, b);
}

#[test]
fn weighted_least_conn_respects_weights() {
    // Requests are held: in-flight counts converge to the 3:1 weights.
    let p = pool(Algorithm::LeastConn, &[3, 1]);
    let snap = p.snapshot();
    let mut held = Vec::new();
    for _ in 0..400 {
        let i = pick(&snap, None).unwrap();
        held.push(snap.servers()[i].stats.begin(0));
    }
    assert_eq!(snap.servers()[0].stats.in_flight(), 300);
    assert_eq!(snap.servers()[1].stats.in_flight(), 100);
}

#[test]
fn least_conn_above_the_scan_limit_still_avoids_busy_servers() {
    let n = switchyard_balance::select::least_conn::SCAN_LIMIT + 36;
    let p = pool(Algorithm::LeastConn, &vec![1; n]);
    let snap = p.snapshot();
    // Half the servers are busy: P2C almost never picks one of them.
    let _busy: Vec<InFlight> = (0..n / 2)
        .flat_map(|i| (0..5).map(move |_| i))
        .map(|i| snap.servers()[i].stats.begin(0))
        .collect();
    let busy_picks = (0..10_000)
        .filter(|_| pick(&snap, None).unwrap() < n / 2)
        .count();
    // P2C picks a busy server only when both draws are busy: about 1/4.
    assert!(busy_picks < 3_000, "{busy_picks}");
}

/// Runs `rounds` sequential requests; `latency(i)` is server i's answer time and outcome.
fn simulate(
    algorithm: Algorithm,
    weights: &[u32],
    rounds: usize,
    latency: impl Fn(usize) -> (u64, Outcome),
) -> Vec<usize> {
    let (p, clock) = manual(algorithm, weights);
    let snap = p.snapshot();
    let mut counts = vec![0; weights.len()];
    for _ in 0..rounds {
        let i = pick(&snap, None).unwrap();
        counts[i] += 1;
        let g = snap.servers()[i].stats.begin(clock.now_nanos());
        let (ms, outcome) = latency(i);
        clock.advance_ms(ms);
        g.finish(outcome, clock.now_nanos());
    }
    counts
}

#[test]
fn ewma_prefers_the_fast_server() {
    let counts = simulate(Algorithm::Ewma, &[1, 1], 2_000, |i| {
        ([10, 100][i], Outcome::Success)
    });
    assert!(counts[0] * 100 >= 80 * 2_000, "{counts:?}");
}

#[test]
fn ewma_prefers_the_fast_server_under_concurrency() {
    // 8 requests overlap: each pick sees the other's in-flight count too.
    let (p, clock) = manual(Algorithm::Ewma, &[1, 1]);
    let snap = p.snapshot();
    let mut counts = [0usize; 2];
    let mut open: Vec<(u64, InFlight)> = Vec::new();
    for _ in 0..4_000 {
        let i = pick(&snap, None).unwrap();
        counts[i] += 1;
        let done_at = clock.now_nanos() + [10_000_000, 100_000_000][i];
        open.push((done_at, snap.servers()[i].stats.begin(clock.now_nanos())));
        clock.advance_ms(2);
        let now = clock.now_nanos();
        let (finished, still): (Vec<_>, Vec<_>) = open.into_iter().partition(|(t, _)| *t <= now);
        open = still;
        for (_, g) in finished {
            g.finish(Outcome::Success, now);
        }
    }
    assert!(counts[0] * 100 >= 80 * 4_000, "{counts:?}");
}

#[test]
fn ewma_penalises_fast_failures() {
    // Server 0 answers 503 in 1 ms; server 1 answers well in 50 ms.
    let counts = simulate(Algorithm::Ewma, &[1, 1], 2_000, |i| {
        [(1, Outcome::Failure), (50, Outcome::Success)][i]
    });
    assert!(counts[1] * 100 >= 90 * 2_000, "{counts:?}");
}

#[test]
fn ewma_tries_new_servers_without_flooding_them() {
    let (p, clock) = manual(Algorithm::Ewma, &[1, 1, 1]);
    let snap = p.snapshot();
    // Servers 0 and 1 are warm at 20 ms; server 2 is new (no estimate).
    for i in [0, 1] {
        let g = snap.servers()[i].stats.begin(clock.now_nanos());
        clock.advance_ms(20);
        g.finish(Outcome::Success, clock.now_nanos());
    }
    // Requests pile up without answers: the new server is tried, but takes only a few.
    let mut held = Vec::new();
    let mut to_new = 0;
    for _ in 0..60 {
        let i = pick(&snap, None).unwrap();
        if i == 2 {
            to_new += 1;
        }
        held.push(snap.servers()[i].stats.begin(clock.now_nanos()));
    }
    assert!(to_new >= 1, "the new server was never tried");
    assert!(to_new <= 30, "the new server was flooded: {to_new} of 60");
}

#[test]
fn ewma_decays_with_the_injected_clock() {
    let (p, clock) = manual(Algorithm::Ewma, &[1, 1]);
    let snap = p.snapshot();
    let s = &snap.servers()[0].stats;
    let g = s.begin(0);
    clock.advance_ms(100);
    g.finish(Outcome::Success, clock.now_nanos());
    let at_peak = s.ewma_nanos(clock.now_nanos());
    clock.advance_ms(10_000);
    let later = s.ewma_nanos(clock.now_nanos());
    assert!((at_peak - 100e6).abs() < 1.0);
    assert!((later / at_peak - (-1f64).exp()).abs() < 1e-6, "{later}");
}
