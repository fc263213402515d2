//! The upstream's own rate limit, per account (Stripe's 25 or 100 requests/s): one budget per
//! account key, shared by every connection that uses the account, so that many nodes never turn
//! into a storm of upstream 429s. With a
//! shared limiter (see [`super::shared`]) the budget is also shared by every replica of a fleet.
//!
//! Account keys are whatever the caller uses to name the account (its id, or a non-reversible
//! fingerprint of the API key); never the API key itself. Keys never appear in errors or logs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::nodes::NodeSet;
use super::queue::{Capacity, Refused, Shape, WaitingRoom, effective_deadline};
use super::settings::BudgetSettings;
use super::shared::{BudgetAuthority, OnSharedDown, Reservation, SharedBudget, local_share};
use super::{ThrottleCause, ThrottleReason, Throttled};

/// How long a fail-closed budget tells callers to wait while the shared limiter is down.
const SHARED_DOWN_RETRY: Duration = Duration::from_secs(1);

/// A limiter of this process with its FIFO waiting room.
#[derive(Debug)]
struct LocalLimiter {
    limiter: NodeSet,
    room: WaitingRoom,
    burst: u32,
}

impl LocalLimiter {
    fn new(rate: u32, burst: u32) -> Self {
        Self {
            limiter: NodeSet::new(1, rate, burst),
            room: WaitingRoom::default(),
            burst,
        }
    }

    async fn take(&self, deadline: Instant, max_queue: usize) -> Result<(), Refused> {
        self.room.take(self, deadline, max_queue).await.map(|_| ())
    }
}

impl Capacity for LocalLimiter {
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

/// The fleet-wide side of one account's budget.
#[derive(Debug)]
struct SharedSide {
    shared: SharedBudget,
    /// The account's key in the shared limiter: account key and mode.
    key: String,
    down: AtomicBool,
    /// This replica's share while the shared limiter is down, built for a replica count.
    fallback: Mutex<Option<(u32, Arc<LocalLimiter>)>>,
    fallback_admitted: AtomicU64,
}

impl SharedSide {
    fn mark(&self, down: bool) {
        if self.down.swap(down, Ordering::AcqRel) != down {
            if down {
                tracing::warn!(
                    on_down = ?self.shared.on_down,
                    replicas = self.shared.limiter.replicas(),
                    "the fleet's shared rate budget is unreachable; {}",
                    match self.shared.on_down {
                        OnSharedDown::FailOpen => "enforcing this replica's share locally",
                        OnSharedDown::FailClosed => "refusing calls until it is back",
                    }
                );
            } else {
                tracing::info!("the fleet's shared rate budget is reachable again");
            }
        }
    }

    fn fallback(&self, rate: u32, burst: u32) -> Arc<LocalLimiter> {
        let replicas = self.shared.limiter.replicas().max(1);
        let mut fallback = self.fallback.lock().unwrap_or_else(PoisonError::into_inner);
        match &*fallback {
            Some((count, limiter)) if *count == replicas => Arc::clone(limiter),
            _ => {
                let limiter = Arc::new(LocalLimiter::new(
                    local_share(rate, replicas),
                    local_share(burst, replicas),
                ));
                *fallback = Some((replicas, Arc::clone(&limiter)));
                limiter
            }
        }
    }
}

/// One upstream account's request budget.
#[derive(Debug)]
pub struct AccountBudget {
    /// The upstream's name, for messages (`Stripe`).
    upstream: &'static str,
    local: LocalLimiter,
    shared: Option<SharedSide>,
    rate: u32,
    burst: u32,
    live: bool,
    max_queue: usize,
    max_wait: Duration,
    admitted: AtomicU64,
    throttled: AtomicU64,
}

impl AccountBudget {
    fn new(
        settings: &BudgetSettings,
        upstream: &'static str,
        live: bool,
        shared: Option<SharedSide>,
    ) -> Self {
        let rate = if live {
            settings.live_mode_rate
        } else {
            settings.test_mode_rate
        }
        .max(1);
        let burst = settings.burst.unwrap_or(rate).max(1);
        Self {
            upstream,
            local: LocalLimiter::new(rate, burst),
            shared,
            rate,
            burst,
            live,
            max_queue: settings.max_queue,
            max_wait: settings.max_wait,
            admitted: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
        }
    }

    fn mode(&self) -> &'static str {
        if self.live { "live" } else { "test" }
    }

    /// Takes one request from the account's budget, waiting in FIFO order behind other calls, but
    /// never past `deadline` nor the budget's `max_wait`; refuses at once when it cannot be in time.
    pub async fn admit(&self, deadline: Option<Instant>) -> Result<(), Throttled> {
        let deadline = effective_deadline(deadline, self.max_wait);
        let result = match &self.shared {
            None => self.local.take(deadline, self.max_queue).await,
            Some(side) => self.admit_shared(side, deadline).await,
        };
        match result {
            Ok(()) => {
                self.admitted.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(refused) => {
                self.throttled.fetch_add(1, Ordering::Relaxed);
                Err(self.refusal(refused))
            }
        }
    }

    async fn admit_shared(&self, side: &SharedSide, deadline: Instant) -> Result<(), Refused> {
        let max_delay = deadline.saturating_duration_since(Instant::now());
        let reserved = side
            .shared
            .limiter
            .reserve(&side.key, self.rate, self.burst, max_delay)
            .await;
        side.mark(reserved.is_err());
        match reserved {
            Ok(Reservation::Granted { delay }) => {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Ok(())
            }
            Ok(Reservation::Refused { retry_after }) => Err(Refused {
                cause: ThrottleCause::DeadlineTooSoon,
                retry_after,
            }),
            Err(_) => match side.shared.on_down {
                OnSharedDown::FailClosed => Err(Refused {
                    cause: ThrottleCause::SharedStoreDown,
                    retry_after: SHARED_DOWN_RETRY,
                }),
                OnSharedDown::FailOpen => {
                    let share = side.fallback(self.rate, self.burst);
                    share.take(deadline, self.max_queue).await?;
                    side.fallback_admitted.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
            },
        }
    }

    fn refusal(&self, refused: Refused) -> Throttled {
        let mode = self.mode();
        let (reason, limit) = match refused.cause {
            ThrottleCause::SharedStoreDown => (
                ThrottleReason::SharedBudgetUnavailable,
                format!(
                    "{} requests/s per {} account ({mode} mode), shared by the fleet",
                    self.rate, self.upstream
                ),
            ),
            _ => (
                ThrottleReason::StripeRateBudget,
                format!(
                    "{} requests/s per {} account ({mode} mode)",
                    self.rate, self.upstream
                ),
            ),
        };
        Throttled {
            reason,
            cause: refused.cause,
            retry_after: refused.retry_after,
            limit,
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

    /// Where decisions are made now: locally, fleet-wide, or (shared limiter down) locally on this
    /// replica's share or not at all.
    pub fn authority(&self) -> BudgetAuthority {
        match &self.shared {
            None => BudgetAuthority::Local,
            Some(side) if !side.down.load(Ordering::Acquire) => BudgetAuthority::Shared,
            Some(side) => match side.shared.on_down {
                OnSharedDown::FailOpen => BudgetAuthority::LocalShare,
                OnSharedDown::FailClosed => BudgetAuthority::Closed,
            },
        }
    }

    /// Requests admitted on this replica's local share while the shared limiter was down.
    pub fn local_share_admitted(&self) -> u64 {
        self.shared
            .as_ref()
            .map_or(0, |side| side.fallback_admitted.load(Ordering::Relaxed))
    }
}

/// The registry of account budgets, one per account key.
#[derive(Debug, Default)]
pub struct AccountBudgets {
    settings: BudgetSettings,
    /// The upstream's name, for messages; `upstream` when not given.
    upstream: Option<&'static str>,
    shared: Option<SharedBudget>,
    budgets: Mutex<HashMap<String, Arc<AccountBudget>>>,
}

impl AccountBudgets {
    /// Budgets enforced by this process alone.
    pub fn new(settings: BudgetSettings) -> Self {
        Self::with_shared(settings, None)
    }

    /// Budgets enforced fleet-wide through `shared` when given.
    pub fn with_shared(settings: BudgetSettings, shared: Option<SharedBudget>) -> Self {
        Self {
            settings,
            upstream: None,
            shared,
            budgets: Mutex::new(HashMap::new()),
        }
    }

    /// Names the upstream whose accounts these are in messages (a dialect's display name).
    pub fn for_upstream(mut self, name: &'static str) -> Self {
        self.upstream = Some(name);
        self
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
        let shared = self.shared.clone().map(|shared| SharedSide {
            shared,
            key: format!("{account_key}:{}", if live { "live" } else { "test" }),
            down: AtomicBool::new(false),
            fallback: Mutex::new(None),
            fallback_admitted: AtomicU64::new(0),
        });
        let upstream = self.upstream.unwrap_or("upstream");
        let budget = Arc::new(AccountBudget::new(&self.settings, upstream, live, shared));
        budgets.insert(account_key.to_owned(), Arc::clone(&budget));
        budget
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let budgets = AccountBudgets::default().for_upstream("Stripe");
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
        // Budgets that were not told their upstream's name say so plainly.
        let nameless = AccountBudgets::default().budget_for("acct_2", false);
        for _ in 0..25 {
            nameless.admit(Some(now)).await.unwrap();
        }
        let refused = nameless.admit(Some(now)).await.unwrap_err();
        assert_eq!(
            refused.limit,
            "25 requests/s per upstream account (test mode)"
        );
    }

    /// A shared limiter that grants everything, or is down, as the test says.
    #[derive(Debug, Default)]
    struct Switchable {
        down: AtomicBool,
        reserved: AtomicU64,
    }

    #[async_trait::async_trait]
    impl crate::throttle::SharedLimiter for Switchable {
        async fn reserve(
            &self,
            _account: &str,
            _rate: u32,
            _burst: u32,
            _max_delay: Duration,
        ) -> Result<Reservation, crate::throttle::SharedBudgetDown> {
            if self.down.load(Ordering::Acquire) {
                return Err(crate::throttle::SharedBudgetDown("test".to_owned()));
            }
            self.reserved.fetch_add(1, Ordering::Relaxed);
            Ok(Reservation::Granted {
                delay: Duration::ZERO,
            })
        }

        fn replicas(&self) -> u32 {
            3
        }
    }

    fn shared(limiter: &Arc<Switchable>, on_down: OnSharedDown) -> AccountBudgets {
        AccountBudgets::with_shared(
            BudgetSettings::default(),
            Some(SharedBudget {
                limiter: Arc::clone(limiter) as Arc<dyn crate::throttle::SharedLimiter>,
                on_down,
            }),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn fails_open_to_this_replicas_share_and_returns_to_the_shared_budget() {
        let limiter = Arc::new(Switchable::default());
        let budget = shared(&limiter, OnSharedDown::FailOpen).budget_for("acct_1", false);
        let now = Instant::now();
        for _ in 0..30 {
            budget.admit(Some(now)).await.unwrap();
        }
        assert_eq!(limiter.reserved.load(Ordering::Relaxed), 30);
        assert_eq!(budget.authority(), BudgetAuthority::Shared);

        limiter.down.store(true, Ordering::Release);
        let now = Instant::now();
        // 25 requests/s among 3 replicas: a share of 8 at once, then refusals.
        for _ in 0..8 {
            budget.admit(Some(now)).await.unwrap();
        }
        let refused = budget.admit(Some(now)).await.unwrap_err();
        assert_eq!(refused.reason, ThrottleReason::StripeRateBudget);
        assert_eq!(budget.authority(), BudgetAuthority::LocalShare);
        assert_eq!(budget.local_share_admitted(), 8);

        limiter.down.store(false, Ordering::Release);
        budget.admit(Some(now)).await.unwrap();
        assert_eq!(budget.authority(), BudgetAuthority::Shared);
        assert_eq!(limiter.reserved.load(Ordering::Relaxed), 31);
    }

    #[tokio::test(start_paused = true)]
    async fn fails_closed_with_a_retryable_refusal_while_the_shared_budget_is_down() {
        let limiter = Arc::new(Switchable::default());
        let budget = shared(&limiter, OnSharedDown::FailClosed).budget_for("acct_1", true);
        limiter.down.store(true, Ordering::Release);
        let refused = budget.admit(None).await.unwrap_err();
        assert_eq!(refused.reason, ThrottleReason::SharedBudgetUnavailable);
        assert_eq!(refused.cause, ThrottleCause::SharedStoreDown);
        assert_eq!(refused.retry_after, SHARED_DOWN_RETRY);
        assert_eq!(budget.authority(), BudgetAuthority::Closed);
        limiter.down.store(false, Ordering::Release);
        budget.admit(None).await.unwrap();
        assert_eq!(budget.counts(), (1, 1));
    }
}
