//! The fleet-wide side of an account budget. When several replicas use one Stripe account, each
//! request is reserved on a limiter they all share (Redis in production: `crate::fleet`), so the
//! fleet together stays under the account's rate. This module holds the contract with that
//! limiter and what a replica does when it is unreachable; it does no I/O itself.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The shared limiter's answer to one reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// The request may be sent after `delay` (zero: now). The slot is already counted fleet-wide,
    /// so a caller that gives up while waiting wastes it: the fleet errs on the side of Stripe.
    Granted { delay: Duration },
    /// No slot is free within the time the caller has; the earliest one is `retry_after` away.
    Refused { retry_after: Duration },
}

/// The shared limiter could not be asked (unreachable, timed out, or it answered nonsense).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the shared budget store is unreachable: {0}")]
pub struct SharedBudgetDown(pub String);

/// A rate limiter shared by every replica of the fleet, keyed by account.
#[async_trait::async_trait]
pub trait SharedLimiter: Send + Sync + fmt::Debug {
    /// Reserves one request of `account`'s budget (`rate` requests/s, bursts of `burst`), to be
    /// sent no later than `max_delay` from now; refuses without reserving when it cannot be.
    async fn reserve(
        &self,
        account: &str,
        rate: u32,
        burst: u32,
        max_delay: Duration,
    ) -> Result<Reservation, SharedBudgetDown>;

    /// How many replicas share the budget, as last seen (at least 1): a replica that cannot reach
    /// the shared limiter takes this share of the budget locally when failing open.
    fn replicas(&self) -> u32;
}

/// What a replica does while the shared limiter is unreachable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnSharedDown {
    /// Keep serving: each replica enforces its share of the budget (rate ÷ replicas) locally.
    /// Calls go on; the fleet may briefly exceed the budget if replicas disagree on their count.
    #[default]
    FailOpen,
    /// Refuse calls with `UNAVAILABLE` and a retry delay until the shared limiter is back: the
    /// budget is never exceeded, at the price of availability.
    FailClosed,
}

/// A shared limiter and the policy for when it is down: what every account budget of the process
/// is built with when the fleet shares its budgets.
#[derive(Debug, Clone)]
pub struct SharedBudget {
    pub limiter: std::sync::Arc<dyn SharedLimiter>,
    pub on_down: OnSharedDown,
}

/// Where an account budget's decisions are made right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetAuthority {
    /// This process alone (no shared limiter configured).
    Local,
    /// The shared limiter, fleet-wide.
    Shared,
    /// The shared limiter is unreachable; this replica enforces its share locally.
    LocalShare,
    /// The shared limiter is unreachable; calls are refused.
    Closed,
}

impl BudgetAuthority {
    /// `local`, `shared`, `local_share`, `closed`: for status figures and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Shared => "shared",
            Self::LocalShare => "local_share",
            Self::Closed => "closed",
        }
    }
}

/// A replica's share of a budget of `rate` requests/s among `replicas` (at least 1 request/s).
pub(crate) fn local_share(rate: u32, replicas: u32) -> u32 {
    (rate / replicas.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_takes_its_share_and_never_nothing() {
        assert_eq!(local_share(25, 1), 25);
        assert_eq!(local_share(25, 3), 8);
        assert_eq!(local_share(25, 50), 1);
        assert_eq!(local_share(25, 0), 25);
    }
}
