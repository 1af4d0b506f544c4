//! Weight ratios and smoothness.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use switchyard_balance::{Algorithm, Tried};

#[test]
fn weight_ratios_within_two_points() {
    let weights = [5, 3, 1, 1];
    for algorithm in [
        Algorithm::Wrr,
        Algorithm::Random,
        Algorithm::LeastConn,
        Algorithm::ConsistentHash,
    ] {
        let p = pool(algorithm, &weights);
        // least_conn: each request finishes at once (the guard is never held).
        let c = counts(&p.snapshot(), algorithm, 10_000);
        assert_shares(&c, &weights, algorithm.name());
    }
}

#[test]
fn wrr_and_least_conn_are_exact_per_period() {
    for algorithm in [Algorithm::Wrr, Algorithm::LeastConn] {
        let p = pool(algorithm, &[5, 3, 2]);
        assert_eq!(
            counts(&p.snapshot(), algorithm, 10_000),
            [5_000, 3_000, 2_000]
        );
    }
}

#[test]
fn ewma_without_latency_differences_follows_weights() {
    // Nothing measured, nothing in flight: every cost ties, ties go to the weighted draw.
    let weights = [3, 1];
    let p = pool(Algorithm::Ewma, &weights);
    assert_shares(
        &counts(&p.snapshot(), Algorithm::Ewma, 10_000),
        &weights,
        "ewma",
    );
}

fn sequence(weights: &[u32], n: usize) -> Vec<usize> {
    let p = pool(Algorithm::Wrr, weights);
    let snap = p.snapshot();
    (0..n).map(|_| pick(&snap, None).unwrap()).collect()
}

fn max_run(seq: &[usize], of: usize) -> usize {
    let (mut best, mut run) = (0, 0);
    for &x in seq {
        run = if x == of { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

#[test]
fn five_to_one_is_smooth() {
    assert_eq!(sequence(&[5, 1], 6), [0, 0, 0, 1, 0, 0]);
    let seq = sequence(&[5, 1], 600);
    // Within every period of 6 picks, never more than 3 in a row (NGINX's sequence).
    assert!(seq.chunks(6).all(|period| max_run(period, 0) <= 3));
    // Across period boundaries the run is 5 (…b a a | a a a b…): the least any 5:1 sequence can
    // do, since five `a`s must fall between consecutive `b`s. Never more.
    assert_eq!(max_run(&seq, 0), 5);
    assert_eq!(seq.iter().filter(|&&x| x == 1).count(), 100);
}

#[test]
fn hundred_to_one_to_one_is_smooth() {
    let seq = sequence(&[100, 1, 1], 102 * 10);
    assert!(max_run(&seq, 0) <= 51, "max run {}", max_run(&seq, 0));
    // b and c alternate: never two b's (or two c's) without the other in between.
    let minors: Vec<usize> = seq.iter().copied().filter(|&x| x != 0).collect();
    assert_eq!(minors.len(), 20);
    assert!(minors.windows(2).all(|w| w[0] != w[1]), "{minors:?}");
}

#[test]
fn wrr_period_of_scaled_weights_matches_reduced_ones() {
    assert_eq!(sequence(&[500, 100], 6), [0, 0, 0, 1, 0, 0]);
}

#[test]
fn random_is_weighted_with_many_servers() {
    let weights: Vec<u32> = (0..20).map(|i| 1 + i % 4).collect();
    let p = pool(Algorithm::Random, &weights);
    let c = counts(&p.snapshot(), Algorithm::Random, 100_000);
    assert_shares(&c, &weights, "random");
    let _ = Tried::default();
}
