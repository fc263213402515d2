//! A set of equal rate limiters (one per node) and how calls are spread over them. Synchronous and
//! lock-free on the hot path; resizing and rate changes are done by the owner under its write lock.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

use super::clock::{TokioClock, TokioInstant};

/// One node: a governor limiter on tokio's clock.
pub(crate) type NodeLimiter =
    RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<TokioInstant>>;

/// `count` nodes admitting `rate` transactions/s each, with bursts of `burst`.
#[derive(Debug)]
pub(crate) struct NodeSet {
    nodes: Vec<NodeLimiter>,
    rate: NonZeroU32,
    burst: NonZeroU32,
    cursor: AtomicUsize,
}

fn non_zero(value: u32) -> NonZeroU32 {
    NonZeroU32::new(value).unwrap_or(NonZeroU32::MIN)
}

fn limiter(rate: NonZeroU32, burst: NonZeroU32) -> NodeLimiter {
    RateLimiter::direct_with_clock(Quota::per_second(rate).allow_burst(burst), TokioClock)
}

impl NodeSet {
    pub(crate) fn new(count: u32, rate: u32, burst: u32) -> Self {
        let (rate, burst) = (non_zero(rate), non_zero(burst));
        let nodes = (0..count.max(1)).map(|_| limiter(rate, burst)).collect();
        Self {
            nodes,
            rate,
            burst,
            cursor: AtomicUsize::new(0),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Time between two transactions of one saturated node.
    pub(crate) fn emission_interval(&self) -> Duration {
        Duration::from_secs(1) / self.rate.get()
    }

    /// Takes one transaction on the next node with free capacity, going round the nodes from a
    /// rotating start so load spreads evenly. `Err` carries the earliest time any node frees up.
    pub(crate) fn try_take(&self) -> Result<usize, Instant> {
        let count = self.nodes.len();
        let start = self.cursor.fetch_add(1, Ordering::Relaxed) % count.max(1);
        let mut earliest: Option<Instant> = None;
        for offset in 0..count {
            let index = if start + offset >= count {
                start + offset - count
            } else {
                start + offset
            };
            match self.nodes[index].check() {
                Ok(()) => return Ok(index),
                Err(not_until) => {
                    let at = not_until.earliest_possible().0;
                    earliest = Some(earliest.map_or(at, |e| e.min(at)));
                }
            }
        }
        Err(earliest.unwrap_or_else(|| Instant::now() + self.emission_interval()))
    }

    /// Adds fresh nodes (full burst, as a new replica would have) or removes the newest ones.
    pub(crate) fn resize(&mut self, count: u32) {
        let count = count.max(1) as usize;
        if count < self.nodes.len() {
            self.nodes.truncate(count);
        } else {
            let (rate, burst) = (self.rate, self.burst);
            self.nodes.resize_with(count, || limiter(rate, burst));
        }
    }

    /// Rebuilds every limiter for a new rate (governor quotas are immutable). Each new limiter
    /// starts with the spare burst its predecessor had, capped at the new burst, so a rate change
    /// never hands out a free burst.
    pub(crate) fn set_rate(&mut self, rate: u32, burst: u32) {
        let (rate, burst) = (non_zero(rate), non_zero(burst));
        let old_burst = self.burst.get();
        for node in &mut self.nodes {
            // The old limiter is discarded, so probing it by taking cells costs nothing.
            let spare = (0..old_burst).take_while(|_| node.check().is_ok()).count() as u32;
            let fresh = limiter(rate, burst);
            if let Some(used) = NonZeroU32::new(burst.get().saturating_sub(spare)) {
                // `used` ≤ burst, so this cannot be InsufficientCapacity, and a fresh limiter conforms.
                let _ = fresh.check_n(used);
            }
            *node = fresh;
        }
        self.rate = rate;
        self.burst = burst;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_node_admits_its_burst_then_says_when_the_next_frees() {
        let nodes = NodeSet::new(1, 6, 6);
        let start = Instant::now();
        for _ in 0..6 {
            assert_eq!(nodes.try_take(), Ok(0));
        }
        let free_at = nodes.try_take().unwrap_err();
        assert_eq!(free_at - start, Duration::from_nanos(166_666_666));
        tokio::time::advance(free_at - start).await;
        assert_eq!(nodes.try_take(), Ok(0));
    }

    #[tokio::test(start_paused = true)]
    async fn spreads_calls_round_the_nodes() {
        let nodes = NodeSet::new(3, 6, 6);
        let taken: Vec<usize> = (0..6).map(|_| nodes.try_take().unwrap()).collect();
        assert_eq!(taken, vec![0, 1, 2, 0, 1, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_change_keeps_spent_capacity_spent() {
        let mut nodes = NodeSet::new(1, 6, 6);
        for _ in 0..4 {
            nodes.try_take().unwrap();
        }
        nodes.set_rate(12, 12);
        // Two cells were spare before the change; the new limiter offers the same two.
        assert!(nodes.try_take().is_ok());
        assert!(nodes.try_take().is_ok());
        assert!(nodes.try_take().is_err());
        assert_eq!(nodes.emission_interval(), Duration::from_nanos(83_333_333));
    }

    #[tokio::test(start_paused = true)]
    async fn resize_keeps_existing_nodes_state() {
        let mut nodes = NodeSet::new(1, 6, 6);
        for _ in 0..6 {
            nodes.try_take().unwrap();
        }
        nodes.resize(2);
        let taken: Vec<_> = (0..7).map(|_| nodes.try_take()).collect();
        assert_eq!(
            taken.iter().filter(|t| t.is_ok()).count(),
            6,
            "only the new node has capacity"
        );
        nodes.resize(1);
        assert_eq!(nodes.len(), 1);
        assert!(nodes.try_take().is_err());
    }
}
