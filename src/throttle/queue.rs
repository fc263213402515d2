//! The bounded FIFO waiting room in front of a capacity (a node pool or an account budget): calls
//! that find no free capacity queue in arrival order, the head of the queue sleeps (on tokio's
//! clock) until the earliest moment capacity frees up, and a call that certainly cannot be served
//! before its deadline is refused at once instead of sleeping until the deadline to find out.

use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;

use super::ThrottleCause;

/// What the waiting room needs to know of the capacity behind it.
pub(crate) trait Capacity {
    /// Takes one transaction now (`Ok(slot)`), or says when the earliest slot frees (`Err`).
    fn try_take(&self) -> Result<usize, Instant>;

    /// A lower bound of how long until the call with `ahead` calls before it can be served, if
    /// capacity does not grow (see [`queue_lower_bound`]).
    fn lower_bound_wait(&self, ahead: usize) -> Duration;

    /// Whether capacity may grow (e.g. an autoscaler tick) before `deadline`.
    fn may_grow_before(&self, deadline: Instant) -> bool;
}

/// When the call with `ahead` calls before it can be served at the earliest by `nodes` limiters of
/// burst `burst` each freeing one transaction per `interval`: at best every node is idle with a full
/// burst (`nodes × burst` calls at once), then `nodes` more calls every `interval`.
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

#[derive(Debug, Default)]
pub(crate) struct WaitingRoom {
    /// Tokio's mutex serves waiters in the order they asked: that is the FIFO.
    turnstile: Mutex<()>,
    /// Calls inside the room (waiting for the turnstile or holding it).
    queued: AtomicUsize,
    capacity_changed: Notify,
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

    /// Wakes the head of the queue to look again (nodes added, rate raised).
    pub(crate) fn capacity_changed(&self) {
        self.capacity_changed.notify_waiters();
    }

    /// Gets one transaction of `capacity` no later than `deadline`, queueing behind earlier calls.
    pub(crate) async fn take<C: Capacity>(
        &self,
        capacity: &C,
        deadline: Instant,
        max_queue: usize,
    ) -> Result<Taken, Refused> {
        let entered = Instant::now();
        // Only an empty room may be bypassed, so waiting calls keep their turn.
        if self.queued() == 0
            && let Ok(slot) = capacity.try_take()
        {
            return Ok(Taken {
                slot,
                waited: Duration::ZERO,
            });
        }
        let ahead = self.queued.fetch_add(1, Ordering::AcqRel);
        let _seat = Seat(&self.queued);
        if ahead >= max_queue {
            let retry_after = capacity.lower_bound_wait(ahead);
            return Err(Refused {
                cause: ThrottleCause::QueueFull,
                retry_after,
            });
        }
        let bound = capacity.lower_bound_wait(ahead);
        if entered + bound > deadline && !capacity.may_grow_before(deadline) {
            return Err(Refused {
                cause: ThrottleCause::DeadlineTooSoon,
                retry_after: bound,
            });
        }
        let Ok(_turn) = tokio::time::timeout_at(deadline, self.turnstile.lock()).await else {
            let ahead_now = self.queued().saturating_sub(1);
            let retry_after = capacity.lower_bound_wait(ahead_now);
            return Err(Refused {
                cause: ThrottleCause::WaitExpired,
                retry_after,
            });
        };
        loop {
            let mut changed = pin!(self.capacity_changed.notified());
            // Register before looking, so a change between the look and the sleep is not missed.
            changed.as_mut().enable();
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
            let retry_after = free_at.saturating_duration_since(now);
            if now >= deadline {
                return Err(Refused {
                    cause: ThrottleCause::WaitExpired,
                    retry_after,
                });
            }
            if free_at > deadline && !capacity.may_grow_before(deadline) {
                return Err(Refused {
                    cause: ThrottleCause::DeadlineTooSoon,
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
