//! The bounded FIFO waiting room in front of a capacity (a node pool or an account budget): calls
//! that find no free capacity queue in arrival order, the head of the queue sleeps (on tokio's
//! clock, whose timer resolution is one millisecond) until the earliest moment capacity frees up,
//! and a call that certainly cannot be served before its deadline is refused at once instead of
//! sleeping until the deadline to find out.

use std::pin::pin;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;

use super::ThrottleCause;

/// What the waiting room needs to know of the capacity behind it.
pub(crate) trait Capacity {
    /// Takes one transaction now (`Ok(slot)`), or says when the earliest slot frees (`Err`).
    fn try_take(&self) -> Result<usize, Instant>;

    /// The capacity's make-up: limiters, burst of each, time between two transactions of one.
    fn shape(&self) -> Shape;

    /// Whether capacity may grow (e.g. an autoscaler tick) before `deadline`.
    fn may_grow_before(&self, deadline: Instant) -> bool;
}

/// `nodes` limiters of burst `burst`, each freeing one transaction per `interval` when saturated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    pub(crate) nodes: usize,
    pub(crate) burst: u32,
    pub(crate) interval: Duration,
}

/// How long after the earliest moment any node can serve the call with `ahead` calls before it is
/// served at the earliest: `nodes × burst` calls can go at once, then `nodes` more every `interval`.
pub(crate) fn queue_lower_bound(
    ahead: usize,
    nodes: usize,
    burst: u32,
    interval: Duration,
) -> Duration {
    let nodes = nodes.max(1);
    let at_once = nodes.saturating_mul(burst as usize);
    let rounds = u32::try_from((ahead + 1).saturating_sub(at_once)).unwrap_or(u32::MAX);
    interval.saturating_mul(rounds) / u32::try_from(nodes).unwrap_or(u32::MAX)
}

/// The caller's deadline, but no later than `max_wait` from now.
pub(crate) fn effective_deadline(deadline: Option<Instant>, max_wait: Duration) -> Instant {
    let now = Instant::now();
    // A configured wait of centuries must not overflow the clock.
    let latest = now
        .checked_add(max_wait)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365));
    deadline.map_or(latest, |deadline| deadline.min(latest))
}

/// A call the waiting room refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refused {
    pub(crate) cause: ThrottleCause,
    pub(crate) retry_after: Duration,
}

/// A call that got capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Taken {
    pub(crate) slot: usize,
    pub(crate) waited: Duration,
}

/// The last time every node was seen busy, and when the first would free up. Valid only for the
/// generation of capacity it was observed on: adding nodes or changing the rate clears it.
#[derive(Debug, Default)]
struct BusyObservation {
    free_at: Option<Instant>,
}

#[derive(Debug, Default)]
pub(crate) struct WaitingRoom {
    /// Tokio's mutex serves waiters in the order they asked: that is the FIFO.
    turnstile: Mutex<()>,
    /// Calls inside the room (waiting for the turnstile or holding it).
    queued: AtomicUsize,
    capacity_changed: Notify,
    /// Bumped (under `busy`'s lock) whenever capacity changes.
    generation: AtomicU64,
    busy: std::sync::Mutex<BusyObservation>,
}

/// Leaves the room on every path out, including the caller dropping the future.
struct Seat<'a>(&'a AtomicUsize);

impl Drop for Seat<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl WaitingRoom {
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Forgets what was known of the nodes and wakes the head of the queue to look again (nodes
    /// added or removed, rate changed).
    pub(crate) fn capacity_changed(&self) {
        {
            let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
            self.generation.fetch_add(1, Ordering::AcqRel);
            busy.free_at = None;
        }
        self.capacity_changed.notify_waiters();
    }

    fn observe_busy(&self, generation: u64, free_at: Instant) {
        let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        if self.generation.load(Ordering::Acquire) == generation {
            busy.free_at = Some(free_at);
        }
    }

    /// A lower bound of when the call with `ahead` calls before it can be served, unless capacity
    /// grows. Once every node was seen busy, each frees one transaction per interval from the
    /// moment it frees (no more bursts); otherwise assume idle nodes with full bursts.
    fn earliest_turn(&self, shape: Shape, ahead: usize, now: Instant) -> Instant {
        let busy_free_at = self
            .busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .free_at;
        match busy_free_at {
            Some(free_at) => free_at + queue_lower_bound(ahead, shape.nodes, 1, shape.interval),
            None => now + queue_lower_bound(ahead, shape.nodes, shape.burst, shape.interval),
        }
    }

    /// Gets one transaction of `capacity` no later than `deadline`, queueing behind earlier calls.
    pub(crate) async fn take<C: Capacity>(
        &self,
        capacity: &C,
        deadline: Instant,
        max_queue: usize,
    ) -> Result<Taken, Refused> {
        let entered = Instant::now();
        if deadline < entered {
            // The caller would be gone before the call completes: spend nothing on it.
            let turn = self.earliest_turn(capacity.shape(), self.queued(), entered);
            return Err(Refused {
                cause: ThrottleCause::TooLittleTime,
                retry_after: turn.saturating_duration_since(entered),
            });
        }
        // Only an empty room may be bypassed, so waiting calls keep their turn.
        if self.queued() == 0 {
            let generation = self.generation.load(Ordering::Acquire);
            match capacity.try_take() {
                Ok(slot) => {
                    return Ok(Taken {
                        slot,
                        waited: Duration::ZERO,
                    });
                }
                Err(free_at) => self.observe_busy(generation, free_at),
            }
        }
        let ahead = self.queued.fetch_add(1, Ordering::AcqRel);
        let _seat = Seat(&self.queued);
        let turn = self.earliest_turn(capacity.shape(), ahead, entered);
        let retry_after = turn.saturating_duration_since(entered);
        if ahead >= max_queue {
            return Err(Refused {
                cause: ThrottleCause::QueueFull,
                retry_after,
            });
        }
        if turn > deadline && !capacity.may_grow_before(deadline) {
            return Err(Refused {
                cause: ThrottleCause::DeadlineTooSoon,
                retry_after,
            });
        }
        let Ok(_turn) = tokio::time::timeout_at(deadline, self.turnstile.lock()).await else {
            let now = Instant::now();
            let ahead_now = self.queued().saturating_sub(1);
            let turn = self.earliest_turn(capacity.shape(), ahead_now, now);
            let retry_after = turn.saturating_duration_since(now);
            return Err(Refused {
                cause: ThrottleCause::WaitExpired,
                retry_after,
            });
        };
        self.first_in_line(capacity, entered, deadline).await
    }

    /// At the head of the line (the turnstile held): takes the first slot that frees up, waking
    /// when one should have or when the capacity changes; refused when none will free up before
    /// the deadline.
    async fn first_in_line<C: Capacity>(
        &self,
        capacity: &C,
        entered: Instant,
        deadline: Instant,
    ) -> Result<Taken, Refused> {
        loop {
            let mut changed = pin!(self.capacity_changed.notified());
            // Register before looking, so a change between the look and the sleep is not missed.
            changed.as_mut().enable();
            let generation = self.generation.load(Ordering::Acquire);
            let now = Instant::now();
            let free_at = match capacity.try_take() {
                Ok(slot) => {
                    return Ok(Taken {
                        slot,
                        waited: now - entered,
                    });
                }
                Err(free_at) => free_at,
            };
            self.observe_busy(generation, free_at);
            let retry_after = free_at.saturating_duration_since(now);
            if free_at > deadline && !capacity.may_grow_before(deadline) {
                return Err(Refused {
                    cause: ThrottleCause::DeadlineTooSoon,
                    retry_after,
                });
            }
            if now >= deadline {
                return Err(Refused {
                    cause: ThrottleCause::WaitExpired,
                    retry_after,
                });
            }
            tokio::select! {
                () = tokio::time::sleep_until(free_at.min(deadline)) => {}
                () = changed => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_bound_allows_full_bursts_then_one_round_per_interval() {
        let t = Duration::from_millis(150);
        assert_eq!(queue_lower_bound(0, 2, 6, t), Duration::ZERO);
        assert_eq!(queue_lower_bound(11, 2, 6, t), Duration::ZERO);
        assert_eq!(queue_lower_bound(12, 2, 6, t), Duration::from_millis(75));
        assert_eq!(queue_lower_bound(20, 2, 6, t), Duration::from_millis(675));
        assert_eq!(queue_lower_bound(9, 1, 1, t), Duration::from_millis(1_350));
    }
}
