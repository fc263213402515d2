//! Stripe's own rate limit, per account: one limiter per account key, shared by every connection
//! that uses the account, so that many nodes never turn into a storm of upstream 429s.
//!
//! Account keys are whatever the caller uses to name the account (its id, or a non-reversible
//! fingerprint of the API key); never the API key itself. Keys never appear in errors or logs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::nodes::NodeSet;
use super::queue::{Capacity, Shape, WaitingRoom, effective_deadline};
use super::settings::BudgetSettings;
use super::{ThrottleReason, Throttled};

/// Whether a Stripe secret or restricted key is a live-mode key (`sk_live_…`, `rk_live_…`).
/// Anything else (test keys, unknown shapes) counts as test mode, the stricter budget.
pub fn is_live_key(api_key: &str) -> bool {
    api_key.starts_with("sk_live_") || api_key.starts_with("rk_live_")
}

/// One Stripe account's request budget.
#[derive(Debug)]
pub struct AccountBudget {
    limiter: NodeSet,
    room: WaitingRoom,
    rate: u32,
    burst: u32,
    live: bool,
    max_queue: usize,
    max_wait: Duration,
    admitted: AtomicU64,
    throttled: AtomicU64,
}

impl AccountBudget {
    fn new(settings: &BudgetSettings, live: bool) -> Self {
        let rate = if live {
            settings.live_mode_rate
        } else {
            settings.test_mode_rate
        }
        .max(1);
        let burst = settings.burst.unwrap_or(rate).max(1);
        Self {
            limiter: NodeSet::new(1, rate, burst),
            room: WaitingRoom::default(),
            rate,
            burst,
            live,
            max_queue: settings.max_queue,
            max_wait: settings.max_wait,
            admitted: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
        }
    }

    /// Takes one request from the account's budget, waiting in FIFO order behind other calls, but
    /// never past `deadline` nor the budget's `max_wait`; refuses at once when it cannot be in time.
    pub async fn admit(&self, deadline: Option<Instant>) -> Result<(), Throttled> {
        let deadline = effective_deadline(deadline, self.max_wait);
        match self.room.take(self, deadline, self.max_queue).await {
            Ok(_) => {
                self.admitted.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(refused) => {
                self.throttled.fetch_add(1, Ordering::Relaxed);
                let mode = if self.live { "live" } else { "test" };
                Err(Throttled {
                    reason: ThrottleReason::StripeRateBudget,
                    cause: refused.cause,
                    retry_after: refused.retry_after,
                    limit: format!("{} requests/s per Stripe account ({mode} mode)", self.rate),
                })
            }
        }
    }

    /// Requests per second this budget allows.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Whether this is a live-mode account's budget.
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// Requests admitted and refused so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.admitted.load(Ordering::Relaxed),
            self.throttled.load(Ordering::Relaxed),
        )
    }
}

impl Capacity for AccountBudget {
    fn try_take(&self) -> Result<usize, Instant> {
        self.limiter.try_take()
    }

    fn shape(&self) -> Shape {
        Shape {
            nodes: 1,
            burst: self.burst,
            interval: self.limiter.emission_interval(),
        }
    }

    fn may_grow_before(&self, _deadline: Instant) -> bool {
        false
    }
}

/// The registry of account budgets, one per account key.
#[derive(Debug, Default)]
pub struct AccountBudgets {
    settings: BudgetSettings,
    budgets: Mutex<HashMap<String, Arc<AccountBudget>>>,
}

impl AccountBudgets {
    pub fn new(settings: BudgetSettings) -> Self {
        Self {
            settings,
            budgets: Mutex::new(HashMap::new()),
        }
    }

    /// The budget of the account named `account_key` (an account id or a key fingerprint, never
    /// the API key). Created on first use with the live- or test-mode rate; later calls for the
    /// same key share it, whatever `live` they pass.
    pub fn budget_for(&self, account_key: &str, live: bool) -> Arc<AccountBudget> {
        let mut budgets = self.budgets.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(budget) = budgets.get(account_key) {
            return Arc::clone(budget);
        }
        // Forget accounts no connection uses any more before adding one.
        budgets.retain(|_, budget| Arc::strong_count(budget) > 1);
        let budget = Arc::new(AccountBudget::new(&self.settings, live));
        budgets.insert(account_key.to_owned(), Arc::clone(&budget));
        budget
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_live_keys_by_prefix() {
        assert!(is_live_key("sk_live_abc"));
        assert!(is_live_key("rk_live_abc"));
        assert!(!is_live_key("sk_test_abc"));
        assert!(!is_live_key("rk_test_abc"));
        assert!(!is_live_key("pk_live_abc"));
    }

    #[tokio::test(start_paused = true)]
    async fn picks_the_rate_by_mode_and_shares_one_budget_per_account() {
        let budgets = AccountBudgets::default();
        let test = budgets.budget_for("acct_1", false);
        let live = budgets.budget_for("acct_2", true);
        assert_eq!((test.rate(), live.rate()), (25, 100));
        let again = budgets.budget_for("acct_1", true);
        assert!(Arc::ptr_eq(&test, &again));
        assert!(!again.is_live());
    }

    #[tokio::test(start_paused = true)]
    async fn refuses_with_stripe_rate_budget_once_spent() {
        let budgets = AccountBudgets::default();
        let budget = budgets.budget_for("acct_1", false);
        let now = Instant::now();
        for _ in 0..25 {
            budget.admit(Some(now)).await.unwrap();
        }
        let refused = budget.admit(Some(now)).await.unwrap_err();
        assert_eq!(refused.reason, ThrottleReason::StripeRateBudget);
        assert_eq!(refused.retry_after, Duration::from_millis(40));
        assert_eq!(
            refused.limit,
            "25 requests/s per Stripe account (test mode)"
        );
        assert_eq!(budget.counts(), (25, 1));
    }
}
