//! Many threads picking from one snapshot.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::*;
use switchyard_balance::{Algorithm, Tried};

#[test]
fn four_threads_wrr_totals_are_exact() {
    let p = pool(Algorithm::Wrr, &[3, 1]);
    let snap = p.snapshot();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let snap = Arc::clone(&snap);
            std::thread::spawn(move || {
                let mut c = [0usize; 2];
                for _ in 0..10_000 {
                    c[pick(&snap, None).unwrap()] += 1;
                }
                c
            })
        })
        .collect();
    let mut total = [0usize; 2];
    for h in handles {
        let c = h.join().unwrap();
        total[0] += c[0];
        total[1] += c[1];
    }
    // 40,000 consecutive tickets over a period of 4: exactly 3:1.
    assert_eq!(total, [30_000, 10_000]);
}

#[test]
fn four_threads_every_algorithm_smoke() {
    for algorithm in ALL {
        let p = pool(algorithm, &[3, 2, 1]);
        let snap = p.snapshot();
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let snap = Arc::clone(&snap);
                std::thread::spawn(move || {
                    let mut c = [0usize; 3];
                    for n in 0..10_000 {
                        let s = snap.pick(key_for(algorithm, t * 10_000 + n), &Tried::default());
                        let s = s.unwrap();
                        let g = s.stats.begin(snap.now_nanos());
                        let i = snap
                            .servers()
                            .iter()
                            .position(|x| Arc::ptr_eq(&x.stats, &s.stats))
                            .unwrap();
                        c[i] += 1;
                        drop(g);
                    }
                    c
                })
            })
            .collect();
        let total: usize = handles
            .into_iter()
            .map(|h| h.join().unwrap().iter().sum::<usize>())
            .sum();
        assert_eq!(total, 40_000, "{algorithm}");
        assert!(snap.servers().iter().all(|s| s.stats.in_flight() == 0));
    }
}

#[test]
fn a_change_during_a_list_rebuild_is_applied_after_it_not_lost() {
    // Thread A rebuilds the list from what it read (as a DNS refresh does); thread B changes one
    // server meanwhile (as the admin API does). B's change must survive: B waits for A's lock
    // and applies on top of A's list.
    let p = Arc::new(pool(Algorithm::Wrr, &[1, 1]));
    let target = p.specs()[0].id.clone();
    let entered = Arc::new(std::sync::Barrier::new(2));
    let a = {
        let (p, entered) = (Arc::clone(&p), Arc::clone(&entered));
        std::thread::spawn(move || {
            p.update_from(|current| {
                entered.wait();
                // B is now blocked on the lock (or about to be): take long enough to let it try.
                std::thread::sleep(std::time::Duration::from_millis(100));
                let mut next = current.to_vec();
                next.push(spec(2, 1));
                next
            })
        })
    };
    entered.wait();
    let b = {
        let p = Arc::clone(&p);
        std::thread::spawn(move || p.modify(target.as_str(), |s| s.weight = 7))
    };
    let changed = a.join().unwrap();
    assert!(b.join().unwrap());
    let (old, new) = changed.expect("the rebuild changed the list");
    assert_eq!((old.len(), new.len()), (2, 3));
    let specs = p.specs();
    assert_eq!(specs.len(), 3, "the rebuild's added server is kept");
    assert_eq!(specs[0].weight, 7, "the concurrent change was lost");
    assert_eq!(p.snapshot().servers()[0].spec.weight, 7);
}
