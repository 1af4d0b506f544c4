//! The NGINX-compatible ring (`HashRing::Ketama`): keys placed exactly where NGINX's
//! `hash $key consistent` places them (NGINX's own log, and Cloudflare's `pingora-ketama` as a
//! second reference), removal moves only the removed server's keys, tried servers are walked past
//! on the ring, weights and the missing-key fallback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::*;
use switchyard_balance::{
    Algorithm, HashRing, Pool, PoolOptions, ServerSpec, Snapshot, StatsStore, Tried,
};

fn ketama(specs: Vec<ServerSpec>) -> Pool {
    Pool::new(
        "t",
        PoolOptions::new(Algorithm::ConsistentHash).hash_ring(HashRing::Ketama),
        specs,
        Arc::new(StatsStore::default()),
    )
}

/// The address `key` goes to.
fn owner(pool: &Pool, snap: &Snapshot, key: &str) -> SocketAddr {
    snap.pick(Some(pool.hash_key(key.as_bytes())), &Tried::default())
        .unwrap()
        .spec
        .addr
}

fn keys(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("/user/{i}?session={}", i * 7919))
        .collect()
}

#[test]
fn every_uri_goes_where_nginx_sent_it() {
    // nginx.conf: hash $request_uri consistent; server 10.0.0.{1..9}:443 weight=100;
    let specs: Vec<ServerSpec> = (1..=9)
        .map(|i| ServerSpec::new("g", format!("10.0.0.{i}:443").parse().unwrap(), 100))
        .collect();
    let pool = ketama(specs);
    let snap = pool.snapshot();
    let log = include_str!("data/nginx-ketama-sample.csv");
    let mut checked = 0;
    for line in log.lines().filter(|l| !l.is_empty()) {
        let (uri, upstream) = line.split_once(',').unwrap();
        let want: SocketAddr = upstream.parse().unwrap();
        assert_eq!(owner(&pool, &snap, uri), want, "{uri}");
        checked += 1;
    }
    assert_eq!(checked, 1001);
}

#[test]
fn matches_pingora_ketama_for_random_servers_and_weights() {
    use pingora_ketama::{Bucket, Continuum};
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..5 {
        // IPv4 servers (pingora-ketama names IPv6 ones without brackets, unlike NGINX).
        let servers: Vec<(SocketAddr, u32)> = (0..(5 + round * 7))
            .map(|_| {
                let ip = std::net::Ipv4Addr::from((next() as u32) | 1);
                let port = 1 + (next() % 65_000) as u16;
                (SocketAddr::new(ip.into(), port), 1 + (next() % 9) as u32)
            })
            .collect();
        let specs = servers
            .iter()
            .map(|&(a, w)| ServerSpec::new("g", a, w))
            .collect();
        let pool = ketama(specs);
        let snap = pool.snapshot();
        let buckets: Vec<Bucket> = servers.iter().map(|&(a, w)| Bucket::new(a, w)).collect();
        let reference = Continuum::new(&buckets);
        for k in keys(5_000) {
            assert_eq!(
                Some(owner(&pool, &snap, &k)),
                reference.node(k.as_bytes()),
                "round {round}, key {k}"
            );
        }
    }
}

#[test]
fn a_tried_owner_passes_the_key_to_the_next_point_on_the_ring() {
    use pingora_ketama::{Bucket, Continuum};
    let addrs: Vec<SocketAddr> = (7777..7782)
        .map(|p| format!("127.0.0.1:{p}").parse().unwrap())
        .collect();
    let pool = ketama(addrs.iter().map(|&a| ServerSpec::new("g", a, 1)).collect());
    let snap = pool.snapshot();
    let reference = Continuum::new(&addrs.iter().map(|&a| Bucket::new(a, 1)).collect::<Vec<_>>());
    for k in keys(500) {
        let first = snap
            .pick(Some(pool.hash_key(k.as_bytes())), &Tried::default())
            .unwrap();
        let mut tried = Tried::default();
        tried.insert(&first.stats);
        let second = snap
            .pick(Some(pool.hash_key(k.as_bytes())), &tried)
            .unwrap();
        // NGINX walks the points from the key's one and takes the first server not tried.
        let want = reference
            .node_iter(k.as_bytes())
            .find(|a| **a != first.spec.addr)
            .copied();
        assert_eq!(Some(second.spec.addr), want, "{k}");
    }
}

#[test]
fn removing_one_of_ten_moves_only_its_keys() {
    let specs = |skip: Option<usize>| -> Vec<ServerSpec> {
        (0..10)
            .filter(|&i| Some(i) != skip)
            .map(|i| spec(i, 1))
            .collect()
    };
    let before_pool = ketama(specs(None));
    let after_pool = ketama(specs(Some(3)));
    let (before, after) = (before_pool.snapshot(), after_pool.snapshot());
    let removed = spec(3, 1).addr;
    let ks = keys(20_000);
    let mut moved = 0;
    let mut owned = 0;
    for k in &ks {
        let (a, b) = (
            owner(&before_pool, &before, k),
            owner(&after_pool, &after, k),
        );
        if a == removed {
            owned += 1;
        }
        if a != b {
            moved += 1;
            assert_eq!(
                a, removed,
                "{k} moved from {a} to {b}, a server that stayed"
            );
        }
    }
    let share = moved as f64 / ks.len() as f64;
    eprintln!("removing 1 of 10 moved {:.2}% of keys", share * 100.0);
    assert_eq!(moved, owned, "exactly the removed server's keys moved");
    assert!((0.05..=0.15).contains(&share), "moved {share}");

    // The same when the server is only unhealthy: its keys go to the next point.
    let pool = ketama(specs(None));
    pool.snapshot().servers()[3].stats.set_healthy(false);
    pool.refresh();
    let snap = pool.snapshot();
    for k in ks.iter().take(2_000) {
        assert_eq!(owner(&pool, &snap, k), owner(&after_pool, &after, k), "{k}");
    }
}

#[test]
fn weights_set_the_shares() {
    // Weights of 10 and more: 1,600 points a unit keeps the ring's own unevenness small.
    let weights = [10, 20, 30, 40];
    let pool = ketama(
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| spec(i, w))
            .collect(),
    );
    let snap = pool.snapshot();
    let mut counts = vec![0usize; 4];
    for k in keys(40_000) {
        let a = owner(&pool, &snap, &k);
        counts[(0..4).position(|i| spec(i, 1).addr == a).unwrap()] += 1;
    }
    assert_shares(&counts, &weights, "ketama");
}

#[test]
fn a_missing_key_falls_back_to_smooth_wrr() {
    let pool = ketama(vec![spec(0, 5), spec(1, 1)]);
    let snap = pool.snapshot();
    let seq: Vec<usize> = (0..6).map(|_| pick(&snap, None).unwrap()).collect();
    assert_eq!(seq, [0, 0, 0, 1, 0, 0]);
}

#[test]
fn without_candidates_nothing_is_picked() {
    let pool = ketama(vec![spec(0, 0)]);
    let snap = pool.snapshot();
    assert!(snap.pick(Some(1), &Tried::default()).is_none());
    assert!(snap.pick(None, &Tried::default()).is_none());
}
