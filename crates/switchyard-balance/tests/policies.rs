//! Tiers, drain, disable, all-down policy, tried servers and state kept across rebuilds, for
//! every algorithm.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::*;
use switchyard_balance::{
    AllDownPolicy, Clock, Outcome, Pool, PoolOptions, ServerSpec, StatsStore, Tried,
};

fn picks(pool: &Pool, algorithm: switchyard_balance::Algorithm, n: usize) -> Vec<Option<usize>> {
    let snap = pool.snapshot();
    (0..n).map(|k| pick(&snap, key_for(algorithm, k))).collect()
}

#[test]
fn standby_only_when_no_primary_is_available() {
    for algorithm in ALL {
        let specs = vec![spec(0, 1), spec(1, 1), spec(2, 5).standby(true)];
        let p = Pool::new(
            "t",
            PoolOptions::new(algorithm),
            specs,
            Arc::new(StatsStore::default()),
        );
        assert!(
            picks(&p, algorithm, 1_000)
                .iter()
                .all(|x| matches!(x, Some(0 | 1))),
            "{algorithm}: standby got traffic while primaries were up"
        );
        // One primary down: the other takes everything.
        p.snapshot().servers()[0].stats.set_healthy(false);
        p.refresh();
        assert!(
            picks(&p, algorithm, 1_000).iter().all(|x| *x == Some(1)),
            "{algorithm}"
        );
        // Both down: the standby takes everything.
        p.snapshot().servers()[1].stats.set_healthy(false);
        p.refresh();
        assert!(
            picks(&p, algorithm, 1_000).iter().all(|x| *x == Some(2)),
            "{algorithm}"
        );
        // A disabled or draining primary does not count as available either.
        p.snapshot().servers()[0].stats.set_healthy(true);
        p.modify("g/10.0.0.1:80", |s| s.weight = 0);
        p.refresh();
        assert!(
            picks(&p, algorithm, 100).iter().all(|x| *x == Some(2)),
            "{algorithm}"
        );
    }
}

#[test]
fn drained_and_disabled_servers_get_nothing() {
    for algorithm in ALL {
        let specs = vec![spec(0, 1), spec(1, 0), spec(2, 3).enabled(false)];
        let p = Pool::new(
            "t",
            PoolOptions::new(algorithm),
            specs,
            Arc::new(StatsStore::default()),
        );
        assert!(
            picks(&p, algorithm, 1_000).iter().all(|x| *x == Some(0)),
            "{algorithm}"
        );
    }
}

#[test]
fn all_down_reject_and_panic_mode() {
    for algorithm in ALL {
        let specs = vec![
            spec(0, 1),
            spec(1, 2),
            spec(2, 1).enabled(false),
            spec(3, 0),
        ];
        let store = Arc::new(StatsStore::default());
        let reject = Pool::new(
            "t",
            PoolOptions::new(algorithm),
            specs.clone(),
            store.clone(),
        );
        for s in reject.snapshot().servers() {
            s.stats.set_healthy(false);
        }
        reject.refresh();
        assert!(reject.snapshot().candidates().is_empty());
        assert!(
            picks(&reject, algorithm, 10).iter().all(Option::is_none),
            "{algorithm}"
        );

        let all = Pool::new(
            "t",
            PoolOptions::new(algorithm).when_all_down(AllDownPolicy::All),
            specs,
            store,
        );
        let snap = all.snapshot();
        assert!(snap.is_panic());
        let got = picks(&all, algorithm, 3_000);
        assert!(
            got.iter().all(|x| matches!(x, Some(0 | 1))),
            "{algorithm}: {got:?}"
        );
        // Every enabled, non-draining server is used in panic mode.
        for i in [0, 1] {
            assert!(
                got.contains(&Some(i)),
                "{algorithm}: server {i} unused in panic mode"
            );
        }
    }
}

#[test]
fn tried_servers_are_never_returned() {
    for algorithm in ALL {
        let p = pool(algorithm, &[5, 1, 1, 3]);
        let snap = p.snapshot();
        for k in 0..200 {
            let key = key_for(algorithm, k);
            let mut tried = Tried::default();
            let mut seen = Vec::new();
            while let Some(i) = pick_tried(&snap, key, &tried) {
                assert!(!seen.contains(&i), "{algorithm}: {i} returned twice");
                seen.push(i);
                tried.insert(&snap.servers()[i].stats);
            }
            assert_eq!(seen.len(), 4, "{algorithm}: not every server was offered");
        }
    }
}

#[test]
fn weight_changes_keep_in_flight_and_ewma() {
    for algorithm in ALL {
        let (p, clock) = manual(algorithm, &[1, 1]);
        let before = p.snapshot();
        let stats = before.servers()[0].stats.clone();
        let g = stats.begin(clock.now_nanos());
        clock.advance_ms(40);
        g.finish(Outcome::Success, clock.now_nanos());
        let _held = stats.begin(clock.now_nanos());
        let ewma = stats.ewma_nanos(clock.now_nanos());
        assert!(ewma > 0.0);

        assert!(p.modify("g/10.0.0.1:80", |s| s.weight = 7));
        let after = p.snapshot();
        assert_eq!(after.servers()[0].spec.weight, 7);
        assert!(
            Arc::ptr_eq(&after.servers()[0].stats, &stats),
            "{algorithm}"
        );
        assert_eq!(after.servers()[0].stats.in_flight(), 1);
        assert_eq!(after.servers()[0].stats.ewma_nanos(clock.now_nanos()), ewma);

        // A reload with a new weight and a new server keeps it too.
        p.update(vec![spec(0, 3), spec(1, 1), spec(2, 1)]);
        let reloaded = p.snapshot();
        assert!(
            Arc::ptr_eq(&reloaded.servers()[0].stats, &stats),
            "{algorithm}"
        );
        assert_eq!(reloaded.servers()[0].stats.in_flight(), 1);
        assert_eq!(reloaded.servers()[0].stats.requests(), 1);
    }
}

#[test]
fn degenerate_pools_never_panic() {
    for algorithm in ALL {
        for weights in [
            &[][..],
            &[0][..],
            &[0, 0, 0][..],
            &[1][..],
            &[u32::MAX, 1][..],
        ] {
            let specs: Vec<ServerSpec> = weights
                .iter()
                .enumerate()
                .map(|(i, &w)| spec(i, w))
                .collect();
            let p = Pool::new(
                "t",
                PoolOptions::new(algorithm).when_all_down(AllDownPolicy::All),
                specs,
                Arc::new(StatsStore::default()),
            );
            let snap = p.snapshot();
            for k in 0..100 {
                let got = pick(&snap, key_for(algorithm, k));
                let any = weights.iter().any(|&w| w > 0);
                assert_eq!(got.is_some(), any, "{algorithm} {weights:?}");
                // The missing-key path of hashing algorithms, too.
                let _ = pick(&snap, None);
            }
            if weights == [1] {
                let mut tried = Tried::default();
                tried.insert(&snap.servers()[0].stats);
                assert!(pick_tried(&snap, Some(1), &tried).is_none());
            }
        }
    }
}

#[test]
fn custom_selector_through_with_selector() {
    use switchyard_balance::select::{LeastLoaded, P2c, PeakEwma};
    let opts = PoolOptions::new(switchyard_balance::Algorithm::Wrr).with_selector(|s, c| {
        Box::new(P2c::new(
            PeakEwma {
                default_rtt_ns: 1.0,
            },
            s,
            c,
        ))
    });
    let p = pool_with(opts, &[1, 1]);
    assert!(pick(&p.snapshot(), None).is_some());
    let opts = PoolOptions::new(switchyard_balance::Algorithm::Wrr)
        .with_selector(|s, c| Box::new(LeastLoaded::new(PeakEwma::default(), s, c)));
    let p = pool_with(opts, &[1, 1]);
    assert!(pick(&p.snapshot(), None).is_some());
}

/// Issue 14: a retry whose tried servers cover every primary falls through to the standby
/// servers, then (panic mode) to every enabled server, never to a tried one.
#[test]
fn retries_fall_through_tiers_to_standby_then_panic_mode() {
    for algorithm in ALL {
        for policy in [AllDownPolicy::Reject, AllDownPolicy::All] {
            // Two healthy primaries, one healthy standby, one unhealthy primary.
            let specs = vec![spec(0, 1), spec(1, 1), spec(2, 1).standby(true), spec(3, 1)];
            let p = Pool::new(
                "t",
                PoolOptions::new(algorithm).when_all_down(policy),
                specs,
                Arc::new(StatsStore::default()),
            );
            p.snapshot().servers()[3].stats.set_healthy(false);
            p.refresh();
            let snap = p.snapshot();
            assert!(!snap.is_panic(), "{algorithm}");
            let key = key_for(algorithm, 7);
            let mut tried = Tried::default();
            let mut order = Vec::new();
            while let Some(s) = snap.pick(key, &tried) {
                let i = snap
                    .servers()
                    .iter()
                    .position(|x| Arc::ptr_eq(&x.stats, &s.stats))
                    .unwrap();
                assert!(!order.contains(&i), "{algorithm}: server {i} picked twice");
                order.push(i);
                tried.insert(&s.stats);
                assert!(order.len() <= 4, "{algorithm}: {order:?}");
            }
            let mut primaries = order[..2].to_vec();
            primaries.sort_unstable();
            assert_eq!(primaries, [0, 1], "{algorithm} {policy:?}: {order:?}");
            assert_eq!(
                order[2], 2,
                "{algorithm} {policy:?}: standby third: {order:?}"
            );
            match policy {
                // Panic mode's tier adds the unhealthy server last.
                AllDownPolicy::All => assert_eq!(order.len(), 4, "{algorithm}: {order:?}"),
                AllDownPolicy::Reject => assert_eq!(order.len(), 3, "{algorithm}: {order:?}"),
            }
        }
    }
}
