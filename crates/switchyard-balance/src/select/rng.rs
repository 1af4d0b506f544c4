//! A fast, allocation-free random source for picks: one xorshift64* state per thread.
//!
//! Not cryptographic. Each thread seeds itself once from a process-wide counter mixed with the
//! wall clock and the state's own address, so threads and processes draw different streams.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

thread_local! {
    static STATE: Cell<u64> = const { Cell::new(0) };
}

static SEEDS: AtomicU64 = AtomicU64::new(0x853c_49e6_748f_ea9b);

/// SplitMix64's finaliser: a bijective 64-bit mixer.
#[inline]
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cold]
fn seed(addr: usize) -> u64 {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let n = SEEDS.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    // xorshift must never hold 0.
    mix64(n ^ wall ^ addr as u64) | 1
}

/// The next 64 random bits of this thread's stream.
#[inline]
pub(crate) fn next_u64() -> u64 {
    STATE.with(|s| {
        let mut x = s.get();
        if x == 0 {
            x = seed(s as *const Cell<u64> as usize);
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

/// A uniform index in `0..n` (Lemire's multiply-shift; `n` must be below 2³²).
#[inline]
pub(crate) fn below(r: u32, n: usize) -> usize {
    ((u64::from(r) * n as u64) >> 32) as usize
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn streams_look_uniform() {
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            counts[below((next_u64() >> 32) as u32, 10)] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }
}
