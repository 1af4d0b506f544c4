// Copyright 2026 Cloudflare, Inc.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
// http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

//! Idle-time bookkeeping for connections kept without a watcher task: a coarse clock that the
//! pool's sweeper advances (so a release reads no clock), and each entry's stamp.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// The shortest interval between two sweeps.
pub const MIN_SWEEP_INTERVAL: Duration = Duration::from_millis(10);
/// The longest interval between two sweeps (also the bound on how long a connection the server
/// closed stays open on our side when no idle timeout is shorter).
pub const MAX_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Milliseconds since the pool was made, as of the last [`CoarseClock::tick`].
///
/// Like NGINX's cached `ngx_current_msec`: stamps taken between two ticks carry the earlier
/// tick's time, so an idle time is measured late by at most the time since the last tick.
pub struct CoarseClock {
    origin: Instant,
    now_ms: AtomicU64,
}

impl CoarseClock {
    /// A clock at 0.
    pub fn new() -> Self {
        CoarseClock {
            origin: Instant::now(),
            now_ms: AtomicU64::new(0),
        }
    }

    /// Reads the real clock and stores it; returns it.
    pub fn tick(&self) -> u64 {
        let now = self.origin.elapsed().as_millis() as u64;
        self.now_ms.fetch_max(now, Relaxed);
        now
    }

    /// The time of the last tick.
    pub fn now(&self) -> u64 {
        self.now_ms.load(Relaxed)
    }
}

/// When an unwatched connection went idle, and how long it may stay so.
#[derive(Clone, Copy, Debug)]
pub struct IdleStamp {
    since_ms: u64,
    timeout_ms: u64,
}

impl IdleStamp {
    /// Idle from `since_ms` (a [`CoarseClock`] time), for at most `timeout` (`None`: no limit).
    pub fn new(since_ms: u64, timeout: Option<Duration>) -> Self {
        IdleStamp {
            since_ms,
            timeout_ms: timeout.map_or(u64::MAX, |t| t.as_millis().min(u64::MAX as u128) as u64),
        }
    }

    /// How long the connection has been idle at `now_ms`.
    pub fn idle_for(&self, now_ms: u64) -> Duration {
        Duration::from_millis(now_ms.saturating_sub(self.since_ms))
    }

    /// Whether the idle timeout has passed at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.since_ms) >= self.timeout_ms
    }
}

/// Interval between sweeps for a pool whose shortest idle timeout is `min_timeout_ms`: a quarter
/// of it, so an expired connection is closed at most ~25% late, within
/// [[`MIN_SWEEP_INTERVAL`], [`MAX_SWEEP_INTERVAL`]].
pub fn sweep_interval(min_timeout_ms: u64) -> Duration {
    Duration::from_millis(min_timeout_ms / 4).clamp(MIN_SWEEP_INTERVAL, MAX_SWEEP_INTERVAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_expires_at_its_timeout() {
        let stamp = IdleStamp::new(1_000, Some(Duration::from_millis(50)));
        assert!(!stamp.expired(1_049));
        assert!(stamp.expired(1_050));
        assert_eq!(stamp.idle_for(1_020), Duration::from_millis(20));
        assert_eq!(stamp.idle_for(900), Duration::ZERO);
        assert!(!IdleStamp::new(0, None).expired(u64::MAX - 1));
    }

    #[test]
    fn the_sweep_interval_is_a_quarter_of_the_shortest_timeout_within_bounds() {
        assert_eq!(sweep_interval(u64::MAX), MAX_SWEEP_INTERVAL);
        assert_eq!(sweep_interval(60_000), MAX_SWEEP_INTERVAL);
        assert_eq!(sweep_interval(400), Duration::from_millis(100));
        assert_eq!(sweep_interval(1), MIN_SWEEP_INTERVAL);
    }

    #[test]
    fn the_clock_only_moves_when_ticked() {
        let clock = CoarseClock::new();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(clock.now(), 0);
        let t = clock.tick();
        assert!(t >= 5);
        assert_eq!(clock.now(), t);
    }
}
