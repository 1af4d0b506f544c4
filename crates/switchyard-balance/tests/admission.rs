//! `max_in_flight` and the upstream queue: full servers are skipped by every selector, standby
//! servers take the overflow, hashing walks to the next server on the ring, and queued requests
//! are served in arrival order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use common::{spec, ALL};
use switchyard_balance::{
    Algorithm, InFlight, Pool, PoolOptions, Refusal, ServerSpec, StatsStore, Tried,
};

fn limited_pool(algorithm: Algorithm, limits: &[u32]) -> Pool {
    let specs: Vec<ServerSpec> = limits
        .iter()
        .enumerate()
        .map(|(i, &l)| spec(i, 1).max_in_flight(l))
        .collect();
    Pool::new(
        "test",
        PoolOptions::new(algorithm),
        specs,
        Arc::new(StatsStore::default()),
    )
}

#[test]
fn every_selector_skips_full_servers_and_never_exceeds_a_limit() {
    for algorithm in ALL {
        let pool = limited_pool(algorithm, &[2, 1, 3]);
        let snap = pool.snapshot();
        let mut held: Vec<(usize, InFlight)> = Vec::new();
        while let Ok(c) = snap.claim(Some(42), &Tried::default(), 0) {
            held.push(c);
            assert!(held.len() <= 6, "{algorithm}: more claims than slots");
        }
        assert_eq!(held.len(), 6, "{algorithm}: every slot is usable");
        for (i, limit) in [2, 1, 3].into_iter().enumerate() {
            assert_eq!(snap.servers()[i].stats.in_flight(), limit, "{algorithm}");
        }
        assert_eq!(
            snap.claim(None, &Tried::default(), 0).unwrap_err(),
            Refusal::Full,
            "{algorithm}"
        );
        // A freed slot is found again.
        let (i, _) = held.remove(0);
        let (j, _slot) = snap.claim(Some(42), &Tried::default(), 0).unwrap();
        assert_eq!(i, j, "{algorithm}");
    }
}

#[test]
fn a_hashed_key_whose_server_is_full_goes_to_the_next_and_comes_back() {
    let pool = limited_pool(Algorithm::ConsistentHash, &[1, 1, 1, 1]);
    let snap = pool.snapshot();
    let key = Some(pool.hash_key(b"user-7"));
    let (home, slot) = snap.claim(key, &Tried::default(), 0).unwrap();
    let (next, slot2) = snap.claim(key, &Tried::default(), 0).unwrap();
    assert_ne!(home, next);
    // The same overflow target every time (the ring's next server, not a random one).
    drop(slot2);
    assert_eq!(snap.claim(key, &Tried::default(), 0).unwrap().0, next);
    drop(slot);
    assert_eq!(snap.claim(key, &Tried::default(), 0).unwrap().0, home);
}

#[test]
fn smooth_wrr_order_is_kept_around_a_full_server() {
    // Weights 5:1; while server 1 is full, server 0 takes every pick; once free, server 1
    // is back in the smooth sequence (never more than five of server 0 in a row).
    let specs = vec![spec(0, 5), spec(1, 1).max_in_flight(1)];
    let pool = Pool::new(
        "t",
        PoolOptions::new(Algorithm::Wrr),
        specs,
        Arc::new(StatsStore::default()),
    );
    let snap = pool.snapshot();
    let blocker = snap.servers()[1].stats.try_begin(1, 0).unwrap();
    for _ in 0..12 {
        assert_eq!(snap.pick(None, &Tried::default()).unwrap().spec.weight, 5);
    }
    drop(blocker);
    let picks: Vec<u32> = (0..12)
        .map(|_| snap.pick(None, &Tried::default()).unwrap().spec.weight)
        .collect();
    assert_eq!(picks.iter().filter(|&&w| w == 1).count(), 2, "{picks:?}");
    assert!(
        !picks.windows(6).any(|w| w.iter().all(|&x| x == 5)),
        "{picks:?}"
    );
}

#[test]
fn standby_takes_the_overflow_only_when_every_primary_is_full() {
    let specs = vec![
        spec(0, 1).max_in_flight(1),
        spec(1, 1).max_in_flight(1),
        spec(2, 1).max_in_flight(2).standby(true),
    ];
    let pool = Pool::new(
        "t",
        PoolOptions::new(Algorithm::LeastConn),
        specs,
        Arc::new(StatsStore::default()),
    );
    let snap = pool.snapshot();
    let claims: Vec<usize> = (0..4)
        .map(|_| {
            let (i, slot) = snap.claim(None, &Tried::default(), 0).unwrap();
            std::mem::forget(slot);
            i
        })
        .collect();
    let mut primaries = claims[..2].to_vec();
    primaries.sort_unstable();
    assert_eq!(primaries, [0, 1]);
    assert_eq!(&claims[2..], &[2, 2]);
    assert_eq!(
        snap.claim(None, &Tried::default(), 0).unwrap_err(),
        Refusal::Full
    );
}

#[test]
fn unavailable_is_not_full() {
    let pool = limited_pool(Algorithm::Wrr, &[1]);
    let snap = pool.snapshot();
    snap.servers()[0].stats.set_healthy(false);
    pool.refresh();
    let snap = pool.snapshot();
    assert_eq!(
        snap.claim(None, &Tried::default(), 0).unwrap_err(),
        Refusal::Unavailable
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn queued_requests_are_served_first_come_first_served() {
    let pool = Rc::new(limited_pool(Algorithm::Wrr, &[1]));
    runtime().block_on(async {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let first = pool.admit(None, 10).await.unwrap();
                assert!(!first.queued);
                let order = Rc::new(RefCell::new(Vec::new()));
                let mut tasks = Vec::new();
                for n in 0..6 {
                    let (pool, order) = (Rc::clone(&pool), Rc::clone(&order));
                    tasks.push(tokio::task::spawn_local(async move {
                        let claim = pool.admit(None, 10).await.unwrap();
                        assert!(claim.queued);
                        order.borrow_mut().push(n);
                        // Hold the slot a moment: later waiters must keep waiting.
                        tokio::task::yield_now().await;
                        drop(claim);
                    }));
                    // Let it join the queue before the next one arrives.
                    tokio::task::yield_now().await;
                }
                assert_eq!(pool.store().queue().waiting(), 6);
                // A seventh request arriving now queues behind them (nobody jumps the line),
                // and an eighth finds the queue full at capacity 7.
                let late = {
                    let (pool, order) = (Rc::clone(&pool), Rc::clone(&order));
                    tokio::task::spawn_local(async move {
                        let claim = pool.admit(None, 7).await.unwrap();
                        order.borrow_mut().push(99);
                        drop(claim);
                    })
                };
                tokio::task::yield_now().await;
                assert_eq!(pool.admit(None, 7).await.unwrap_err(), Refusal::QueueFull);
                drop(first);
                for t in tasks {
                    t.await.unwrap();
                }
                late.await.unwrap();
                assert_eq!(*order.borrow(), [0, 1, 2, 3, 4, 5, 99]);
                assert_eq!(pool.store().queue().waiting(), 0);
            })
            .await;
    });
}

#[test]
fn a_waiter_that_gives_up_passes_its_turn_on() {
    let pool = Rc::new(limited_pool(Algorithm::Wrr, &[1]));
    runtime().block_on(async {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let first = pool.admit(None, 10).await.unwrap();
                // Gives up after 20 ms (as `queue_timeout_ms` does).
                let impatient = {
                    let pool = Rc::clone(&pool);
                    tokio::task::spawn_local(async move {
                        tokio::time::timeout(
                            std::time::Duration::from_millis(20),
                            pool.admit(None, 10),
                        )
                        .await
                        .is_err()
                    })
                };
                tokio::task::yield_now().await;
                let patient = {
                    let pool = Rc::clone(&pool);
                    tokio::task::spawn_local(async move { pool.admit(None, 10).await.is_ok() })
                };
                tokio::task::yield_now().await;
                assert!(impatient.await.unwrap(), "the impatient waiter timed out");
                assert_eq!(pool.store().queue().waiting(), 1);
                drop(first);
                let served = tokio::time::timeout(std::time::Duration::from_secs(2), patient)
                    .await
                    .expect("the freed slot reached the remaining waiter")
                    .unwrap();
                assert!(served);
            })
            .await;
    });
}

/// Spawns `n` waiters on `pool` one after the other (each joins the queue before the next
/// arrives); each records its number in `order` when it gets a server, then holds the slot
/// until `release` says so.
fn spawn_waiters(
    pool: &Rc<Pool>,
    n: usize,
    order: &Rc<RefCell<Vec<usize>>>,
    release: &Rc<tokio::sync::Notify>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..n)
        .map(|i| {
            let (pool, order, release) = (Rc::clone(pool), Rc::clone(order), Rc::clone(release));
            tokio::task::spawn_local(async move {
                let claim = pool.admit(None, 10).await.unwrap();
                assert!(claim.queued);
                order.borrow_mut().push(i);
                release.notified().await;
                drop(claim);
            })
        })
        .collect()
}

async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[test]
fn a_woken_waiter_that_loses_the_race_keeps_its_place() {
    let pool = Rc::new(limited_pool(Algorithm::Wrr, &[1]));
    runtime().block_on(async {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let first = pool.admit(None, 10).await.unwrap();
                let order = Rc::new(RefCell::new(Vec::new()));
                let release = Rc::new(tokio::sync::Notify::new());
                let mut tasks = Vec::new();
                for t in spawn_waiters(&pool, 3, &order, &release) {
                    tasks.push(t);
                    settle().await;
                }
                assert_eq!(pool.store().queue().waiting(), 3);
                // The slot freed for waiter 0 is taken, before it runs, by a claim that does
                // not queue (a retry does this).
                drop(first);
                let thief = pool.snapshot().claim(None, &Tried::default(), 0).unwrap();
                settle().await;
                assert!(order.borrow().is_empty());
                // The next freed slot is still waiter 0's: it kept its place in the line.
                drop(thief);
                settle().await;
                assert_eq!(*order.borrow(), [0]);
                for _ in 0..3 {
                    release.notify_one();
                    settle().await;
                }
                assert_eq!(*order.borrow(), [0, 1, 2]);
                for t in tasks {
                    t.await.unwrap();
                }
            })
            .await;
    });
}

#[test]
fn capacity_that_appears_wakes_as_many_waiters_as_it_can_serve() {
    // Server 0 (limit 1) is busy; server 1 (limit 2) is disabled, then unhealthy: enabling it,
    // and later its recovery, must hand the new slots to the waiters without any slot being
    // freed.
    let specs = vec![
        common::spec(0, 1).max_in_flight(1),
        common::spec(1, 1).max_in_flight(2).enabled(false),
    ];
    let pool = Rc::new(Pool::new(
        "t",
        PoolOptions::new(Algorithm::Wrr),
        specs,
        Arc::new(StatsStore::default()),
    ));
    let id = pool.specs()[1].id.as_str().to_string();
    runtime().block_on(async {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let busy = pool.admit(None, 10).await.unwrap();
                let order = Rc::new(RefCell::new(Vec::new()));
                let release = Rc::new(tokio::sync::Notify::new());
                let mut tasks = Vec::new();
                for t in spawn_waiters(&pool, 3, &order, &release) {
                    tasks.push(t);
                    settle().await;
                }
                assert_eq!(pool.store().queue().waiting(), 3);
                // Enabled (admin API, reload): two slots appear; the first two in line get
                // them, the third keeps waiting.
                assert!(pool.modify(&id, |s| s.enabled = true));
                settle().await;
                assert_eq!(*order.borrow(), [0, 1]);
                assert_eq!(pool.store().queue().waiting(), 1);
                // Down while serving: its requests end; recovery (health up) wakes the third.
                let server1 = pool.snapshot().servers()[1].stats.clone();
                server1.set_healthy(false);
                pool.refresh();
                release.notify_one();
                release.notify_one();
                settle().await;
                assert_eq!(*order.borrow(), [0, 1], "a down server takes nobody");
                server1.set_healthy(true);
                pool.refresh();
                settle().await;
                assert_eq!(*order.borrow(), [0, 1, 2]);
                release.notify_one();
                drop(busy);
                for t in tasks {
                    t.await.unwrap();
                }
            })
            .await;
    });
}

#[test]
fn under_contention_every_waiter_is_served_and_no_limit_is_exceeded() {
    // Four threads, 400 requests for 3 slots, a quarter of them stealing slots without
    // queueing (as retries do): a lost wake would leave a waiter asleep past the timeout.
    let pool = Arc::new(limited_pool(Algorithm::LeastConn, &[1, 2]));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for n in 0..400 {
            let pool = Arc::clone(&pool);
            tasks.push(tokio::spawn(async move {
                if n % 4 == 3 {
                    if let Ok(held) = pool.snapshot().claim(None, &Tried::default(), 0) {
                        tokio::task::yield_now().await;
                        drop(held);
                    }
                    return true;
                }
                let claim = pool.admit(None, 1000).await.unwrap();
                let server = claim.server();
                assert!(server.stats.in_flight() <= server.spec.max_in_flight);
                tokio::task::yield_now().await;
                drop(claim);
                true
            }));
        }
        for t in tasks {
            let served = tokio::time::timeout(std::time::Duration::from_secs(10), t)
                .await
                .expect("a waiter was never woken")
                .unwrap();
            assert!(served);
        }
        assert_eq!(pool.store().queue().waiting(), 0);
    });
    rt.shutdown_background();
}
