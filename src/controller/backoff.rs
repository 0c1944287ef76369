//! How long a watch waits before trying again after an error.
//!
//! kube-runtime's default waits 0.8 s doubling up to 30 s with up to 100 %
//! random extra, and is reset only by a delivered event. A restarted API
//! server answers every old watch with `410 Expired`, each an error that
//! doubles the wait again, so the operator could stay blind for tens of
//! seconds after its API server (or a member's) came back. This one starts
//! at 200 ms and stops doubling at 5 s: an API server that is back is seen
//! within about 6 s, and one that is down costs a request every 5 s.
//!
//! The doubling is `backon`'s exponential backoff (the crate kube-runtime's
//! own backoffs are built on). The jitter is not: `backon` adds up to 100 %
//! of the delay, which would stretch the 5 s ceiling to 10 s and break the
//! bound above, and it has no setting for less; so the up-to-20 % extra
//! stays here.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use kube::runtime::utils::Backoff;

/// 200 ms doubling to 5 s, up to 20 % random extra so many watches that
/// failed together do not retry together.
#[derive(Debug)]
pub struct WatchBackoff {
    delays: ExponentialBackoff,
    jitter: RandomState,
    tries: u64,
}

impl WatchBackoff {
    pub const FIRST: Duration = Duration::from_millis(200);
    pub const MAX: Duration = Duration::from_secs(5);

    pub fn new() -> Self {
        Self {
            delays: Self::delays(),
            jitter: RandomState::new(),
            tries: 0,
        }
    }

    /// The base delays, without jitter and without end.
    fn delays() -> ExponentialBackoff {
        ExponentialBuilder::default()
            .with_min_delay(Self::FIRST)
            .with_max_delay(Self::MAX)
            .with_factor(2.0)
            .without_max_times()
            .build()
    }
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        // backon computes in f32 seconds: 200 ms doubled is 400.000006 ms.
        // Whole milliseconds keep the sequence exactly 200, 400, ... 5000.
        let base = self.delays.next()?;
        let base = Duration::from_millis(base.as_millis() as u64);
        self.tries += 1;
        // 0..=20 % of the base, from a per-backoff random hash of the count.
        let extra = self.jitter.hash_one(self.tries) % 21;
        Some(base + base * extra as u32 / 100)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.delays = Self::delays();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_200_ms_to_5_s_with_at_most_20_percent_extra_and_resets() {
        let mut b = WatchBackoff::new();
        let bases = [200, 400, 800, 1600, 3200, 5000, 5000, 5000];
        for base in bases {
            let d = b.next().unwrap().as_millis() as u64;
            assert!(
                (base..=base * 120 / 100).contains(&d),
                "{d} ms is not within 20 % above {base} ms"
            );
        }
        b.reset();
        let d = b.next().unwrap().as_millis() as u64;
        assert!((200..=240).contains(&d), "after reset: {d} ms");
    }

    #[test]
    fn never_runs_out() {
        let mut b = WatchBackoff::new();
        assert_eq!(b.by_ref().take(1000).count(), 1000);
        let d = b.next().unwrap();
        assert!(
            d >= WatchBackoff::MAX && d <= WatchBackoff::MAX * 6 / 5,
            "{d:?}"
        );
    }
}
