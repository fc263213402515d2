//! Node pools and Stripe account budgets: how many transactions a connection may run, when, and
//! what a caller is told when it may not.
//!
//! Each connection owns a [`NodePool`]: nodes of 6 transactions/s each (a governor limiter per
//! node), a bounded FIFO queue for calls that find every node busy, and an autoscaler whose
//! decision is the pure [`ScalePolicy`]. Every Stripe account has one [`AccountBudget`], shared by
//! all connections that use it, so the pools together stay under Stripe's own per-account limit.
//!
//! The rule for callers: one entity operation, one action call or one upstream page is one
//! transaction; admit it on the connection's pool first, then on the account's budget
//! ([`NodePool::admit_with_budget`] does both in that order). Both refuse with [`Throttled`], which
//! says why and when to retry; the gRPC layer maps it to `RESOURCE_EXHAUSTED`.
//!
//! This module does no I/O and never sleeps on anything but tokio's clock, so paused-time tests are
//! exact. It knows nothing of gRPC or Stripe's HTTP API.

mod budget;
mod clock;
mod nodes;
mod policy;
mod pool;
mod queue;
mod service_time;
mod settings;
mod shared;

use std::fmt;
use std::time::Duration;

pub use budget::{AccountBudget, AccountBudgets};
pub use clock::{TokioClock, TokioInstant};
pub use policy::{ScaleDecision, ScaleInput, ScalePolicy};
pub use pool::{Admission, NodePool, PoolStatus};
pub use service_time::ServiceTime;
pub use settings::{
    BudgetSettings, InvalidBudgetSettings, InvalidPoolSettings, MAX_NODES_LIMIT, PoolMode,
    PoolSettings, default_live_mode_rate, default_max_nodes, default_max_queue, default_max_wait,
    default_min_nodes, default_node_burst, default_node_rate, default_scale_tick,
    default_stabilization_window, default_target_utilization, default_test_mode_rate,
};
pub use shared::{
    BudgetAuthority, OnSharedDown, Reservation, SharedBudget, SharedBudgetDown, SharedLimiter,
};

/// Which limit refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ThrottleReason {
    /// Every node of the connection's pool is busy and the pool cannot serve the call in time.
    NodeCapacity,
    /// The Stripe account's request budget is spent for now.
    StripeRateBudget,
    /// The fleet's shared budget cannot be reached and the budget fails closed.
    SharedBudgetUnavailable,
}

impl ThrottleReason {
    /// The `ErrorInfo.reason` string (`NODE_CAPACITY`, `STRIPE_RATE_BUDGET`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NodeCapacity => "NODE_CAPACITY",
            Self::StripeRateBudget => "STRIPE_RATE_BUDGET",
            Self::SharedBudgetUnavailable => "SHARED_BUDGET_UNAVAILABLE",
        }
    }
}

impl fmt::Display for ThrottleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the call could not wait for capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ThrottleCause {
    /// The queue of waiting calls is full.
    QueueFull,
    /// Capacity cannot free up before the deadline; the call was refused without waiting.
    DeadlineTooSoon,
    /// The call waited until its deadline (or the maximum wait) without getting capacity.
    WaitExpired,
    /// The fleet's shared budget is unreachable and the budget fails closed.
    SharedStoreDown,
    /// The deadline leaves less time than an admitted call needs to complete.
    TooLittleTime,
}

impl fmt::Display for ThrottleCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::QueueFull => "the queue of waiting calls is full",
            Self::DeadlineTooSoon => "capacity frees up only after the deadline",
            Self::WaitExpired => "the wait for capacity reached the deadline",
            Self::SharedStoreDown => "the fleet's shared budget is unreachable",
            Self::TooLittleTime => {
                "the deadline leaves less time than an admitted call needs to complete"
            }
        })
    }
}

/// A call refused by a node pool or an account budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("throttled ({reason}): {cause}; limit {limit}; retry after {} ms", ceil_millis(.retry_after))]
pub struct Throttled {
    pub reason: ThrottleReason,
    pub cause: ThrottleCause,
    /// When capacity is expected to be free for a new call (the gRPC `RetryInfo.retry_delay`).
    pub retry_after: Duration,
    /// The limit in words, e.g. `6 transactions/s per node × 50 nodes` (the `QuotaFailure` description).
    pub limit: String,
}

fn ceil_millis(duration: &Duration) -> u128 {
    duration.as_nanos().div_ceil(1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_reason_limit_and_retry_delay() {
        let throttled = Throttled {
            reason: ThrottleReason::NodeCapacity,
            cause: ThrottleCause::DeadlineTooSoon,
            retry_after: Duration::from_nanos(166_666_667),
            limit: "6 transactions/s per node × 50 nodes".to_owned(),
        };
        assert_eq!(
            throttled.to_string(),
            "throttled (NODE_CAPACITY): capacity frees up only after the deadline; \
             limit 6 transactions/s per node × 50 nodes; retry after 167 ms"
        );
        assert_eq!(
            ThrottleReason::StripeRateBudget.as_str(),
            "STRIPE_RATE_BUDGET"
        );
    }
}
