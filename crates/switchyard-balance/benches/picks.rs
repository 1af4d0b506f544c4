//! Pick cost of every algorithm at 10, 100, 1,000 and 10,000 servers, through the public
//! `Snapshot::pick` (clock read included where the algorithm needs it).
//!
//! `cargo bench -p switchyard-balance --bench picks -- --warm-up-time 1 --measurement-time 2`

#![allow(clippy::unwrap_used)] // benchmark setup

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use switchyard_balance::{
    Algorithm, Clock, InFlight, ManualClock, MonotonicClock, Outcome, Pool, PoolOptions,
    ServerSpec, StatsStore, Tried,
};

const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];

/// Ten distinct weights (1–10) mixed across the servers: no algorithm gets the equal-weight
/// shortcut (`wrr` groups servers of equal weight, so it descends a 10-leaf tree).
fn mixed_weight(i: usize) -> u32 {
    1 + (i as u32 * 7) % 10
}

/// Every server a weight of its own: `wrr`'s worst case (a tree of `⌈log₂ n⌉` levels).
fn distinct_weight(i: usize) -> u32 {
    1 + i as u32
}

fn pool(algorithm: Algorithm, n: usize) -> (Pool, Vec<InFlight>) {
    pool_with(algorithm, n, mixed_weight)
}

fn pool_with(algorithm: Algorithm, n: usize, weight: fn(usize) -> u32) -> (Pool, Vec<InFlight>) {
    let specs: Vec<ServerSpec> = (0..n)
        .map(|i| {
            let addr = format!("10.{}.{}.{}:80", i >> 16, (i >> 8) & 0xff, i & 0xff);
            ServerSpec::new("bench", addr.parse().unwrap(), weight(i))
        })
        .collect();
    let pool = Pool::new(
        "bench",
        PoolOptions::new(algorithm),
        specs,
        Arc::new(StatsStore::default()),
    );
    let snap = pool.snapshot();
    let mut held = Vec::new();
    for (i, s) in snap.servers().iter().enumerate() {
        // A latency estimate for every server, and some requests in flight.
        let g = s.stats.begin(0);
        g.finish(Outcome::Success, 1_000_000 + (i as u64 % 50) * 100_000);
        if i % 3 == 0 {
            held.push(s.stats.begin(0));
        }
    }
    (pool, held)
}

fn picks(c: &mut Criterion) {
    let algorithms = [
        ("wrr", Algorithm::Wrr),
        ("least_conn", Algorithm::LeastConn),
        ("ewma", Algorithm::Ewma),
        ("consistent_hash", Algorithm::ConsistentHash),
        ("random", Algorithm::Random),
    ];
    for (name, algorithm) in algorithms {
        let mut group = c.benchmark_group(format!("pick/{name}"));
        for n in SIZES {
            let (pool, _held) = pool(algorithm, n);
            let snap = pool.snapshot();
            let tried = Tried::default();
            let mut key = 0u64;
            group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
                b.iter(|| {
                    key = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
                    let k = (algorithm == Algorithm::ConsistentHash).then_some(key);
                    black_box(snap.pick(black_box(k), &tried).map(|s| s.spec.weight))
                })
            });
        }
        group.finish();
    }
    // `wrr` when every server has a weight of its own.
    let mut group = c.benchmark_group("pick/wrr_distinct_weights");
    for n in SIZES {
        let (pool, _held) = pool_with(Algorithm::Wrr, n, distinct_weight);
        let snap = pool.snapshot();
        let tried = Tried::default();
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| black_box(snap.pick(None, &tried).map(|s| s.spec.weight)))
        });
    }
    group.finish();
}

fn ramping_picks(c: &mut Criterion) {
    // Slow start under way: a tenth of the servers re-entered service 3 s into a 10 s window.
    // A manual clock, so the figure is the ramp's own cost (the gateway passes the clock
    // reading the request takes anyway).
    for (name, algorithm) in [
        ("wrr", Algorithm::Wrr),
        ("least_conn", Algorithm::LeastConn),
        ("ewma", Algorithm::Ewma),
        ("random", Algorithm::Random),
    ] {
        let mut group = c.benchmark_group(format!("pick_ramping/{name}"));
        for n in [100, 10_000] {
            let clock = Arc::new(ManualClock::default());
            clock.advance_ms(60_000);
            let specs: Vec<ServerSpec> = (0..n)
                .map(|i| {
                    let addr = format!("10.{}.{}.{}:80", i >> 16, (i >> 8) & 0xff, i & 0xff);
                    ServerSpec::new("bench", addr.parse().unwrap(), mixed_weight(i))
                })
                .collect();
            let opts = PoolOptions::new(algorithm)
                .clock(Arc::clone(&clock) as _)
                .slow_start_ms(10_000);
            let pool = Pool::new(
                "bench",
                opts,
                specs.clone(),
                Arc::new(StatsStore::default()),
            );
            let ramping: Vec<ServerSpec> = specs.iter().step_by(10).cloned().collect();
            pool.update_from(|cur| {
                cur.iter()
                    .filter(|s| !ramping.contains(s))
                    .cloned()
                    .collect()
            });
            pool.update(specs);
            clock.advance_ms(3_000);
            let snap = pool.snapshot();
            assert!(snap.servers()[0].stats.service().is_ramping());
            let tried = Tried::default();
            group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
                b.iter(|| black_box(snap.pick(None, &tried).map(|s| s.spec.weight)))
            });
        }
        group.finish();
    }
}

fn builds(c: &mut Criterion) {
    // Snapshot build (rebuilt on every reload, weight or health change) at 10,000 servers.
    let mut group = c.benchmark_group("build/10000");
    group.sample_size(10);
    for (name, algorithm) in [
        ("wrr", Algorithm::Wrr),
        ("least_conn", Algorithm::LeastConn),
        ("consistent_hash", Algorithm::ConsistentHash),
    ] {
        let (pool, _held) = pool(algorithm, 10_000);
        group.bench_function(name, |b| b.iter(|| pool.refresh()));
    }
    group.finish();
}

fn clock(c: &mut Criterion) {
    // The clock read that ewma pays per pick (the others skip it).
    c.bench_function("clock/monotonic_now", |b| {
        b.iter(|| black_box(MonotonicClock.now_nanos()))
    });
}

criterion_group!(benches, picks, ramping_picks, builds, clock);
criterion_main!(benches);
