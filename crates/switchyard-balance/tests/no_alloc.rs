//! Picks never allocate: a counting global allocator watches 10,000 picks per algorithm (both
//! rings of `consistent_hash`).
#![allow(unsafe_code)] // GlobalAlloc is an unsafe trait; this test file only forwards to System.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use switchyard_balance::{
    Algorithm, AllDownPolicy, HashRing, Pool, PoolOptions, ServerSpec, StatsStore, Tried,
};

thread_local! {
    // Counts only on the thread under test (the test harness allocates on its own threads).
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is a
// thread-local `Cell` with const initialisation, which itself never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

fn note() {
    let _ = COUNTING.try_with(|c| {
        if c.get() {
            let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
        }
    });
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn counted<R>(f: impl FnOnce() -> R) -> (R, u64) {
    ALLOCATIONS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, ALLOCATIONS.with(Cell::get))
}

#[test]
fn the_counter_counts() {
    let (v, n) = counted(|| vec![1u8; 10]);
    assert_eq!(v.len(), 10);
    assert!(n >= 1);
}

#[test]
fn picks_do_not_allocate() {
    let algorithms = [
        (Algorithm::Wrr, HashRing::Maglev),
        (Algorithm::LeastConn, HashRing::Maglev),
        (Algorithm::Ewma, HashRing::Maglev),
        (Algorithm::ConsistentHash, HashRing::Maglev),
        (Algorithm::ConsistentHash, HashRing::Ketama),
        (Algorithm::Random, HashRing::Maglev),
    ];
    for (algorithm, ring) in algorithms {
        // Small pools (full scans) and large ones (P2C), panic mode included.
        for n in [1usize, 3, 100, 1_000] {
            let specs: Vec<ServerSpec> = (0..n)
                .map(|i| {
                    let addr = format!("10.0.{}.{}:80", i >> 8, i & 0xff);
                    ServerSpec::new("g", addr.parse().unwrap(), 1 + (i as u32 % 5))
                })
                .collect();
            let pool = Pool::new(
                "t",
                PoolOptions::new(algorithm)
                    .hash_ring(ring)
                    .when_all_down(AllDownPolicy::All),
                specs,
                Arc::new(StatsStore::default()),
            );
            let snap = pool.snapshot();
            let keys: Vec<u64> = (0..10_000)
                .map(|i| pool.hash_key(format!("k{i}").as_bytes()))
                .collect();
            let mut tried = Tried::default();
            tried.insert(&snap.servers()[0].stats);
            // Warm up per-thread state (the RNG seed) and the fall-through tier's selector
            // (built on a snapshot's first fall-through) before counting.
            let _ = snap.pick(Some(1), &Tried::default());
            let _ = snap.pick(Some(1), &tried);

            let (found, allocations) = counted(|| {
                let mut found = 0usize;
                for (i, &k) in keys.iter().enumerate() {
                    let key = (i % 7 != 0).then_some(k);
                    let t = if i % 5 == 0 {
                        &tried
                    } else {
                        &Tried::default()
                    };
                    if let Some(s) = snap.pick(key, t) {
                        // The request's life: in-flight guard, finish.
                        let g = s.stats.begin(snap.now_nanos());
                        found += 1;
                        g.finish(switchyard_balance::Outcome::Success, snap.now_nanos());
                    }
                }
                found
            });
            let what = format!("{algorithm} ({}) with {n} servers", ring.name());
            assert_eq!(allocations, 0, "{what} allocated");
            assert!(found >= 10_000 * 4 / 5, "{what}: {found}");
        }
    }
}

#[test]
fn claims_under_limits_do_not_allocate() {
    for algorithm in [
        Algorithm::Wrr,
        Algorithm::LeastConn,
        Algorithm::Ewma,
        Algorithm::ConsistentHash,
        Algorithm::Random,
    ] {
        // Limits of 1..=3 and a standby server: claims skip full servers, overflow to standby,
        // and race-free check-and-count their slot.
        let mut specs: Vec<ServerSpec> = (0..8)
            .map(|i| {
                let addr = format!("10.0.0.{}:80", i + 1);
                ServerSpec::new("g", addr.parse().unwrap(), 1 + i % 3).max_in_flight(1 + i % 3)
            })
            .collect();
        specs.push(ServerSpec::new("g", "10.0.1.1:80".parse().unwrap(), 1).standby(true));
        let pool = Pool::new(
            "t",
            PoolOptions::new(algorithm),
            specs,
            Arc::new(StatsStore::default()),
        );
        let snap = pool.snapshot();
        // Warm up: per-thread RNG, and the standby tier's selector (built on first overflow).
        let held: Vec<_> = (0..20)
            .filter_map(|_| snap.claim(Some(7), &Tried::default(), 0).ok())
            .collect();
        drop(held);
        let (claimed, allocations) = counted(|| {
            let mut claimed = 0usize;
            let mut slots: [Option<switchyard_balance::InFlight>; 20] = Default::default();
            for i in 0..10_000u64 {
                let slot = &mut slots[(i % 20) as usize];
                *slot = None;
                if let Ok((_, g)) = snap.claim(Some(i), &Tried::default(), 0) {
                    claimed += 1;
                    *slot = Some(g);
                }
            }
            claimed
        });
        assert_eq!(allocations, 0, "{algorithm}: claims allocated");
        assert!(claimed >= 9_000, "{algorithm}: {claimed}");
    }
}

#[test]
fn picks_during_slow_start_do_not_allocate() {
    use switchyard_balance::{Clock, ManualClock};
    for algorithm in [
        Algorithm::Wrr,
        Algorithm::LeastConn,
        Algorithm::Ewma,
        Algorithm::ConsistentHash,
        Algorithm::Random,
    ] {
        // Small pools (full scans) and large ones (P2C); a third of the servers ramp.
        for n in [3usize, 100] {
            let clock = Arc::new(ManualClock::default());
            clock.advance_ms(60_000);
            let specs: Vec<ServerSpec> = (0..n)
                .map(|i| {
                    let addr = format!("10.0.{}.{}:80", i >> 8, i & 0xff);
                    ServerSpec::new("g", addr.parse().unwrap(), 1 + (i as u32 % 5))
                })
                .collect();
            let pool = Pool::new(
                "t",
                PoolOptions::new(algorithm)
                    .clock(Arc::clone(&clock) as _)
                    .slow_start_ms(10_000),
                specs.clone(),
                Arc::new(StatsStore::default()),
            );
            let ramping: Vec<&str> = specs.iter().step_by(3).map(|s| s.id.as_str()).collect();
            for id in &ramping {
                pool.modify(id, |s| s.enabled = false);
            }
            for id in &ramping {
                pool.modify(id, |s| s.enabled = true);
            }
            clock.advance_ms(3_000);
            let snap = pool.snapshot();
            assert!(snap.servers()[0].stats.service().is_ramping());
            let _ = snap.pick(Some(1), &Tried::default());
            let (found, allocations) = counted(|| {
                let mut found = 0usize;
                for i in 0..10_000u64 {
                    let now = clock.now_nanos();
                    if let Ok((_, g)) = snap.claim(Some(i), &Tried::default(), now) {
                        found += 1;
                        g.finish(switchyard_balance::Outcome::Success, now + 1_000);
                    }
                    if snap.pick(Some(i), &Tried::default()).is_some() {
                        found += 1;
                    }
                }
                found
            });
            assert_eq!(
                allocations, 0,
                "{algorithm} with {n} servers, ramping, allocated"
            );
            assert_eq!(found, 20_000, "{algorithm} with {n} servers");
        }
    }
}
