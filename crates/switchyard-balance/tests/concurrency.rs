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
