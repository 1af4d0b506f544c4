#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use switchyard_balance::{
    Algorithm, ManualClock, Pool, PoolOptions, ServerSpec, Snapshot, StatsStore, Tried,
};

pub const ALL: [Algorithm; 5] = [
    Algorithm::Wrr,
    Algorithm::LeastConn,
    Algorithm::Ewma,
    Algorithm::ConsistentHash,
    Algorithm::Random,
];

/// Server `i` is `10.0.0.{i+1}:80`, named by its index in the snapshot.
pub fn spec(i: usize, weight: u32) -> ServerSpec {
    ServerSpec::new("g", format!("10.0.0.{}:80", i + 1).parse().unwrap(), weight)
}

pub fn pool(algorithm: Algorithm, weights: &[u32]) -> Pool {
    pool_with(PoolOptions::new(algorithm), weights)
}

pub fn pool_with(opts: PoolOptions, weights: &[u32]) -> Pool {
    let specs = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| spec(i, w))
        .collect();
    Pool::new("test", opts, specs, Arc::new(StatsStore::default()))
}

pub fn manual(algorithm: Algorithm, weights: &[u32]) -> (Pool, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::default());
    let pool = pool_with(PoolOptions::new(algorithm).clock(clock.clone()), weights);
    (pool, clock)
}

/// Index of the picked server in the snapshot.
pub fn pick(snap: &Snapshot, key: Option<u64>) -> Option<usize> {
    pick_tried(snap, key, &Tried::default())
}

pub fn pick_tried(snap: &Snapshot, key: Option<u64>, tried: &Tried) -> Option<usize> {
    let s = snap.pick(key, tried)?;
    Some(
        snap.servers()
            .iter()
            .position(|x| Arc::ptr_eq(&x.stats, &s.stats))
            .unwrap(),
    )
}

/// A key for algorithms that hash (None otherwise), varying with `n`.
pub fn key_for(algorithm: Algorithm, n: usize) -> Option<u64> {
    (algorithm == Algorithm::ConsistentHash)
        .then(|| switchyard_balance::hash_key(format!("key-{n}").as_bytes()))
}

pub fn counts(snap: &Snapshot, algorithm: Algorithm, picks: usize) -> Vec<usize> {
    let mut c = vec![0; snap.servers().len()];
    for n in 0..picks {
        c[pick(snap, key_for(algorithm, n)).unwrap()] += 1;
    }
    c
}

/// Every share within ±2 percentage points of its weight's share.
pub fn assert_shares(counts: &[usize], weights: &[u32], what: &str) {
    let total: usize = counts.iter().sum();
    let wsum: u32 = weights.iter().sum();
    for (i, (&c, &w)) in counts.iter().zip(weights).enumerate() {
        let got = c as f64 / total as f64;
        let want = f64::from(w) / f64::from(wsum);
        assert!(
            (got - want).abs() <= 0.02,
            "{what}: server {i} got {got:.4}, want {want:.4} ({counts:?})"
        );
    }
}
