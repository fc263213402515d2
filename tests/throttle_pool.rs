//! Node pool behaviour under tokio's paused clock: per-node limits, the waiting queue, deadlines,
//! retry delays, live reconfiguration, account budgets, autoscaling.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use connector_runtime::throttle::{
    AccountBudgets, NodePool, PoolMode, PoolSettings, ThrottleCause, ThrottleReason, Throttled,
};
use tokio::time::{Instant, sleep};

const SIXTH_OF_A_SECOND: Duration = Duration::from_nanos(166_666_666);

/// Tokio's timer fires on whole milliseconds, so a wait for capacity ends on the next one.
fn timer_ms(wait: Duration) -> Duration {
    Duration::from_millis(wait.as_nanos().div_ceil(1_000_000) as u64)
}

fn fixed(nodes: u32) -> PoolSettings {
    PoolSettings {
        min_nodes: nodes,
        max_nodes: nodes,
        ..PoolSettings::default()
    }
}

async fn admit_now(pool: &NodePool, calls: usize) -> usize {
    let now = Instant::now();
    let mut admitted = 0;
    for _ in 0..calls {
        if pool.admit(Some(now)).await.is_ok() {
            admitted += 1;
        }
    }
    admitted
}

#[tokio::test(start_paused = true)]
async fn rejects_seventh_call_within_one_second_on_one_node() {
    let pool = NodePool::new(fixed(1));
    let now = Instant::now();
    for _ in 0..6 {
        pool.admit(Some(now)).await.unwrap();
    }
    let throttled = pool.admit(Some(now)).await.unwrap_err();
    assert_eq!(throttled.reason, ThrottleReason::NodeCapacity);
    assert_eq!(throttled.cause, ThrottleCause::DeadlineTooSoon);
    assert_eq!(throttled.retry_after, SIXTH_OF_A_SECOND);
    assert_eq!(throttled.limit, "6 transactions/s per node × 1 node");
    let status = pool.status();
    assert_eq!(
        (status.admitted, status.throttled, status.queued),
        (6, 1, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn two_nodes_admit_twelve() {
    let pool = NodePool::new(PoolSettings {
        max_nodes: 2,
        ..PoolSettings::default()
    });
    assert_eq!(admit_now(&pool, 20).await, 12);
    // One second later both nodes have their full burst back.
    sleep(Duration::from_secs(1)).await;
    assert_eq!(admit_now(&pool, 20).await, 12);
}

#[tokio::test(start_paused = true)]
async fn default_pool_starts_with_two_nodes_of_six() {
    let pool = NodePool::new(PoolSettings::default());
    let status = pool.status();
    assert_eq!(
        (status.current_nodes, status.min_nodes, status.max_nodes),
        (2, 2, 50)
    );
    assert_eq!(
        (status.node_rate, status.node_burst, status.mode),
        (6, 6, PoolMode::Autoscale)
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_when_the_earliest_node_frees() {
    let pool = NodePool::new(fixed(2));
    let start = Instant::now();
    // Node 0 and node 1 alternate; spend node 0's burst first, then node 1's 50 ms later.
    assert_eq!(admit_now(&pool, 6).await, 6);
    sleep(Duration::from_millis(50)).await;
    assert_eq!(admit_now(&pool, 6).await, 6);
    let throttled = pool.admit(Some(Instant::now())).await.unwrap_err();
    // The first node to free up is the one spent at `start`.
    assert_eq!(
        Instant::now() + throttled.retry_after,
        start + SIXTH_OF_A_SECOND
    );
}

#[tokio::test(start_paused = true)]
async fn refuses_without_waiting_when_capacity_frees_after_the_deadline() {
    let pool = NodePool::new(fixed(1));
    admit_now(&pool, 6).await;
    let before = Instant::now();
    let throttled = pool
        .admit(Some(before + Duration::from_millis(100)))
        .await
        .unwrap_err();
    assert_eq!(throttled.cause, ThrottleCause::DeadlineTooSoon);
    assert_eq!(Instant::now(), before, "refused without sleeping");
}

#[tokio::test(start_paused = true)]
async fn waits_for_capacity_that_frees_before_the_deadline() {
    let pool = NodePool::new(fixed(1));
    admit_now(&pool, 6).await;
    let before = Instant::now();
    let admission = pool
        .admit(Some(before + Duration::from_millis(200)))
        .await
        .unwrap();
    assert_eq!(admission.waited, timer_ms(SIXTH_OF_A_SECOND));
    assert_eq!(Instant::now() - before, timer_ms(SIXTH_OF_A_SECOND));
}

#[tokio::test(start_paused = true)]
async fn max_wait_bounds_calls_without_a_deadline() {
    let pool = NodePool::new(PoolSettings {
        max_wait: Duration::from_millis(100),
        ..fixed(1)
    });
    admit_now(&pool, 6).await;
    let throttled = pool.admit(None).await.unwrap_err();
    assert_eq!(throttled.cause, ThrottleCause::DeadlineTooSoon);
}

#[tokio::test(start_paused = true)]
async fn queue_is_bounded_and_served_in_arrival_order() {
    let pool = NodePool::new(PoolSettings {
        max_queue: 3,
        ..fixed(1)
    });
    admit_now(&pool, 6).await;
    let start = Instant::now();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for caller in 0..3 {
        let (pool, order) = (Arc::clone(&pool), Arc::clone(&order));
        waiters.push(tokio::spawn(async move {
            let admission = pool
                .admit(Some(start + Duration::from_secs(5)))
                .await
                .unwrap();
            order.lock().unwrap().push((caller, admission.waited));
        }));
        tokio::task::yield_now().await;
    }
    assert_eq!(pool.status().queued, 3);
    let full = pool
        .admit(Some(start + Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert_eq!(full.cause, ThrottleCause::QueueFull);
    assert_eq!(Instant::now(), start, "a full queue refuses at once");
    for waiter in waiters {
        waiter.await.unwrap();
    }
    let order = order.lock().unwrap().clone();
    assert_eq!(
        order,
        vec![
            (0, timer_ms(SIXTH_OF_A_SECOND)),
            (1, timer_ms(SIXTH_OF_A_SECOND * 2)),
            (2, timer_ms(SIXTH_OF_A_SECOND * 3))
        ]
    );
    assert_eq!(pool.status().queued, 0);
}

#[tokio::test(start_paused = true)]
async fn refuses_queued_call_whose_turn_comes_after_its_deadline() {
    let pool = NodePool::new(fixed(1));
    admit_now(&pool, 6).await;
    let start = Instant::now();
    let mut waiters = Vec::new();
    for _ in 0..12 {
        let pool = Arc::clone(&pool);
        waiters.push(tokio::spawn(async move {
            pool.admit(Some(start + Duration::from_secs(5))).await
        }));
        tokio::task::yield_now().await;
    }
    // Twelve calls ahead on one busy node of 6/s: this call's turn is 13/6 s away.
    let throttled = pool
        .admit(Some(start + Duration::from_secs(2)))
        .await
        .unwrap_err();
    assert_eq!(throttled.cause, ThrottleCause::DeadlineTooSoon);
    assert_eq!(throttled.retry_after, SIXTH_OF_A_SECOND * 13);
    assert_eq!(Instant::now(), start);
    for waiter in waiters {
        waiter.await.unwrap().unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn dropped_waiter_leaves_the_queue() {
    let pool = NodePool::new(fixed(1));
    admit_now(&pool, 6).await;
    let waiter = {
        let pool = Arc::clone(&pool);
        tokio::spawn(async move {
            pool.admit(Some(Instant::now() + Duration::from_secs(5)))
                .await
        })
    };
    tokio::task::yield_now().await;
    assert_eq!(pool.status().queued, 1);
    waiter.abort();
    let _ = waiter.await;
    assert_eq!(pool.status().queued, 0);
}

#[tokio::test(start_paused = true)]
async fn new_bounds_take_effect_live_and_wake_waiters() {
    let pool = NodePool::new(PoolSettings {
        node_rate: 1,
        node_burst: 1,
        ..fixed(1)
    });
    let start = Instant::now();
    pool.admit(Some(start)).await.unwrap();
    let waiter = {
        let pool = Arc::clone(&pool);
        tokio::spawn(async move { pool.admit(Some(start + Duration::from_secs(10))).await })
    };
    tokio::task::yield_now().await;
    sleep(Duration::from_millis(100)).await;
    pool.reconfigure(3, 5).unwrap();
    let admission = waiter.await.unwrap().unwrap();
    assert_eq!(
        admission.waited,
        Duration::from_millis(100),
        "served by a new node, not after 1 s"
    );
    let status = pool.status();
    assert_eq!(
        (status.current_nodes, status.min_nodes, status.max_nodes),
        (3, 3, 5)
    );
    // Node 0 spent one, the new node 1 one: two left at once.
    assert_eq!(admit_now(&pool, 5).await, 1);

    pool.reconfigure(1, 1).unwrap();
    assert_eq!(pool.status().current_nodes, 1);
    assert_eq!(pool.status().desired_nodes, 1);
    assert!(pool.reconfigure(4, 2).is_err());
}

#[tokio::test(start_paused = true)]
async fn shrinking_keeps_queued_calls() {
    let pool = NodePool::new(fixed(3));
    admit_now(&pool, 18).await;
    let start = Instant::now();
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move { pool.admit(Some(start + Duration::from_secs(5))).await })
        })
        .collect();
    tokio::task::yield_now().await;
    pool.reconfigure(1, 1).unwrap();
    for waiter in waiters {
        waiter.await.unwrap().unwrap();
    }
    // One node of 6/s serves four queued calls in four sixths of a second.
    assert_eq!(Instant::now() - start, timer_ms(SIXTH_OF_A_SECOND * 4));
}

#[tokio::test(start_paused = true)]
async fn node_rate_changes_live_without_a_free_burst() {
    let pool = NodePool::new(fixed(1));
    assert_eq!(admit_now(&pool, 6).await, 6);
    pool.set_node_rate(12, 12).unwrap();
    assert_eq!(admit_now(&pool, 1).await, 0, "spent capacity stays spent");
    let throttled = pool.admit(Some(Instant::now())).await.unwrap_err();
    assert_eq!(throttled.retry_after, Duration::from_nanos(83_333_333));
    assert_eq!(throttled.limit, "12 transactions/s per node × 1 node");
    sleep(Duration::from_secs(1)).await;
    assert_eq!(admit_now(&pool, 20).await, 12);
    assert!(pool.set_node_rate(0, 6).is_err());
}

#[tokio::test(start_paused = true)]
async fn account_budget_applies_across_connections_sharing_an_account() {
    let budgets = AccountBudgets::default();
    let eu = NodePool::new(fixed(10));
    let us = NodePool::new(fixed(10));
    let eu_budget = budgets.budget_for("acct_shared", false);
    let us_budget = budgets.budget_for("acct_shared", false);
    let now = Instant::now();
    let mut admitted = 0;
    let mut refusals: Vec<Throttled> = Vec::new();
    for call in 0..40 {
        let (pool, budget) = if call % 2 == 0 {
            (&eu, &eu_budget)
        } else {
            (&us, &us_budget)
        };
        match pool.admit_with_budget(budget, Some(now)).await {
            Ok(_) => admitted += 1,
            Err(throttled) => refusals.push(throttled),
        }
    }
    // 120 transactions/s of nodes, but the test-mode account allows 25 requests/s.
    assert_eq!(admitted, 25);
    assert!(
        refusals
            .iter()
            .all(|t| t.reason == ThrottleReason::StripeRateBudget)
    );
    assert_eq!(refusals[0].retry_after, Duration::from_millis(40));
    // A different account has its own budget.
    let other = budgets.budget_for("acct_other", false);
    assert!(eu.admit_with_budget(&other, Some(now)).await.is_ok());
}

/// Offers `calls` calls evenly over one second, each willing to wait `patience`.
async fn offer_for_one_second(pool: &Arc<NodePool>, calls: u32, patience: Duration) {
    let start = Instant::now();
    let gap = Duration::from_secs(1) / calls;
    for call in 0..calls {
        tokio::time::sleep_until(start + gap * call).await;
        let pool = Arc::clone(pool);
        tokio::spawn(async move {
            let _ = pool.admit(Some(Instant::now() + patience)).await;
        });
    }
}

#[tokio::test(start_paused = true)]
async fn scales_up_within_one_tick_of_demand_exceeding_capacity() {
    let pool = NodePool::new(PoolSettings::default());
    let start = Instant::now();
    // Calls that cannot wait are refused, but still count as demand.
    offer_for_one_second(&pool, 150, Duration::ZERO).await;
    sleep_until_after(start + Duration::from_secs(1)).await;
    let status = pool.status();
    // 150 calls/s at 6/s per node and 80 % target utilisation: ceil(150 / 4.8) = 32 nodes.
    assert_eq!((status.current_nodes, status.desired_nodes), (32, 32));
    assert!(
        status.utilization > 1.0,
        "two nodes ran flat out: {}",
        status.utilization
    );
    assert!(status.throttled > 100);
}

#[tokio::test(start_paused = true)]
async fn queued_backlog_counts_as_demand_and_is_served_by_new_nodes() {
    let pool = NodePool::new(PoolSettings::default());
    let start = Instant::now();
    // Every call may wait past the first tick, so the calls two nodes cannot take queue up.
    offer_for_one_second(&pool, 150, Duration::from_millis(1_500)).await;
    assert!(pool.status().queued > 100);
    sleep_until_after(start + Duration::from_secs(1)).await;
    let status = pool.status();
    // 150 arrivals plus a backlog of more than 100 calls need more than 50 nodes.
    assert_eq!(status.current_nodes, 50);
    assert_eq!(
        (status.queued, status.throttled, status.admitted),
        (0, 0, 150)
    );
}

async fn sleep_until_after(at: Instant) {
    tokio::time::sleep_until(at + Duration::from_millis(1)).await;
}

#[tokio::test(start_paused = true)]
async fn scales_down_only_after_the_window_one_node_at_a_time() {
    let window = Duration::from_secs(10);
    let pool = NodePool::new(PoolSettings {
        stabilization_window: window,
        ..PoolSettings::default()
    });
    let start = Instant::now();
    offer_for_one_second(&pool, 150, Duration::ZERO).await;
    sleep_until_after(start + Duration::from_secs(1)).await;
    assert_eq!(pool.status().current_nodes, 32);
    // Demand falls at the tick of t = 2 s; the window ends at t = 12 s.
    sleep_until_after(start + Duration::from_secs(11)).await;
    assert_eq!(pool.status().current_nodes, 32);
    sleep_until_after(start + Duration::from_secs(12)).await;
    assert_eq!(pool.status().current_nodes, 31);
    sleep_until_after(start + Duration::from_secs(13)).await;
    assert_eq!(pool.status().current_nodes, 30);
    sleep_until_after(start + Duration::from_secs(50)).await;
    assert_eq!(pool.status().current_nodes, 2);
    assert_eq!(pool.status().desired_nodes, 2);
}

#[tokio::test(start_paused = true)]
async fn replica_mode_is_one_node_and_never_scales() {
    let pool = NodePool::new(PoolSettings {
        mode: PoolMode::Replica,
        ..PoolSettings::default()
    });
    let start = Instant::now();
    offer_for_one_second(&pool, 150, Duration::from_millis(500)).await;
    sleep_until_after(start + Duration::from_secs(3)).await;
    let status = pool.status();
    assert_eq!((status.mode, status.current_nodes), (PoolMode::Replica, 1));
    assert_eq!(
        (status.min_nodes, status.max_nodes),
        (2, 50),
        "bounds are reported"
    );
    let throttled = pool.admit(Some(Instant::now())).await;
    assert!(throttled.is_ok(), "the one node has recovered");
    assert!(status.throttled > 100);
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_autoscaling() {
    let pool = NodePool::new(PoolSettings::default());
    pool.shutdown();
    let start = Instant::now();
    offer_for_one_second(&pool, 150, Duration::from_millis(1_500)).await;
    sleep_until_after(start + Duration::from_secs(3)).await;
    assert_eq!(pool.status().current_nodes, 2);
}

#[tokio::test(start_paused = true)]
async fn autoscaler_does_not_keep_a_dropped_pool_alive() {
    let pool = NodePool::new(PoolSettings::default());
    let weak = Arc::downgrade(&pool);
    sleep(Duration::from_millis(1_500)).await;
    drop(pool);
    tokio::task::yield_now().await;
    assert!(weak.upgrade().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_call_whose_deadline_leaves_less_than_the_service_time_takes_no_slot() {
    let pool = NodePool::new(fixed(1));
    // Admitted calls have taken 40 ms to complete.
    for _ in 0..50 {
        pool.record_service_time(Duration::from_millis(40));
    }
    let needed = pool.admission_deadline(Some(Instant::now() + Duration::from_secs(1)));
    let margin = Instant::now() + Duration::from_secs(1) - needed.unwrap();
    assert!(margin >= Duration::from_millis(40), "{margin:?}");

    // Spend the burst; the next slot frees in 1/6 s.
    assert_eq!(admit_now(&pool, 6).await, 6);
    // A caller with 180 ms left would get the slot at 167 ms but be gone before it completes.
    let deadline = Instant::now() + Duration::from_millis(180);
    let refused = pool
        .admit(pool.admission_deadline(Some(deadline)))
        .await
        .unwrap_err();
    assert_eq!(refused.cause, ThrottleCause::DeadlineTooSoon);
    // A caller with 250 ms left gets it, and in time.
    let deadline = Instant::now() + Duration::from_millis(250);
    pool.admit(pool.admission_deadline(Some(deadline)))
        .await
        .unwrap();
    assert!(Instant::now() + Duration::from_millis(40) <= deadline);
    // A caller whose time is already shorter than a call needs is refused even by a free node.
    sleep(Duration::from_secs(2)).await;
    let deadline = Instant::now() + Duration::from_millis(10);
    let refused = pool
        .admit(pool.admission_deadline(Some(deadline)))
        .await
        .unwrap_err();
    assert_eq!(refused.cause, ThrottleCause::TooLittleTime);
    assert_eq!(pool.status().admitted, 7);
}

#[tokio::test(start_paused = true)]
async fn a_queued_call_whose_caller_gives_up_leaves_without_a_slot() {
    let pool = NodePool::new(fixed(1));
    assert_eq!(admit_now(&pool, 6).await, 6);
    let deadline = Instant::now() + Duration::from_secs(1);
    // The first waiter gives up (its future is dropped) before the slot frees.
    let gone = tokio::time::timeout(Duration::from_millis(50), pool.admit(Some(deadline))).await;
    assert!(gone.is_err());
    assert_eq!(pool.status().queued, 0);
    // The next caller gets the slot the first would have had, at 1/6 s.
    let started = Instant::now();
    pool.admit(Some(deadline)).await.unwrap();
    assert_eq!(
        started.elapsed(),
        timer_ms(SIXTH_OF_A_SECOND - Duration::from_millis(50))
    );
    assert_eq!(pool.status().admitted, 7);
}
